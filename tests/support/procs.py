"""Whether a process has ended, for tests that kill or stop one."""

from __future__ import annotations

import time

import psutil

__all__ = ["ends_within", "gone"]


def gone(pid: int) -> bool:
    """Ended: no such process, or a zombie nobody reaped yet (it runs nothing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def ends_within(pid: int, timeout: float = 10.0) -> bool:
    """Whether process ``pid`` is :func:`gone` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
