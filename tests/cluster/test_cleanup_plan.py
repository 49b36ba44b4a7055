"""The cleanup job's pure decision: which sandboxes go, which stay live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cluster.cleanup import plan_teardowns
from studio.models import SandboxInfo
from studio.naming import READY_OWNER
from studio.state import SandboxState

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def sandbox(ident: str, status: SandboxState, idle_hours: float, owner: str = "ann") -> SandboxInfo:
    return SandboxInfo(
        id=ident,
        owner=owner,
        status=status,
        branch=f"design/studio-{ident[3:]}",
        last_activity=NOW - timedelta(hours=idle_hours),
    )


def test_failed_and_idle_go_the_rest_stays_live() -> None:
    plan = plan_teardowns(
        [
            sandbox("sb_running001", SandboxState.RUNNING, 1),
            sandbox("sb_idle000001", SandboxState.RUNNING, 5),
            sandbox("sb_restart001", SandboxState.RESTARTING, 5),
            sandbox("sb_failed0001", SandboxState.FAILED, 0),
            sandbox("sb_start00001", SandboxState.STARTING, 9),
            sandbox("sb_stopped001", SandboxState.STOPPED, 9),
            sandbox("sb_final00001", SandboxState.FINALIZED, 9),
        ],
        idle_seconds=4 * 3600,
        now=NOW,
    )
    assert plan.teardown == {
        "sb_idle000001": "idle for 5.00 h",
        "sb_restart001": "idle for 5.00 h",
        "sb_failed0001": "failed",
    }
    assert plan.live == {"sb_running001", "sb_start00001"}
    assert "sb_stopped001" in plan.known and "sb_stopped001" not in plan.live


def test_a_held_sandbox_stays_however_long_it_waited_unless_it_failed() -> None:
    plan = plan_teardowns(
        [
            sandbox("sb_held000001", SandboxState.RUNNING, 50, owner=READY_OWNER),
            sandbox("sb_held000002", SandboxState.RESTARTING, 50, owner=READY_OWNER),
            sandbox("sb_held000003", SandboxState.FAILED, 0, owner=READY_OWNER),
        ],
        idle_seconds=4 * 3600,
        now=NOW,
    )
    assert plan.teardown == {"sb_held000003": "failed"}
    assert plan.live == {"sb_held000001", "sb_held000002"}


def test_nothing_known_nothing_to_do() -> None:
    plan = plan_teardowns([], idle_seconds=1, now=NOW)
    assert (plan.teardown, plan.live, plan.known) == ({}, set(), set())
