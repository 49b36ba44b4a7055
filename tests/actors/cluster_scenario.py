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
it started is torn down in ``finally``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster

from actors.handles import (
    forget_sandbox_handle,
    get_manager,
    kill_manager,
    sandbox_handle,
    start_manager,
)
from studio.layout import StateLayout
from studio.naming import ACTOR_NAMESPACE
from studio.process import reap_orphans
from studio.state import SandboxState
from tests.actors.conftest import (
    UI_KIT,
    assert_nothing_left,
    get,
    node_settings,
    renderer_answers,
)
from tests.support.gitrepo import repo_from_dir

SLOTS_PER_NODE = 4
# Concurrent edits answered just before their node is lost.
BURST = 10


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def lose_disk(state_dir: Path) -> None:
    """What losing a machine takes along: its Vite processes and its disk."""
    layout = StateLayout(state_dir)
    for pid_file in layout.run.glob("*.json") if layout.run.is_dir() else []:
        reap_orphans(pid_file)
    shutil.rmtree(state_dir / "worktrees", ignore_errors=True)
    shutil.rmtree(state_dir / "mirrors", ignore_errors=True)


def run(workdir: Path, install_cache: Path) -> dict[str, Any]:
    # A short private temp dir (Ray's socket paths break past ~107 bytes); RAY_TMPDIR
    # also moves the "current cluster" address file out of the shared /tmp/ray, where
    # another process's ray.init() would find this cluster.
    temp_dir = tempfile.mkdtemp(prefix="rc-", dir="/tmp")
    os.environ["RAY_TMPDIR"] = temp_dir
    cluster = Cluster()
    try:
        cluster.add_node(
            num_cpus=1, temp_dir=os.path.join(temp_dir, "ray"), include_dashboard=False
        )
        workers = [
            cluster.add_node(num_cpus=1, resources={"sandbox_slot": SLOTS_PER_NODE})
            for _ in range(2)
        ]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace=ACTOR_NAMESPACE, log_to_driver=False)
        return scenario(cluster, workers, workdir, install_cache)
    finally:
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]
        shutil.rmtree(temp_dir, ignore_errors=True)


def scenario(
    cluster: Cluster, workers: list[Any], workdir: Path, install_cache: Path
) -> dict[str, Any]:
    node_dirs = {w.node_id: workdir / f"node{i}" / "state" for i, w in enumerate(workers)}
    settings = node_settings(
        workdir / "head" / "state",
        install_cache,
        health_check_interval=1.0,
        repo_roots=[workdir],
    )
    for state in node_dirs.values():
        node_settings(state, install_cache)  # the install-cache link of each node's disk
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

        lost = next(w for w in workers if w.node_id == first.node)
        survivor = next(w for w in workers if w.node_id != first.node)
        cluster.remove_node(lost)
        lose_disk(node_dirs[lost.node_id])
        removed_at = time.monotonic()

        def recovered() -> Any:
            info = get(manager.get_sandbox.remote(first.id, None), timeout=60)
            if info.node == survivor.node_id and info.status is SandboxState.RUNNING:
                return info
            return None

        info = wait_for(recovered, 240, "the sandbox to come back on the surviving node")
        findings["recovery_seconds"] = round(time.monotonic() - removed_at, 1)
        # A worker node's Vite is shown (and listens) at that node's address.
        assert info.renderer_url is not None and renderer_answers(info.renderer_url), info
        findings["renderer_url"] = info.renderer_url
        # The driver's cached handle names the killed actor: look the new one up.
        forget_sandbox_handle(first.id)
        history = [c.hash for c in get(sandbox_handle(first.id).history.remote())]
        missing = set(commits) - set(history)
        assert not missing, f"answered commits lost with the node: {missing}"
        findings["recovered_on"] = info.node
        findings["commit_kept"] = True
        other = get(manager.get_sandbox.remote(second.id, None))
        assert other.status is SandboxState.RUNNING and other.node == survivor.node_id
        orphans = get(manager.orphans.remote())
        assert orphans["actors"] == [] and orphans["worktrees"] == [], orphans
        return findings
    finally:
        try:
            handle = get_manager()
            for item in get(handle.list_sandboxes.remote(None), timeout=60):
                get(handle.teardown_sandbox.remote(item.id, None), timeout=60)
        finally:
            kill_manager()
            for state in node_dirs.values():
                lose_disk(state)
            for state in [settings.state_dir, *node_dirs.values()]:
                assert_nothing_left(state)


def main() -> None:
    workdir, install_cache = Path(sys.argv[1]), Path(sys.argv[2])
    print(json.dumps(run(workdir, install_cache)), flush=True)


if __name__ == "__main__":
    main()
