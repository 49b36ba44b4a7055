"""The manager's decisions, as pure functions: where a sandbox goes, what to do with it.

Nothing here talks to Ray, git or the registry. The manager gathers what it
observes (nodes, one ping per sandbox, one monitor report) into the small
value types below, asks these functions what to do, and then does it through
its backend. Unit tests call them directly.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from studio.errors import ServiceUnavailable
from studio.models import MonitorReport
from studio.state import TERMINAL_STATES, SandboxState

__all__ = [
    "SLOT_RESOURCE",
    "Action",
    "Decision",
    "NodeView",
    "Ping",
    "choose_node",
    "decide",
    "decide_after_monitor",
    "node_load",
    "open_slots",
    "orphans_on_node",
]

# The custom resource a node declares to say how many sandboxes it can hold.
SLOT_RESOURCE = "sandbox_slot"


@dataclass(frozen=True)
class NodeView:
    """One Ray node as the manager sees it."""

    node_id: str
    alive: bool = True
    is_head: bool = False
    # Total sandbox_slot the node declares; None when it declares none.
    slots: float | None = None
    address: str = ""
    resources: Mapping[str, float] = field(default_factory=dict)


class Ping(StrEnum):
    """What pinging a sandbox's actor showed."""

    OK = "ok"
    # No actor by that name, or it died for good: nobody will answer ever again.
    GONE = "gone"
    # No answer in time; Ray may be restarting it.
    UNRESPONSIVE = "unresponsive"


class Action(StrEnum):
    """What the reconcile pass does with one sandbox."""

    MONITOR = "monitor"
    WAIT = "wait"
    RECREATE = "recreate"
    TEARDOWN = "teardown"
    MARK_FAILED = "mark_failed"
    UPDATE = "update"


@dataclass(frozen=True)
class Decision:
    """An action, why, and (for RECREATE) the node that must not be used."""

    action: Action
    reason: str
    avoid_node: str | None = None


def node_load(node_ids: Iterable[str | None]) -> dict[str, int]:
    """How many sandboxes each node holds, from the nodes of the live sandboxes."""
    load: dict[str, int] = {}
    for node_id in node_ids:
        if node_id is not None:
            load[node_id] = load.get(node_id, 0) + 1
    return load


def choose_node(
    nodes: Iterable[NodeView],
    load: Mapping[str, int],
    *,
    avoid: Collection[str] = (),
    prefer: str | None = None,
) -> str:
    """The node a new (or recreated) sandbox goes to: alive, with a free slot, least loaded.

    When any node declares ``sandbox_slot``, only nodes that declare it and
    have a slot left qualify (a node without slots is not meant for
    sandboxes); otherwise every alive node does. ``prefer`` wins when it
    qualifies (a recovered sandbox keeps its node and its disk). Ties go to the
    node with more free slots, then to the lowest node id, so the answer is
    deterministic. :class:`ServiceUnavailable` when nothing qualifies.
    """
    nodes = list(nodes)
    candidates = _open_nodes(nodes, load, avoid)
    if not candidates:
        raise ServiceUnavailable(
            "no node has a free sandbox slot: tear down a sandbox or add a node "
            f"that declares the {SLOT_RESOURCE!r} resource",
            nodes=sum(1 for n in nodes if n.alive and n.node_id not in avoid),
        )
    for node in candidates:
        if node.node_id == prefer:
            return node.node_id
    best = min(candidates, key=lambda n: (load.get(n.node_id, 0), -_free_slots(n, load), n.node_id))
    return best.node_id


def _free_slots(node: NodeView, load: Mapping[str, int]) -> float:
    if node.slots is None:
        return float("inf")
    return node.slots - load.get(node.node_id, 0)


def _open_nodes(
    nodes: Iterable[NodeView], load: Mapping[str, int], avoid: Collection[str] = ()
) -> list[NodeView]:
    """The nodes a sandbox may go to (see :func:`choose_node`)."""
    alive = [n for n in nodes if n.alive and n.node_id not in avoid]
    slotted = any(n.slots is not None for n in alive)
    return [n for n in alive if not slotted or (n.slots is not None and _free_slots(n, load) >= 1)]


def open_slots(nodes: Iterable[NodeView], load: Mapping[str, int]) -> dict[str, float]:
    """Free sandbox slots of each node a sandbox may go to (inf where none are declared)."""
    return {n.node_id: _free_slots(n, load) for n in _open_nodes(nodes, load)}


def decide(
    *,
    node_id: str | None,
    alive_nodes: Collection[str],
    ping: Ping,
    missed_pings: int,
    max_missed: int,
) -> Decision:
    """What to do with an active sandbox given its node and its actor's answer to a ping.

    ``missed_pings`` counts unanswered pings before this one. A sandbox whose
    node is gone is recreated elsewhere even if its actor still answers
    (a hard node affinity to a dead node never schedules again).
    """
    if node_id is not None and node_id not in alive_nodes:
        return Decision(Action.RECREATE, f"its node {node_id} is gone", avoid_node=node_id)
    if ping is Ping.GONE:
        return Decision(Action.RECREATE, "its actor is gone")
    if ping is Ping.UNRESPONSIVE:
        if missed_pings + 1 >= max_missed:
            return Decision(Action.RECREATE, f"its actor missed {missed_pings + 1} pings in a row")
        return Decision(Action.WAIT, "its actor did not answer (it may be restarting)")
    return Decision(Action.MONITOR, "its actor answered")


def decide_after_monitor(report: MonitorReport) -> Decision:
    """What a monitor pass's report asks for: cull when idle, record a failure, or update.

    An actor that has already ended (its teardown or finalize ran, but the
    manager stopped before writing it) is torn down too: the teardown is
    idempotent, and the registry then records the end the actor reports.
    """
    if report.state in TERMINAL_STATES:
        return Decision(Action.TEARDOWN, f"its actor has already ended {report.state.value}")
    if report.idle_expired:
        return Decision(Action.TEARDOWN, f"idle for {report.idle_seconds:.0f} s, past its timeout")
    if report.state is SandboxState.FAILED:
        return Decision(Action.MARK_FAILED, report.error or "the sandbox failed")
    return Decision(Action.UPDATE, "healthy" if report.healthy else "not healthy yet")


def orphans_on_node(
    node_id: str,
    worktrees: Iterable[str],
    pid_files: Iterable[str],
    placed: Mapping[str, str | None],
) -> tuple[list[str], list[str]]:
    """The worktrees and pid records on ``node_id`` that no live sandbox there owns.

    ``placed`` maps each live sandbox id to its node. A worktree is named by its
    sandbox id; a pid record's file name contains it (``vite-<id>.json``). A
    sandbox recreated elsewhere leaves its old node's worktree an orphan.
    """
    here = {sid for sid, node in placed.items() if node == node_id}
    stray_worktrees = [p for p in worktrees if p.rstrip("/").rsplit("/", 1)[-1] not in here]
    stray_pids = [p for p in pid_files if not any(sid in p.rsplit("/", 1)[-1] for sid in here)]
    return stray_worktrees, stray_pids
