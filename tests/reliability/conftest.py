"""Fixtures of the reliability suite: the real API (tests/serve's ``api``) and sandbox helpers.

The ``api`` fixture is imported from tests/serve/conftest.py: imported here it
gets an instance of its own for this package (a manager, Serve on a loopback
port, ui-kit registered), torn down with the leak check after the last test.
Every sandbox a test makes through :func:`sandboxes` is deleted at its end.
"""

# The imported fixtures share their names with the helpers' parameters.
# ruff: noqa: F811

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from benchmarks._proc import wait_for
from studio.layout import StateLayout
from studio.naming import branch_name
from tests.serve.conftest import Api, api, client  # noqa: F401 (fixtures)
from tests.support.gitrepo import git

__all__ = [
    "Made",
    "branch_commits",
    "execute",
    "listener_pid",
    "mirror_of",
    "sandboxes",
    "wait_for",
    "worktree_of",
    "write",
]

BUTTON = "src/components/Button/Button.tsx"


def mirror_of(api: Api) -> Path:
    """The node's bare mirror of ui-kit (where every sandbox branch lives)."""
    return StateLayout(api.settings.state_dir).mirror("ui-kit")


def worktree_of(api: Api, sandbox_id: str) -> Path:
    return StateLayout(api.settings.state_dir).worktree(sandbox_id)


def branch_commits(api: Api, sandbox_id: str) -> list[str]:
    """Every commit hash on the sandbox's branch in the mirror, newest first."""
    out = git(mirror_of(api), "rev-list", branch_name(sandbox_id))
    return out.split()


def execute(api: Api, user: str, sandbox_id: str, timeout: float = 120, **command: Any) -> Any:
    """POST an execute command; returns the httpx reply."""
    return api.http.post(
        f"/api/v1/sandboxes/{sandbox_id}/execute",
        json=command,
        headers=api.headers(user),
        timeout=timeout,
    )


def write(api: Api, user: str, sandbox_id: str, path: str, content: str) -> str:
    """Write one file through the API; its commit hash (asserting success)."""
    reply = execute(
        api,
        user,
        sandbox_id,
        command="write_file",
        file_path=path,
        content=content,
        description=f"write {path}",
    )
    assert reply.status_code == 200, reply.text
    return str(reply.json()["commit_hash"])


def listener_pid(port: int) -> int | None:
    """The pid of the process listening on ``port`` on loopback (a sandbox's Vite)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return conn.pid
    return None


class Made:
    """Sandboxes created through the API by one test; each deleted at its end."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.made: list[tuple[str, str]] = []

    def create(self, user: str, **overrides: Any) -> dict[str, Any]:
        created = self.api.create(user, **overrides)
        self.made.append((user, created["sandbox_id"]))
        return created

    def adopt(self, user: str, sandbox_id: str) -> None:
        """Delete ``sandbox_id`` (made some other way) at the end too."""
        self.made.append((user, sandbox_id))

    def delete_all(self) -> None:
        for user, sandbox_id in reversed(self.made):
            with contextlib.suppress(Exception):
                self.api.http.delete(
                    f"/api/v1/sandboxes/{sandbox_id}",
                    headers=self.api.headers(user),
                    timeout=120,
                )


@pytest.fixture
def sandboxes(api: Api) -> Iterator[Made]:
    """Creates sandboxes through the API; deletes every one after the test."""
    made = Made(api)
    try:
        yield made
    finally:
        made.delete_all()
