"""Background pushes of a sandbox's branch to its origin, coalesced.

Every commit, rollback and undo asks for a push so that another node can
recover the branch after this one died. Pushes run in one background thread:
at most one push is in flight and at most one more is pending (a request made
while a push runs is served by the next push, which carries every commit made
meanwhile). A push starts ``delay`` seconds after the request that asked for
it, so a burst of edits costs one push rather than one per commit (each push
is several git processes competing with the edits for the CPU); a flush or
close pushes at once. Pushes are forced, since a rollback rewrites the branch.

A failed push is logged and remembered (``last_error``), never raised to the
caller of :meth:`BranchPusher.request`: the commit is already safe on this
node's disk, and the next request pushes it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from studio.errors import StudioError

__all__ = ["BATCH_SECONDS", "BranchPusher"]

logger = logging.getLogger("studio.sandbox")

# Requests within this many seconds of the first are served by one push.
BATCH_SECONDS = 0.5


class BranchPusher:
    """Runs ``push()`` in a background thread whenever asked, coalescing requests.

    ``push`` is called with no arguments and raises a :class:`StudioError` on
    failure. Thread-safe.
    """

    def __init__(
        self, push: Callable[[], None], *, name: str = "push", delay: float = BATCH_SECONDS
    ) -> None:
        self._push = push
        self._name = name
        self._delay = delay
        self._cond = threading.Condition()
        self._pending = False
        self._running = False
        self._closed = False
        # Set by flush(): someone waits for the pushes, so none waits out its delay.
        self._hurry = False
        self.pushes = 0
        self.last_error: StudioError | None = None

    def request(self) -> None:
        """Ask for a push of the branch as it is now (or later)."""
        with self._cond:
            if self._closed:
                return
            self._pending = True
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._work, name=self._name, daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._cond:
                if not self._pending:
                    self._running = False
                    self._hurry = False
                    self._cond.notify_all()
                    return
                if self._delay > 0:
                    # Requests meanwhile ride on this push (they only set _pending again).
                    self._cond.wait_for(lambda: self._hurry or self._closed, self._delay)
                self._pending = False
            try:
                self._push()
            except StudioError as exc:
                self.last_error = exc
                logger.warning("background push failed: %s", exc, extra={"pusher": self._name})
            except Exception as exc:  # a push thread must never die silently
                self.last_error = StudioError(f"background push failed: {exc}")
                logger.exception("background push failed", extra={"pusher": self._name})
            else:
                self.last_error = None
                self.pushes += 1
            with self._cond:
                self._cond.notify_all()

    @property
    def idle(self) -> bool:
        """Nothing pending and nothing in flight."""
        with self._cond:
            return not self._pending and not self._running

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until every requested push ran; whether they did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._running:
                self._hurry = True
                self._cond.notify_all()
            while self._pending or self._running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float) -> bool:
        """Flush, then refuse further requests; whether the flush completed."""
        done = self.flush(timeout)
        with self._cond:
            self._closed = True
        return done
