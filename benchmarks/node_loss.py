"""Scenario 9: a node is lost -> its sandbox serves again on another node, every commit kept.

Each repeat starts a cluster of its own (``benchmarks._cluster``: a head and
two worker nodes with ``sandbox_slot``, each with its own disk) and the
service's manager on it, creates a sandbox of the sample repository (its
origin is a local repository: with ``durable_commits`` every edit is answered
once it is pushed there), makes N edits, then removes the sandbox's node and
wipes that node's disk. Timed from the removal until the sandbox is RUNNING on
the other node and its Vite answers ``/@vite/client`` 200; then checked: the
branch there holds every answered commit and the last edit's content.

The time is split (:func:`split_recovery`) into: the node declared dead by
Ray (seen by polling ``ray.nodes()``), the actor recreated on the other node
(its ``starting`` status event; this includes the manager noticing, on its
next reconcile pass, ``noticed_s``), the worktree rebuilt from origin (up to
its ``install`` step event) and Vite ready (until served). Events and polls
share this machine's clock.

A process holds one Ray connection and the run may hold its local Ray
already: every repeat runs in a child process,
``python -m benchmarks.node_loss ROOT INSTALL_CACHE [--edits N] [--interval S]``,
which writes its sample to ``ROOT/sample.json`` and leaves nothing running.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._proc import EXAMPLE_REPO, ROOT, TEMPLATE_DIR, kill_group, spawn_group, wait_for
from benchmarks.context import RunContext, Scenario
from benchmarks.floors import install_cache_dir
from benchmarks.results import ScenarioResult, Target
from benchmarks.stats import summarize

__all__ = [
    "NODE_LOSS_SCENARIOS",
    "PHASES",
    "main",
    "node_loss_result",
    "run_repeat",
    "setup_marks",
    "split_recovery",
]

# The phases of a recovery, in order; their seconds add up to the total.
PHASES = ("dead", "recreated", "worktree", "vite")
TARGET_S = 20.0
# Vite ports of the cluster's sandboxes: a range of their own, below Ray's worker ports.
VITE_PORT_BASE = 6700
VITE_PORT_COUNT = 100
# One sandbox per repeat: one spare worker per node is what it can use.
WARM_WORKERS = 1
SLOTS_PER_NODE = 4
CREATE_TIMEOUT = 300.0
RECOVERY_TIMEOUT = 180.0
# A repeat is a cluster start, a create, the edits and the recovery.
REPEAT_TIMEOUT = 600.0
# How long a spare worker may take to boot on the node the sandbox will move to.
SPARE_TIMEOUT = 60.0
EDITED_FILE = "src/components/NodeLoss.tsx"


def split_recovery(
    removed: float, dead: float, actor_started: float, worktree_ready: float, serving: float
) -> dict[str, float]:
    """Seconds of each of :data:`PHASES` and ``total_s``, from the moments they ended.

    A phase that ended before the one before it (the manager recreated the
    actor before Ray declared the node dead) comes out negative: the sum
    stays the total.
    """
    starts = [removed, dead, actor_started, worktree_ready]
    ends = [dead, actor_started, worktree_ready, serving]
    split = {
        f"{name}_s": round(end - start, 3)
        for name, start, end in zip(PHASES, starts, ends, strict=True)
    }
    split["total_s"] = round(serving - removed, 3)
    return split


def node_loss_result(samples: list[dict[str, Any]], errors: list[str]) -> ScenarioResult:
    """The scenario's row: totals as samples, each phase's median as a figure, failures counted."""
    result = ScenarioResult(
        "node_loss",
        "9. node lost -> sandbox serving on another node, commits kept",
        targets=[Target("median", TARGET_S, f"p50 <= {TARGET_S:g} s")],
    )
    result.samples = [float(s["total_s"]) for s in samples]
    result.failures = len(errors)
    for key in (*(f"{name}_s" for name in PHASES), "noticed_s"):
        values = [float(s[key]) for s in samples if s.get(key) is not None]
        if values:
            result.figures[f"{key.removesuffix('_s')}_p50_s"] = round(
                summarize(values)["median"], 3
            )
    edits = samples[0]["edits"] if samples else None
    result.figures["edits"] = edits
    result.figures["health_check_interval_s"] = (
        samples[0]["health_check_interval_s"] if samples else None
    )
    result.notes.append(
        f"Per repeat a fresh cluster (head + 2 worker nodes, each its own state dir), "
        f"{edits} durable edits, then the sandbox's node killed (SIGKILL, no goodbye to "
        "the cluster) and its disk wiped. Phases: dead = until Ray lists the node dead; "
        "recreated = until the new actor starts its setup on the other node (noticed = "
        "the part until the manager's reconcile pass placed it there: a pass starts as "
        "soon as its look at the nodes, every node_check_interval, finds the node dead); "
        "worktree = mirror fetch + worktree from origin; vite = studio app + Vite until "
        "it serves. The other node's install cache is warm (a "
        "node keeps it)."
    )
    for index, sample in enumerate(samples):
        phases = ", ".join(f"{name} {sample[f'{name}_s']:.2f}" for name in PHASES)
        result.notes.append(f"repeat {index}: {phases} (total {sample['total_s']:.2f} s)")
    result.notes.extend(errors[:3])
    return result


def node_loss(ctx: RunContext) -> ScenarioResult:
    """Repeats of :func:`run_repeat`, each in a child process; the median of their totals."""
    edits = ctx.count(20, 3)
    install_cache = install_cache_dir(ctx)
    samples: list[dict[str, Any]] = []
    errors: list[str] = []
    for index in range(ctx.count(3, 1)):
        try:
            samples.append(_child_repeat(ctx.path(f"node-loss-{index}"), install_cache, edits))
        except Exception as exc:
            errors.append(f"repeat {index}: {type(exc).__name__}: {exc}"[:600])
    if not samples:
        raise RuntimeError("; ".join(errors))
    return node_loss_result(samples, errors)


def _child_repeat(root: Path, install_cache: Path, edits: int) -> dict[str, Any]:
    """One repeat in a child process; its sample, or RuntimeError with the end of its log."""
    from benchmarks._cluster import lose_disk

    log = root / "repeat.log"
    argv = [
        sys.executable,
        "-m",
        "benchmarks.node_loss",
        str(root),
        str(install_cache),
        "--edits",
        str(edits),
    ]
    # Every process of the cluster imports this checkout (workers inherit the path).
    python_path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    child = spawn_group(argv, ROOT, log, {"PYTHONPATH": python_path})
    try:
        outcome = f"ended with code {child.wait(timeout=REPEAT_TIMEOUT)}"
    except subprocess.TimeoutExpired:
        outcome = f"did not end in {REPEAT_TIMEOUT:g} s"
    finally:
        # SIGTERM first: the child then shuts its cluster down (see main).
        kill_group(child, grace=60.0)
        for state_dir in root.glob("node*/state"):
            lose_disk(state_dir)
    sample_file = root / "sample.json"
    if child.returncode != 0 or not sample_file.is_file():
        tail = " / ".join(log.read_text(errors="replace").strip().splitlines()[-6:])
        raise RuntimeError(f"the repeat {outcome}: {tail}")
    sample: dict[str, Any] = json.loads(sample_file.read_text())
    return sample


def run_repeat(
    root: Path, install_cache: Path, *, edits: int, interval: float | None = None
) -> dict[str, Any]:
    """One repeat in this process (which must not hold a Ray connection); its sample.

    ``interval`` overrides the manager's ``health_check_interval`` (default: the setting's).
    """
    from actors._prestart import RAY_SYSTEM_CONFIG
    from actors.handles import start_manager
    from benchmarks._cluster import local_cluster, stop_studio
    from benchmarks._proc import repo_from_dir
    from studio.config import StudioSettings

    overrides: dict[str, Any] = {} if interval is None else {"health_check_interval": interval}
    settings = StudioSettings(
        state_dir=root / "head" / "state",
        template_dir=TEMPLATE_DIR,
        repo_roots=[root],
        vite_port=VITE_PORT_BASE,
        vite_port_count=VITE_PORT_COUNT,
        host="127.0.0.1",
        public_host="127.0.0.1",
        warm_workers=WARM_WORKERS,
        admin_token="node-loss-benchmark",
        **overrides,
    )
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    origin = repo_from_dir(EXAMPLE_REPO, root / "ui-kit")
    # As a deployed cluster runs: its workers preload the sandbox actor's modules.
    with local_cluster(
        root, install_cache, slots_per_node=SLOTS_PER_NODE, system_config=RAY_SYSTEM_CONFIG
    ) as cluster:
        try:
            manager = start_manager(
                settings,
                node_state_dirs={node: str(path) for node, path in cluster.state_dirs.items()},
            )
            sample = _lose_a_node(cluster, manager, origin, edits)
        finally:
            stop_studio(cluster.state_dirs.values())
    sample["health_check_interval_s"] = settings.health_check_interval
    return sample


def _lose_a_node(cluster: Any, manager: Any, origin: Path, edits: int) -> dict[str, Any]:
    import ray

    from actors._prestart import idle_workers
    from actors.handles import sandbox_handle
    from benchmarks._cluster import branch_history, watch_recovery
    from benchmarks._sandbox_events import status_events

    repository = ray.get(manager.register_repository.remote("ui-kit", path=str(origin)))
    info = ray.get(
        manager.create_sandbox.remote("bench", repository.id, {}), timeout=CREATE_TIMEOUT
    )
    lost = str(info.node)
    survivor = next(node for node in cluster.state_dirs if node != lost)
    answered = []
    for index in range(edits):
        command = {
            "command": "write_file",
            "file_path": EDITED_FILE,
            "content": _content(index),
            "description": f"node loss edit {index}",
        }
        reply = ray.get(sandbox_handle(info.id).execute.remote(command), timeout=60)
        if not (reply.commit_hash and reply.pushed):
            raise RuntimeError(f"edit {index} answered without a pushed commit: {reply}")
        answered.append(reply.commit_hash)
    # A settled cluster: the node the sandbox moves to has its spare worker booted.
    try:
        spares = wait_for(
            lambda: idle_workers(survivor), SPARE_TIMEOUT, "a spare worker on the other node"
        )
    except TimeoutError:
        spares = 0  # measured all the same: the actor then boots a worker of its own

    removed = time.time()
    # Without a goodbye, as a machine that fails or drops off the network goes.
    cluster.lose(lost, graceful=False)
    recovery = watch_recovery(manager, info.id, lost, removed, RECOVERY_TIMEOUT)

    history = branch_history(info.id, count=edits + 10)
    missing = [c for c in answered if c not in history]
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(answered)} answered commits lost: {missing}")
    read = {"command": "read_file", "file_path": EDITED_FILE}
    content = ray.get(sandbox_handle(info.id).execute.remote(read), timeout=60).content
    if content != _content(edits - 1):
        raise RuntimeError(f"the worktree does not hold the last edit: {content!r}")
    if recovery.info.node != survivor or recovery.dead is None:
        raise RuntimeError(f"recovered on {recovery.info.node}, node dead at {recovery.dead}")
    steps = setup_marks(status_events(info.id, 0.0))
    split = split_recovery(
        removed, recovery.dead, steps["starting"], steps["install"], recovery.serving
    )
    return {
        **split,
        "noticed_s": None if recovery.placed is None else round(recovery.placed - recovery.dead, 3),
        "edits": edits,
        "commits_kept": len(answered),
        "spares_before_loss": spares,
    }


def _content(index: int) -> str:
    return f"export const NodeLoss = () => <p>edit {index}</p>;\n"


def setup_marks(events: list[tuple[dict[str, Any], float]]) -> dict[str, float]:
    """When the recreated actor's setup started (``starting``) and reached each step."""
    marks: dict[str, float] = {}
    for payload, stamp in events:
        key = str(payload.get("step") or payload.get("status"))
        marks.setdefault(key, stamp)
    for needed in ("starting", "install"):
        if needed not in marks:
            raise RuntimeError(f"the recreated sandbox said no {needed!r}: {events}")
    return marks


def main(argv: list[str] | None = None) -> int:
    """One repeat in this process; its sample goes to ``ROOT/sample.json`` (and stdout)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.node_loss", description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("install_cache", type=Path)
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--interval", type=float, help="the manager's health_check_interval")
    args = parser.parse_args(argv)
    # SIGTERM (the harness giving up) unwinds like an exception: the cluster shuts down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sample = run_repeat(args.root, args.install_cache, edits=args.edits, interval=args.interval)
    (args.root / "sample.json").write_text(json.dumps(sample, indent=2) + "\n")
    print(json.dumps(sample), flush=True)
    return 0


NODE_LOSS_SCENARIOS = [
    Scenario("node_loss", "node lost -> serving elsewhere", node_loss, ("cluster",)),
]


if __name__ == "__main__":
    sys.exit(main())
