"""The API while the manager restarts or is gone: 503 with Retry-After, never a hang or 500."""

from __future__ import annotations

import os
import signal
import time

import pytest
import ray
from ray.serve import Application

from actors.handles import get_manager, kill_manager, start_manager
from serve.app import app_builder
from tests.serve.conftest import Api

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def wait_ok(api: Api, user: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        reply = api.http.get("/api/v1/sandboxes", headers=api.headers(user))
        assert reply.status_code in (200, 503), reply.text
        if reply.status_code == 200:
            return
        assert int(reply.headers["Retry-After"]) >= 1
        assert time.monotonic() < deadline, "the API did not recover"
        time.sleep(0.5)


def test_manager_killed_then_gone_then_back(api: Api) -> None:
    # Fresh users: their tokens are not in the replica's cache, so each asks the manager.
    first, second, third = (api.user("during") for _ in range(3))

    pid = ray.get(get_manager().pid.remote(), timeout=30)
    os.kill(pid, signal.SIGKILL)
    wait_ok(api, first)  # Ray restarts it: 200, or 503 with Retry-After meanwhile

    kill_manager()
    reply = api.http.get("/api/v1/sandboxes", headers=api.headers(second))
    assert reply.status_code == 503, reply.text
    assert int(reply.headers["Retry-After"]) >= 1
    assert reply.json()["error"]["code"] == "service_unavailable"
    assert api.http.get("/healthz").json() == {"status": "ok", "manager": "unavailable"}
    # Live but not ready: a load balancer sends nothing here until the manager is back.
    ready = api.http.get("/readyz")
    assert ready.status_code == 503, ready.text
    assert ready.json()["manager"] == "unavailable"
    assert ready.json()["waiting_for"] == ["the manager does not answer"]

    start_manager(api.settings, ping_timeout=2.0)
    wait_ok(api, second)
    wait_ok(api, third)
    assert api.http.get("/healthz").json()["manager"] == "ok"
    assert api.http.get("/readyz").status_code == 200


def test_app_builder_splits_options_from_settings_and_keeps_the_manager(api: Api) -> None:
    before = ray.get(get_manager().pid.remote(), timeout=30)
    app = app_builder(
        {"state_dir": str(api.settings.state_dir), "ping_interval": "0.5", "num_replicas": "1"}
    )
    assert isinstance(app, Application)
    assert ray.get(get_manager().pid.remote(), timeout=30) == before
    with pytest.raises(ValueError, match="unknown arguments"):
        app_builder({"stat_dir": "/tmp/x"})
