"""Rate limiting: a token bucket per key, no I/O.

Keys are user names (after authentication), client addresses (before it,
:mod:`serve.limits`) and addresses presenting unknown tokens
(:mod:`serve.auth`). Each key has a bucket holding up to ``burst`` tokens that
refills at ``per_minute / 60`` tokens a second; a request takes one token.
An empty bucket answers how long until the next token, which becomes the
``Retry-After`` of a 429. The clock is injected, so tests step time by hand.

A replica keeps one :class:`RateLimiter`; with several replicas each enforces
the limit on the requests it sees.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimiter", "TokenBucket"]


@dataclass
class TokenBucket:
    """One key's bucket: ``tokens`` left as of ``updated`` (clock seconds)."""

    capacity: float
    rate: float  # tokens per second
    tokens: float
    updated: float

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; 0.0 if taken, else seconds until they would be there."""
        elapsed = max(now - self.updated, 0.0)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate

    def full_at(self, now: float) -> bool:
        """Whether the bucket has refilled completely by ``now`` (so it can be forgotten)."""
        return self.tokens + max(now - self.updated, 0.0) * self.rate >= self.capacity


class RateLimiter:
    """Token buckets by key, at most ``max_keys`` of them remembered.

    A bucket that has refilled is indistinguishable from a new one, so the
    least recently used buckets are dropped when there are too many: memory
    stays bounded however many users come and go.
    """

    def __init__(
        self,
        per_minute: int,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        if per_minute < 1:
            raise ValueError(f"per_minute must be at least 1, got {per_minute}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.per_minute = per_minute
        self.burst = burst
        self._rate = per_minute / 60.0
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, key: str) -> float:
        """Count one request of ``key``: 0.0 if allowed, else seconds to wait."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.burst, self._rate, float(self.burst), now)
            self._buckets[key] = bucket
        else:
            self._buckets.move_to_end(key)
        wait = bucket.take(now)
        self._evict(now)
        return wait

    def refund(self, key: str) -> None:
        """Give back the token a :meth:`check` of ``key`` took (the request did not count)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(bucket.capacity, bucket.tokens + 1.0)

    def _evict(self, now: float) -> None:
        excess = len(self._buckets) - self._max_keys
        if excess <= 0:
            return
        # Refilled buckets first: forgetting them changes nothing.
        for key in [k for k, b in self._buckets.items() if b.full_at(now)][:excess]:
            del self._buckets[key]
        # Still too many active keys: bounded memory wins over the oldest one's limit.
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)
