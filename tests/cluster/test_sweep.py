"""One node's orphan sweep on real worktrees, processes and mirrors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.sweep import sweep_node
from tests.cluster.planting import Planted, plant
from tests.support.gitrepo import git

LIVE = {"sb_live000001"}
KNOWN = {"sb_live000001", "sb_ended00001"}


@pytest.fixture
def planted(tmp_path: Path) -> Iterator[Planted]:
    result = plant(tmp_path / "state", tmp_path / "origin")
    try:
        yield result
    finally:
        result.close()


def test_dry_run_reports_and_changes_nothing(planted: Planted) -> None:
    report = sweep_node(planted.layout.root, LIVE, known=KNOWN, dry_run=True, grace_seconds=600)
    swept = {Path(p).name for p in report.worktrees}
    assert swept == {"sb_ended00001", "sb_unknown001"}
    assert {p["sandbox_id"] for p in report.processes} == {"sb_ended00001", "sb_unknown001"}
    assert all(p["alive"] for p in report.processes)
    assert report.stale_entries == [str(planted.stale)]
    assert not report.errors
    for sandbox_id, directory in planted.worktrees.items():
        if sandbox_id != "sb_stale00001":
            assert directory.is_dir()
            assert planted.alive(sandbox_id)
    assert "sb_stale00001" in git(planted.mirror.path, "worktree", "list")


def test_sweep_removes_orphans_and_keeps_live_fresh_and_every_branch(planted: Planted) -> None:
    report = sweep_node(planted.layout.root, LIVE, known=KNOWN, grace_seconds=600)
    assert not report.errors, report.errors
    assert {Path(p).name for p in report.worktrees} == {"sb_ended00001", "sb_unknown001"}
    assert {Path(p).parent.name for p in report.studio_dirs} == {"sb_ended00001", "sb_unknown001"}
    for gone in ("sb_ended00001", "sb_unknown001"):
        assert not planted.worktrees[gone].exists()
        assert not planted.alive(gone)
        assert not planted.pid_files[gone].exists()
    for kept in ("sb_live000001", "sb_fresh00001"):
        assert (planted.worktrees[kept] / ".studio").is_dir()
        assert planted.alive(kept)
        assert planted.pid_files[kept].exists()
    assert any("younger than the grace period" in s for s in report.skipped)
    listing = git(planted.mirror.path, "worktree", "list")
    assert "sb_stale00001" not in listing
    assert "sb_ended00001" not in listing
    # Every branch and its commit is still in the mirror.
    for sandbox_id in planted.worktrees:
        assert planted.branch_exists(sandbox_id)
        log = git(planted.mirror.path, "log", "--format=%s", f"design/studio-{sandbox_id[3:]}")
        assert f"edit by {sandbox_id}" in log
    # A second pass finds nothing more to do.
    again = sweep_node(planted.layout.root, LIVE, known=KNOWN, grace_seconds=600)
    assert (again.worktrees, again.processes, again.stale_entries) == ([], [], [])


def test_plain_directory_named_like_a_sandbox_is_removed_others_left(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "worktrees" / "sb_plain00001" / ".studio").mkdir(parents=True)
    (state / "worktrees" / "notes").mkdir()
    report = sweep_node(state, set(), known={"sb_plain00001"})
    assert report.worktrees == [str(state / "worktrees" / "sb_plain00001")]
    assert not (state / "worktrees" / "sb_plain00001").exists()
    assert (state / "worktrees" / "notes").is_dir()
    assert any("not named like a sandbox" in s for s in report.skipped)


def test_empty_state_dir_is_fine(tmp_path: Path) -> None:
    report = sweep_node(tmp_path / "nothing", set())
    assert report.as_dict()["errors"] == []
