"""The node-loss scenario: its timing split and result row, and (slow) one real repeat.

The split and the row are pure arithmetic on moments and samples. The slow
test runs the scenario as the harness does in quick mode (one repeat: a
cluster of three nodes in a child process, a sandbox, a few durable edits,
its node removed) and checks what it reports and that nothing of it is left;
no timing is asserted.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import psutil
import pytest

from benchmarks.context import RunContext
from benchmarks.node_loss import (
    NODE_LOSS_SCENARIOS,
    PHASES,
    node_loss_result,
    setup_marks,
    split_recovery,
)
from benchmarks.results import markdown_table, merge_results


def _sample(total: float, dead: float = 13.0) -> dict[str, object]:
    return {
        **split_recovery(100.0, 100.0 + dead, 100.0 + dead + 1.0, 100.0 + dead + 1.25, 100 + total),
        "noticed_s": 0.75,
        "edits": 20,
        "health_check_interval_s": 1.0,
    }


def test_the_phases_follow_each_other_and_add_up_to_the_total() -> None:
    split = split_recovery(100.0, 113.5, 114.0, 114.25, 115.0)
    assert split == {
        "dead_s": 13.5,
        "recreated_s": 0.5,
        "worktree_s": 0.25,
        "vite_s": 0.75,
        "total_s": 15.0,
    }
    assert sum(split[f"{name}_s"] for name in PHASES) == split["total_s"]


def test_an_actor_recreated_before_the_node_was_declared_dead_shows_as_negative() -> None:
    split = split_recovery(100.0, 110.0, 109.0, 109.5, 111.0)
    assert split["recreated_s"] == -1.0
    assert sum(split[f"{name}_s"] for name in PHASES) == split["total_s"] == 11.0


def test_setup_marks_are_the_first_word_of_each_step() -> None:
    events = [
        ({"status": "starting", "recovered": True}, 10.0),
        ({"status": "starting", "step": "mirror"}, 10.1),
        ({"status": "starting", "step": "worktree"}, 10.2),
        ({"status": "starting", "step": "install"}, 10.4),
        ({"status": "starting", "step": "vite"}, 10.5),
        ({"status": "running", "recovered": True}, 11.0),
        ({"status": "running"}, 12.0),
    ]
    marks = setup_marks(events)
    assert marks["starting"] == 10.0
    assert marks["install"] == 10.4
    assert marks["running"] == 11.0
    with pytest.raises(RuntimeError, match="install"):
        setup_marks(events[:2])


def test_the_row_takes_totals_as_samples_and_phase_medians_as_figures() -> None:
    result = node_loss_result([_sample(15.0), _sample(25.0, dead=20.0), _sample(16.0)], [])
    assert result.name == "node_loss"
    assert result.samples == [15.0, 25.0, 16.0]
    assert result.stats["median"] == 16.0
    assert result.figures["dead_p50_s"] == 13.0
    assert result.figures["recreated_p50_s"] == 1.0
    assert result.figures["worktree_p50_s"] == 0.25
    assert result.figures["noticed_p50_s"] == 0.75
    assert result.figures["edits"] == 20
    assert result.figures["health_check_interval_s"] == 1.0
    assert result.verdict() is True
    assert "repeat 1: dead 20.00, recreated 1.00, worktree 0.25, vite 3.75 (total 25.00 s)" in (
        result.notes
    )
    slow = node_loss_result([_sample(21.0)], [])
    assert slow.verdict() is False


def test_a_failed_repeat_counts_against_the_target_and_is_noted() -> None:
    result = node_loss_result([_sample(15.0)], ["repeat 1: RuntimeError: 1 of 20 commits lost"])
    assert result.failures == 1
    assert result.verdict() is False
    assert any("commits lost" in note for note in result.notes)
    import datetime as dt

    document = merge_results(
        None, [result], machine={}, quick=False, now=dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    )
    table = markdown_table(document)
    assert "| 9. node lost -> sandbox serving on another node, commits kept | 1 |" in table
    assert "failures: 1" in table


def _processes_mentioning(path: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(str(path) in part for part in proc.info["cmdline"] or []):
                found.append(proc)
    return found


@pytest.mark.slow
def test_one_quick_repeat_recovers_every_commit_and_leaves_nothing(tmp_path: Path) -> None:
    [scenario] = NODE_LOSS_SCENARIOS
    ctx = RunContext(quick=True, work_dir=tmp_path / "run")
    with ctx:
        result = scenario.run(ctx)
        assert result.error is None and result.failures == 0, result.notes
        assert len(result.samples) == 1
        for name in PHASES:
            assert isinstance(result.figures[f"{name}_p50_s"], float), name
        assert result.figures["edits"] == 3
        assert _processes_mentioning(ctx.work_dir) == []
