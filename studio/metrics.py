"""What the core reports as metrics, with no say in where it goes.

The core has no Ray: a sandbox is handed a :class:`Recorder`, and the actors
layer gives it one that feeds Ray's metrics (``actors/metrics.py``). Plain
Python callers (the tests of the sandbox class) keep the default, which
records nothing.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NO_RECORDER", "Recorder"]


class Recorder(Protocol):
    """Receives the core's measurements; must never raise into a request."""

    def execute_seconds(self, command: str, seconds: float) -> None:
        """One execute command of ``command`` kind took ``seconds``."""

    def vite_restarted(self, sandbox_id: str) -> None:
        """The sandbox's supervisor restarted its Vite."""


class _NoRecorder:
    def execute_seconds(self, command: str, seconds: float) -> None:
        pass

    def vite_restarted(self, sandbox_id: str) -> None:
        pass


NO_RECORDER: Recorder = _NoRecorder()
