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

The same table guards the sandbox inside its actor (``studio.sandbox.lifecycle``)
and the state the registry stores (``studio.store``): a stored state only moves
along it, one step at a time. :func:`transition_path` gives the steps between a
stored state and one an actor reports further on (RUNNING -> STOPPING ->
STOPPED when its teardown ran), so the registry records each step rather than
a jump the table does not have.
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
    "transition_path",
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

# No state goes to itself: writing the state a sandbox is already in is no
# transition (a recreated actor of a sandbox that was starting stays starting).
TRANSITIONS: dict[SandboxState, frozenset[SandboxState]] = {
    S.PENDING: frozenset({S.STARTING, S.STOPPING, S.FAILED}),
    S.STARTING: frozenset({S.RUNNING, S.FAILED, S.STOPPING}),
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


def check_transition(
    current: SandboxState, target: SandboxState, *, sandbox_id: str | None = None
) -> None:
    """Raise :class:`InvalidState` unless ``current -> target`` is in the table.

    The message names ``sandbox_id`` when given, and where ``current`` can go.
    """
    if target in TRANSITIONS[current]:
        return
    who = "a sandbox" if sandbox_id is None else f"sandbox {sandbox_id}"
    onward = ", ".join(s.value for s in SandboxState if s in TRANSITIONS[current])
    where = f"from {current.value} it can go to {onward}" if onward else "it has ended"
    raise InvalidState(
        f"{who} cannot go from {current.value} to {target.value} ({where})",
        state=current.value,
        target=target.value,
        **({} if sandbox_id is None else {"sandbox_id": sandbox_id}),
    )


def transition_path(
    current: SandboxState, target: SandboxState, *, sandbox_id: str | None = None
) -> tuple[SandboxState, ...]:
    """The shortest run of legal steps from ``current`` to ``target``, ``target`` last.

    Empty when they are the same state. The steps in between never include
    FAILED: a path may end in a failure, but one nobody reported must not be
    recorded on the way (STOPPING -> FAILED -> STARTING would make a sandbox
    being torn down look set up again). :class:`InvalidState` when no such
    path exists: ``target`` lies behind ``current`` (nothing returns to
    PENDING), or ``current`` has ended.
    """
    if current is target:
        return ()
    # Breadth-first over the table, in the enum's order, so the answer is deterministic.
    came_from: dict[SandboxState, SandboxState] = {current: current}
    frontier = [current]
    while frontier and target not in came_from:
        reached: list[SandboxState] = []
        for state in frontier:
            if state is not current and state is S.FAILED:
                continue
            for step in SandboxState:
                if step in TRANSITIONS[state] and step not in came_from:
                    came_from[step] = state
                    reached.append(step)
        frontier = reached
    if target not in came_from:
        who = "a sandbox" if sandbox_id is None else f"sandbox {sandbox_id}"
        raise InvalidState(
            f"{who} cannot get from {current.value} to {target.value} by the transition table",
            state=current.value,
            target=target.value,
            **({} if sandbox_id is None else {"sandbox_id": sandbox_id}),
        )
    steps = [target]
    while came_from[steps[-1]] is not current:
        steps.append(came_from[steps[-1]])
    return tuple(reversed(steps))


def require_state(current: SandboxState, allowed: frozenset[SandboxState], action: str) -> None:
    """Raise :class:`InvalidState` saying the state when ``action`` is not allowed in it."""
    if current not in allowed:
        names = ", ".join(sorted(s.value for s in allowed))
        raise InvalidState(
            f"cannot {action}: the sandbox is {current.value} (needs {names})",
            state=current.value,
        )
