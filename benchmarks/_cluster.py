"""Several Ray nodes on one machine (``ray.cluster_utils.Cluster``), and the loss of one.

The node-loss benchmark (``benchmarks/node_loss.py``) and the suite's
multi-node test (``tests/actors/cluster_scenario.py``) both run on it. The
head declares no ``sandbox_slot`` (the manager lives there, sandboxes do not);
each worker node declares slots and has a state dir of its own, standing for
its own disk, with the install cache linked in (a node keeps its cache between
sandboxes). :meth:`LocalCluster.lose` takes a worker node away the way a lost
machine goes: its Ray processes, the Vites it ran and its disk.

A process holds one Ray connection: a process that has one already (a test
session, a benchmark run) runs this in a child process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._proc import http_ok
from benchmarks.floors import link_install_cache
from benchmarks.service import renderer_address

if TYPE_CHECKING:
    from ray.cluster_utils import Cluster

    from studio.models import SandboxInfo

__all__ = [
    "LocalCluster",
    "Recovery",
    "branch_history",
    "local_cluster",
    "lose_disk",
    "stop_studio",
    "watch_recovery",
]

# Seconds an actor call of these helpers may take.
_CALL_TIMEOUT = 60.0


def lose_disk(state_dir: Path) -> None:
    """What losing a machine takes along: its Vite processes and its disk (worktrees, mirrors)."""
    from studio.layout import StateLayout
    from studio.process import reap_orphans

    layout = StateLayout(state_dir)
    for pid_file in layout.run.glob("*.json") if layout.run.is_dir() else []:
        reap_orphans(pid_file)
    shutil.rmtree(layout.worktrees, ignore_errors=True)
    shutil.rmtree(state_dir / "mirrors", ignore_errors=True)


@dataclass
class LocalCluster:
    """A running head and worker nodes; ``state_dirs`` maps each worker's node id to its disk."""

    cluster: Cluster
    workers: list[Any]
    state_dirs: dict[str, Path]

    def lose(self, node_id: str, *, graceful: bool) -> None:
        """Remove the worker node ``node_id`` and wipe its disk.

        ``graceful``: its raylet is stopped with SIGTERM and tells the cluster
        it leaves (Ray lists it dead at once); otherwise SIGKILL, as a machine
        that is switched off or cut off says nothing, and Ray finds it dead
        only when its health checks fail.
        """
        node = next(w for w in self.workers if w.node_id == node_id)
        self.cluster.remove_node(node, allow_graceful=graceful)
        lose_disk(self.state_dirs[node_id])


@contextlib.contextmanager
def local_cluster(
    root: Path,
    install_cache: Path,
    *,
    workers: int = 2,
    slots_per_node: int = 4,
    system_config: dict[str, Any] | None = None,
) -> Iterator[LocalCluster]:
    """A head and ``workers`` nodes, this process connected; all of it gone after the block.

    Worker ``i`` keeps its state in ``root/node<i>/state``. ``system_config``
    is the cluster's ``_system_config`` (set on the head, it holds for every node).
    """
    import ray
    from ray.cluster_utils import Cluster

    from actors.scheduling import SLOT_RESOURCE
    from studio.naming import ACTOR_NAMESPACE

    # A short private temp dir (Ray's socket paths break past ~107 bytes); RAY_TMPDIR
    # also moves the "current cluster" address file out of the shared /tmp/ray, where
    # another process's ray.init() would find this cluster.
    temp_dir = tempfile.mkdtemp(prefix="rc-", dir="/tmp")
    previous_tmpdir = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp_dir
    cluster = Cluster()
    state_dirs: dict[str, Path] = {}
    try:
        head_args: dict[str, Any] = {"_system_config": system_config} if system_config else {}
        cluster.add_node(
            num_cpus=1,
            temp_dir=str(Path(temp_dir) / "ray"),
            include_dashboard=False,
            **head_args,
        )
        nodes = [
            cluster.add_node(num_cpus=1, resources={SLOT_RESOURCE: slots_per_node})
            for _ in range(workers)
        ]
        cluster.wait_for_nodes()
        state_dirs = {
            node.node_id: link_install_cache(root / f"node{i}" / "state", install_cache)
            for i, node in enumerate(nodes)
        }
        ray.init(address=cluster.address, namespace=ACTOR_NAMESPACE, log_to_driver=False)
        yield LocalCluster(cluster, nodes, state_dirs)
    finally:
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]
        # The Vites are in sessions of their own: Ray's shutdown does not reach them.
        for state_dir in state_dirs.values():
            lose_disk(state_dir)
        if previous_tmpdir is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = previous_tmpdir
        shutil.rmtree(temp_dir, ignore_errors=True)


def stop_studio(state_dirs: Iterable[Path]) -> None:
    """Tear down every sandbox through the manager (branches kept), kill it, reap what is left."""
    import ray

    from actors.handles import get_manager, kill_manager

    try:
        manager = get_manager()
        for info in ray.get(manager.list_sandboxes.remote(None), timeout=_CALL_TIMEOUT):
            ray.get(manager.teardown_sandbox.remote(info.id, None), timeout=_CALL_TIMEOUT)
    finally:
        kill_manager()
        for state_dir in state_dirs:
            lose_disk(state_dir)


@dataclass(frozen=True)
class Recovery:
    """When (``time.time()``) a lost node's sandbox got where, as the driver saw it.

    ``dead``: Ray lists the node as dead; ``placed``: the manager recorded the
    sandbox on another node (it decided to recreate it there); ``serving``: the
    sandbox is RUNNING there and its renderer answers ``/@vite/client`` 200.
    """

    removed: float
    dead: float | None
    placed: float | None
    serving: float
    info: SandboxInfo


def _node_alive(node_id: str) -> bool:
    import ray

    return any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes())  # type: ignore[no-untyped-call]


def watch_recovery(
    manager: Any,
    sandbox_id: str,
    lost_node: str,
    removed: float,
    timeout: float,
    interval: float = 0.05,
) -> Recovery:
    """Poll until the sandbox of ``lost_node`` serves on another node; when each step showed.

    ``removed`` is when the node was taken away (``time.time()``). The manager's
    registry says where the sandbox is and in which state (no call to its
    actor, which may be gone); TimeoutError after ``timeout`` seconds.
    """
    import ray

    from studio.state import SandboxState

    deadline = time.monotonic() + timeout
    dead: float | None = None
    placed: float | None = None
    while time.monotonic() < deadline:
        now = time.time()
        if dead is None and not _node_alive(lost_node):
            dead = now
        listed = ray.get(manager.list_sandboxes.remote(None), timeout=_CALL_TIMEOUT)
        info = next((i for i in listed if i.id == sandbox_id), None)
        if info is not None and info.node not in (None, lost_node):
            placed = placed or now
            url = info.renderer_url
            if info.status is SandboxState.RUNNING and url and _renderer_ok(manager, info.id, url):
                return Recovery(removed, dead, placed, time.time(), info)
        time.sleep(interval)
    raise TimeoutError(f"sandbox {sandbox_id} not serving on another node after {timeout:g} s")


def _renderer_ok(manager: Any, sandbox_id: str, renderer_url: str) -> bool:
    """Whether the sandbox's Vite (the manager's ``renderer_url``: its node and port)
    serves its client, asked as the API's renderer proxy asks."""
    import ray

    from studio.viewer import viewer_token
    from studio.vite import PROXY_SECRET_HEADER, renderer_base

    host, port = renderer_address(renderer_url)
    secret = viewer_token(
        ray.get(manager.viewer_secret.remote(), timeout=_CALL_TIMEOUT), sandbox_id
    )
    path = f"{renderer_base(sandbox_id)}@vite/client"
    return http_ok(host, port, path, timeout=1.0, headers={PROXY_SECRET_HEADER: secret})


def branch_history(sandbox_id: str, count: int = 50) -> list[str]:
    """Hashes of the sandbox's branch, newest first, from its actor as it is now."""
    import ray

    from actors.handles import forget_sandbox_handle, sandbox_handle

    # A cached handle may name an actor that was replaced: look the current one up.
    forget_sandbox_handle(sandbox_id)
    commits = ray.get(sandbox_handle(sandbox_id).history.remote(count), timeout=_CALL_TIMEOUT)
    return [str(c.hash) for c in commits]
