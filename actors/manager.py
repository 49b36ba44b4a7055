"""StudioManager: the registry's single writer and the sandboxes' supervisor, without Ray.

The manager actor (:mod:`actors.manager_actor`) is a thin Ray shell around
this class; every cluster operation goes through a :class:`ClusterBackend`, so tests
run the same code against a fake. Decisions (which node, what to do with each
observed sandbox) are the pure functions of :mod:`actors.scheduling`.

Supervision is a reconcile pass (:meth:`StudioManager.reconcile`): for every
sandbox the registry says should be live, ping its actor with a timeout,
recreate it when it is gone or its node is (on another node then: the sandbox
recovers its branch from origin), otherwise let it monitor itself, tear it
down when idle, record a failure, and write what it saw to the registry. Each
sandbox's step is isolated: one failing never stops the pass. A sandbox that
an API call is working on is skipped for that pass.

Every state the manager stores moves along the table of :mod:`studio.state`
(the registry refuses any other change): a create goes PENDING -> STARTING ->
RUNNING (or FAILED), a recovery re-enters STARTING, and a teardown writes
STOPPING before it asks the actor to stop and STOPPED (or FINALIZED) after, so a
manager that stops half-way leaves a STOPPING record the next pass finishes.
What an actor reports further on is recorded step by step
(:meth:`~studio.store.Registry.move_sandbox`); a report older than the
registry's record leaves the record as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors import metrics
from actors._accounts import Accounts, provider_spec
from actors._node_prep import NodePreparer, NodeWork, RepositoryWork
from actors._ray_backend import (
    ActorGone,
    ActorUnresponsive,
    ActorUnschedulable,
    ClusterBackend,
    SandboxSpec,
)
from actors._ready import ReadySandboxes
from actors._views import info_from_record, is_loopback, record_gauges, renderer_url
from actors._warm_pool import WarmPool
from actors.scheduling import (
    Action,
    NodeView,
    Ping,
    choose_node,
    decide,
    decide_after_monitor,
    node_load,
    open_slots,
    orphans_on_node,
)
from studio.config import ComponentStudioConfig, StudioSettings
from studio.errors import (
    InvalidState,
    PreparationFailed,
    SandboxNotFound,
    ServiceUnavailable,
    StudioError,
)
from studio.git import source_head
from studio.layout import StateLayout
from studio.limits import check_user_overrides
from studio.messages import PrepareStep
from studio.models import FinalizeResult, MonitorReport, RepositorySource, SandboxInfo
from studio.naming import READY_OWNER, branch_name, new_sandbox_id
from studio.state import ACTIVE_STATES, TERMINAL_STATES, SandboxState, require_state
from studio.store import Registry, RepositoryRecord, SandboxRecord

__all__ = ["ManagerTimeouts", "StudioManager"]

logger = logging.getLogger(__name__)

# Sandboxes the reconcile pass looks after (PENDING: a create the manager did not
# finish; STOPPING: a teardown it did not finish). Each still holds its node's slot.
_SUPERVISED = frozenset({SandboxState.PENDING, *ACTIVE_STATES, SandboxState.STOPPING})
# Where the sandbox itself accepts a finalize (push, pull request, teardown).
_FINALIZABLE = frozenset({SandboxState.RUNNING, SandboxState.RESTARTING, SandboxState.FAILED})
# Events a sandbox may have published since the manager last stored its last_seq; a
# recreated actor numbers from past them so numbers never go back.
SEQ_MARGIN = 1000


# A ready sandbox's setup waits at most this long for the spare worker booted after it.
_SPARE_SETTLE_S = 30.0


@dataclass(frozen=True)
class ManagerTimeouts:
    """How long the manager waits on a sandbox actor, in seconds."""

    ping: float = 5.0
    call: float = 30.0
    # Beyond Vite's ready_timeout: a first mirror clone and npm ci on a new node.
    setup_extra: float = 300.0
    max_missed_pings: int = 3
    # A spare worker's boot takes CPU; right after a create the new sandbox's
    # first page load needs it (docs/performance.md, warm pool): the warm pool
    # is filled this long after the last creation under way ended.
    spare_delay: float = 2.0


class StudioManager:
    """Sandboxes, repositories and users of one Component Studio service."""

    def __init__(
        self,
        settings: StudioSettings,
        backend: ClusterBackend,
        *,
        node_state_dirs: Mapping[str, str] | None = None,
        timeouts: ManagerTimeouts | None = None,
    ) -> None:
        self.settings = settings
        self.registry = Registry(StateLayout(settings.state_dir).registry)
        self.accounts = Accounts(self.registry, settings)
        self._backend = backend
        self._node_state_dirs = dict(node_state_dirs or {})
        self._timeouts = timeouts or ManagerTimeouts()
        self._locks: dict[str, asyncio.Lock] = {}
        self._missed: dict[str, int] = {}
        self._tick_lock = asyncio.Lock()
        # Nodes seen dead with sandboxes on them, each answered by one early pass.
        self._answered_losses: set[str] = set()
        self._last_reconcile: float | None = None
        self.warm_pool = WarmPool(backend, settings.warm_workers, delay=self._timeouts.spare_delay)
        # Each node's install cache, shell, deps seed and standby hint, made before its sandboxes.
        # Kept in the registry: the repositories' records show it, and a restart resumes it.
        # A held sandbox waits for the preparations to end (_keep_ready), and is started
        # as soon as they do.
        self.preparer = NodePreparer(backend, self.registry, on_settled=self._keep_ready)
        # Setups of sandboxes created with wait=False (a reference keeps each task alive).
        self._setups: set[asyncio.Task[SandboxInfo]] = set()
        # Addresses of the nodes other than the head, as the last look at the nodes said.
        self._node_addresses: dict[str, str] = {}
        # Sandboxes set up ahead of need, per repository, for creates to take over.
        self.ready = ReadySandboxes(
            settings.ready_sandboxes,
            self.registry,
            self._start_ready,
            quiet_s=settings.ready_sandbox_quiet_s,
        )
        # Held sandboxes left behind by their branch, being torn down.
        self._retiring: set[asyncio.Task[SandboxInfo]] = set()

    async def cancel_setups(self) -> None:
        """Stop the setups still under way (each disposes of its half-made sandbox)."""
        await self.ready.close()
        tasks = list(self._setups | self._retiring)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop_preparing(self) -> None:
        """Stop the node preparations under way; none starts after this."""
        await self.preparer.close()

    def close(self) -> None:
        """Close the registry; the warm pool fills no more."""
        self.warm_pool.close()
        self.registry.close()

    # -- helpers ----------------------------------------------------------

    def state_dir_for(self, node_id: str) -> str:
        """The state dir of ``node_id`` (its own disk in a multi-node test)."""
        return self._node_state_dirs.get(node_id, str(self.settings.state_dir))

    def _lock(self, sandbox_id: str) -> asyncio.Lock:
        return self._locks.setdefault(sandbox_id, asyncio.Lock())

    def _owned(self, sandbox_id: str, owner: str | None) -> SandboxRecord:
        try:
            record = self.registry.get_sandbox(sandbox_id)
        except SandboxNotFound:
            raise SandboxNotFound(f"no sandbox {sandbox_id!r}", sandbox_id=sandbox_id) from None
        if owner is not None and record.owner != owner:
            # Someone else's sandbox does not exist, as far as this caller can tell.
            raise SandboxNotFound(f"no sandbox {sandbox_id!r}", sandbox_id=sandbox_id)
        return record

    async def _nodes(self) -> list[NodeView]:
        """The cluster's nodes, noting the address of each one besides the head."""
        nodes = await self._backend.nodes()
        self._node_addresses = {n.node_id: n.address for n in nodes if n.address and not n.is_head}
        return nodes

    def _renderer_host(self, node_id: str | None) -> str:
        """Where a browser reaches a Vite on ``node_id``.

        ``public_host`` names the head node (on one machine, the only one);
        any other node goes by its own address, as the direct WebSocket
        listener does (serve.app).
        """
        return self._node_addresses.get(node_id or "", self.settings.public_host)

    def _renderer_url(self, port: int | None, node_id: str | None) -> str | None:
        return renderer_url(self._renderer_host(node_id), port)

    def _info_from_record(self, record: SandboxRecord) -> SandboxInfo:
        return info_from_record(
            record, self.registry.list_commits(record.id), self._renderer_host(record.node_id)
        )

    def _store(self, record: SandboxRecord, info: SandboxInfo) -> SandboxInfo:
        """Write an actor's info to the registry; the info as the API shows it.

        Its state is reached by the table's steps. An info older than the
        registry's record (a setup not begun while the record says starting, a
        teardown the manager began after the actor answered) changes nothing,
        and the record is what the API shows.
        """
        live = info.status in ACTIVE_STATES
        try:
            self.registry.move_sandbox(
                record.id,
                info.status,
                node_id=info.node or record.node_id,
                port=info.port if live else None,
                base_commit=info.base_commit or record.base_commit,
                last_activity=info.last_activity,
                restarts=info.restarts,
                error=info.error,
                last_seq=max(info.last_seq, record.last_seq),
                pr_url=info.pr_url or record.pr_url,
                pr_number=info.pr_number or record.pr_number,
            )
        except InvalidState as exc:
            logger.debug(
                "actor report older than the registry: %s",
                exc,
                extra={"sandbox_id": record.id, "state": info.status.value},
            )
            return self._info_from_record(self.registry.get_sandbox(record.id))
        if info.git_commits:
            self.registry.replace_commits(
                record.id, [(c.hash, c.message, c.timestamp) for c in reversed(info.git_commits)]
            )
        return info.model_copy(
            update={
                "owner": record.owner,
                "repository_id": record.repository_id,
                "renderer_url": self._renderer_url(info.port, info.node or record.node_id)
                if live
                else None,
                "node": info.node or record.node_id,
            }
        )

    def _spec(self, record: SandboxRecord, node_id: str, start_seq: int) -> SandboxSpec:
        repository = self.registry.get_repository(record.repository_id)
        # Secrets stay here: a sandbox asks for the GitHub token per push (push_credential).
        settings = self.settings.model_dump(mode="json", exclude={"admin_token", "github_token"})
        settings["state_dir"] = self.state_dir_for(node_id)
        address = self._node_addresses.get(node_id)
        if address and is_loopback(self.settings.host):
            # Vite listens where renderer_url points: on another node, its address.
            settings["host"] = address
        return SandboxSpec(
            sandbox_id=record.id,
            node_id=node_id,
            owner=record.owner,
            repository=RepositorySource(
                name=repository.name,
                source=repository.source,
                default_branch=record.config.branch,
                github=repository.github,
            ),
            config=record.config,
            settings=settings,
            start_seq=start_seq,
            viewer_token=self.accounts.viewer_token(record.id),
        )

    async def _choose(self, *, exclude: str, avoid: str | None, prefer: str | None) -> str:
        nodes = await self._nodes()
        others = [
            r.node_id
            for r in self.registry.list_sandboxes(states=_SUPERVISED | {SandboxState.FAILED})
            if r.id != exclude
        ]
        return choose_node(
            nodes, node_load(others), avoid=() if avoid is None else (avoid,), prefer=prefer
        )

    async def _start(
        self,
        record: SandboxRecord,
        node_id: str,
        *,
        recover: bool,
        actor_created: asyncio.Event | None = None,
    ) -> SandboxInfo:
        """Create the actor on ``node_id`` and set it up; on failure the record says FAILED.

        ``actor_created`` is set once the actor exists (its name resolves, its
        events can be followed), before its setup.
        """
        start_seq = record.last_seq + SEQ_MARGIN if recover else 1
        record = self.registry.update_sandbox(
            record.id, node_id=node_id, state=SandboxState.STARTING, error=None
        )
        started = time.monotonic()
        self.warm_pool.creation_started(node_id)
        try:
            await self._backend.create_sandbox(self._spec(record, node_id, start_seq))
            if actor_created is not None:
                actor_created.set()
            if not recover:
                # A recovery sets itself up, under the same locks, without holding the pass.
                await self._await_preparation(record, node_id)
            info: SandboxInfo = await self._backend.call(
                record.id,
                "setup",
                recover=recover,
                timeout_s=record.config.ready_timeout + self._timeouts.setup_extra,
            )
        except BaseException as exc:
            message = str(exc) or type(exc).__name__
            self.registry.update_sandbox(
                record.id, state=SandboxState.FAILED, error=message, port=None
            )
            metrics.record(lambda: metrics.sandbox_creates().inc(tags={"outcome": "failed"}))
            logger.warning(
                "sandbox setup failed",
                extra={"sandbox_id": record.id, "node": node_id, "error": message},
            )
            if isinstance(exc, (ActorGone, ActorUnresponsive)):
                raise ServiceUnavailable(
                    f"sandbox {record.id} did not come up: {message}", sandbox_id=record.id
                ) from exc
            raise
        finally:
            self.warm_pool.creation_ended(node_id)
        elapsed = time.monotonic() - started
        metrics.record(lambda: metrics.sandbox_creates().inc(tags={"outcome": "ready"}))
        metrics.record(lambda: metrics.create_to_ready_seconds().observe(elapsed))
        return self._store(record, info)

    async def _await_preparation(self, record: SandboxRecord, node_id: str) -> None:
        """Until the sandbox's repository is prepared on ``node_id``, its steps on the stream.

        A node that has not prepared it prepares it now. A failed preparation
        is an ``error`` event with its output, then :class:`PreparationFailed`.
        """
        work = self._work_of(self.registry.get_repository(record.repository_id))
        if work is None:
            return

        async def announce(step: PrepareStep) -> None:
            # Progress only: a stream that misses it loses nothing the create needs.
            with contextlib.suppress(StudioError, ActorGone, ActorUnresponsive):
                await self._backend.call(
                    record.id, "preparation_step", step.value, timeout_s=self._timeouts.call
                )

        try:
            await self.preparer.ready(
                NodeWork(node_id, self._prep_settings(node_id)), work, announce
            )
        except PreparationFailed as exc:
            output = exc.details.get("preparation", {}).get("output", [])
            with contextlib.suppress(StudioError, ActorGone, ActorUnresponsive):
                await self._backend.call(
                    record.id,
                    "preparation_failed",
                    exc.message,
                    exc.code,
                    output,
                    timeout_s=self._timeouts.call,
                )
            raise

    # -- sandboxes --------------------------------------------------------

    async def create_sandbox(
        self,
        owner: str,
        repository_id: int,
        overrides: dict[str, Any] | None = None,
        *,
        wait: bool = True,
        is_admin: bool = False,
    ) -> SandboxInfo:
        """Create a sandbox and return when it is RUNNING (or raise its setup error).

        ``wait=False`` returns as soon as its actor exists, STARTING: the setup
        goes on here, and its steps are ``status`` events on the sandbox's stream.
        A caller who is not an admin (``is_admin``, as the API authenticated
        it) is held to :mod:`studio.limits`: the overrides it may give and
        ``max_sandboxes_per_user``.
        """
        repository = self.accounts.check_repository_access(repository_id, owner, is_admin)
        config = self.accounts.config_for(repository_id, overrides)
        if not is_admin:
            check_user_overrides(self.accounts.config_for(repository_id, None), config, overrides)
        quota = 0 if is_admin else self.settings.max_sandboxes_per_user
        # A blocking call to GitHub (when the repository has one): off the event loop.
        await asyncio.to_thread(self.accounts.check_push_access, repository_id)
        if not overrides and self.ready.size:
            taken = await self._take_ready(owner, repository, config.branch, quota)
            if taken is not None:
                return taken
        record, node_id = await self._placed_record(owner, repository, config)
        sandbox_id = record.id
        if wait:
            return await self._create(record, node_id, None, quota)
        actor_created = asyncio.Event()
        task = asyncio.create_task(self._create(record, node_id, actor_created, quota))
        self._setups.add(task)
        task.add_done_callback(self._setup_done)
        created = asyncio.create_task(actor_created.wait())
        try:
            await asyncio.wait({task, created}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            created.cancel()
        if task.done():
            # It failed before its actor existed (or was that fast): say so now.
            return task.result()
        return self._info_from_record(self.registry.get_sandbox(sandbox_id))

    async def _placed_record(
        self, owner: str, repository: RepositoryRecord, config: ComponentStudioConfig
    ) -> tuple[SandboxRecord, str]:
        """A new sandbox's record and the node it goes to (not yet in the registry)."""
        sandbox_id = new_sandbox_id()
        node_id = await self._choose(exclude=sandbox_id, avoid=None, prefer=None)
        # Its preparation failed there: say so now, before a sandbox is made to fail.
        self.preparer.check(node_id, repository.name)
        record = SandboxRecord(
            id=sandbox_id,
            owner=owner,
            repository_id=repository.id,
            node_id=node_id,
            branch=branch_name(sandbox_id),
            config=config,
        )
        return record, node_id

    async def _take_ready(
        self, owner: str, repository: RepositoryRecord, branch: str, quota: int
    ) -> SandboxInfo | None:
        """A held sandbox of the repository made ``owner``'s, RUNNING; None when none fits."""
        head = await asyncio.to_thread(source_head, repository.source, branch)
        claim = self.ready.claim(repository.id, owner, head, quota)
        for sandbox_id in claim.stale:
            task = asyncio.create_task(self.teardown_sandbox(sandbox_id))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        if claim.taken is None:
            return None
        record = claim.taken
        logger.info(
            "ready sandbox taken",
            extra={"sandbox_id": record.id, "owner": owner, "node": record.node_id},
        )
        metrics.record(lambda: metrics.sandbox_creates().inc(tags={"outcome": "ready"}))
        try:
            # Its idle clock starts now: the actor's own, too.
            await self._backend.call(record.id, "touch", timeout_s=self._timeouts.call)
        except (ActorGone, ActorUnresponsive) as exc:
            # Supervision recovers it as any sandbox; the create answers with what is known.
            logger.warning("taken sandbox did not answer: %s", exc, extra={"sandbox_id": record.id})
            return self._info_from_record(record)
        return await self.get_sandbox(record.id, owner)

    async def _start_ready(self, repository_id: int) -> SandboxInfo:
        """Set up one held sandbox of the repository (its setup is a create's)."""
        repository = self.registry.get_repository(repository_id)
        config = self.accounts.config_for(repository_id, None)
        record, node_id = await self._placed_record(READY_OWNER, repository, config)
        sandbox_id = record.id
        # The warm-up is part of its setup to the warm pool: the spare worker its creation
        # used boots after it, and the sandbox counts as warmed (actors._ready) once that
        # boot is over too. A create that takes it then has the node's CPU to itself.
        self.warm_pool.work_started(node_id)
        try:
            info = await self._create(record, node_id, None)
            try:
                # Its first user's page load then finds the modules transformed
                # (docs/performance.md, ready sandboxes); it is up either way.
                warmed = await self._backend.call(
                    sandbox_id, "warm_renderer", timeout_s=self._timeouts.setup_extra
                )
            except Exception as exc:  # an optimisation: a cold first load is still a load
                logger.warning(
                    "ready sandbox not warmed: %s", exc, extra={"sandbox_id": sandbox_id}
                )
            else:
                logger.info("ready sandbox warmed", extra={"sandbox_id": sandbox_id, **warmed})
        finally:
            self.warm_pool.creation_ended(node_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_SPARE_SETTLE_S):
                await self.warm_pool.settled(node_id)
        return info

    async def _create(
        self,
        record: SandboxRecord,
        node_id: str,
        actor_created: asyncio.Event | None,
        quota: int = 0,
    ) -> SandboxInfo:
        async with self._lock(record.id):
            # Added under the lock: a reconcile pass must not find it before its actor exists.
            self.registry.add_sandbox(record, owner_quota=quota)
            logger.info(
                "sandbox created",
                extra={"sandbox_id": record.id, "owner": record.owner, "node": node_id},
            )
            try:
                return await self._start(
                    record, node_id, recover=False, actor_created=actor_created
                )
            except BaseException:
                # A failed setup leaves no Vite, worktree or actor behind; the record
                # stays FAILED with its error (the actor's own teardown ends stopped:
                # failed is not an end it accepts).
                await self._dispose(record.id, SandboxState.STOPPED)
                raise

    def _setup_done(self, task: asyncio.Task[SandboxInfo]) -> None:
        """A setup nobody waits for: its failure is in the registry and the event stream."""
        self._setups.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.info("background setup failed: %s", task.exception())

    async def _dispose(
        self, sandbox_id: str, final_state: SandboxState, *, reachable: bool = True
    ) -> SandboxInfo | None:
        """Tear the actor's sandbox down (best effort) and kill the actor.

        ``reachable=False`` (its node is gone) skips the teardown call, which
        would only wait for its timeout; the node's sweep removes what is left.
        """
        info: SandboxInfo | None = None
        if reachable:
            try:
                info = await self._backend.call(
                    sandbox_id, "teardown", final_state.value, timeout_s=self._timeouts.call
                )
            except Exception as exc:  # best effort: the actor is killed below either way
                logger.warning(
                    "teardown of the actor failed",
                    extra={"sandbox_id": sandbox_id, "error": str(exc)},
                )
        await self._backend.kill_sandbox(sandbox_id)
        self._missed.pop(sandbox_id, None)
        self.warm_pool.sandbox_ended(self.registry.get_sandbox(sandbox_id).node_id)
        return info

    async def _stop(self, record: SandboxRecord, *, reachable: bool = True) -> SandboxRecord:
        """End a sandbox through STOPPING: teardown, idle cull, a teardown left half-way.

        STOPPING is written before the actor is asked, so a manager that stops
        in between leaves a record the reconcile pass finishes. The end is
        STOPPED, or FINALIZED when the actor says it had already finalized (a
        manager that stopped between the actor's finalize and its own write).
        Call it holding the sandbox's lock.
        """
        if record.state is not SandboxState.STOPPING:
            record = self.registry.update_sandbox(record.id, state=SandboxState.STOPPING)
        info = await self._dispose(record.id, SandboxState.STOPPED, reachable=reachable)
        if info is not None and info.status is SandboxState.FINALIZED:
            return self.registry.move_sandbox(
                record.id,
                SandboxState.FINALIZED,
                port=None,
                pr_url=info.pr_url or record.pr_url,
                pr_number=info.pr_number or record.pr_number,
            )
        # A step from STOPPING, or by the table's path when a concurrent read of the
        # actor recorded something meanwhile (FAILED -> STOPPING -> STOPPED).
        return self.registry.move_sandbox(record.id, SandboxState.STOPPED, port=None)

    async def get_sandbox(self, sandbox_id: str, owner: str | None = None) -> SandboxInfo:
        """A sandbox's status: live from its actor when it answers, else from the registry."""
        record = self._owned(sandbox_id, owner)
        if record.state in ACTIVE_STATES:
            try:
                info = await self._backend.call(sandbox_id, "info", timeout_s=self._timeouts.ping)
            except (ActorGone, ActorUnresponsive):
                return self._info_from_record(record)
            return self._store(record, info)
        return self._info_from_record(record)

    def owner_of(self, sandbox_id: str) -> str:
        """Who created the sandbox."""
        return self._owned(sandbox_id, None).owner

    def list_sandboxes(
        self, owner: str | None = None, include_ended: bool = False, include_held: bool = False
    ) -> list[SandboxInfo]:
        """Sandboxes (of ``owner``, or all), from the registry; ended ones on request.

        The held ones (:mod:`actors._ready`) are nobody's: only with ``include_held``.
        """
        records = self.registry.list_sandboxes(owner=owner)
        return [
            self._info_from_record(r)
            for r in records
            if (include_ended or r.state not in TERMINAL_STATES)
            and (include_held or r.owner != READY_OWNER)
        ]

    async def teardown_sandbox(self, sandbox_id: str, owner: str | None = None) -> SandboxInfo:
        """Stop a sandbox and remove its worktree; the branch and commits stay."""
        record = self._owned(sandbox_id, owner)
        async with self._lock(sandbox_id):
            record = self.registry.get_sandbox(sandbox_id)
            if record.state in TERMINAL_STATES:
                return self._info_from_record(record)
            record = await self._stop(record)
        logger.info(
            "sandbox torn down", extra={"sandbox_id": sandbox_id, "state": record.state.value}
        )
        return self._info_from_record(record)

    def push_credential(self, sandbox_id: str) -> str | None:
        """The GitHub token, for one push or pull request of a live sandbox; None without one.

        Only a sandbox that is not over, of a repository on GitHub, gets it: an
        ended sandbox's actor has nothing left to push.
        """
        record = self.registry.get_sandbox(sandbox_id)
        if record.state in TERMINAL_STATES:
            raise InvalidState(
                f"sandbox {sandbox_id} is {record.state.value}: it pushes nothing more",
                state=record.state.value,
            )
        repository = self.registry.get_repository(record.repository_id)
        if repository.github is None:
            return None
        return self.settings.github_token

    async def finalize_sandbox(
        self,
        sandbox_id: str,
        owner: str | None,
        title: str,
        description: str,
        images: bool = True,
    ) -> FinalizeResult:
        """Push the branch and open the PR (through the sandbox), then end the sandbox.

        ``images``: the body shows the touched stories before and after.

        Finalizing again answers with the same pull request: a client that
        lost the first answer (a timeout, a retry) must not get an error for
        work that was done.
        """
        record = self._owned(sandbox_id, owner)
        repository = self.registry.get_repository(record.repository_id)
        async with self._lock(sandbox_id):
            record = self.registry.get_sandbox(sandbox_id)
            if record.state is SandboxState.FINALIZED:
                return self._finalized_again(record, repository)
            # A stopped sandbox has no worktree left to push from: a clear answer, not a
            # wait on an actor that is gone.
            require_state(record.state, _FINALIZABLE, "finalize")
            try:
                info = await self._backend.call(sandbox_id, "info", timeout_s=self._timeouts.call)
                if self._store(record, info).status is SandboxState.FINALIZED:
                    # Its finalize ran, but the manager stopped before recording it.
                    await self._backend.kill_sandbox(sandbox_id)
                    return self._finalized_again(self.registry.get_sandbox(sandbox_id), repository)
                result: FinalizeResult = await self._backend.call(
                    sandbox_id,
                    "finalize",
                    title,
                    description,
                    provider_spec(self.settings, repository.github),
                    images,
                    timeout_s=self._timeouts.call + self._timeouts.setup_extra,
                )
            except (ActorGone, ActorUnresponsive) as exc:
                raise ServiceUnavailable(
                    f"sandbox {sandbox_id} is not reachable right now ({exc}); retry shortly",
                    sandbox_id=sandbox_id,
                ) from exc
            # The actor went STOPPING -> FINALIZED inside its finalize; the record follows
            # it before the actor is killed, so a manager stopping in between leaves a
            # finalized record and an orphan actor (the cleanup job's), never a RUNNING
            # record whose recovery would set the sandbox up again.
            self.registry.move_sandbox(
                sandbox_id,
                SandboxState.FINALIZED,
                port=None,
                pr_url=result.pr_url,
                pr_number=result.pr_number,
            )
            await self._backend.kill_sandbox(sandbox_id)
        logger.info("sandbox finalized", extra={"sandbox_id": sandbox_id, "pr": result.pr_url})
        return result

    def _finalized_again(
        self, record: SandboxRecord, repository: RepositoryRecord
    ) -> FinalizeResult:
        commits = [c for c in self.registry.list_commits(record.id) if c.hash != record.base_commit]
        done = (
            f"pull request #{record.pr_number}: {record.pr_url}"
            if record.pr_url
            else f"branch {record.branch} pushed"
        )
        return FinalizeResult(
            pr_url=record.pr_url,
            pr_number=record.pr_number,
            branch=record.branch,
            pushed_to=repository.github or repository.source,
            message=f"already finalized ({done})",
            commits=len(commits),
        )

    # -- supervision ------------------------------------------------------

    async def reconcile(self) -> dict[str, Any]:
        """One supervision pass over every supervised sandbox; what it did, by sandbox."""
        async with self._tick_lock:
            nodes = await self._nodes()
            alive = {n.node_id for n in nodes if n.alive}
            records = self.registry.list_sandboxes(states=_SUPERVISED)
            outcomes = await asyncio.gather(
                *(self._reconcile_one(record, alive) for record in records),
                return_exceptions=True,
            )
            actions: dict[str, str] = {}
            for record, outcome in zip(records, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    logger.error(
                        "reconcile step failed",
                        exc_info=outcome,
                        extra={"sandbox_id": record.id},
                    )
                    actions[record.id] = f"error: {outcome}"
                else:
                    actions[record.id] = outcome
            record_gauges(self.registry.list_sandboxes())
            self._fill_warm_pools(nodes)
            self._prepare_nodes(nodes)
            self._keep_ready()
            self._last_reconcile = time.time()
            return {"sandboxes": actions, "nodes_alive": len(alive)}

    async def check_nodes(self) -> dict[str, Any] | None:
        """A supervision pass now if a node died with supervised sandboxes on it; else None.

        Ray declares a lost node dead long after it went (seconds), and the
        regular pass may come a whole tick later still: looking at the node
        list is one cheap GCS call, so it is done often and a newly dead node
        does not wait for the tick. Each lost node starts one pass; the
        regular passes retry from there.
        """
        alive = {n.node_id for n in await self._nodes() if n.alive}
        lost = {
            r.node_id
            for r in self.registry.list_sandboxes(states=_SUPERVISED)
            if r.node_id is not None and r.node_id not in alive
        }
        new = lost - self._answered_losses
        self._answered_losses &= lost
        if not new:
            return None
        self._answered_losses |= new
        logger.warning("nodes lost with sandboxes on them", extra={"nodes": sorted(new)})
        return await self.reconcile()

    def _keep_ready(self) -> None:
        """Start a held sandbox where one is missing, unless a create or a preparation runs.

        One at a time, and never beside a create: a held sandbox's setup is CPU
        the create (and its first page load) would otherwise have. Nor beside a
        preparation: someone waits on that (a registration, a create on it).
        In the corpus, shopping-cart's prepare after another repository took
        18.6 s before this and 10.2 s with it, as long as alone (10.1 s);
        docs/performance.md, the corpus.
        """
        if not self.warm_pool.creating() and not self.preparer.preparing():
            self.ready.keep(r.id for r in self.registry.list_repositories())

    def _fill_warm_pools(self, nodes: list[NodeView]) -> None:
        """Spare workers on each node a sandbox may go to, as many as it has free slots."""
        load = node_load(r.node_id for r in self.registry.list_sandboxes(states=_SUPERVISED))
        self.warm_pool.keep(open_slots(nodes, load))

    def _prepare_nodes(self, nodes: list[NodeView]) -> None:
        """Have each node a sandbox may go to prepared for the registered repositories."""
        load = node_load(r.node_id for r in self.registry.list_sandboxes(states=_SUPERVISED))
        repositories = tuple(self._repository_work())
        self.preparer.keep(
            NodeWork(node_id, self._prep_settings(node_id), repositories)
            for node_id in open_slots(nodes, load)
        )

    def _prep_settings(self, node_id: str) -> dict[str, Any]:
        settings = self.settings.model_dump(mode="json", exclude={"admin_token", "github_token"})
        settings["state_dir"] = self.state_dir_for(node_id)
        return settings

    def _repository_work(self) -> list[RepositoryWork]:
        """What each registered repository's sandboxes start from: its base, its config."""
        work = (self._work_of(repository) for repository in self.registry.list_repositories())
        return [w for w in work if w is not None]

    def _work_of(self, repository: RepositoryRecord) -> RepositoryWork | None:
        """What ``repository``'s sandboxes start from; None when its config is broken."""
        try:
            config = self.accounts.config_for(repository.id, None)
        except StudioError as exc:  # its creates fail the same way; nothing to prepare
            logger.warning("not preparing %s: %s", repository.name, exc)
            return None
        source = RepositorySource(
            name=repository.name,
            source=repository.source,
            default_branch=config.branch,
            github=repository.github,
        )
        return RepositoryWork(
            repository.name,
            source.model_dump(mode="json"),
            config.model_dump(mode="json"),
            repository.id,
        )

    async def register_repository(self, name: str, **fields: Any) -> RepositoryRecord:
        """Check and register a repository; the nodes start preparing for it at once."""
        record = await asyncio.to_thread(self.accounts.register_repository, name, **fields)
        self._prepare_nodes(await self._nodes())
        return self.registry.get_repository(record.id)

    async def prepare_repository(self, repository_id: int) -> RepositoryRecord:
        """Prepare a repository again where it failed or is ready (a preparation under way
        goes on); the nodes that take sandboxes start at once, the others on first use."""
        repository = self.registry.get_repository(repository_id)
        forgotten = self.preparer.retry(repository.name)
        logger.info(
            "repository to prepare again",
            extra={"repository": repository.name, "nodes": forgotten},
        )
        self._prepare_nodes(await self._nodes())
        return self.registry.get_repository(repository_id)

    async def _ping(self, sandbox_id: str) -> tuple[Ping, dict[str, Any] | None, bool]:
        """The ping's outcome, its answer, and whether the actor's node is lost."""
        try:
            answer = await self._backend.call(sandbox_id, "ping", timeout_s=self._timeouts.ping)
        except ActorUnschedulable:
            # Ray knows the node is gone before the node list says so.
            return Ping.GONE, None, True
        except ActorGone:
            return Ping.GONE, None, False
        except ActorUnresponsive:
            return Ping.UNRESPONSIVE, None, False
        return Ping.OK, answer, False

    async def _reconcile_one(self, record: SandboxRecord, alive: set[str]) -> str:
        lock = self._lock(record.id)
        if lock.locked():
            return "busy"
        async with lock:
            record = self.registry.get_sandbox(record.id)
            if record.state not in _SUPERVISED:
                return "ended"
            node_alive = record.node_id is None or record.node_id in alive
            if record.state is SandboxState.STOPPING:
                # No API call holds the lock: a teardown stopped half-way. Finish it.
                record = await self._stop(record, reachable=node_alive)
                return f"{record.state.value}: finished a teardown left half-way"
            ping, answer, node_lost = (
                (await self._ping(record.id)) if node_alive else (Ping.UNRESPONSIVE, None, False)
            )
            decision = decide(
                node_id=record.node_id,
                alive_nodes=alive - {record.node_id} if node_lost else alive,
                ping=ping,
                missed_pings=self._missed.get(record.id, 0),
                max_missed=self._timeouts.max_missed_pings,
            )
            if decision.action is Action.WAIT:
                self._missed[record.id] = self._missed.get(record.id, 0) + 1
                return f"wait: {decision.reason}"
            if decision.action is Action.RECREATE:
                return await self._recreate(record, decision.avoid_node, decision.reason)
            self._missed.pop(record.id, None)
            if answer is not None:
                record = self.registry.update_sandbox(
                    record.id,
                    node_id=str(answer.get("node_id") or record.node_id),
                    last_seq=max(int(answer.get("last_seq", 0)), record.last_seq),
                )
                if answer.get("recovering"):
                    return "recovering"
            return await self._monitor(record)

    async def _monitor(self, record: SandboxRecord) -> str:
        report: MonitorReport = await self._backend.call(
            record.id,
            "monitor",
            timeout_s=record.config.ready_timeout
            + record.config.restart_backoff_max
            + self._timeouts.call,
        )
        followup = decide_after_monitor(report)
        if followup.action is Action.TEARDOWN:
            record = await self._stop(record)
            logger.info(
                "sandbox torn down by supervision",
                extra={
                    "sandbox_id": record.id,
                    "state": record.state.value,
                    "reason": followup.reason,
                },
            )
            return f"teardown: {followup.reason}"
        if followup.action is Action.MARK_FAILED:
            self.registry.update_sandbox(
                record.id, state=SandboxState.FAILED, error=followup.reason
            )
            return f"failed: {followup.reason}"
        info = await self._backend.call(record.id, "info", timeout_s=self._timeouts.call)
        self._store(record, info)
        return f"ok: {followup.reason}"

    async def _recreate(self, record: SandboxRecord, avoid: str | None, reason: str) -> str:
        logger.warning(
            "recreating sandbox actor",
            extra={"sandbox_id": record.id, "node": record.node_id, "reason": reason},
        )
        self._missed.pop(record.id, None)
        await self._backend.kill_sandbox(record.id)
        node_id = await self._choose(
            exclude=record.id, avoid=avoid, prefer=None if avoid else record.node_id
        )
        try:
            await self._start(record, node_id, recover=True)
        except StudioError as exc:
            return f"recreate failed: {exc}"
        metrics.record(lambda: metrics.actor_recoveries().inc(tags={"how": "recreated"}))
        return f"recreated on {node_id}: {reason}"

    # -- introspection ----------------------------------------------------

    async def orphans(self) -> dict[str, Any]:
        """Actors, worktrees and pid records that no live sandbox of the registry owns."""
        placed = {
            r.id: r.node_id
            for r in self.registry.list_sandboxes(states=_SUPERVISED | {SandboxState.FAILED})
        }
        actors = [sid for sid in await self._backend.sandbox_ids() if sid not in placed]
        worktrees: list[dict[str, str]] = []
        processes: list[dict[str, str]] = []
        for node in await self._nodes():
            if not node.alive:
                continue
            try:
                scan = await self._backend.scan_node(node.node_id, self.state_dir_for(node.node_id))
            except Exception as exc:  # one unreachable node must not hide the others
                logger.warning("node scan failed", extra={"node": node.node_id, "error": str(exc)})
                continue
            stray, pids = orphans_on_node(node.node_id, scan.worktrees, scan.pid_files, placed)
            worktrees += [{"node_id": node.node_id, "path": path} for path in stray]
            processes += [{"node_id": node.node_id, "path": path} for path in pids]
        return {"actors": actors, "worktrees": worktrees, "processes": processes}

    async def health(self) -> dict[str, Any]:
        """The manager's own status: registry, nodes, sandboxes by state, last pass."""
        nodes = await self._nodes()
        counts: dict[str, int] = {}
        for record in self.registry.list_sandboxes():
            counts[record.state.value] = counts.get(record.state.value, 0) + 1
        return {
            "ok": True,
            "registry": str(self.registry.path),
            "schema_version": self.registry.schema_version,
            "nodes_alive": sum(1 for n in nodes if n.alive),
            "sandboxes": counts,
            "last_reconcile": self._last_reconcile,
            "preparation": self.preparer.status(),
            "ready_sandboxes": self.ready.status(),
            "warm_pool": self.warm_pool.status(),
            "token_lookups": self.accounts.token_lookups,
        }
