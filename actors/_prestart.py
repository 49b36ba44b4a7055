"""Spare Ray workers, started ahead of need, so a new sandbox actor does not wait for one.

Every actor gets a worker process of its own, and Ray never hands an actor a
worker that already ran a task (``src/ray/raylet/worker.h``: "Once it holds an
actor or a normal lease, it can't switch"). Starting one (Python, ``import
ray``, the worker's setup) is most of a new actor's wait for its first answer
when no never-used worker is waiting (docs/performance.md, "Warm pool").

Ray has no public call to ask for such a worker; the raylet's
``PrestartWorkers`` RPC does it (:func:`actors.ray_internals.prestart_python_workers`).
A spare has the sandbox actors' runtime env (:mod:`actors._sandbox_worker`),
merged with this process's own as Ray merges it for the actors this process
creates: a spare with another runtime env would never be chosen, and no other
actor or task can take it. How many spares a node has is its raylet's
``GetNodeStats`` (:func:`idle_workers`), which the warm pool
(:mod:`actors._warm_pool`) tops up to its size.

A spare also imports the sandbox actor's modules while it waits when Ray was
started with :data:`RAY_SYSTEM_CONFIG` (see :mod:`actors._preload`).

Best effort by design: any failure (a Ray upgrade that moved the RPC, a node
gone) is logged once and the actor simply starts cold. The Ray version is
pinned (``ray[serve]==2.60.*``); ``tests/actors/test_ray_internals.py`` checks
the internals and ``tests/actors`` that a sandbox actor lands on a spare.
"""

from __future__ import annotations

import logging
from typing import Any

from actors import ray_internals
from actors._sandbox_worker import sandbox_runtime_env

__all__ = [
    "KEEP_ALIVE_SECONDS",
    "PRELOAD_MODULE",
    "RAY_SYSTEM_CONFIG",
    "idle_workers",
    "preloading_workers",
    "prestart_workers",
]

logger = logging.getLogger(__name__)

# How long the raylet keeps an unused spare (each one holds ~110 MB, its standby ~70 MB).
# Past it, the raylet kills idle workers beyond its soft limit (the node's CPU
# count) and the warm pool starts new ones (:mod:`actors._warm_pool`).
KEEP_ALIVE_SECONDS = 3600
# Every new Python worker imports this module before it waits for work.
PRELOAD_MODULE = "actors._preload"
# ray.init(_system_config=...) of a Ray that ``studio up`` (or a benchmark) starts;
# a cluster's nodes get the same from RAY_preload_python_modules=actors._preload
# (the raylet starts workers for the first driver on the head, which holds no sandboxes).
RAY_SYSTEM_CONFIG: dict[str, Any] = ray_internals.raylet_config(
    [PRELOAD_MODULE], workers_for_first_driver=False
)
_warned = False


def _warn_once(what: str, exc: Exception, outcome: str = "actors start cold") -> None:
    global _warned
    if not _warned:
        _warned = True
        logger.warning("%s (%s): %s", what, outcome, exc)


def prestart_workers(node_id: str, count: int = 1, keep_alive: int = KEEP_ALIVE_SECONDS) -> bool:
    """Ask ``node_id``'s raylet to start ``count`` spare Python workers; whether it agreed.

    The raylet starts no more at once than its startup concurrency (the
    node's CPU count) allows, whatever ``count`` says: the rest are dropped.
    """
    try:
        return ray_internals.prestart_python_workers(
            node_id,
            count,
            keep_alive=keep_alive,
            runtime_env_info=ray_internals.child_runtime_env_info(sandbox_runtime_env()),
        )
    except Exception as exc:  # best effort: without a spare the actor starts cold
        _warn_once("cannot prestart Ray workers", exc)
        return False


def preloading_workers(node_id: str) -> int | None:
    """How many spares on ``node_id`` are still in their preload; None when the raylet or
    the GCS cannot say (:func:`actors.ray_internals.preloading_python_workers`)."""
    try:
        return ray_internals.preloading_python_workers(node_id)
    except Exception as exc:
        _warn_once("cannot tell whether Ray workers preloaded", exc, "spares count as booted")
        return None


def idle_workers(node_id: str) -> int | None:
    """How many never-used Python workers wait on ``node_id``; None when the raylet cannot say.

    A never-used worker is one no job has claimed yet: a spare, unless the
    raylet started workers for its first driver (:data:`RAY_SYSTEM_CONFIG`
    turns that off), which no sandbox actor can use.
    """
    try:
        return ray_internals.never_used_python_workers(node_id)
    except Exception as exc:
        _warn_once("cannot count idle Ray workers", exc)
        return None
