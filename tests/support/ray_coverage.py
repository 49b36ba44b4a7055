"""Coverage of code that runs inside Ray workers.

Coverage starts in every worker by itself (``patch = ["subprocess"]`` passes
the config down through the environment), but it writes its data at exit, and
Ray workers rarely exit cleanly: ``ray.kill`` and ``ray.shutdown`` end them
with SIGKILL. So each worker saves what it has collected every second, on a
daemon thread, started by :mod:`tests.support.coverage_preload`, which every
worker of the session's Ray imports as it starts.
"""

from __future__ import annotations

import os
import threading

import coverage

__all__ = ["SAVE_INTERVAL", "enabled", "start_saving"]

SAVE_INTERVAL = 1.0


def enabled() -> bool:
    """Whether this test run measures coverage (so workers should save it)."""
    return bool(os.environ.get("COVERAGE_PROCESS_CONFIG"))


def start_saving() -> None:
    """Save this worker's coverage periodically (a no-op without coverage)."""
    current = coverage.Coverage.current()
    if current is None:
        return
    cov = current

    def save_forever() -> None:
        stop = threading.Event()
        while not stop.wait(SAVE_INTERVAL):
            cov.save()

    threading.Thread(target=save_forever, name="coverage-saver", daemon=True).start()
