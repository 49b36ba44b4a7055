"""SIGINT and SIGTERM as an exception in the main thread, so a run unwinds and cleans up.

A run started in the background of a non-interactive shell inherits SIGINT
ignored (the shell does that to background jobs), and Python then installs no
KeyboardInterrupt handler: without this, Ctrl-C or ``kill -INT`` did nothing.
Inside the block both signals raise :class:`Stopped` (not an ``Exception``, so
the per-repository ``except Exception`` lets it through to the run, which
writes what it has and stops everything it started on the way out). A second
signal while that cleanup runs is ignored: interrupting the cleanup would
leave processes behind.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from types import FrameType

__all__ = ["Stopped", "stop_on_signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(BaseException):
    """The run was asked to stop by ``signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside the block SIGINT/SIGTERM raise Stopped once; the old handlers come back after."""
    raised = False

    def handler(signum: int, _frame: FrameType | None) -> None:
        nonlocal raised
        if raised:
            print(
                f"{signal.Signals(signum).name} again: still stopping what the run started",
                file=sys.stderr,
                flush=True,
            )
            return
        raised = True
        raise Stopped(signum)

    previous = {signum: signal.signal(signum, handler) for signum in _SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
