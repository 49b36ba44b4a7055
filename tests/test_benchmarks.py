"""The benchmark harness in quick mode: it completes and writes valid results.

No timing is asserted: the numbers of a 2-core machine shared with other test
runs mean nothing here. What is checked is that every scenario ran against the
real service and that the harness left nothing behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.node_loss import NODE_LOSS_SCENARIOS
from benchmarks.results import ScenarioResult, Target, apply_floor, markdown_table, merge_results
from benchmarks.scenarios import SCENARIOS
from benchmarks.stats import percentile, summarize

ROOT = Path(__file__).resolve().parent.parent


def test_percentiles_interpolate_between_ranks() -> None:
    samples = [4.0, 1.0, 3.0, 2.0]
    assert percentile(samples, 50) == 2.5
    assert percentile(samples, 0) == 1.0
    assert percentile(samples, 100) == 4.0
    assert summarize([]) == {"n": 0}
    assert summarize([2.0])["p99"] == 2.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_targets_ratio_and_merge_per_scenario() -> None:
    import datetime as dt

    floor = ScenarioResult("floor", "floor", samples=[1.0, 1.0])
    measured = ScenarioResult(
        "thing",
        "thing",
        samples=[1.2, 1.4],
        floor="floor",
        targets=[Target("median", 1.5, "p50 <= 1.5"), Target("ratio_to_floor", 1.2, "<= 1.2x")],
    )
    apply_floor([floor, measured])
    assert measured.figures["ratio_to_floor"] == 1.3
    assert measured.verdict() is False
    fast_but_failing = ScenarioResult(
        "edits", "edits", samples=[0.05], failures=1, targets=[Target("median", 0.1, "p50")]
    )
    assert fast_but_failing.verdict() is False
    at_least = Target("fit", 40, ">= 40", at_least=True)
    assert at_least.check({"fit": 41}) is True
    assert at_least.check({}) is None

    now = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    first = merge_results(None, [floor, measured], machine={}, quick=True, now=now)
    second = merge_results(
        first, [ScenarioResult("floor", "again")], machine={}, quick=False, now=now
    )
    assert set(second["scenarios"]) == {"floor", "thing"}
    assert second["scenarios"]["floor"]["title"] == "again"
    assert "| thing (quick) |" in markdown_table(second)


# The quick run's time: ~150 s alone on 2 cores, 175-190 s in the suite, ~300 s beside
# a second test process.
QUICK_RUN_TIMEOUT = 900


def run_stopping_on_timeout(argv: list[str], timeout: float) -> tuple[int, str]:
    """Run ``argv`` (a benchmark run) to its end; its exit code and stderr.

    Past ``timeout`` it gets SIGTERM, which a run unwinds on, stopping what it
    started (service, Ray, Vites; benchmarks/_signals.py); a SIGKILL, as
    ``subprocess.run`` sends, would leave its sandboxes' Vites behind.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            _out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                _out, err = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                _out, err = proc.communicate()
            return proc.returncode, f"timed out after {timeout} s; stderr:\n{err}"
    return proc.returncode, err


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(QUICK_RUN_TIMEOUT + 180)
def test_quick_run_writes_every_scenario(tmp_path: Path) -> None:
    # All but the node loss, which tests/benchmarks/test_node_loss.py runs as a quick run
    # does (its cluster of three nodes is a minute of this test's time otherwise).
    [node_loss] = NODE_LOSS_SCENARIOS
    names = [scenario.name for scenario in SCENARIOS if scenario is not node_loss]
    results_dir = tmp_path / "results"
    argv = [sys.executable, "-m", "benchmarks", "run", "--quick", "--only", ",".join(names)]
    code, stderr = run_stopping_on_timeout(
        [*argv, "--results-dir", str(results_dir)], QUICK_RUN_TIMEOUT
    )
    assert code == 0, stderr[-6000:]
    [json_file] = results_dir.glob("*.json")
    document = json.loads(json_file.read_text())
    scenarios = document["scenarios"]
    assert sorted(scenarios) == sorted(names)
    for name, entry in scenarios.items():
        assert entry["error"] is None, f"{name}: {entry['error']}"
        assert entry["quick"] is True
        assert entry["stats"]["n"] >= 1, name
    assert document["machine"]["cpu_count"] >= 1
    assert json_file.with_suffix(".md").read_text().startswith("# Benchmarks")


def test_run_context_starts_each_resource_once_and_stops_them_newest_first() -> None:
    import contextlib

    from benchmarks.context import RunContext

    log: list[str] = []

    def factory(name: str):
        @contextlib.contextmanager
        def start(ctx: RunContext):
            log.append(f"start {name}")
            yield name
            log.append(f"stop {name}")

        return start

    def broken(ctx: RunContext):
        log.append("start broken")
        raise OSError("no port")

    ctx = RunContext(quick=True)
    work_dir = ctx.work_dir
    with ctx:
        assert ctx.count(100, 2) == 2
        assert ctx.resource("a", factory("a")) == "a"
        assert ctx.resource("b", factory("b")) == "b"
        assert ctx.resource("a", factory("a")) == "a"
        for _ in range(2):
            with pytest.raises((OSError, RuntimeError)):
                ctx.resource("broken", broken)
    assert log == ["start a", "start b", "start broken", "stop b", "stop a"]
    assert not work_dir.exists()
