"""``studio up``: its pieces without Ray, then the whole command as a real subprocess."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from studio._cli_up import ensure_example_repository, port_taken
from studio.cli import main
from tests.support.gitrepo import git


def listening_low_port() -> socket.socket:
    """A socket listening on a free port below Ray's worker range (API ports must be)."""
    for port in range(7100, 9900, 7):
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        sock.listen()
        return sock
    raise AssertionError("no free port below 9900")


def test_port_taken_sees_a_listening_socket() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_taken("127.0.0.1", port)
    assert not port_taken("127.0.0.1", port)


def test_up_refuses_a_taken_port_before_starting_anything(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COMPONENT_STUDIO_STATE_DIR", str(tmp_path / "state"))
    with listening_low_port() as sock:
        port = sock.getsockname()[1]
        assert main(["up", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert "--port" in err
    assert not (tmp_path / "state").exists()


def test_example_repository_is_made_once_with_a_main_branch(tmp_path: Path) -> None:
    repo = ensure_example_repository(tmp_path / "repos")
    assert repo == tmp_path / "repos" / "ui-kit"
    assert git(repo, "branch", "--show-current") == "main"
    assert git(repo, "status", "--porcelain") == ""
    assert "src/index.ts" in git(repo, "ls-files").splitlines()
    head = git(repo, "rev-parse", "HEAD")
    (repo / "local-edit.txt").write_text("kept\n")
    assert ensure_example_repository(tmp_path / "repos") == repo
    assert git(repo, "rev-parse", "HEAD") == head
    assert (repo / "local-edit.txt").exists()


def test_a_half_made_example_copy_is_made_again(tmp_path: Path) -> None:
    broken = tmp_path / "repos" / "ui-kit"
    broken.mkdir(parents=True)
    (broken / "partial").write_text("x")
    repo = ensure_example_repository(tmp_path / "repos")
    assert not (repo / "partial").exists()
    assert (
        subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], check=False, capture_output=True
        ).returncode
        == 0
    )


@pytest.mark.parametrize("argv", [["up", "--port", "80"], ["up", "--port", "20000"]])
def test_up_refuses_ports_outside_the_allowed_range(argv, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COMPONENT_STUDIO_STATE_DIR", str(tmp_path / "state"))
    assert main(argv) == 1
    assert "invalid setting: ws_port: Value error, ws_port must be between 1024 and 10001" in (
        capsys.readouterr().err
    )
