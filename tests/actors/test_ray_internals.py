"""The installed Ray still has every internal that actors.ray_internals uses.

A Ray upgrade may move or drop any of them without notice: these tests fail
first, each naming what is missing, before the warm pool, the preload or the
standbys quietly stop working. The first test needs no Ray running; the
others ask the session's real Ray.
"""

from __future__ import annotations

import importlib
import json
import time
from typing import Any

import pytest
import ray
from ray.experimental import internal_kv

from actors import ray_internals
from actors._prestart import RAY_SYSTEM_CONFIG
from actors._sandbox_worker import sandbox_runtime_env

# What ray_internals takes from Ray's internals: module -> attributes it uses.
MODULE_ATTRIBUTES = {
    "ray._private.worker": ["global_worker"],
    "ray._private.state": ["state"],
    "ray._private.utils": ["get_runtime_env_info"],
    "ray.experimental.internal_kv": [
        "_internal_kv_put",
        "_internal_kv_list",
        "_internal_kv_del",
    ],
    "ray._private.authentication.grpc_authentication_client_interceptor": [
        "_get_authentication_metadata_tuple"
    ],
    "ray.core.generated.common_pb2": ["PYTHON", "WORKER", "TaskStatus", "CoreWorkerStats"],
    "ray.core.generated.runtime_environment_pb2": ["RuntimeEnvInfo"],
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
    ("ray.core.generated.runtime_environment_pb2", "RuntimeEnvInfo"): ["serialized_runtime_env"],
    ("ray.core.generated.common_pb2", "CoreWorkerStats"): [
        "worker_type",
        "job_id",
        "actor_id",
        "worker_id",
    ],
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

    def say_preloaded(self) -> str:
        ray_internals.mark_preloaded()
        return ray.get_runtime_context().get_worker_id()


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


def preloaded_keys(node_id: str) -> list[str]:
    found = internal_kv._internal_kv_list(
        f"{node_id}:", namespace=ray_internals._PRELOADED_NAMESPACE
    )
    return sorted(key.decode() for key in found)


@pytest.mark.ray
def test_a_worker_says_its_preload_is_over_and_a_gone_workers_word_is_forgotten(
    ray_session: None,
) -> None:
    node_id = ray.get_runtime_context().get_node_id()
    actor = InWorker.remote()  # type: ignore[attr-defined]
    try:
        worker_id = ray.get(actor.say_preloaded.remote(), timeout=120)
        assert f"{node_id}:{worker_id}" in preloaded_keys(node_id)
        # Once a worker of the node said so, its never-used workers that did not count as
        # preloading: in the session's Ray (no preload) that is every never-used one. The
        # worker that said so has an actor: not a spare, not counted.
        for _ in range(20):  # a spare of an earlier test's pool may be booting in between
            counts = (
                ray_internals.preloading_python_workers(node_id),
                ray_internals.never_used_python_workers(node_id),
            )
            if counts[0] == counts[1]:
                break
            time.sleep(0.2)
        assert counts[0] == counts[1], counts
    finally:
        ray.kill(actor)
    deadline = time.monotonic() + 60
    while f"{node_id}:{worker_id}" in preloaded_keys(node_id):
        assert time.monotonic() < deadline, "a gone worker's word was kept"
        assert ray_internals.preloading_python_workers(node_id) is not None
        time.sleep(0.2)
    assert ray_internals.preloading_python_workers("ab" * 28) is None  # no such node


@pytest.mark.ray
def test_the_raylet_answers_the_worker_count(ray_session: None) -> None:
    node_id = ray.get_runtime_context().get_node_id()
    count = ray_internals.never_used_python_workers(node_id)
    assert isinstance(count, int) and count >= 0
    assert ray_internals.never_used_python_workers("ab" * 28) is None  # no such node


@pytest.mark.ray
def test_the_session_ray_accepted_every_raylet_setting_the_service_uses(ray_session: None) -> None:
    # The session's Ray was started with raylet_config too (tests/support/ray_fixtures.py):
    # an unknown key would have failed its ray.init. Its raylet runs with them.
    node_id = ray.get_runtime_context().get_node_id()
    reply = ray_internals._call_raylet(
        node_id, "GetSystemConfig", lambda messages: messages.GetSystemConfigRequest()
    )
    running = json.loads(reply.system_config)
    assert set(RAY_SYSTEM_CONFIG) <= set(running), running
    assert running[ray_internals.FIRST_DRIVER_WORKERS_SETTING] is False


@ray.remote(num_cpus=0)
class EnvProbe:
    """Reports its runtime env, and what a child of it would run in."""

    def env(self) -> str:
        context: Any = ray.get_runtime_context()
        return str(context.get_runtime_env_string())

    def child_env(self, runtime_env: dict[str, Any]) -> tuple[str, str]:
        return predicted_and_actual(runtime_env)


def predicted_and_actual(runtime_env: dict[str, Any]) -> tuple[str, str]:
    """What child_runtime_env_info says a child gets here, and what a real child reports."""
    predicted = ray_internals.child_runtime_env_info(runtime_env).serialized_runtime_env
    child = EnvProbe.options(runtime_env=runtime_env).remote()  # type: ignore[attr-defined]
    try:
        return predicted, ray.get(child.env.remote(), timeout=120)
    finally:
        ray.kill(child)


@pytest.mark.ray
def test_the_runtime_env_of_a_child_actor_is_predicted_as_ray_builds_it(ray_session: None) -> None:
    # From the driver, whose job has no runtime env: the child's own.
    predicted, actual = predicted_and_actual(sandbox_runtime_env())
    assert predicted == actual
    # From an actor with a runtime env of its own (a manager started by a Serve app):
    # Ray merges the two, and the spares must match the merge exactly.
    parent = EnvProbe.options(  # type: ignore[attr-defined]
        runtime_env={"env_vars": {"PARENT": "\u00e9"}, "config": {"setup_timeout_seconds": 300}}
    ).remote()
    try:
        predicted, actual = ray.get(parent.child_env.remote(sandbox_runtime_env()), timeout=180)
    finally:
        ray.kill(parent)
    assert predicted == actual
    assert json.loads(actual)["env_vars"] == {
        "PARENT": "\u00e9",
        **sandbox_runtime_env()["env_vars"],
    }


@ray.remote(num_cpus=0)
class Stamped:
    def ready(self) -> bool:
        return True


@pytest.mark.ray
def test_the_gcs_says_when_a_task_reached_each_state(ray_session: None) -> None:
    actor = Stamped.remote()  # type: ignore[attr-defined]
    try:
        assert ray.get(actor.ready.remote(), timeout=120)
        # Workers report task events to the GCS in batches: wait for the one with RUNNING.
        deadline = time.monotonic() + 60
        states: dict[str, float] = {}
        while "RUNNING" not in states:
            assert time.monotonic() < deadline, f"no RUNNING event for Stamped.__init__: {states}"
            time.sleep(0.5)
            found = ray_internals.task_state_times("Stamped.__init__")
            states = next(iter(found.values()), {})
    finally:
        ray.kill(actor)
    assert states["PENDING_NODE_ASSIGNMENT"] <= states["RUNNING"]
