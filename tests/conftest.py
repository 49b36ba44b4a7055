"""Fixtures shared by the whole suite."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.gitrepo import make_repo

pytest_plugins = ["tests.support.browser", "tests.support.prism", "tests.support.ray_fixtures"]

ROOT = Path(__file__).resolve().parent.parent

# Every process this session starts inherits this variable (Ray's raylet and
# workers, and through them each Vite), so the final leak check can find what
# the session left behind even after a crash reparented it to init. An LC_*
# name: Vite and npm get an allow-listed environment (studio.process.environment)
# that passes locale variables and never a COMPONENT_STUDIO_* one.
SESSION_MARKER = "LC_STUDIO_TEST_SESSION"
os.environ.setdefault(SESSION_MARKER, uuid.uuid4().hex)
# The tests count sandboxes, Vites and ports: a ready sandbox set up behind their
# backs (actors._ready; on by default for users) would be in every count. The
# tests of ready sandboxes (tests/actors/test_ready.py) turn them on by name.
os.environ.setdefault("COMPONENT_STUDIO_READY_SANDBOXES", "0")


@pytest.fixture
def simple_repo(tmp_path: Path) -> Path:
    """A small real git repository with a couple of source files on ``main``."""
    return make_repo(
        tmp_path / "origin",
        {
            "README.md": "# sample\n",
            "src/Button.tsx": "export function Button() { return <button>hi</button>; }\n",
        },
    )


def _child_pids() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture(autouse=True)
def no_leaked_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a child process of its own running.

    Tests that use the session's Ray are exempt here: Ray's own workers come and
    go; the leak check for sandboxes runs in those tests' fixtures instead.
    """
    if "ray_session" in request.fixturenames:
        yield
        return
    before = _child_pids()
    yield
    leaked = []
    for pid in _child_pids() - before:
        try:
            proc = psutil.Process(pid)
            # Helpers a session-long process starts on its own (Chromium's
            # utility processes, Prism's workers) are not this test's doing.
            if any(parent.pid in before for parent in proc.parents()):
                continue
            if proc.status() != psutil.STATUS_ZOMBIE:
                leaked.append(f"{pid}: {' '.join(proc.cmdline())}")
        except psutil.NoSuchProcess:
            continue
    assert not leaked, "test left processes running:\n" + "\n".join(leaked)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After every fixture is gone (Ray, Chromium, Prism): no process of ours is left."""
    from tests.test_zz_leaks import session_processes

    deadline = time.monotonic() + 15
    left = session_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    if left:
        lines = []
        for proc in left:
            with contextlib.suppress(psutil.Error):
                lines.append(f"{proc.pid}: {' '.join(proc.cmdline())}")
        print("\nleak check: processes left after the session:\n" + "\n".join(lines))
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
