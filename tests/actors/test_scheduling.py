"""The manager's pure decisions: node choice and what to do with each observed sandbox."""

from __future__ import annotations

import pytest

from actors.scheduling import (
    Action,
    Ping,
    choose_node,
    decide,
    decide_after_monitor,
    node_load,
    open_slots,
    orphans_on_node,
)
from studio.errors import ServiceUnavailable
from studio.models import MonitorReport
from studio.state import SandboxState
from tests.actors.fake_backend import node


def test_node_load_counts_placed_sandboxes() -> None:
    assert node_load(["a", "b", "a", None]) == {"a": 2, "b": 1}


def test_least_loaded_node_wins() -> None:
    nodes = [node("a"), node("b"), node("c")]
    assert choose_node(nodes, {"a": 2, "b": 1, "c": 3}) == "b"


def test_ties_go_to_more_free_slots_then_lowest_id() -> None:
    assert choose_node([node("b", slots=2), node("a", slots=4)], {}) == "a"
    assert choose_node([node("b", slots=4), node("a", slots=4)], {}) == "a"
    assert choose_node([node("a", slots=2), node("b", slots=8)], {"a": 1, "b": 1}) == "b"


def test_full_and_dead_nodes_are_skipped() -> None:
    nodes = [node("a", slots=1), node("b", alive=False), node("c", slots=2)]
    assert choose_node(nodes, {"a": 1, "c": 1}) == "c"


def test_nodes_without_slots_take_no_sandbox_when_others_declare_them() -> None:
    # The head of a real cluster declares no sandbox_slot: sandboxes go to workers.
    nodes = [node("head", slots=None, head=True), node("w1", slots=2)]
    assert choose_node(nodes, {"w1": 0}) == "w1"


def test_without_any_slots_every_alive_node_qualifies() -> None:
    nodes = [node("a", slots=None), node("b", slots=None)]
    assert choose_node(nodes, {"a": 5}) == "b"


def test_no_free_slot_is_service_unavailable() -> None:
    with pytest.raises(ServiceUnavailable, match="no node has a free sandbox slot"):
        choose_node([node("a", slots=1)], {"a": 1})
    with pytest.raises(ServiceUnavailable):
        choose_node([], {})


def test_avoid_and_prefer() -> None:
    nodes = [node("a"), node("b")]
    assert choose_node(nodes, {"b": 3}, avoid={"a"}) == "b"
    assert choose_node(nodes, {"b": 3}, prefer="b") == "b"
    # A preferred node that is full does not win.
    assert choose_node([node("a"), node("b", slots=1)], {"b": 1}, prefer="b") == "a"


def test_open_slots_are_the_free_slots_of_the_nodes_a_sandbox_may_go_to() -> None:
    nodes = [
        node("head", slots=None, head=True),
        node("a", slots=4),
        node("full", slots=1),
        node("dead", alive=False),
    ]
    assert open_slots(nodes, {"a": 1, "full": 1}) == {"a": 3}
    assert open_slots([node("x", slots=None)], {"x": 7}) == {"x": float("inf")}
    assert open_slots(iter([node("a", slots=2)]), {}) == {"a": 2}


def test_choose_node_takes_any_iterable() -> None:
    assert choose_node(iter([node("a"), node("b")]), {"a": 1}) == "b"


def test_decide() -> None:
    alive = {"a", "b"}
    ok = decide(node_id="a", alive_nodes=alive, ping=Ping.OK, missed_pings=0, max_missed=3)
    assert ok.action is Action.MONITOR
    gone = decide(node_id="a", alive_nodes=alive, ping=Ping.GONE, missed_pings=0, max_missed=3)
    assert gone.action is Action.RECREATE and gone.avoid_node is None
    lost = decide(node_id="z", alive_nodes=alive, ping=Ping.OK, missed_pings=0, max_missed=3)
    assert lost.action is Action.RECREATE and lost.avoid_node == "z"
    slow = decide(
        node_id="a", alive_nodes=alive, ping=Ping.UNRESPONSIVE, missed_pings=1, max_missed=3
    )
    assert slow.action is Action.WAIT
    dead = decide(
        node_id="a", alive_nodes=alive, ping=Ping.UNRESPONSIVE, missed_pings=2, max_missed=3
    )
    assert dead.action is Action.RECREATE and "3 pings" in dead.reason


def _report(**fields: object) -> MonitorReport:
    values: dict[str, object] = {"state": SandboxState.RUNNING, "healthy": True, "idle_seconds": 1}
    values.update(fields)
    return MonitorReport.model_validate(values)


def test_decide_after_monitor() -> None:
    assert decide_after_monitor(_report()).action is Action.UPDATE
    idle = decide_after_monitor(_report(idle_expired=True, idle_seconds=20000))
    assert idle.action is Action.TEARDOWN and "20000" in idle.reason
    failed = decide_after_monitor(_report(state=SandboxState.FAILED, healthy=False, error="x"))
    assert failed.action is Action.MARK_FAILED and failed.reason == "x"
    # An actor that already ended is torn down (idempotent) so its end is recorded,
    # idle or not.
    for state in (SandboxState.STOPPED, SandboxState.FINALIZED):
        for idle_expired in (False, True):
            ended = decide_after_monitor(
                _report(state=state, healthy=False, idle_expired=idle_expired)
            )
            assert ended.action is Action.TEARDOWN and state.value in ended.reason


def test_orphans_on_node() -> None:
    placed = {"sb_here01": "a", "sb_moved1": "b"}
    worktrees = ["/s/worktrees/sb_here01", "/s/worktrees/sb_moved1", "/s/worktrees/sb_gone01/"]
    pids = ["/s/run/vite-sb_here01.json", "/s/run/vite-sb_gone01.json"]
    stray, stray_pids = orphans_on_node("a", worktrees, pids, placed)
    assert stray == ["/s/worktrees/sb_moved1", "/s/worktrees/sb_gone01/"]
    assert stray_pids == ["/s/run/vite-sb_gone01.json"]
