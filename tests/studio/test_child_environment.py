"""Vite, its standby and npm run repository code: they get an allow-listed environment.

The service's secrets are set in this process's environment, as an operator
sets them; then real Vite processes (cold and through a standby) are started
and every process of their tree is read through ``/proc/<pid>/environ``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from studio.install.cache import ensure_node_modules
from studio.process.environment import installer_environment, tool_environment
from studio.vite import ViteServer
from studio.vite.standby import ViteStandby
from tests.studio.test_vite import START_TIMEOUT, TEMPLATE, make_server, ports, studio_repo

__all__ = ["make_server", "ports", "studio_repo"]  # fixtures, imported for the tests below

SECRETS = {
    "COMPONENT_STUDIO_ADMIN_TOKEN": "st_admin-secret-in-the-service-env",
    "COMPONENT_STUDIO_GITHUB_TOKEN": "ghp_github-secret-in-the-service-env",
    "RAY_AUTH_TOKEN": "ray-secret-in-the-service-env",
    "component_studio_github_token": "lower-case-secret-in-the-service-env",
    "SOME_UNLISTED_VARIABLE": "unlisted-value-in-the-service-env",
}


@pytest.fixture
def secret_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NODE_OPTIONS", "--max-old-space-size=2048")


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def assert_tree_holds_no_secret(server: ViteServer) -> None:
    # A module transformed first: whatever Vite starts for that runs now too.
    button = os.path.realpath(server.worktree / "src/components/Button/Button.tsx")
    assert httpx.get(f"{server.url}@fs{button}", timeout=60).status_code == 200
    pid = server.pid
    assert pid is not None
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for proc in tree:
        environ = environ_of(proc.pid)
        raw = Path(f"/proc/{proc.pid}/environ").read_bytes()
        for value in SECRETS.values():
            assert value.encode() not in raw, (proc.cmdline(), value)
        assert not [n for n in environ if n.upper().startswith(("COMPONENT_STUDIO_", "RAY_"))]
        assert "PATH" in environ


def test_the_allow_list_keeps_what_node_and_npm_need_and_drops_secrets() -> None:
    source = {
        **SECRETS,
        "PATH": "/usr/bin",
        "HOME": "/home/s",
        "LC_ALL": "C.UTF-8",
        "NODE_EXTRA_CA_CERTS": "/ca.pem",
        "HTTPS_PROXY": "http://proxy:3128",
        "npm_config_registry": "https://registry.example/",
    }
    tool = tool_environment({"NO_COLOR": "1", "RAY_ADDRESS": "x"}, source=source)
    assert tool == {
        "PATH": "/usr/bin",
        "HOME": "/home/s",
        "LC_ALL": "C.UTF-8",
        "NODE_EXTRA_CA_CERTS": "/ca.pem",
        "NO_COLOR": "1",
    }
    installer = installer_environment(source=source)
    assert installer["HTTPS_PROXY"] == "http://proxy:3128"
    assert installer["npm_config_registry"] == "https://registry.example/"
    assert not set(SECRETS) & set(installer)


def test_a_cold_vite_holds_no_secret_of_the_service(
    secret_environment: None, studio_repo: Path, make_server: Callable[..., ViteServer]
) -> None:
    server = make_server(studio_repo)
    server.start(START_TIMEOUT)
    assert_tree_holds_no_secret(server)
    # What the operator set for Node does reach it.
    assert server.pid is not None
    assert environ_of(server.pid)["NODE_OPTIONS"] == "--max-old-space-size=2048"


@pytest.fixture
def standby(secret_environment: None, install_cache: Path) -> Iterator[ViteStandby]:
    modules = ensure_node_modules(TEMPLATE, install_cache).resolve()
    started = ViteStandby.start(TEMPLATE, modules)
    yield started
    started.close()


def test_a_vite_started_by_a_standby_holds_no_secret_of_the_service(
    standby: ViteStandby, studio_repo: Path, make_server: Callable[..., ViteServer]
) -> None:
    server = make_server(studio_repo, standby=standby)
    server.start(START_TIMEOUT)
    assert server.pid == standby.pid
    assert_tree_holds_no_secret(server)
