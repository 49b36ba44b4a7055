"""A sandbox's event log: numbered messages in a bounded ring, with waiting.

The sandbox actor appends every event it publishes (status changes, commits,
rollbacks, errors, selections) to its :class:`EventLog`. Serve replicas read it
by long-poll, ``await log.wait(after_seq, timeout)``, and a client that
reconnects with ``?since=<seq>`` is sent :meth:`EventLog.backlog` of what it
missed. The ring forgets the oldest messages past ``maxlen``; a reader that
asks for something already forgotten is told so (``Backlog.missed``) and
should send the client a ``reload``.

Appends may come from any thread (the actor's health-check thread, a git
worker); waiters live on an asyncio loop and are woken through
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from studio.messages import Message, MessageType, make_message
from studio.naming import validate_sandbox_id

__all__ = ["DEFAULT_MAXLEN", "Backlog", "EventLog"]

DEFAULT_MAXLEN = 1000


@dataclass(frozen=True)
class Backlog:
    """What a reader missed after ``after_seq``, taken in one consistent snapshot.

    ``missed`` is True when messages the reader never saw are gone: they were
    pushed out of the ring, or the log restarted above ``after_seq``, or
    ``after_seq`` is newer than anything this log has numbered (it came from
    another incarnation). The reader should then reload from scratch.
    """

    messages: list[Message]
    missed: bool
    oldest_seq: int
    last_seq: int


_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class EventLog:
    """Ordered, bounded, thread-safe log of one sandbox's messages.

    Sequence numbers start at ``start_seq`` (1 by default) and grow by one per
    message. An actor that restarts passes ``start_seq`` past the last number
    its previous incarnation handed out, so numbers keep increasing and
    reconnecting clients notice the gap instead of waiting forever.
    """

    def __init__(
        self, sandbox_id: str, *, maxlen: int = DEFAULT_MAXLEN, start_seq: int = 1
    ) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        if start_seq < 1:
            raise ValueError(f"start_seq must be at least 1, got {start_seq}")
        self.sandbox_id = validate_sandbox_id(sandbox_id)
        self._maxlen = maxlen
        self._ring: deque[Message] = deque(maxlen=maxlen)
        self._next_seq = start_seq
        self._lock = threading.Lock()
        self._waiters: set[_Waiter] = set()
        # after_seq of every reader inside wait/poll, for answered().
        self._reading: list[int] = []

    @property
    def maxlen(self) -> int:
        """How many messages the ring holds at most."""
        return self._maxlen

    @property
    def last_seq(self) -> int:
        """Sequence number of the newest message (``start_seq - 1`` before the first)."""
        with self._lock:
            return self._next_seq - 1

    @property
    def oldest_seq(self) -> int:
        """Sequence number of the oldest message still held (``last_seq + 1`` when empty)."""
        with self._lock:
            return self._oldest_locked()

    def append(
        self,
        type: MessageType | str,
        payload: BaseModel | dict[str, Any],
        *,
        ts: datetime | None = None,
    ) -> Message:
        """Number, stamp and store a message; wake every waiter. Returns the message.

        Raises like :func:`studio.messages.make_message` when the payload does
        not fit the type; the sequence number is then not used up.
        """
        with self._lock:
            message = make_message(
                type, seq=self._next_seq, sandbox_id=self.sandbox_id, payload=payload, ts=ts
            )
            self._ring.append(message)
            self._next_seq += 1
            waiters, self._waiters = self._waiters, set()
        for loop, future in waiters:
            # The waiter's loop may have closed since it registered; nobody to wake then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)
        return message

    def since(self, after_seq: int) -> list[Message]:
        """Messages still held with a sequence number above ``after_seq``, oldest first."""
        with self._lock:
            return self._since_locked(after_seq)

    def backlog(self, after_seq: int) -> Backlog:
        """:meth:`since` plus whether anything after ``after_seq`` was lost."""
        with self._lock:
            return self._backlog_locked(after_seq)

    # A long-poll answers "nothing yet" at its timeout rather than raising, and the
    # timeout must travel with the call across Ray: hence a parameter (ASYNC109).
    async def wait(self, after_seq: int, timeout: float) -> list[Message]:  # noqa: ASYNC109
        """Messages above ``after_seq`` as soon as there are any; ``[]`` after ``timeout`` s."""
        backlog = await self._wait_for(after_seq, timeout, stop_on_missed=False)
        return backlog.messages

    async def poll(self, after_seq: int, timeout: float) -> Backlog:  # noqa: ASYNC109
        """Like :meth:`wait`, but returns at once when messages were lost, saying so.

        This is the long-poll a Serve replica makes: it never sleeps on a gap
        it should be reporting to its clients.
        """
        return await self._wait_for(after_seq, timeout, stop_on_missed=True)

    async def _wait_for(self, after_seq: int, seconds: float, *, stop_on_missed: bool) -> Backlog:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(seconds, 0.0)
        with self._lock:
            self._reading.append(after_seq)
        try:
            return await self._wait_loop(loop, after_seq, deadline, stop_on_missed)
        finally:
            with self._lock:
                self._reading.remove(after_seq)

    async def _wait_loop(
        self,
        loop: asyncio.AbstractEventLoop,
        after_seq: int,
        deadline: float,
        stop_on_missed: bool,
    ) -> Backlog:
        while True:
            with self._lock:
                backlog = self._backlog_locked(after_seq)
                remaining = deadline - loop.time()
                if backlog.messages or (stop_on_missed and backlog.missed) or remaining <= 0:
                    return backlog
                # Registered under the lock that append takes: no wake-up can slip between.
                waiter: _Waiter = (loop, loop.create_future())
                self._waiters.add(waiter)
            try:
                await asyncio.wait({waiter[1]}, timeout=remaining)
            finally:
                with self._lock:
                    self._waiters.discard(waiter)
                waiter[1].cancel()

    async def answered(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until every reader inside wait/poll has been given what it waits for.

        Called after a sandbox's last event (``stopped``, ``finalized``):
        the actor is killed right after, and a long-poll that was woken but
        has not returned yet would lose that event with it. Readers already
        past the newest event keep waiting (they have nothing to be given);
        False when some reader still had not returned after ``timeout`` s.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while True:
            with self._lock:
                last = self._next_seq - 1
                behind = any(after < last for after in self._reading)
            if not behind:
                return True
            if loop.time() >= deadline:
                return False
            # Woken readers return within a loop pass or two; this is rare (teardown only).
            await asyncio.sleep(0.002)

    def _oldest_locked(self) -> int:
        return self._ring[0].seq if self._ring else self._next_seq

    def _since_locked(self, after_seq: int) -> list[Message]:
        if not self._ring:
            return []
        # Numbers in the ring are consecutive, so the start is an index, not a search.
        start = max(after_seq + 1 - self._ring[0].seq, 0)
        return list(itertools.islice(self._ring, start, None))

    def _backlog_locked(self, after_seq: int) -> Backlog:
        # Sequence numbers start at 1: "after -3" asks for everything, like "after 0".
        after_seq = max(after_seq, 0)
        oldest = self._oldest_locked()
        last = self._next_seq - 1
        missed = after_seq + 1 < oldest or after_seq > last
        return Backlog(
            messages=self._since_locked(after_seq),
            missed=missed,
            oldest_seq=oldest,
            last_seq=last,
        )


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
