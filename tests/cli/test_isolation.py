"""``studio up`` and the OS boundary: the boundary by default, none only when told."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli.http import CliError
from cli.isolation import ISOLATION_VARIABLE, choose_boundary
from cli.main import main
from studio.config import StudioSettings
from studio.process.boundary import Isolation, bwrap_problem

needs_bwrap = pytest.mark.skipif(bwrap_problem() is not None, reason="bwrap cannot run here")


def _settings(tmp_path: Path, **values: object) -> StudioSettings:
    return StudioSettings(state_dir=tmp_path / "state", **values)  # type: ignore[arg-type]


def test_the_default_is_the_boundary(tmp_path: Path) -> None:
    assert _settings(tmp_path).isolation is Isolation.BWRAP
    assert _settings(tmp_path).boundary().enforced


@needs_bwrap
def test_up_runs_in_the_boundary_and_tells_its_workers(tmp_path: Path) -> None:
    environ: dict[str, str] = {}
    settings, line = choose_boundary(_settings(tmp_path), no_isolation=False, environ=environ)
    assert settings.isolation is Isolation.BWRAP
    assert line.startswith("bwrap: ") and "uid" in line
    assert environ == {ISOLATION_VARIABLE: "bwrap"}


def test_no_isolation_is_said_in_the_line_and_to_the_workers(tmp_path: Path) -> None:
    environ: dict[str, str] = {}
    settings, line = choose_boundary(_settings(tmp_path), no_isolation=True, environ=environ)
    assert settings.isolation is Isolation.NONE and not settings.boundary().enforced
    assert line.startswith("none: ") and line.endswith("(--no-isolation)")
    assert environ == {ISOLATION_VARIABLE: "none"}


def test_none_from_the_environment_alone_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="--no-isolation"):
        choose_boundary(_settings(tmp_path, isolation="none"), no_isolation=False, environ={})


def test_up_without_bwrap_refuses_to_start_and_names_the_way_out(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A machine without bubblewrap: a PATH with git (which GitPython looks for) alone.
    path = tmp_path / "bin"
    path.mkdir()
    git = shutil.which("git")
    assert git is not None
    (path / "git").symlink_to(git)
    monkeypatch.setenv("PATH", str(path))
    monkeypatch.setenv("COMPONENT_STUDIO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv(ISOLATION_VARIABLE, raising=False)
    assert main(["up"]) == 1
    err = capsys.readouterr().err
    assert "no OS boundary for repository code" in err and "not installed" in err
    assert "--no-isolation" in err
    assert not (tmp_path / "state").exists()
