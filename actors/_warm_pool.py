"""Each node's warm pool: spare Ray workers, booted ahead of need, for the next sandbox actors.

A sandbox actor that lands on a booted spare (with its Vite standby) skips
the worker's boot. A spare holds memory and a sliver of a core while it
waits, so the pool's size is a setting (``warm_workers``, 0 turns the pool
off): a node keeps ``min(warm_workers, free slots)``. What a spare saves and
costs: docs/performance.md, warm pool.

Filling runs one worker at a time: the raylet boots no more at once than its
CPU count anyway, and one at a time leaves a core to the sandboxes that just
started (their first page loads), which is when a pool is refilled. Nothing
is filled while creations are under way on the node (a boot would take CPU
from them); the last one to end schedules a fill ``delay`` seconds later. The
count comes from the raylet (:func:`actors._prestart.idle_workers`); a raylet
that cannot say gets one spare, as before the pool existed. The raylet counts
a spare before its preload ran, so a boot is over only once the spare says
its preload is (:meth:`WarmPool._until_preloaded`).

Nor does a boot start while the node's sandboxes are busy: each edit a
sandbox answers is :meth:`WarmPool.activity` on its node, and a fill waits
until ``quiet`` seconds passed without one (``max_defer`` at most). An
agent's edits come right after its create, each answered with a render
verdict (~100 ms of both cores): a boot among them made them 2 to 10 times
slower (measured, docs/performance.md, warm pool).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Protocol

__all__ = ["PoolBackend", "WarmPool"]

logger = logging.getLogger(__name__)


class PoolBackend(Protocol):
    """What the pool needs from the cluster (the manager's backend)."""

    async def idle_workers(self, node_id: str) -> int | None:
        """Never-used workers waiting on ``node_id``; None when unknown."""
        ...

    async def prestart_workers(self, node_id: str, count: int) -> None:
        """Ask ``node_id`` to boot ``count`` spare workers (best effort)."""
        ...

    async def preloading_workers(self, node_id: str) -> int | None:
        """Never-used workers on ``node_id`` whose preload is not over; None when unknown."""
        ...


class WarmPool:
    """Keeps up to ``size`` spare workers booted on each node sandboxes may go to."""

    def __init__(
        self,
        backend: PoolBackend,
        size: int,
        *,
        delay: float,
        boot_timeout: float = 20.0,
        poll: float = 0.25,
        quiet: float = 2.0,
        max_defer: float = 30.0,
    ) -> None:
        self._backend = backend
        self.size = size
        self._delay = delay
        self._boot_timeout = boot_timeout
        self._poll = poll
        self._quiet = quiet
        self._max_defer = max_defer
        # When a sandbox of the node last answered an edit (time.monotonic()).
        self._active: dict[str, float] = {}
        # Free slots per node sandboxes may go to: the last supervision pass's, less
        # the creations since, plus the sandboxes ended since (inf: none declared).
        # None before the first pass: every node gets ``size``.
        self._free: dict[str, float] | None = None
        # Creations under way per node: nothing is filled there until none is.
        self._creating: dict[str, int] = {}
        self._fills: dict[str, asyncio.Task[None]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._closed = False

    def target(self, node_id: str) -> int:
        """Spares ``node_id`` should have; 0 for a node sandboxes may not go to."""
        if self._free is None:
            return self.size
        return int(max(0, min(self.size, self._free.get(node_id, 0))))

    def creating(self) -> bool:
        """Whether a creation is under way on any node."""
        return bool(self._creating)

    # -- what the manager tells the pool -----------------------------------

    def creation_started(self, node_id: str) -> None:
        self.work_started(node_id)
        if self._free is not None and node_id in self._free:
            self._free[node_id] -= 1  # the new sandbox takes a slot

    def work_started(self, node_id: str) -> None:
        """Work that needs the node's CPU began there (a creation, a warm-up): nothing is
        filled until it ends (:meth:`creation_ended`)."""
        self._creating[node_id] = self._creating.get(node_id, 0) + 1

    def creation_ended(self, node_id: str) -> None:
        """One creation ended; the last of those under way fills the pool ``delay`` s later.

        The delay leaves the CPU to the new sandbox's first page load.
        """
        left = self._creating.get(node_id, 1) - 1
        if left > 0:
            self._creating[node_id] = left
            return
        self._creating.pop(node_id, None)
        self._fill_later(node_id)

    def activity(self, node_id: str) -> None:
        """A sandbox of ``node_id`` answered an edit: no boot starts there for ``quiet`` s."""
        self._active[node_id] = time.monotonic()

    def status(self) -> dict[str, dict[str, float]]:
        """Per node whose sandboxes answered edits: seconds since the last one (health)."""
        now = time.monotonic()
        return {node: {"last_edit_s": round(now - at, 1)} for node, at in self._active.items()}

    def sandbox_ended(self, node_id: str | None) -> None:
        """A sandbox ended: the CPU the delay kept for a first page load is free, fill now.

        Creates right after teardowns then find a spare booting instead of
        each starting a worker of its own.
        """
        if node_id is None:
            return
        if self._free is not None:
            self._free[node_id] = self._free.get(node_id, 0) + 1  # its slot is free
        timer = self._timers.pop(node_id, None)
        if timer is not None:
            timer.cancel()
            self._fill(node_id)

    async def settled(self, node_id: str) -> None:
        """Return once no fill of ``node_id`` is due or under way (bound it with a timeout)."""
        timer = self._timers.get(node_id)
        if timer is not None:
            await asyncio.sleep(max(0.0, timer.when() - asyncio.get_running_loop().time()))
            # the timer has fired (its fill started) or is about to, or a new one is due
            return await self.settled(node_id)
        fill = self._fills.get(node_id)
        if fill is not None:
            await asyncio.wait({fill})  # never cancels the fill

    def keep(self, free_slots: Mapping[str, float]) -> None:
        """A supervision pass: the nodes sandboxes may go to and their free slots."""
        self._free = dict(free_slots)
        for node_id in free_slots:
            if node_id not in self._timers:
                self._fill(node_id)

    def close(self) -> None:
        """Fill no more: pending fills are dropped and running ones stop."""
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._fills.values():
            task.cancel()
        self._fills.clear()

    # -- filling -------------------------------------------------------------

    def _fill_later(self, node_id: str) -> None:
        if self._delay <= 0:
            self._fill(node_id)
            return
        pending = self._timers.pop(node_id, None)
        if pending is not None:
            pending.cancel()
        loop = asyncio.get_running_loop()
        self._timers[node_id] = loop.call_later(self._delay, self._timer_fired, node_id)

    def _timer_fired(self, node_id: str) -> None:
        self._timers.pop(node_id, None)
        self._fill(node_id)

    def _fill(self, node_id: str) -> None:
        """Start filling ``node_id`` unless a fill runs there, it creates, or the pool closed."""
        if self._closed or self._creating.get(node_id) or node_id in self._fills:
            return
        if self.target(node_id) <= 0:
            return
        task = asyncio.create_task(self._fill_node(node_id))
        self._fills[node_id] = task
        task.add_done_callback(lambda _t: self._fills.pop(node_id, None))

    async def _fill_node(self, node_id: str) -> None:
        try:
            while not self._closed and not self._creating.get(node_id):
                idle = await self._backend.idle_workers(node_id)
                if idle is None:
                    # The raylet cannot say: one spare, as Ray would start for a job.
                    await self._backend.prestart_workers(node_id, 1)
                    return
                if idle >= self.target(node_id):
                    return
                await self._until_quiet(node_id)
                if self._closed or self._creating.get(node_id):
                    return
                await self._backend.prestart_workers(node_id, 1)
                if not await self._count_moved(node_id, idle):
                    logger.info("no spare worker booted on %s in time; filling later", node_id)
                    return
                await self._until_preloaded(node_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # best effort: a sandbox without a spare boots its own worker
            logger.exception("filling the warm pool of %s failed", node_id)

    async def _until_quiet(self, node_id: str) -> None:
        """Wait until no sandbox of ``node_id`` answered an edit for ``quiet`` s, a
        creation started there, or ``max_defer`` s passed."""
        deadline = time.monotonic() + self._max_defer
        while not self._closed and not self._creating.get(node_id):
            now = time.monotonic()
            last = self._active.get(node_id)
            busy_for = 0.0 if last is None else last + self._quiet - now
            if busy_for <= 0 or now >= deadline:
                return
            await asyncio.sleep(min(busy_for, deadline - now, self._poll))

    async def _until_preloaded(self, node_id: str) -> None:
        """Wait until no spare of ``node_id`` is still in its preload, a creation started
        there, or ``boot_timeout`` s passed.

        The raylet counts a spare once it registered; its preload (the sandbox's
        modules, the serialization context) runs after, for 0.6 to 0.8 s of a
        core here. A page load beside it loses that CPU, so the boot is over
        (and :meth:`settled` returns) only when the preload is too.
        """
        deadline = time.monotonic() + self._boot_timeout
        while not self._closed and not self._creating.get(node_id):
            if not await self._backend.preloading_workers(node_id):  # none, or unknown
                return
            if time.monotonic() >= deadline:
                logger.info("a spare worker on %s is still preloading; not waiting", node_id)
                return
            await asyncio.sleep(self._poll)

    async def _count_moved(self, node_id: str, before: int) -> bool:
        """Wait until the idle count moves from ``before`` (a spare registered, or one was taken).

        False when it did not within ``boot_timeout`` (the raylet refused or
        the worker failed to boot). A creation starting ends the wait: the
        fill stops for it anyway.
        """
        deadline = time.monotonic() + self._boot_timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(self._poll)
            if self._closed or self._creating.get(node_id):
                return True
            now = await self._backend.idle_workers(node_id)
            if now is None or now != before:
                return True
        return False
