"""The layers hold: the import contracts in pyproject.toml pass and catch a wrong-way import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["cli", "cluster", "serve", "actors", "studio"]
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_tree_keeps_every_contract() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def copy_tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_core_importing_ray_breaks_a_contract(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    naming = tree / "studio" / "naming.py"
    naming.write_text(naming.read_text() + "\nimport ray  # noqa\n")
    result = lint(tree)
    assert result.returncode != 0
    assert "The core knows nothing of Ray or the web framework BROKEN" in result.stdout
    assert "studio.naming -> ray" in result.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_a_contract(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    scheduling = tree / "actors" / "scheduling.py"
    scheduling.write_text(scheduling.read_text() + "\nimport serve.errors  # noqa\n")
    result = lint(tree)
    assert result.returncode != 0
    assert "Layers: each imports only the ones below it BROKEN" in result.stdout
    assert "actors.scheduling -> serve.errors" in result.stdout


def test_importing_rays_internals_outside_ray_internals_breaks_a_contract(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    handles = tree / "actors" / "handles.py"
    handles.write_text(
        handles.read_text()
        + "\nfrom ray._private import worker  # noqa"
        + "\nfrom ray._raylet import JobID  # noqa"
        + "\nfrom ray.core.generated import common_pb2  # noqa\n"
    )
    result = lint(tree)
    assert result.returncode != 0
    assert "Only actors.ray_internals imports Ray's internals BROKEN" in result.stdout
    for internal in ("ray._private.worker", "ray._raylet", "ray.core.generated.common_pb2"):
        assert f"actors.handles -> {internal}" in result.stdout
