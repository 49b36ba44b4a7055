"""A sandbox's state, its transitions and its event log (the part without files or Vite).

:class:`SandboxLifecycle` is the base of :class:`~studio.sandbox.sandbox.ComponentStudioSandbox`:
every transition goes through the one guard of ``studio.state`` and is published
as a ``status`` event; :meth:`SandboxLifecycle.fail` publishes an ``error`` event
(with a process's last output) and goes FAILED. Every event is handed to the
optional ``on_event`` callback as JSON-ready dict (the actor wakes long-pollers
with it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from studio.errors import StudioError
from studio.events import EventLog
from studio.messages import ErrorPayload, MessageType, SetupStep, StatusPayload
from studio.state import TRANSITIONS, SandboxState, check_transition

__all__ = ["SandboxLifecycle"]

logger = logging.getLogger("studio.sandbox")

S = SandboxState


class SandboxLifecycle:
    """State, transitions and events of one sandbox; thread-safe."""

    def __init__(
        self,
        sandbox_id: str,
        *,
        start_seq: int = 1,
        node: str | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.events = EventLog(sandbox_id, start_seq=start_seq)
        self.sandbox_id = sandbox_id
        self.node = node
        self.state = S.PENDING
        self.error: str | None = None
        self._on_event = on_event
        # Guards transitions and the events they publish, nothing slow.
        self._state_lock = threading.RLock()

    @property
    def restarts(self) -> int:
        """Vite restarts so far (status events carry it)."""
        return 0

    def publish(self, kind: MessageType, payload: Any) -> None:
        """Append an event and tell ``on_event`` (a failing callback is only logged)."""
        message = self.events.append(kind, payload)
        if self._on_event is not None:
            try:
                self._on_event(message.model_dump(mode="json", exclude_none=True))
            except Exception:
                logger.exception("on_event callback failed", extra=self.log_fields())

    def transition(
        self, target: SandboxState, *, detail: str | None = None, recovered: bool | None = None
    ) -> None:
        """Move to ``target`` (the one guard of ``studio.state``) and publish a status event."""
        with self._state_lock:
            check_transition(self.state, target)
            old, self.state = self.state, target
            self.publish(
                MessageType.STATUS,
                StatusPayload(
                    status=target.value,
                    detail=detail,
                    restarts=self.restarts,
                    recovered=recovered,
                ),
            )
        logger.info(
            "sandbox %s -> %s",
            old.value,
            target.value,
            extra={**self.log_fields(), "detail": detail},
        )

    def setup_step(self, step: SetupStep) -> None:
        """Say which setup step is under way (a ``status`` event; the state stays)."""
        with self._state_lock:
            self.publish(
                MessageType.STATUS,
                StatusPayload(status=self.state.value, step=step, restarts=self.restarts),
            )

    def transition_if(self, allowed: frozenset[SandboxState], target: SandboxState) -> bool:
        """:meth:`transition` only from one of ``allowed``; whether it happened."""
        with self._state_lock:
            if self.state not in allowed:
                return False
            self.transition(target)
            return True

    def fail(self, error: StudioError | str, *, output: list[str] | None = None) -> None:
        """Go FAILED (when the table allows) with an ``error`` event saying why."""
        message = error.message if isinstance(error, StudioError) else error
        code = error.code if isinstance(error, StudioError) else None
        if output is None and isinstance(error, StudioError):
            output = error.details.get("output")
        with self._state_lock:
            self.error = message
            self.publish(
                MessageType.ERROR,
                ErrorPayload(message=message, code=code, output=list(output or []) or None),
            )
            if self.state is not S.FAILED and S.FAILED in TRANSITIONS[self.state]:
                self.transition(S.FAILED, detail=message)
        logger.error("sandbox failed: %s", message, extra=self.log_fields())

    def log_fields(self) -> dict[str, Any]:
        """Structured fields for log records about this sandbox."""
        return {"sandbox_id": self.sandbox_id, "node": self.node, "state": self.state.value}
