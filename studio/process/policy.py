"""The pure part of process supervision: statuses, their table, stop results, restarts.

No processes, no clock: :class:`RestartPolicy` decides from numbers it is
given, and :class:`RestartCount` keeps the one count of restarts in a row
against it, told the time by its caller, so every decision is unit-testable.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from studio.errors import InvalidConfig, InvalidState

__all__ = [
    "TRANSITIONS",
    "ProcessStatus",
    "RestartCount",
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
    """What :meth:`RestartPolicy.decide` allows after a failure.

    ``in_row``: the restarts in a row once this decision is followed (this
    restart included when ``allowed``; 0 when a stable run ended the row).
    """

    allowed: bool
    delay: float
    in_row: int


@dataclass(frozen=True)
class RestartPolicy:
    """How often and how fast a failed process is restarted; pure, no I/O.

    The n-th restart in a row (counting from 0) waits ``backoff * 2**n`` seconds,
    at most ``backoff_max``. After ``max_restarts`` restarts in a row the next
    failure is final. A process that ran healthy for ``stable_start`` seconds
    before it failed starts a new row.
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

    def decide(self, in_row: int, ran_for: float) -> RestartDecision:
        """After ``in_row`` restarts in a row, may a process that ran ``ran_for`` s restart?"""
        if ran_for >= self.stable_start:
            in_row = 0
        if in_row >= self.max_restarts:
            return RestartDecision(allowed=False, delay=0.0, in_row=in_row)
        return RestartDecision(allowed=True, delay=self.delay(in_row), in_row=in_row + 1)


@dataclass
class RestartCount:
    """The restarts of one supervised process, counted against its policy.

    The caller says when the process came up healthy (:meth:`up`) and when it,
    or a restart of it, failed (:meth:`failed`); times are the caller's
    monotonic clock, so tests pass plain numbers. ``total`` counts every
    restart allowed over the process's life; ``in_row`` is the count the
    limit applies to. A refusal ends the row: the process is given up, and
    whatever starts it afresh later begins a new one.
    """

    policy: RestartPolicy
    in_row: int = 0
    total: int = 0
    up_since: float | None = None

    def up(self, now: float) -> None:
        """The process is up and healthy from ``now`` on."""
        self.up_since = now

    def failed(self, now: float) -> RestartDecision:
        """The process failed at ``now``: the decision, with the restart it allows counted."""
        # A restart that never came up healthy ran for nothing.
        ran_for = 0.0 if self.up_since is None else max(now - self.up_since, 0.0)
        self.up_since = None
        decision = self.policy.decide(self.in_row, ran_for)
        if decision.allowed:
            self.in_row = decision.in_row
            self.total += 1
        else:
            self.in_row = 0
        return decision
