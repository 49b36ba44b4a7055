"""The sandbox lifecycle: one state enum, one transition table, one guard.

::

    PENDING -> STARTING -> RUNNING <-> RESTARTING -> RUNNING
                              |             |
                              v             v (restart limit hit)
                           STOPPING       FAILED
                              |
                              v
                           STOPPED   (FINALIZED when it ended in a PR)

A failed setup goes STARTING -> FAILED; a FAILED sandbox can still be torn
down (FAILED -> STOPPING), so its worktree is removed and its branch kept. A
restarted actor re-enters STARTING from wherever it was live.
"""

from __future__ import annotations

from enum import StrEnum

from studio.errors import InvalidState

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "SandboxState",
    "check_transition",
    "require_state",
]


class SandboxState(StrEnum):
    """Where a sandbox is in its life."""

    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    FINALIZED = "finalized"


S = SandboxState

TRANSITIONS: dict[SandboxState, frozenset[SandboxState]] = {
    S.PENDING: frozenset({S.STARTING, S.STOPPING, S.FAILED}),
    S.STARTING: frozenset({S.RUNNING, S.FAILED, S.STOPPING, S.STARTING}),
    S.RUNNING: frozenset({S.RESTARTING, S.STOPPING, S.STARTING, S.FAILED}),
    S.RESTARTING: frozenset({S.RUNNING, S.FAILED, S.STOPPING, S.STARTING}),
    S.FAILED: frozenset({S.STOPPING, S.STARTING}),
    S.STOPPING: frozenset({S.STOPPED, S.FINALIZED, S.FAILED}),
    S.STOPPED: frozenset(),
    S.FINALIZED: frozenset(),
}

# States in which the sandbox holds a worktree and (normally) a Vite server.
ACTIVE_STATES = frozenset({S.STARTING, S.RUNNING, S.RESTARTING})
# States a sandbox never leaves.
TERMINAL_STATES = frozenset({S.STOPPED, S.FINALIZED})


def check_transition(current: SandboxState, target: SandboxState) -> None:
    """Raise :class:`InvalidState` unless ``current -> target`` is in the table."""
    if target not in TRANSITIONS[current]:
        raise InvalidState(
            f"a sandbox cannot go from {current.value} to {target.value}",
            state=current.value,
            target=target.value,
        )


def require_state(current: SandboxState, allowed: frozenset[SandboxState], action: str) -> None:
    """Raise :class:`InvalidState` saying the state when ``action`` is not allowed in it."""
    if current not in allowed:
        names = ", ".join(sorted(s.value for s in allowed))
        raise InvalidState(
            f"cannot {action}: the sandbox is {current.value} (needs {names})",
            state=current.value,
        )
