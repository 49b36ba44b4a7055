"""The installed Ray still has every internal that actors.ray_internals uses.

A Ray upgrade may move or drop any of them without notice: these tests fail
first, each naming what is missing, before the warm pool, the preload or the
standbys quietly stop working. The first test needs no Ray running; the
others ask the session's real Ray.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

import pytest
import ray

from actors import ray_internals

# What ray_internals takes from Ray's internals: module -> attributes it uses.
MODULE_ATTRIBUTES = {
    "ray._private.worker": ["global_worker"],
    "ray._private.state": ["state"],
    "ray._private.authentication.grpc_authentication_client_interceptor": [
        "_get_authentication_metadata_tuple"
    ],
    "ray.core.generated.common_pb2": ["PYTHON", "WORKER", "TaskStatus", "CoreWorkerStats"],
    "ray.core.generated.node_manager_pb2": [
        "PrestartWorkersRequest",
        "GetNodeStatsRequest",
        "GetNodeStatsReply",
    ],
    "ray.core.generated.node_manager_pb2_grpc": ["NodeManagerServiceStub"],
}
# The raylet's gRPC methods it calls, and the fields of their messages it sets or reads.
RAYLET_METHODS = {
    "PrestartWorkers": ["language", "runtime_env_info", "keep_alive_duration_secs", "num_workers"],
    "GetNodeStats": ["include_memory_info"],
}
MESSAGE_FIELDS = {
    ("ray.core.generated.node_manager_pb2", "GetNodeStatsReply"): ["core_workers_stats"],
    ("ray.core.generated.common_pb2", "CoreWorkerStats"): ["worker_type", "job_id", "actor_id"],
}
# What it calls on the worker object and on the GCS's state.
WORKER_METHODS = ["get_serialization_context"]
STATE_METHODS = ["_get_all_task_events"]


def missing_attributes(target: Any, names: list[str], where: str) -> list[str]:
    return [f"{where}.{name}" for name in names if not hasattr(target, name)]


def test_the_installed_ray_has_every_internal_module_attribute_and_message_field() -> None:
    missing: list[str] = []
    for module_name, names in MODULE_ATTRIBUTES.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            missing.append(module_name)
            continue
        missing += missing_attributes(module, names, module_name)
    messages: Any = importlib.import_module("ray.core.generated.node_manager_pb2")
    service = messages.DESCRIPTOR.services_by_name["NodeManagerService"]
    for method_name, fields in RAYLET_METHODS.items():
        method = service.methods_by_name.get(method_name)
        if method is None:
            missing.append(f"NodeManagerService.{method_name}")
            continue
        missing += [
            f"{method.input_type.name}.{field}"
            for field in fields
            if field not in method.input_type.fields_by_name
        ]
    for (module_name, message_name), fields in MESSAGE_FIELDS.items():
        message = getattr(importlib.import_module(module_name), message_name, None)
        if message is None:
            continue  # named above
        missing += [
            f"{message_name}.{field}"
            for field in fields
            if field not in message.DESCRIPTOR.fields_by_name
        ]
    worker: Any = importlib.import_module("ray._private.worker")
    missing += missing_attributes(worker.global_worker, WORKER_METHODS, "global_worker")
    state: Any = importlib.import_module("ray._private.state")
    missing += missing_attributes(state.state, STATE_METHODS, "ray._private.state.state")
    assert not missing, f"the installed Ray {ray.__version__} lacks: {', '.join(missing)}"


@ray.remote(num_cpus=0)
class InWorker:
    """Runs ray_internals' worker-side functions where they are meant to run."""

    def check(self) -> dict[str, bool]:
        ray_internals.make_serialization_context()
        return {"worker": ray_internals.is_worker_process()}


@pytest.mark.ray
def test_the_worker_side_functions_run_in_a_worker_and_tell_it_from_a_driver(
    ray_session: None,
) -> None:
    assert not ray_internals.is_worker_process()  # this test process is a driver
    actor = InWorker.remote()  # type: ignore[attr-defined]
    try:
        assert ray.get(actor.check.remote(), timeout=120) == {"worker": True}
    finally:
        ray.kill(actor)


@pytest.mark.ray
def test_the_raylet_answers_the_worker_count_and_the_job_has_a_runtime_env_message(
    ray_session: None,
) -> None:
    node_id = ray.get_runtime_context().get_node_id()
    count = ray_internals.never_used_python_workers(node_id)
    assert isinstance(count, int) and count >= 0
    assert ray_internals.never_used_python_workers("ab" * 28) is None  # no such node
    assert ray_internals.job_runtime_env_info().DESCRIPTOR.name == "RuntimeEnvInfo"


@ray.remote(num_cpus=0)
class Stamped:
    def ready(self) -> bool:
        return True


@pytest.mark.ray
def test_the_gcs_says_when_a_task_reached_each_state(ray_session: None) -> None:
    actor = Stamped.remote()  # type: ignore[attr-defined]
    try:
        assert ray.get(actor.ready.remote(), timeout=120)
        # Workers report task events to the GCS in batches: wait for this one's.
        deadline = time.monotonic() + 60
        while not (found := ray_internals.task_state_times("Stamped.__init__")):
            assert time.monotonic() < deadline, "no task events for Stamped.__init__"
            time.sleep(0.5)
    finally:
        ray.kill(actor)
    states = next(iter(found.values()))
    assert "RUNNING" in states and "FINISHED" in states
    assert states["RUNNING"] <= states["FINISHED"]
