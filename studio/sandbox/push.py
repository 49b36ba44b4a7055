"""Pushes of a sandbox's branch to its origin, coalesced, with a wait for durability.

Every commit, rollback and undo asks for a push so that another node can
recover the branch after this one died. Pushes run in one background thread:
at most one push is in flight and at most one more is pending (a request made
while a push runs is served by the next push, which carries every commit made
meanwhile: a group commit). Pushes are forced, since a rollback rewrites the
branch.

Each :meth:`BranchPusher.request` returns a ticket. :meth:`BranchPusher.wait`
blocks until a push that covers the ticket has been tried and says whether it
reached the origin: a durable execute answers only then. Nobody waiting, a
push starts ``delay`` seconds after the request that asked for it, so that a
burst of edits costs one push rather than one per commit; a waiter (or a
flush, or a request that says it will wait) makes it start at once.

A quick push (a local origin, written in-process) can be run by its waiter
instead: ``request(caller_pushes=True)`` wakes no thread, and
``wait(..., push_here=True)`` pushes in the waiting thread when no push is in
flight (else it waits for the one in flight and, if that does not cover its
ticket, pushes next). Handing the push to the push thread and the answer back
cost two thread wake-ups per durable edit, and the push thread holding the
GIL delayed the edit's own return to the actor's event loop (~10 ms at load 10).

A failed push is logged, remembered (``last_error``) and retried with backoff
(1 s doubling to 30 s) until one succeeds or the pusher is closed; it is never
raised to whoever requested it: the commit is already safe on this node's
disk, and the waiter is told it is not on the origin yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from studio.errors import StudioError

__all__ = ["BATCH_SECONDS", "BranchPusher"]

logger = logging.getLogger("studio.sandbox")

# Requests within this many seconds of the first are served by one push (nobody waiting).
BATCH_SECONDS = 0.5
RETRY_FIRST = 1.0
RETRY_MAX = 30.0
# How long the push thread stays for the next request once it has nothing to do.
LINGER_SECONDS = 30.0


class BranchPusher:
    """Runs ``push()`` in a background thread whenever asked, coalescing requests.

    ``push`` is called with no arguments and raises a :class:`StudioError` on
    failure. Thread-safe.
    """

    def __init__(
        self,
        push: Callable[[], None],
        *,
        name: str = "push",
        delay: float = BATCH_SECONDS,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
        linger: float = LINGER_SECONDS,
    ) -> None:
        self._push = push
        self._name = name
        self._delay = delay
        self._retry_first = retry_first
        self._retry_max = retry_max
        self._linger = linger
        self._cond = threading.Condition()
        # Tickets: the latest request, the latest covered by a finished attempt,
        # the latest covered by a push that succeeded.
        self._requested = 0
        self._attempted = 0
        self._pushed = 0
        # A push thread exists (it may be lingering with nothing to do).
        self._running = False
        # A push is being made, by the push thread or by a waiter (push_here).
        self._in_flight = False
        self._closed = False
        # Someone waits for the pushes: none waits out its delay.
        self._hurry = False
        self._retry_at: float | None = None
        self._backoff = retry_first
        self.pushes = 0
        self.last_error: StudioError | None = None

    def request(self, *, hurry: bool = False, caller_pushes: bool = False) -> int:
        """Ask for a push of the branch as it is now; the ticket to :meth:`wait` on.

        ``hurry``: the caller will wait for this push, so it starts without its
        delay now, rather than once :meth:`wait` is reached (a thread hop later).
        ``caller_pushes``: the caller will ``wait(ticket, ..., push_here=True)``
        at once, so no thread is started or woken for it.
        """
        with self._cond:
            if self._closed:
                return self._requested
            self._requested += 1
            ticket = self._requested
            if caller_pushes:
                return ticket
            if hurry:
                self._hurry = True
            if self._running:
                self._cond.notify_all()
                return ticket
            self._running = True
        threading.Thread(target=self._work, name=self._name, daemon=True).start()
        return ticket

    def wait(self, ticket: int, timeout: float, *, push_here: bool = False) -> bool:
        """Wait (``timeout`` s at most) for a push covering ``ticket`` to be tried; did it land?

        ``push_here``: when no push is in flight, make it in this thread. Only
        for quick pushes: a push made here is waited for whatever ``timeout``.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._attempted < ticket and not push_here:
                self._hurry = True
                self._cond.notify_all()
                self._start_thread()
            while self._attempted < ticket and (
                self._running or self._in_flight or not self._closed
            ):
                if push_here and not self._in_flight and not self._closed:
                    self._push_locked()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._pushed >= ticket

    def _push_locked(self) -> None:
        """Under the lock: push everything requested so far in this thread."""
        target = self._requested
        self._in_flight = True
        self._cond.release()
        try:
            error = self._attempt()
        finally:
            self._cond.acquire()
        self._record(target, error)
        if error is not None:
            self._start_thread()  # the retries with backoff are the push thread's

    def _start_thread(self) -> None:
        """Under the lock: make sure a push thread runs (nothing once closed)."""
        if self._running or self._closed:
            return
        self._running = True
        threading.Thread(target=self._work, name=self._name, daemon=True).start()

    def _record(self, target: int, error: StudioError | None) -> None:
        """Under the lock: a push covering ``target`` was tried, and failed with ``error``."""
        self._in_flight = False
        self._attempted = max(self._attempted, target)
        if error is None:
            self._pushed = max(self._pushed, target)
            self._retry_at, self._backoff = None, self._retry_first
        else:
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self._retry_max)
        self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Push what is not on the origin yet, at once; whether it all landed in ``timeout`` s.

        After a failed push that waits for its retry, this is the retry.
        """
        with self._cond:
            if self._pushed >= self._requested or self._closed:
                return self._pushed >= self._requested
        return self.wait(self.request(), timeout)

    def close(self, timeout: float) -> bool:
        """Flush, then refuse further requests and stop retrying; whether the flush landed."""
        done = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        return done

    @property
    def idle(self) -> bool:
        """No push pending, in flight or waiting to be retried."""
        with self._cond:
            return self._attempted >= self._requested and self._retry_at is None

    def _next_target(self) -> int | None:
        """Under the lock: the ticket the next push covers, after its delay; None: stop."""
        lingered = delayed = False
        while True:
            if self._closed:
                return None
            if self._in_flight:
                # A waiter is pushing in its own thread: see what is left after it.
                self._cond.wait()
                continue
            if self._requested > self._attempted:
                if self._delay > 0 and not self._hurry and self._retry_at is None and not delayed:
                    # Requests meanwhile ride on this push (they only move _requested on).
                    delayed = True
                    self._cond.wait_for(lambda: self._hurry or self._closed, self._delay)
                    continue  # a waiter may have pushed them meanwhile
                break
            if self._retry_at is None:
                if lingered or self._linger <= 0:
                    return None
                # Stay for the next edit: it would otherwise start a thread, and
                # Thread.start waits for the new thread to run, under the edit's lock.
                lingered = True
                self._cond.wait(self._linger)
                continue
            wait = self._retry_at - time.monotonic()
            if wait <= 0:
                break
            self._cond.wait(wait)  # a new request or close wakes it early
        self._hurry = False
        self._in_flight = True
        return self._requested

    def _work(self) -> None:
        while True:
            with self._cond:
                target = self._next_target()
                if target is None:
                    self._running = False
                    self._cond.notify_all()
                    return
            error = self._attempt()
            with self._cond:
                self._record(target, error)

    def _attempt(self) -> StudioError | None:
        try:
            self._push()
        except StudioError as exc:
            error = exc
            logger.warning("push failed: %s", exc, extra={"pusher": self._name})
        except Exception as exc:  # a push thread must never die silently
            error = StudioError(f"push failed: {exc}")
            logger.exception("push failed", extra={"pusher": self._name})
        else:
            self.last_error = None
            self.pushes += 1
            return None
        self.last_error = error
        return error
