"""A fake cluster for the manager's logic: nodes, named actors and their answers, in memory.

:class:`FakeBackend` implements :class:`actors._ray_backend.ClusterBackend`. Each
"actor" is a :class:`FakeSandbox` that answers the SandboxActor's methods the
way the real one does (states, infos, monitor reports) without git or Vite.
Tests script misbehaviour through it: an actor that is gone, one that does not
answer, one whose calls raise, a setup that fails, a node that dies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from actors._node_prep import READY, TEMPLATE, NodeWork, PrepReport
from actors._ray_backend import (
    ActorGone,
    ActorUnresponsive,
    ActorUnschedulable,
    NodeScan,
    SandboxSpec,
)
from actors.scheduling import NodeView
from studio.errors import InvalidState, StudioError
from studio.models import CommitInfo, FinalizeResult, MonitorReport, SandboxInfo
from studio.state import TERMINAL_STATES, SandboxState

__all__ = ["FakeBackend", "FakeSandbox", "node"]


def node(
    node_id: str,
    *,
    slots: float | None = 4,
    head: bool = False,
    alive: bool = True,
    address: str = "",
) -> NodeView:
    """A node declaring ``slots`` sandbox slots."""
    return NodeView(node_id=node_id, alive=alive, is_head=head, slots=slots, address=address)


@dataclass
class FakeSandbox:
    """One fake sandbox actor."""

    spec: SandboxSpec
    state: SandboxState = SandboxState.PENDING
    last_seq: int = 0
    port: int | None = None
    commits: list[CommitInfo] = field(default_factory=list)
    idle: bool = False
    failed: str | None = None
    setup_error: StudioError | None = None
    finalize_error: StudioError | None = None
    # The pull request a finalize opens (None: a local repository, no PR).
    pr_number: int | None = None
    # When set, setup (teardown) waits for it: a setup (teardown) still under way.
    setup_gate: asyncio.Event | None = None
    teardown_gate: asyncio.Event | None = None
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)

    def _info(self) -> SandboxInfo:
        return SandboxInfo(
            id=self.spec.sandbox_id,
            owner=self.spec.owner,
            status=self.state,
            branch="design/studio-" + self.spec.sandbox_id.removeprefix("sb_"),
            base_commit="a" * 40,
            git_commits=list(self.commits),
            last_activity=datetime.now(UTC) - timedelta(hours=5 if self.idle else 0),
            node=self.spec.node_id,
            port=self.port,
            error=self.failed,
            last_seq=self.last_seq,
            pr_url=self._pr_url() if self.state is SandboxState.FINALIZED else None,
            pr_number=self.pr_number if self.state is SandboxState.FINALIZED else None,
        )

    def _pr_url(self) -> str | None:
        return None if self.pr_number is None else f"https://forge.test/pull/{self.pr_number}"

    async def ping(self) -> dict[str, Any]:
        return {
            "pid": 1,
            "node_id": self.spec.node_id,
            "state": self.state.value,
            "last_seq": self.last_seq,
            "recovering": False,
        }

    async def preparation_step(self, step: str) -> None:
        """What the real actor puts on its stream; the calls list is what tests read."""

    async def preparation_failed(self, message: str, code: str, output: list[str]) -> None:
        """Likewise: an error event on the real actor's stream."""

    async def setup(self, recover: bool = False) -> SandboxInfo:
        if self.setup_gate is not None:
            await self.setup_gate.wait()
        self.last_seq = max(self.last_seq, self.spec.start_seq - 1)
        if self.setup_error is not None:
            self.state = SandboxState.FAILED
            raise self.setup_error
        self.state = SandboxState.RUNNING
        self.port = 5200 + len(self.spec.sandbox_id)
        self.last_seq += 2
        return self._info()

    async def info(self) -> SandboxInfo:
        return self._info()

    async def monitor(self) -> MonitorReport:
        if self.failed:
            self.state = SandboxState.FAILED
        return MonitorReport(
            state=self.state,
            healthy=self.failed is None,
            idle_seconds=5 * 3600 if self.idle else 1.0,
            idle_expired=self.idle,
            error=self.failed,
        )

    async def teardown(self, final_state: str = "stopped") -> SandboxInfo:
        # As the real one: a teardown ends stopped or finalized, nothing else.
        if SandboxState(final_state) not in TERMINAL_STATES:
            raise InvalidState(f"a teardown ends stopped or finalized, not {final_state}")
        if self.teardown_gate is not None:
            await self.teardown_gate.wait()
        # Idempotent, as the real one: a sandbox that has ended keeps its end.
        if self.state not in TERMINAL_STATES:
            self.state = SandboxState(final_state)
        self.port = None
        return self._info()

    async def finalize(
        self,
        title: str,
        description: str,
        provider_spec: dict[str, Any] | None,
        images: bool = True,
    ) -> FinalizeResult:
        if self.finalize_error is not None:
            raise self.finalize_error
        self.state = SandboxState.FINALIZED
        self.port = None
        return FinalizeResult(
            pr_url=self._pr_url(),
            pr_number=self.pr_number,
            branch="b",
            pushed_to="origin",
            message=title,
            commits=len(self.commits),
        )


class FakeBackend:
    """An in-memory cluster; see the module docstring."""

    def __init__(self, nodes: list[NodeView]) -> None:
        self.node_views = list(nodes)
        self.actors: dict[str, FakeSandbox] = {}
        self.created: list[SandboxSpec] = []
        self.killed: list[str] = []
        # Killed actors, by id: what was asked of them before.
        self.dead: dict[str, FakeSandbox] = {}
        self.unresponsive: set[str] = set()
        self.unschedulable: set[str] = set()
        self.broken: set[str] = set()
        self.setup_errors: dict[str, StudioError] = {}
        self.next_setup_error: StudioError | None = None
        self.setup_gate: asyncio.Event | None = None
        self.worktrees: dict[str, list[str]] = {}
        self.pid_files: dict[str, list[str]] = {}
        self.scans: list[tuple[str, str]] = []
        # Spare workers asked for (one entry per worker), and those waiting per node: a
        # spare boots at once and each new actor takes one. None: the raylet cannot say.
        self.prestarts: list[str] = []
        self.idle: dict[str, int] | None = {}
        # How long each prestarted worker preloads after it registered (counted at once).
        self.preload_s = 0.0
        self.preloads_end: dict[str, list[float]] = {}
        # Node preparations asked for, and what the next one raises (then None again).
        self.preparations: list[NodeWork] = []
        self.next_prepare_error: Exception | None = None

    def kill_node(self, node_id: str) -> None:
        """Mark a node dead (its actors stop answering)."""
        self.node_views = [
            NodeView(n.node_id, alive=False, is_head=n.is_head, slots=n.slots)
            if n.node_id == node_id
            else n
            for n in self.node_views
        ]

    def _alive(self, node_id: str) -> bool:
        return any(n.node_id == node_id and n.alive for n in self.node_views)

    async def nodes(self) -> list[NodeView]:
        return list(self.node_views)

    async def create_sandbox(self, spec: SandboxSpec) -> None:
        if spec.sandbox_id in self.actors:
            raise ValueError(f"actor name sandbox:{spec.sandbox_id} is taken")
        self.created.append(spec)
        self.unresponsive.discard(spec.sandbox_id)
        self.unschedulable.discard(spec.sandbox_id)
        actor = FakeSandbox(spec)
        if self.idle and self.idle.get(spec.node_id, 0) > 0:
            self.idle[spec.node_id] -= 1
        if self.next_setup_error is not None:
            actor.setup_error, self.next_setup_error = self.next_setup_error, None
        actor.setup_gate = self.setup_gate
        self.actors[spec.sandbox_id] = actor

    async def call(
        self, sandbox_id: str, method: str, *args: Any, timeout_s: float, **kwargs: Any
    ) -> Any:
        actor = self.actors.get(sandbox_id)
        if actor is None:
            raise ActorGone(f"no actor for {sandbox_id}")
        if sandbox_id in self.unschedulable:
            raise ActorUnschedulable(f"{sandbox_id} is pinned to a node that is gone")
        if sandbox_id in self.unresponsive or not self._alive(actor.spec.node_id):
            raise ActorUnresponsive(f"{sandbox_id} did not answer {method}")
        actor.calls.append((method, args, kwargs))
        if sandbox_id in self.broken and method != "ping":
            raise RuntimeError(f"{method} of {sandbox_id} blew up")
        return await getattr(actor, method)(*args, **kwargs)

    async def kill_sandbox(self, sandbox_id: str) -> None:
        actor = self.actors.pop(sandbox_id, None)
        if actor is not None:
            self.killed.append(sandbox_id)
            self.dead[sandbox_id] = actor

    async def sandbox_ids(self) -> list[str]:
        return sorted(self.actors)

    async def idle_workers(self, node_id: str) -> int | None:
        return None if self.idle is None else self.idle.get(node_id, 0)

    async def prestart_workers(self, node_id: str, count: int) -> None:
        self.prestarts.extend([node_id] * count)
        if self.idle is not None:
            self.idle[node_id] = self.idle.get(node_id, 0) + count
        end = time.monotonic() + self.preload_s
        self.preloads_end.setdefault(node_id, []).extend([end] * count)

    async def preloading_workers(self, node_id: str) -> int | None:
        now = time.monotonic()
        return sum(1 for end in self.preloads_end.get(node_id, []) if end > now)

    async def scan_node(self, node_id: str, state_dir: str) -> NodeScan:
        self.scans.append((node_id, state_dir))
        return NodeScan(
            node_id=node_id,
            worktrees=list(self.worktrees.get(node_id, [])),
            pid_files=list(self.pid_files.get(node_id, [])),
        )

    async def prepare_node(self, work: NodeWork) -> AsyncIterator[PrepReport]:
        self.preparations.append(work)
        if self.next_prepare_error is not None:
            error, self.next_prepare_error = self.next_prepare_error, None
            raise error
        yield PrepReport(TEMPLATE, state=READY)
        for repository in work.repositories:
            yield PrepReport(repository.name, step="mirror")
            yield PrepReport(repository.name, state=READY)
