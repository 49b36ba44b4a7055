"""The token bucket, with a hand-stepped clock."""

from __future__ import annotations

import pytest

from serve.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_wait_for_the_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.check("ann") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.check("ann") == pytest.approx(1.0)
    clock.now += 0.5
    assert limiter.check("ann") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.check("ann") == 0.0


def test_users_have_their_own_buckets() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=6, burst=1, clock=clock)
    assert limiter.check("ann") == 0.0
    assert limiter.check("bob") == 0.0
    assert limiter.check("ann") == pytest.approx(10.0)


def test_refill_never_exceeds_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=600, burst=2, clock=clock)
    limiter.check("ann")
    clock.now += 3600
    assert [limiter.check("ann") for _ in range(2)] == [0.0, 0.0]
    assert limiter.check("ann") > 0


def test_clock_going_backwards_refills_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=1, clock=clock)
    limiter.check("ann")
    clock.now -= 50
    assert limiter.check("ann") > 0


def test_memory_is_bounded_forgetting_refilled_buckets_first() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock, max_keys=3)
    limiter.check("busy")
    limiter.check("busy")
    for name in ("a", "b", "c", "d"):
        limiter.check(name)
        clock.now += 5  # each of these refills before the next arrives
    assert len(limiter) == 3
    # "busy" refilled too by now: any may go, but never more than max_keys stay.
    limiter2 = RateLimiter(per_minute=1, burst=1, clock=clock, max_keys=2)
    for name in ("x", "y", "z"):
        limiter2.check(name)
    assert len(limiter2) == 2
    assert limiter2.check("z") > 0  # the newest kept its (empty) bucket


@pytest.mark.parametrize(("per_minute", "burst"), [(0, 1), (1, 0)])
def test_invalid_limits(per_minute: int, burst: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter(per_minute=per_minute, burst=burst)
