"""One lookup in flight per key: concurrent callers share its answer.

200 WebSocket clients of one user connecting at once would otherwise ask the
manager the same question 200 times before the first answer is cached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["SingleFlight"]

K = TypeVar("K")
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Runs ``fetch(key)`` once for every caller that asks while it runs."""

    def __init__(self, fetch: Callable[[K], Awaitable[V]]) -> None:
        self._fetch = fetch
        self._running: dict[K, asyncio.Task[V]] = {}

    async def get(self, key: K) -> V:
        """``fetch(key)``'s result (or its exception), shared with concurrent callers."""
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(key))
            self._running[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        # shield: one caller giving up (a client leaving) must not cancel the others' lookup.
        return await asyncio.shield(task)

    def _done(self, key: K, task: asyncio.Task[V]) -> None:
        self._running.pop(key, None)
        if not task.cancelled():
            # Marks the exception seen even when every caller left before it came.
            task.exception()
