"""Sandboxes started ahead of need: a create takes one over instead of setting one up.

On a real repository most of a create is Vite's start with the repository's
build and Storybook's presets loaded (seconds of CPU: docs/performance.md,
ready sandboxes), and none of it depends on who asks. So each registered
repository keeps ``ready_sandboxes`` sandboxes set up, held by
:data:`studio.naming.READY_OWNER`; a create with no overrides takes the oldest
RUNNING one over (:meth:`studio.store.Registry.claim_sandbox`: its owner,
``created_at`` and ``last_activity`` become the create's) and another is
started in its place. A held sandbox is a sandbox like any other to the
supervision (restarted, recovered on another node, torn down when idle past
its timeout, then replaced); no user lists, counts or reaches it.

A held sandbox is handed out only while its base commit is the head of the
repository's branch (``git ls-remote``, :func:`studio.git.source_head`): one
left behind is torn down and replaced, never given to a user. A repository
whose held sandbox fails to set up is retried after a back-off, not on every
supervision pass.

The replacement waits ``quiet_s`` after a sandbox was taken: its setup and
warm-up are seconds of CPU, and the taker's first page load (the reason the
sandbox was ready) needs that CPU right then (docs/performance.md, ready
sandboxes).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from studio.naming import READY_OWNER
from studio.state import SandboxState
from studio.store import Registry, SandboxRecord

__all__ = ["Claim", "ReadySandboxes"]

logger = logging.getLogger(__name__)

# Held sandboxes on their way up or up: what a repository already has.
_HELD_STATES = frozenset(
    {SandboxState.PENDING, SandboxState.STARTING, SandboxState.RUNNING, SandboxState.RESTARTING}
)
_FIRST_BACKOFF = 30.0
_MAX_BACKOFF = 600.0


class Claim:
    """What a create found: the sandbox it took (or None) and the held ones left behind."""

    def __init__(self, taken: SandboxRecord | None, stale: list[str]) -> None:
        self.taken = taken
        self.stale = stale


class ReadySandboxes:
    """Keeps ``size`` held sandboxes per repository; hands them to creates."""

    def __init__(
        self,
        size: int,
        registry: Registry,
        start: Callable[[int], Awaitable[object]],
        *,
        quiet_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size = size
        self._registry = registry
        self._start = start
        self._quiet_s = quiet_s
        self._clock = clock
        # No held sandbox starts before this time: a taken one's first page is loading.
        self._quiet_until = 0.0
        self._filling: dict[int, asyncio.Task[None]] = {}
        # repository id -> (failures in a row, not before this time)
        self._backoff: dict[int, tuple[int, float]] = {}
        self._closed = False

    def held(self, repository_id: int | None = None) -> list[SandboxRecord]:
        """Held sandboxes (of one repository), oldest first."""
        records = self._registry.list_sandboxes(owner=READY_OWNER)
        return sorted(
            (
                r
                for r in records
                if r.state in _HELD_STATES
                and (repository_id is None or r.repository_id == repository_id)
            ),
            key=lambda r: r.created_at,
        )

    def keep(self, repository_ids: Iterable[int]) -> None:
        """Start a held sandbox for the first repository short of ``size``.

        One at a time over all repositories: each setup is a Vite start's CPU.
        """
        if self.size == 0 or self._closed or self._filling:
            return
        now = self._clock()
        if now < self._quiet_until:
            return
        for repository_id in repository_ids:
            if self._backoff.get(repository_id, (0, 0.0))[1] > now:
                continue
            if len(self.held(repository_id)) >= self.size:
                continue
            task = asyncio.create_task(self._fill(repository_id))
            self._filling[repository_id] = task
            task.add_done_callback(functools.partial(self._filled, repository_id))
            return

    def _filled(self, repository_id: int, _task: asyncio.Task[None]) -> None:
        self._filling.pop(repository_id, None)

    async def _fill(self, repository_id: int) -> None:
        try:
            await self._start(repository_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # its record says FAILED with why; retried after a while
            failures = self._backoff.get(repository_id, (0, 0.0))[0] + 1
            wait = min(_FIRST_BACKOFF * 2 ** (failures - 1), _MAX_BACKOFF)
            self._backoff[repository_id] = (failures, self._clock() + wait)
            logger.warning(
                "ready sandbox did not start; next try in %.0f s: %s",
                wait,
                exc,
                extra={"repository_id": repository_id},
            )
        else:
            self._backoff.pop(repository_id, None)

    def claim(self, repository_id: int, owner: str, head: str | None, quota: int = 0) -> Claim:
        """Give ``owner`` the oldest RUNNING held sandbox based on ``head``.

        ``head`` None (the branch's head is unknown) hands nothing out and
        calls nothing stale. A quota the owner is at raises, as a create's.
        """
        if self.size == 0 or head is None:
            return Claim(None, [])
        stale: list[str] = []
        held = self.held(repository_id)
        warming = self._warming(repository_id, held)
        # Warmed ones first; one still warming is still a running Vite, far ahead of a setup.
        for record in sorted(held, key=lambda r: r.id == warming):
            if record.state is not SandboxState.RUNNING:
                continue
            if record.base_commit != head:
                stale.append(record.id)
                continue
            taken = self._registry.claim_sandbox(record.id, READY_OWNER, owner, owner_quota=quota)
            if taken is not None:
                self._quiet_until = self._clock() + self._quiet_s
                return Claim(taken, stale)
        return Claim(None, stale)

    def _warming(self, repository_id: int, held: list[SandboxRecord]) -> str | None:
        """The held sandbox of the repository whose setup is under way: its Vite may be
        up (RUNNING) while the warm-up still transforms the page's modules. Setups run
        one at a time, so it is the newest."""
        return held[-1].id if held and repository_id in self._filling else None

    def status(self) -> dict[int, dict[str, int]]:
        """Per repository: held sandboxes by state (health); a running one whose
        warm-up is under way counts as ``warming``."""
        by_repository: dict[int, list[SandboxRecord]] = {}
        for record in self.held():
            by_repository.setdefault(record.repository_id, []).append(record)
        counts: dict[int, dict[str, int]] = {}
        for repository_id, held in by_repository.items():
            warming = self._warming(repository_id, held)
            by_state = counts[repository_id] = {}
            for record in held:
                running = record.state is SandboxState.RUNNING
                state = "warming" if running and record.id == warming else record.state.value
                by_state[state] = by_state.get(state, 0) + 1
        return counts

    async def close(self) -> None:
        """No more held sandboxes start; the ones starting are cancelled (and disposed of)."""
        self._closed = True
        tasks = list(self._filling.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
