"""The cluster manifests, loaded and checked against the code they name.

Each YAML file is validated by the schema its tool uses (Serve's
``ServeDeploySchema``, the cluster launcher's ``ray-schema.json``) and its
fields against this repository: the import path imports and is callable,
resources are named as the actors schedule on, environment variables are
real ``StudioSettings`` fields.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.serve.schema import ServeDeploySchema

from actors.scheduling import SLOT_RESOURCE
from studio.config import StudioSettings

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
ENV_PREFIX = "COMPONENT_STUDIO_"
ENV_NAME = re.compile(r"\b(COMPONENT_STUDIO_[A-Z_]+)")


def load(name: str) -> Any:
    return yaml.safe_load((CLUSTER / name).read_text())


# Ray's own settings the manifests may set, with the module they name (it must import).
RAY_ENV = {"RAY_preload_python_modules": "actors._preload"}


def check_env_names(names: list[str]) -> None:
    assert names, "expected some COMPONENT_STUDIO_* variables"
    fields = set(StudioSettings.model_fields)
    for name in names:
        if name in RAY_ENV:
            importlib.import_module(RAY_ENV[name])
            continue
        assert name.startswith(ENV_PREFIX), name
        assert name.removeprefix(ENV_PREFIX).lower() in fields, f"{name} is no StudioSettings field"


def check_serve_config(config: dict[str, Any]) -> None:
    schema = ServeDeploySchema.model_validate(config)
    assert [app.name for app in schema.applications] == ["component-studio"]
    for app in config["applications"]:
        module_name, _, attr = app["import_path"].partition(":")
        builder = getattr(importlib.import_module(module_name), attr)
        assert callable(builder)
        args = app.get("args") or {}
        unknown = set(args) - set(StudioSettings.model_fields)
        assert not unknown, f"args that are no StudioSettings field: {unknown}"
        StudioSettings(**args)  # the values validate too
        env = (app.get("runtime_env") or {}).get("env_vars") or {}
        if env:
            check_env_names(list(env))


def test_serve_config() -> None:
    check_serve_config(load("serve-config.yaml"))


def test_ray_cluster_config() -> None:
    config = load("ray-cluster.yaml")
    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    workers = [spec for name, spec in types.items() if name != config["head_node_type"]]
    assert head["resources"][SLOT_RESOURCE] == 0, "sandboxes stay off the head"
    assert workers
    for spec in workers:
        assert spec["resources"][SLOT_RESOURCE] >= 1
    commands = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    check_env_names(ENV_NAME.findall(commands))


def _start_resources(params: dict[str, str]) -> dict[str, float]:
    # KubeRay passes the value to `ray start --resources=<value>` as is: a quoted JSON string.
    value = params["resources"]
    return json.loads(json.loads(value))


def test_kuberay_rayservice() -> None:
    manifest = load("kuberay/rayservice.yaml")
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == "RayService"
    spec = manifest["spec"]
    check_serve_config(yaml.safe_load(spec["serveConfigV2"]))
    cluster = spec["rayClusterConfig"]
    assert cluster["rayVersion"].startswith(ray.__version__.rsplit(".", 1)[0])
    head = cluster["headGroupSpec"]
    assert _start_resources(head["rayStartParams"])[SLOT_RESOURCE] == 0
    groups = cluster["workerGroupSpecs"]
    assert groups
    env_names = [e["name"] for c in head["template"]["spec"]["containers"] for e in c["env"]]
    for group in groups:
        assert _start_resources(group["rayStartParams"])[SLOT_RESOURCE] >= 1
        containers = group["template"]["spec"]["containers"]
        env_names += [e["name"] for c in containers for e in c.get("env", [])]
    check_env_names(env_names)


@pytest.mark.parametrize(
    "name", ["serve-config.yaml", "ray-cluster.yaml", "kuberay/rayservice.yaml"]
)
def test_manifest_is_plain_yaml(name: str) -> None:
    assert isinstance(load(name), dict)


def test_kuberay_needs_one_port_for_api_events_and_renderers() -> None:
    """On paper: clients reach the Serve port alone, and the app there serves the
    renderers (HTTP and WebSocket) besides the API; no worker exposes a Vite port."""
    from serve.app import create_app
    from serve.replica import Replica, ServeOptions

    manifest = load("kuberay/rayservice.yaml")
    spec = manifest["spec"]
    serve_config = yaml.safe_load(spec["serveConfigV2"])
    port = serve_config["http_options"]["port"]
    (app_config,) = serve_config["applications"]
    # Without the replicas' own listeners: every client path is the Serve port's.
    assert app_config["args"]["ws_direct_port"] == 0
    head = spec["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for c in head for p in c.get("ports", [])}
    assert named["serve"] == port
    for group in spec["rayClusterConfig"]["workerGroupSpecs"]:
        for container in group["template"]["spec"]["containers"]:
            assert not container.get("ports"), "a worker must not expose its Vite ports"
    app = create_app(Replica(StudioSettings(ws_direct_port=0), ServeOptions()))
    # The app on that port routes to the renderer proxy (HTTP and WebSocket) and the events.
    for name, params in (
        ("renderer_http", {"sandbox_id": "sb_abc", "path": "@vite/client"}),
        ("renderer_websocket", {"sandbox_id": "sb_abc", "path": ""}),
        ("sandbox_events", {"sandbox_id": "sb_abc"}),
    ):
        assert app.url_path_for(name, **params).startswith(("/r/sb_abc/", "/api/v1/"))
