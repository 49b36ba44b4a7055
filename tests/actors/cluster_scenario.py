"""Multi-node scenario on ``ray.cluster_utils.Cluster``, run in its own process.

A process holds one Ray connection, and the test session already holds the
local one (``ray_session``), so ``test_cluster.py`` runs this module with
``python -m tests.actors.cluster_scenario WORKDIR INSTALL_CACHE``. It starts a
head and two worker nodes (each worker with its own state dir, standing for
its own disk, and ``sandbox_slot`` resources), then:

1. creates two sandboxes: they land on different nodes;
2. makes a burst of concurrent edits in one, and as soon as the last answer
   is in (no waiting for pushes),
3. removes that sandbox's node and wipes its disk (reaping the Vite the dead
   node left, as a lost machine would take it along);
4. waits until the manager has recreated the sandbox on the surviving node,
   where it recovered its branch from origin: every answered commit is there.

It prints one JSON line of findings and exits 0; any failure raises. Everything
it started is torn down in ``finally``. The cluster, the loss of a node and
the watch for the recovery are the node-loss benchmark's own
(``benchmarks/_cluster.py``); this scenario checks, the benchmark times.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from actors.handles import sandbox_handle, start_manager
from benchmarks._cluster import (
    LocalCluster,
    branch_history,
    local_cluster,
    stop_studio,
    watch_recovery,
)
from studio.state import SandboxState
from tests.actors.conftest import UI_KIT, assert_nothing_left, get, node_settings
from tests.support.gitrepo import repo_from_dir

SLOTS_PER_NODE = 4
# Concurrent edits answered just before their node is lost.
BURST = 10
RECOVERY_TIMEOUT = 240


def run(workdir: Path, install_cache: Path) -> dict[str, Any]:
    with local_cluster(workdir, install_cache, slots_per_node=SLOTS_PER_NODE) as cluster:
        return scenario(cluster, workdir, install_cache)


def scenario(cluster: LocalCluster, workdir: Path, install_cache: Path) -> dict[str, Any]:
    node_dirs = cluster.state_dirs
    settings = node_settings(
        workdir / "head" / "state",
        install_cache,
        health_check_interval=1.0,
        repo_roots=[workdir],
    )
    origin = repo_from_dir(UI_KIT, workdir / "ui-kit")
    findings: dict[str, Any] = {}
    try:
        manager = start_manager(
            settings,
            node_state_dirs={node: str(path) for node, path in node_dirs.items()},
        )
        repo = get(manager.register_repository.remote("ui-kit", path=str(origin)))
        first, second = get(
            [manager.create_sandbox.remote("alice", repo.id, {}) for _ in range(2)], timeout=300
        )
        findings["spread"] = sorted([first.node, second.node])
        assert set(findings["spread"]) == set(node_dirs), findings

        # A burst of edits, and the node is lost the moment the last answer is in:
        # nothing waits for a background push, so every answered commit must
        # already be on the origin (durable_commits).
        burst = [
            sandbox_handle(first.id).execute.remote(
                {
                    "command": "write_file",
                    "file_path": f"src/components/Durable{n}.tsx",
                    "content": f"export const Durable{n} = () => null;\n",
                    "description": f"durable {n}",
                }
            )
            for n in range(BURST)
        ]
        results = get(burst, timeout=120)
        commits = [r.commit_hash for r in results]
        findings["answered_pushed"] = [r.pushed for r in results]
        assert all(commits) and all(findings["answered_pushed"]), results

        survivor = next(node for node in node_dirs if node != first.node)
        removed = time.time()
        cluster.lose(first.node, graceful=True)
        # The sandbox serves again on the surviving node (RUNNING, its renderer answers).
        recovery = watch_recovery(manager, first.id, first.node, removed, RECOVERY_TIMEOUT)
        findings["recovery_seconds"] = round(recovery.serving - removed, 1)
        info = recovery.info
        assert info.node == survivor, info
        # A worker node's Vite is shown (and listens) at that node's address.
        findings["renderer_url"] = info.renderer_url
        history = branch_history(first.id)
        missing = set(commits) - set(history)
        assert not missing, f"answered commits lost with the node: {missing}"
        findings["recovered_on"] = info.node
        findings["commit_kept"] = True
        other = get(manager.get_sandbox.remote(second.id, None))
        assert other.status is SandboxState.RUNNING and other.node == survivor
        orphans = get(manager.orphans.remote())
        assert orphans["actors"] == [] and orphans["worktrees"] == [], orphans
        return findings
    finally:
        try:
            stop_studio(node_dirs.values())
        finally:
            for state in [settings.state_dir, *node_dirs.values()]:
                assert_nothing_left(state)


def main() -> None:
    workdir, install_cache = Path(sys.argv[1]), Path(sys.argv[2])
    print(json.dumps(run(workdir, install_cache)), flush=True)


if __name__ == "__main__":
    main()
