"""The pure part of process supervision: statuses, their table, stop results, restarts.

No processes, no clock: :class:`RestartPolicy` decides from numbers it is given,
so every decision is unit-testable.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from studio.errors import InvalidConfig, InvalidState

__all__ = [
    "TRANSITIONS",
    "ProcessStatus",
    "RestartDecision",
    "RestartPolicy",
    "StopResult",
    "check_transition",
]


class ProcessStatus(StrEnum):
    """Where a supervised process is in its life."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"


P = ProcessStatus

TRANSITIONS: dict[ProcessStatus, frozenset[ProcessStatus]] = {
    P.STOPPED: frozenset({P.STARTING}),
    P.STARTING: frozenset({P.RUNNING, P.FAILED, P.STOPPED}),
    P.RUNNING: frozenset({P.STOPPED}),
    P.FAILED: frozenset({P.STARTING, P.STOPPED}),
}


def check_transition(current: ProcessStatus, target: ProcessStatus) -> None:
    """Raise :class:`InvalidState` unless ``current -> target`` is in the table."""
    if target not in TRANSITIONS[current]:
        raise InvalidState(
            f"a process cannot go from {current.value} to {target.value}",
            state=current.value,
            target=target.value,
        )


class StopResult(StrEnum):
    """Which step of a stop ended the process."""

    ALREADY_EXITED = "already_exited"
    SIGTERM = "sigterm"
    SIGKILL = "sigkill"


@dataclass(frozen=True)
class RestartDecision:
    """What :meth:`RestartPolicy.decide` allows: restart or not, after how long."""

    allowed: bool
    delay: float
    reset_count: bool


@dataclass(frozen=True)
class RestartPolicy:
    """How often and how fast a failed process is restarted; pure, no I/O.

    The n-th restart in a row (counting from 0) waits ``backoff * 2**n`` seconds,
    at most ``backoff_max``. After ``max_restarts`` restarts in a row the next
    failure is final. A process that ran healthy for ``stable_start`` seconds
    starts a new row.
    """

    max_restarts: int = 3
    backoff: float = 0.5
    backoff_max: float = 10.0
    stable_start: float = 30.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.backoff < 0 or self.stable_start < 0:
            raise InvalidConfig("restart policy values must not be negative")
        if self.backoff_max < self.backoff:
            raise InvalidConfig(
                f"backoff ({self.backoff}) must not exceed backoff_max ({self.backoff_max})"
            )

    def delay(self, restarts_so_far: int) -> float:
        """Seconds to wait before the restart that follows ``restarts_so_far``."""
        # The cap on the exponent keeps 2**n a float long after backoff_max applies.
        return min(self.backoff * 2.0 ** min(restarts_so_far, 64), self.backoff_max)

    def decide(self, restarts_so_far: int, ran_for: float) -> RestartDecision:
        """Whether a process that ran healthy ``ran_for`` seconds may restart."""
        reset = ran_for >= self.stable_start
        count = 0 if reset else restarts_so_far
        if count >= self.max_restarts:
            return RestartDecision(allowed=False, delay=0.0, reset_count=reset)
        return RestartDecision(allowed=True, delay=self.delay(count), reset_count=reset)
