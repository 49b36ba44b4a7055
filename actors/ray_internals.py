"""Every use of Ray's internals, in one place: what Ray's public API does not offer.

Component Studio reaches past Ray's public API for a few things, each one
function here whose docstring says what is missing and why it is needed:

- raylet settings for a Ray that the service starts (:func:`raylet_config`):
  new workers run the preload before they wait; the raylet starts no workers
  of its own for the first driver;
- spare workers (:func:`prestart_python_workers`), with the runtime env the
  sandbox actors will have (:func:`child_runtime_env_info`), and how many wait
  on a node (:func:`never_used_python_workers`): the raylet's own gRPC calls;
- a worker's serialization context, made while it waits
  (:func:`make_serialization_context`);
- whether this process is a Ray worker (:func:`is_worker_process`);
- when Ray's tasks reached each state, for the benchmarks
  (:func:`task_state_times`).

The Ray version is pinned (``ray[serve]==2.60.*``): ``tests/actors/
test_ray_internals.py`` fails, naming what is missing, when an installed Ray
no longer has what this module uses. No other module of the project may
import ``ray._private``, ``ray._raylet`` or ``ray.core.generated`` (the
import contract and ruff's banned-api in ``pyproject.toml``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc  # type: ignore[import-untyped]
import ray
from ray._private import state as _state
from ray._private import worker as _worker
from ray._private.authentication import grpc_authentication_client_interceptor as _auth
from ray._private.utils import get_runtime_env_info
from ray.core.generated import common_pb2, node_manager_pb2, node_manager_pb2_grpc
from ray.experimental import internal_kv as _internal_kv
from ray.runtime_env import RuntimeEnv

__all__ = [
    "FIRST_DRIVER_WORKERS_SETTING",
    "PRELOAD_MODULES_SETTING",
    "child_runtime_env_info",
    "is_worker_process",
    "make_serialization_context",
    "mark_preloaded",
    "never_used_python_workers",
    "preloading_python_workers",
    "prestart_python_workers",
    "raylet_config",
    "task_state_times",
]

# The raylet setting naming the modules each new Python worker imports before it waits
# (``default_worker.py --worker-preload-modules``); RAY_preload_python_modules for ``ray start``.
PRELOAD_MODULES_SETTING = "preload_python_modules"
# Whether the raylet starts a worker per CPU, with no runtime env, when the first driver connects.
FIRST_DRIVER_WORKERS_SETTING = "prestart_worker_first_driver"
_RPC_TIMEOUT = 5.0

# Generated protobuf modules have no type information (their messages are built at
# import), and the worker's internals are mostly unannotated.
_worker_module: Any = _worker
_common: Any = common_pb2
_messages: Any = node_manager_pb2
_stubs: Any = node_manager_pb2_grpc


def raylet_config(
    preload_modules: Sequence[str], *, workers_for_first_driver: bool = True
) -> dict[str, Any]:
    """``ray.init(_system_config=...)`` for a Ray that the service (or its tests) starts.

    Missing from the public API: ``ray.init`` takes raylet settings only
    through the internal ``_system_config``; a cluster's nodes take them as
    ``RAY_<setting>`` in the environment of ``ray start``. Two are needed:

    - ``preload_python_modules``: each new Python worker imports
      ``preload_modules`` while it waits for work. There is no public way to
      run code in a worker before it has work: a runtime env's
      ``worker_process_setup_hook`` runs when the worker starts too, but only
      in workers of a runtime env of their own, which start through Ray's
      ``setup_worker.py`` shim (docs/operations.md, "Warm pool").
    - ``prestart_worker_first_driver`` off (``workers_for_first_driver``):
      otherwise the raylet starts a worker per CPU when the first driver
      connects. They have no runtime env, so sandbox actors never use them,
      yet :func:`never_used_python_workers` cannot tell them from the spares
      the warm pool counts.
    """
    return {
        PRELOAD_MODULES_SETTING: list(preload_modules),
        FIRST_DRIVER_WORKERS_SETTING: workers_for_first_driver,
    }


def make_serialization_context() -> None:
    """Make this worker's serialization context now, while it waits for work.

    Missing from the public API: Ray makes the context when a job first runs
    here (it imports starlette and registers pydantic's and arrow's
    serializers), on the path of an actor's creation. Made under no job, Ray
    hands it to the first job that runs here (``Worker.get_serialization_context``).
    """
    _worker_module.global_worker.get_serialization_context()


def is_worker_process() -> bool:
    """Whether this process is a Ray worker (a driver, or a process without Ray, is not).

    Missing from the public API: ``ray.get_runtime_context()`` answers alike
    in a driver and in a worker that has no work yet; only the worker's mode
    tells them apart.
    """
    return bool(getattr(_worker_module.global_worker, "mode", None) == ray.WORKER_MODE)


def child_runtime_env_info(runtime_env: Mapping[str, Any]) -> Any:
    """The runtime env an actor created here with ``runtime_env`` runs in, as a RuntimeEnvInfo.

    Missing from the public API: Ray hands an actor only a worker started with
    the same runtime env (the raylet hashes its serialized form), and
    ``PrestartWorkers`` takes that serialized form. The actor's is the one
    Ray's actor creation builds (``get_runtime_env_info``), unless this
    process runs in a runtime env of its own: Ray's core worker then merges
    the two (``CoreWorker::OverrideRuntimeEnv``: the child's keys win, its
    ``env_vars`` are added to the parent's) and writes the result as compact
    JSON with sorted keys, which is rebuilt here the same way.
    """
    info = get_runtime_env_info(RuntimeEnv(**runtime_env), is_job_runtime_env=False)
    context: Any = ray.get_runtime_context()
    parent: dict[str, Any] = json.loads(context.get_runtime_env_string() or "{}")
    if parent:
        merged = dict(parent)
        for key, value in json.loads(info.serialized_runtime_env).items():
            if key == "env_vars" and "env_vars" in merged:
                merged["env_vars"] = {**merged["env_vars"], **value}
            else:
                merged[key] = value
        info.serialized_runtime_env = json.dumps(
            merged, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
    return info


def _raylet_address(node_id: str) -> str | None:
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    for node in nodes:
        if node.get("NodeID") == node_id and node.get("Alive"):
            return f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}"
    return None


def _call_raylet(node_id: str, method: str, request_of: Callable[[Any], Any]) -> Any:
    """``method`` of ``node_id``'s raylet with the request ``request_of(messages)`` makes.

    None when the node is not alive. The raylet checks Ray's auth token, as
    for Ray's own clients.
    """
    address = _raylet_address(node_id)
    if address is None:
        return None
    with grpc.insecure_channel(address) as channel:
        call = getattr(_stubs.NodeManagerServiceStub(channel), method)
        return call(
            request_of(_messages),
            timeout=_RPC_TIMEOUT,
            metadata=_auth._get_authentication_metadata_tuple(),
        )


def prestart_python_workers(
    node_id: str, count: int, *, keep_alive: int, runtime_env_info: Any
) -> bool:
    """Have ``node_id``'s raylet start ``count`` Python workers ahead of need; False if it is gone.

    Missing from the public API: Ray starts a worker when an actor needs one,
    on the path of its creation. The raylet's ``PrestartWorkers`` RPC (what it
    uses itself for a job's first workers) starts them ahead; it keeps them
    ``keep_alive`` seconds unused. The request names no job: workers bound to
    a job die with it. Raises what gRPC raises when the call fails.
    """
    reply = _call_raylet(
        node_id,
        "PrestartWorkers",
        lambda messages: messages.PrestartWorkersRequest(
            language=_common.PYTHON,
            runtime_env_info=runtime_env_info,
            keep_alive_duration_secs=keep_alive,
            num_workers=count,
        ),
    )
    return reply is not None


def never_used_python_workers(node_id: str) -> int | None:
    """How many Python workers on ``node_id`` no job has claimed yet; None when it is gone.

    Missing from the public API: ``ray.util.state.list_workers`` asks the
    dashboard (which a Ray may run without) and does not say whether a worker
    ever had work. The raylet's ``GetNodeStats`` asks each of its workers for
    its stats (~10 ms on a node with a dozen workers); a never-used one has
    neither a job nor an actor. Raises what gRPC raises when the call fails.
    """
    workers = _python_workers(node_id)
    return None if workers is None else sum(1 for never_used in workers.values() if never_used)


def _python_workers(node_id: str) -> dict[str, bool] | None:
    """The Python workers of ``node_id`` (hex ids), each with whether it is never-used."""
    reply = _call_raylet(
        node_id,
        "GetNodeStats",
        lambda messages: messages.GetNodeStatsRequest(include_memory_info=False),
    )
    if reply is None:
        return None
    nil_job = ray.JobID.nil().binary()
    nil_actor = ray.ActorID.nil().binary()
    return {
        stats.worker_id.hex(): stats.job_id == nil_job and stats.actor_id == nil_actor
        for stats in reply.core_workers_stats
        if stats.worker_type == _common.WORKER
    }


# A worker whose preload (actors._preload) is over says so in the GCS's key-value store:
# a key "<node>:<worker>" in a namespace of its own.
_PRELOADED_NAMESPACE = "component-studio-preloaded"


def mark_preloaded() -> None:
    """Record that this worker's preload is over.

    Missing from Ray: the raylet counts a worker as idle once it registered,
    which is before it imports the modules Ray's ``preload_python_modules``
    names (``default_worker.py`` connects first; measured here, the count
    moves 0.2 to 0.3 s before the preload even starts), so nothing in Ray says
    when a worker's preload is over. The GCS's key-value store is reachable
    from the worker then, and from the manager on any node.
    """
    context = ray.get_runtime_context()
    key = f"{context.get_node_id()}:{context.get_worker_id()}"
    _internal_kv._internal_kv_put(key, b"", namespace=_PRELOADED_NAMESPACE)


def preloading_python_workers(node_id: str) -> int | None:
    """How many never-used Python workers on ``node_id`` have not said their preload is
    over; None when the node is gone. Forgets what gone workers said.

    0 on a node none of whose live workers ever said so: its workers preload
    nothing (Ray started without the preload, or the switch is off), or none
    has finished yet. Raises what gRPC and the GCS client raise when a call fails.
    """
    workers = _python_workers(node_id)
    if workers is None:
        return None
    preloaded: set[str] = set()
    for key in _internal_kv._internal_kv_list(f"{node_id}:", namespace=_PRELOADED_NAMESPACE):
        worker = key.decode().split(":", 1)[1]
        if worker in workers:
            preloaded.add(worker)
        else:
            _internal_kv._internal_kv_del(key, namespace=_PRELOADED_NAMESPACE)
    if not preloaded:
        return 0
    booting = [w for w, never_used in workers.items() if never_used and w not in preloaded]
    return len(booting)


def task_state_times(name_suffix: str) -> dict[str, dict[str, float]]:
    """When each task whose name ends with ``name_suffix`` reached each state (epoch seconds).

    Keyed by task name, then by Ray's task state (``PENDING_NODE_ASSIGNMENT``,
    ``RUNNING``, ...). Missing from the public API without a dashboard:
    ``ray.util.state.list_tasks`` asks the dashboard's state API, and the
    benchmarks start Ray without one; this reads the GCS's task events it
    would have served.
    """
    found: dict[str, dict[str, float]] = {}
    for event in _state.state._get_all_task_events():
        name = str(event.task_info.name)
        if not name.endswith(name_suffix):
            continue
        states = found.setdefault(name, {})
        for status, ns in event.state_updates.state_ts_ns.items():
            states[_common.TaskStatus.Name(status)] = ns / 1e9
    return found
