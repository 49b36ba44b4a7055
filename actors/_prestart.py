"""Spare Ray workers, started ahead of need, so a new sandbox actor does not wait for one.

Every actor gets a worker process of its own, and Ray never hands an actor a
worker that already ran a task (``src/ray/raylet/worker.h``: "Once it holds an
actor or a normal lease, it can't switch"; ray-project/ray#22482). Starting
one (Python, ``import ray``, the worker's setup) is ~0.8 s of a sandbox's
create -> ready on an idle 2-core machine: 1.2 s to the actor's first answer
against 0.4 s when the raylet already has a never-used worker waiting.

Ray 2.60 has no public call to ask for such a worker; the raylet's
``PrestartWorkers`` RPC (what it uses itself for a job's first workers) does
it. The request carries no job id: spares bound to the job that started the
manager would be killed once that driver's job ends. Its ``runtime_env_info``
is this process's job's, which is what the sandbox actors inherit: a spare
with another runtime environment would never be chosen.

A spare also imports the sandbox actor's modules while it waits when Ray was
started with :data:`RAY_SYSTEM_CONFIG` (see :mod:`actors._preload`).

Best effort by design: any failure (a Ray upgrade that moved the RPC, a node
gone) is logged once and the actor simply starts cold. The Ray version is
pinned (``ray[serve]==2.60.*``) and ``tests/actors`` checks that a sandbox
actor lands on a spare.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import ray

__all__ = ["KEEP_ALIVE_SECONDS", "PRELOAD_MODULE", "RAY_SYSTEM_CONFIG", "prestart_workers"]

logger = logging.getLogger(__name__)

# How long the raylet keeps an unused spare (each one holds ~110 MB).
KEEP_ALIVE_SECONDS = 600
_RPC_TIMEOUT = 5.0
# Every new Python worker imports this module before it waits for work.
PRELOAD_MODULE = "actors._preload"
# ray.init(_system_config=...) of a Ray that ``studio up`` (or a benchmark) starts;
# a cluster's nodes get the same from RAY_preload_python_modules=actors._preload.
RAY_SYSTEM_CONFIG: dict[str, Any] = {"preload_python_modules": [PRELOAD_MODULE]}
_warned = False
# The calls used here are untyped (ray.nodes) or internal (the job config).
_RAY: Any = ray


def _raylet_address(node_id: str) -> str | None:
    nodes: list[dict[str, Any]] = _RAY.nodes()
    for node in nodes:
        if node.get("NodeID") == node_id and node.get("Alive"):
            return f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}"
    return None


def prestart_workers(node_id: str, count: int = 1, keep_alive: int = KEEP_ALIVE_SECONDS) -> bool:
    """Ask ``node_id``'s raylet to start ``count`` spare Python workers; whether it agreed."""
    global _warned
    try:
        # Ray's internals, untyped: loaded by name.
        grpc: Any = importlib.import_module("grpc")
        common: Any = importlib.import_module("ray.core.generated.common_pb2")
        manager: Any = importlib.import_module("ray.core.generated.node_manager_pb2")
        stubs: Any = importlib.import_module("ray.core.generated.node_manager_pb2_grpc")
        auth: Any = importlib.import_module(
            "ray._private.authentication.grpc_authentication_client_interceptor"
        )
        address = _raylet_address(node_id)
        if address is None:
            return False
        job_config = _RAY._private.worker.global_worker.core_worker.get_job_config()
        request = manager.PrestartWorkersRequest(
            language=common.PYTHON,
            runtime_env_info=job_config.runtime_env_info,
            keep_alive_duration_secs=keep_alive,
            num_workers=count,
        )
        with grpc.insecure_channel(address) as channel:
            stubs.NodeManagerServiceStub(channel).PrestartWorkers(
                request, timeout=_RPC_TIMEOUT, metadata=auth._get_authentication_metadata_tuple()
            )
    except Exception as exc:  # best effort: without a spare the actor starts cold
        if not _warned:
            _warned = True
            logger.warning("cannot prestart Ray workers (actors start cold): %s", exc)
        return False
    return True
