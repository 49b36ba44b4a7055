"""Runs last (by name): nothing the whole suite started is still there.

Processes are found by the marker every process of this session inherits
(tests/conftest.py), so a Vite orphaned by a killed actor worker counts too.
What must stay up until the session's fixtures end (Ray, Chromium, Prism) is
checked after them, by the conftest's ``pytest_sessionfinish``.
"""

from __future__ import annotations

import os
import time

import psutil
import ray

from tests.conftest import SESSION_MARKER


def session_processes() -> list[psutil.Process]:
    """Processes other than this one that carry this session's marker."""
    marker = os.environ[SESSION_MARKER]
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(SESSION_MARKER) == marker:
                found.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def _is_vite(proc: psutil.Process) -> bool:
    try:
        return any("vite" in part for part in proc.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


def test_no_vite_process_is_left() -> None:
    # A teardown that just returned may still be reaping: allow a moment.
    deadline = time.monotonic() + 10
    while (left := [p for p in session_processes() if _is_vite(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, "Vite processes left:\n" + "\n".join(
        f"{p.pid}: {' '.join(p.cmdline())}" for p in left
    )


def test_no_sandbox_actor_is_left() -> None:
    if not ray.is_initialized():
        return  # no test of this session started Ray, so none made an actor
    # Named actors come from the GCS directly (no dashboard needed); a killed
    # actor's name is released when it is gone.
    deadline = time.monotonic() + 10
    while True:
        named = ray.util.list_named_actors(all_namespaces=True)
        sandboxes = [a["name"] for a in named if a["name"].startswith("sandbox:")]
        if not sandboxes or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not sandboxes, f"sandbox actors left: {sandboxes}"
