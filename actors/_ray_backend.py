"""Every ``ray.*`` call the manager makes, behind one small interface.

"All Ray API calls should be made here" (Ray Serve's deployment_state): the
manager's scheduling and reconcile logic only sees :class:`ClusterBackend`, so
tests drive it with a fake (``tests/actors/fake_backend.py``) and no Ray at
all. :class:`RayBackend` is the real one. Its errors, translated by
:mod:`actors.ray_errors`, are :class:`ActorGone` (no actor will ever answer
under that name) and :class:`ActorUnresponsive` (no answer in time); a
:class:`StudioError` raised inside an actor comes out as itself, unwrapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import ray
from ray import ObjectRefGenerator
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors._node_prep import NodeWork, PrepReport, prepare_task
from actors._prestart import idle_workers, preloading_workers, prestart_workers
from actors.ray_errors import (
    ActorGone,
    ActorUnresponsive,
    ActorUnschedulable,
    error_inside,
    to_actor_error,
)
from actors.scheduling import SLOT_RESOURCE, NodeView
from studio.config import ComponentStudioConfig
from studio.errors import StudioError
from studio.layout import StateLayout
from studio.models import RepositorySource
from studio.naming import ACTOR_NAMESPACE, SANDBOX_ID_PATTERN, sandbox_actor_name

__all__ = [
    "ActorGone",
    "ActorUnresponsive",
    "ActorUnschedulable",
    "ClusterBackend",
    "NodeScan",
    "RayBackend",
    "SandboxSpec",
    "scan_state_dir",
]

logger = logging.getLogger(__name__)

_HEAD_RESOURCE = "node:__internal_head__"
_SANDBOX_PREFIX = "sandbox:"
# ray.kill releases the name asynchronously: a create right after may still see it taken.
_NAME_RELEASE_TRIES = 50
_NAME_RELEASE_WAIT = 0.1
# A node's preparation may run npm ci of a large repository with a cold npm cache.
_PREPARE_TIMEOUT = 900.0
# How long a stopped preparation may take to remove what it had started (its Vite).
_PREPARE_STOP_WAIT = 15.0


@dataclass(frozen=True)
class SandboxSpec:
    """What a sandbox actor is created with; ``settings`` hold its node's state dir."""

    sandbox_id: str
    node_id: str
    owner: str
    repository: RepositorySource
    config: ComponentStudioConfig
    settings: dict[str, Any]
    start_seq: int = 1
    max_restarts: int = -1
    viewer_token: str = ""


@dataclass(frozen=True)
class NodeScan:
    """What lies in one node's state dir: sandbox worktrees and pid records."""

    node_id: str
    worktrees: list[str]
    pid_files: list[str]


class ClusterBackend(Protocol):
    """The manager's view of the cluster: its nodes, the sandbox actors, the warm pools."""

    async def nodes(self) -> list[NodeView]:
        """Every node Ray knows, alive or dead."""
        ...

    async def create_sandbox(self, spec: SandboxSpec) -> None:
        """Create the sandbox's detached actor on ``spec.node_id`` (not its setup)."""
        ...

    async def call(
        self, sandbox_id: str, method: str, *args: Any, timeout_s: float, **kwargs: Any
    ) -> Any:
        """Call an actor method; raises ActorGone, ActorUnresponsive or the StudioError inside."""
        ...

    async def kill_sandbox(self, sandbox_id: str) -> None:
        """Kill the sandbox's actor for good (no restart); nothing if there is none."""
        ...

    async def sandbox_ids(self) -> list[str]:
        """Ids of the live ``sandbox:*`` actors in the namespace."""
        ...

    async def scan_node(self, node_id: str, state_dir: str) -> NodeScan:
        """List the worktrees and pid records in ``state_dir`` on ``node_id``."""
        ...

    async def idle_workers(self, node_id: str) -> int | None:
        """Never-used workers waiting on ``node_id`` (the warm pool); None when unknown."""
        ...

    async def prestart_workers(self, node_id: str, count: int) -> None:
        """Ask ``node_id`` to boot ``count`` spare workers for the next actors (best effort)."""
        ...

    async def preloading_workers(self, node_id: str) -> int | None:
        """Spares on ``node_id`` whose preload is not over (the warm pool); None when unknown."""
        ...

    def prepare_node(self, work: NodeWork) -> AsyncIterator[PrepReport]:
        """Prepare ``work.node_id`` for its sandboxes (:mod:`actors._node_prep`); its reports."""
        ...


def scan_state_dir(node_id: str, state_dir: str) -> NodeScan:
    """:class:`NodeScan` of ``state_dir`` on this node."""
    layout = StateLayout(Path(state_dir))
    worktrees = (
        sorted(str(p) for p in layout.worktrees.iterdir() if p.is_dir())
        if layout.worktrees.is_dir()
        else []
    )
    pid_files = sorted(str(p) for p in layout.run.glob("*.json")) if layout.run.is_dir() else []
    return NodeScan(node_id=node_id, worktrees=worktrees, pid_files=pid_files)


@ray.remote(num_cpus=0, max_retries=0)
def _scan_task(node_id: str, state_dir: str) -> NodeScan:
    return scan_state_dir(node_id, state_dir)


class RayBackend:
    """:class:`ClusterBackend` on the Ray this process is connected to."""

    def __init__(self, namespace: str = ACTOR_NAMESPACE) -> None:
        self._namespace = namespace
        self._handles: dict[str, Any] = {}
        # Whether a live node declares sandbox slots, as of the last node list (the
        # manager lists the nodes before each creation): spares the actor options a
        # GCS round trip (ray.cluster_resources) on every create.
        self._slots_declared: bool | None = None
        # Spares waiting on each node as of its last count (the warm pool counts through
        # idle_workers), less the sandbox actors sent to them since. A sandbox actor
        # takes the spares' runtime env only when one waits: with it and no spare, Ray
        # would start its worker through the setup_worker shim, slower than a plain one
        # (docs/operations.md, "Warm pool").
        self._spares: dict[str, int] = {}

    async def nodes(self) -> list[NodeView]:
        raw = await asyncio.to_thread(ray.nodes)
        views = []
        for node in raw:
            resources = {str(k): float(v) for k, v in node.get("Resources", {}).items()}
            views.append(
                NodeView(
                    node_id=str(node["NodeID"]),
                    alive=bool(node["Alive"]),
                    is_head=_HEAD_RESOURCE in resources,
                    slots=resources.get(SLOT_RESOURCE),
                    address=str(node.get("NodeManagerAddress", "")),
                    resources=resources,
                )
            )
        self._slots_declared = any(v.alive and v.slots is not None for v in views)
        return views

    def _handle(self, sandbox_id: str) -> Any:
        handle = self._handles.get(sandbox_id)
        if handle is None:
            try:
                handle = ray.get_actor(sandbox_actor_name(sandbox_id), namespace=self._namespace)
            except ValueError as exc:
                raise ActorGone(f"no actor for sandbox {sandbox_id}") from exc
            self._handles[sandbox_id] = handle
        return handle

    async def create_sandbox(self, spec: SandboxSpec) -> None:
        # Imported here: the actor module imports the sandbox, which the manager
        # process needs only when it creates one.
        from actors.sandbox_actor import SandboxActor, sandbox_actor_options

        on_spare = await self._take_spare(spec.node_id)
        options = sandbox_actor_options(
            spec.sandbox_id,
            node_id=spec.node_id,
            max_restarts=spec.max_restarts,
            use_slot=self._slots_declared,
            on_spare=on_spare,
        )
        args = (
            spec.sandbox_id,
            spec.repository.model_dump(mode="json"),
            spec.config.model_dump(mode="json"),
            spec.settings,
            spec.owner,
            spec.start_seq,
            spec.viewer_token,
        )
        self._handles.pop(spec.sandbox_id, None)
        for attempt in range(_NAME_RELEASE_TRIES):
            try:
                handle = SandboxActor.options(**options).remote(*args)  # type: ignore[attr-defined]
                break
            except ValueError:
                if attempt == _NAME_RELEASE_TRIES - 1:
                    raise
                await asyncio.sleep(_NAME_RELEASE_WAIT)
        self._handles[spec.sandbox_id] = handle

    async def call(
        self, sandbox_id: str, method: str, *args: Any, timeout_s: float, **kwargs: Any
    ) -> Any:
        handle = await asyncio.to_thread(self._handle, sandbox_id)
        ref = getattr(handle, method).remote(*args, **kwargs)
        try:
            return await asyncio.wait_for(ref, timeout_s)
        except Exception as exc:
            error = to_actor_error(exc, sandbox_id, method)
            if error is exc:
                raise
            if isinstance(error, ActorGone):
                self._handles.pop(sandbox_id, None)
            if isinstance(error, StudioError):
                raise error from None
            raise error from exc

    async def _take_spare(self, node_id: str) -> bool:
        """Whether a spare waits on ``node_id`` for the next sandbox actor (then it is taken).

        A node the warm pool never counted has none. One it counted none on is
        counted again: a spare may have registered since.
        """
        if node_id not in self._spares:
            return False
        if self._spares[node_id] <= 0:
            await self.idle_workers(node_id)
        if self._spares[node_id] <= 0:
            return False
        self._spares[node_id] -= 1
        return True

    async def kill_sandbox(self, sandbox_id: str) -> None:
        try:
            handle = await asyncio.to_thread(self._handle, sandbox_id)
        except ActorGone:
            return
        finally:
            self._handles.pop(sandbox_id, None)
        ray.kill(handle, no_restart=True)

    async def sandbox_ids(self) -> list[str]:
        named = await asyncio.to_thread(ray.util.list_named_actors, all_namespaces=True)
        ids = []
        for entry in named:
            name = str(entry["name"])
            if entry["namespace"] != self._namespace or not name.startswith(_SANDBOX_PREFIX):
                continue
            sandbox_id = name.removeprefix(_SANDBOX_PREFIX)
            if SANDBOX_ID_PATTERN.fullmatch(sandbox_id):
                ids.append(sandbox_id)
        return sorted(ids)

    async def scan_node(self, node_id: str, state_dir: str) -> NodeScan:
        strategy = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
        ref = _scan_task.options(scheduling_strategy=strategy).remote(node_id, state_dir)
        result: NodeScan = await asyncio.wait_for(ref, 30)
        return result

    async def idle_workers(self, node_id: str) -> int | None:
        count = await asyncio.to_thread(idle_workers, node_id)
        # A raylet that cannot count gets one spare per fill from the pool: the next
        # sandbox actor is sent to it, or the spares would pile up unused.
        self._spares[node_id] = 1 if count is None else count
        return count

    async def prestart_workers(self, node_id: str, count: int) -> None:
        await asyncio.to_thread(prestart_workers, node_id, count)

    async def preloading_workers(self, node_id: str) -> int | None:
        return await asyncio.to_thread(preloading_workers, node_id)

    async def prepare_node(self, work: NodeWork) -> AsyncIterator[PrepReport]:
        strategy = NodeAffinitySchedulingStrategy(node_id=work.node_id, soft=False)
        # A streaming task's remote() is an ObjectRefGenerator (Ray's stubs say ObjectRef).
        reports = cast(
            ObjectRefGenerator,
            prepare_task.options(scheduling_strategy=strategy).remote(
                work.settings, list(work.repositories)
            ),
        )
        try:
            async with asyncio.timeout(_PREPARE_TIMEOUT):
                async for ref in reports:
                    try:
                        report: PrepReport = await ref
                    except Exception as exc:
                        # The template part raised on the node: its own error, unwrapped.
                        inside = error_inside(exc)
                        if inside is not None:
                            raise inside from None
                        raise
                    yield report
        except (asyncio.CancelledError, TimeoutError):
            # The task's cleanup (its scratch worktree, its Vite) runs on the interrupt.
            ray.cancel(reports)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reports.completed(), _PREPARE_STOP_WAIT)
            raise
