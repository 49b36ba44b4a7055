"""The HTTP API behind Ray Serve, with real sandboxes (git, Vite) and real httpx clients."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
from ray import serve

from serve.app import MAX_ONGOING_REQUESTS, build_app
from tests.serve.conftest import CREATE_FIELDS, OPTIONS, Api, open_renderer

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BUTTON = "src/components/Button/Button.tsx"
BUTTON_TSX = """import type { ReactNode } from "react";

export function Button({ children }: { children?: ReactNode }) {
  return <button style={{ borderRadius: 12 }}>{children}</button>;
}
"""


def is_timestamp(value: str) -> bool:
    return bool(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", value))


def test_the_plans_five_requests(api: Api) -> None:
    alice = api.user("alice")
    headers = api.headers(alice)

    # Create Sandbox, exactly as docs/api.md writes it.
    reply = api.http.post(
        "/api/v1/sandboxes",
        json={"type": "component-studio", "repository_id": api.repository_id},
        headers=headers,
        timeout=180,
    )
    assert reply.status_code == 201, reply.text
    created = reply.json()
    assert set(created) == CREATE_FIELDS
    sandbox_id = created["sandbox_id"]
    assert re.fullmatch(r"sb_[a-z0-9]+", sandbox_id)
    assert created["status"] == "running"
    assert created["branch"] == "design/studio-" + sandbox_id.removeprefix("sb_")
    # The renderer through the replica (its own listener, as execute_url), with a ticket for
    # its cookie (serve.renderer_proxy); the API's port serves it too.
    assert re.fullmatch(
        rf"http://localhost:\d+/r/{sandbox_id}/\?ticket=[^&]+", created["renderer_url"]
    )
    # The replica's own listener (serve.direct), on the public host: tests/serve/test_direct_ws.py.
    assert re.fullmatch(
        rf"ws://localhost:\d+/api/v1/sandboxes/{sandbox_id}/ws", created["websocket_url"]
    )
    assert re.fullmatch(
        rf"http://localhost:\d+/api/v1/sandboxes/{sandbox_id}/execute", created["execute_url"]
    )
    with open_renderer(created["renderer_url"]) as renderer:
        assert renderer.get("@vite/client").status_code == 200

    # Get Sandbox Status.
    reply = api.http.get(f"/api/v1/sandboxes/{sandbox_id}", headers=headers)
    assert reply.status_code == 200, reply.text
    status = reply.json()
    assert {"id", "status", "renderer_url", "git_commits", "last_activity"} <= set(status)
    assert {"websocket_url", "execute_url", "branch", "restarts", "node"} <= set(status)
    assert status["id"] == sandbox_id and status["status"] == "running"
    assert is_timestamp(status["last_activity"])
    base_hash = status["git_commits"][0]["hash"]

    # Execute Command.
    reply = api.http.post(
        f"/api/v1/sandboxes/{sandbox_id}/execute",
        json={
            "command": "write_file",
            "file_path": BUTTON,
            "content": BUTTON_TSX,
            "description": "Updated border-radius",
        },
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    executed = reply.json()
    assert executed["output"]
    commit_hash = executed["commit_hash"]
    assert re.fullmatch(r"[0-9a-f]{7,40}", commit_hash)

    commits = api.http.get(f"/api/v1/sandboxes/{sandbox_id}", headers=headers).json()["git_commits"]
    assert set(commits[0]) == {"hash", "message", "timestamp"}
    newest = commits[0]
    assert newest["hash"] == commit_hash
    assert re.fullmatch(r"AI: Updated border-radius - \d{4}-\d\d-\d\d \d\d:\d\d", newest["message"])
    assert is_timestamp(newest["timestamp"])
    assert datetime.fromisoformat(newest["timestamp"].replace("Z", "+00:00"))

    history = api.http.get(f"/api/v1/sandboxes/{sandbox_id}/commits", headers=headers).json()
    assert [c["hash"] for c in history][:1] == [commit_hash]

    # Rollback to the base commit, then undo it.
    reply = api.http.post(
        f"/api/v1/sandboxes/{sandbox_id}/rollback",
        json={"commit_hash": base_hash},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    rolled = reply.json()
    assert rolled["success"] is True
    assert rolled["current_hash"] == base_hash
    undone = api.http.post(
        f"/api/v1/sandboxes/{sandbox_id}/rollback", json={"undo": True}, headers=headers
    ).json()
    assert undone["current_hash"] == commit_hash

    logs = api.http.get(f"/api/v1/sandboxes/{sandbox_id}/logs", headers=headers)
    assert logs.status_code == 200 and isinstance(logs.json()["lines"], list)
    index = api.http.get(f"/api/v1/sandboxes/{sandbox_id}/components", headers=headers)
    assert index.status_code == 200, index.text
    assert "Button" in index.text

    # Finalize (Create PR): a local repository has no forge, so no PR number.
    reply = api.http.post(
        f"/api/v1/sandboxes/{sandbox_id}/finalize",
        json={
            "title": "Design updates from Component Studio",
            "description": "Updated Button, Input, Modal based on design feedback",
        },
        headers=headers,
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    final = reply.json()
    assert final["pr_url"] is None and final["pr_number"] is None
    assert "push" in final["message"].lower()
    # Button changed: its stories' pictures went to a ref of their own (images default on).
    assert final["screenshots_ref"] == f"refs/heads/studio-screenshots/{sandbox_id}"
    assert re.fullmatch(r"[0-9a-f]{40}", final["screenshots_commit"])

    ended = api.http.get(f"/api/v1/sandboxes/{sandbox_id}", headers=headers).json()
    assert ended["status"] == "finalized"


def test_auth_errors(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        reply = api.http.get("/api/v1/sandboxes", headers=headers)
        assert reply.status_code == 401
        assert reply.json()["error"]["code"] == "unauthenticated"
    bob = api.user("bob")
    reply = api.http.post("/api/v1/users", json={"name": "mallory"}, headers=api.headers(bob))
    assert reply.status_code == 403
    assert reply.json()["error"]["code"] == "permission_denied"
    assert api.http.get("/healthz").json() == {"status": "ok", "manager": "ok"}


def test_openapi_docs(api: Api) -> None:
    assert api.http.get("/docs").status_code == 200
    paths = api.http.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/sandboxes",
        "/api/v1/sandboxes/{sandbox_id}",
        "/api/v1/sandboxes/{sandbox_id}/execute",
        "/api/v1/sandboxes/{sandbox_id}/rollback",
        "/api/v1/sandboxes/{sandbox_id}/finalize",
        "/api/v1/sandboxes/{sandbox_id}/commits",
        "/api/v1/repositories",
        "/api/v1/users",
        "/healthz",
    ):
        assert path in paths, path


def test_other_users_sandbox_is_not_found_and_validation(api: Api) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    sandbox_id = api.create(alice)["sandbox_id"]
    base = f"/api/v1/sandboxes/{sandbox_id}"
    unknown = "/api/v1/sandboxes/sb_doesnotexist"
    write = {"command": "write_file", "file_path": BUTTON, "content": "x", "description": "d"}
    for path in (base, unknown):
        for method, suffix, body in (
            ("GET", "", None),
            ("GET", "/commits", None),
            ("POST", "/execute", write),
            ("POST", "/rollback", {"steps": 1}),
            ("POST", "/finalize", {"title": "t"}),
            ("DELETE", "", None),
        ):
            reply = api.http.request(method, path + suffix, json=body, headers=api.headers(bob))
            assert reply.status_code == 404, (method, path + suffix, reply.text)
            assert reply.json()["error"]["code"] == "sandbox_not_found"
    listed = api.http.get("/api/v1/sandboxes", headers=api.headers(bob)).json()
    assert listed == []

    headers = api.headers(alice)
    big = {**write, "content": "x" * (api.settings.max_file_bytes + 1)}
    reply = api.http.post(base + "/execute", json=big, headers=headers)
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "payload_too_large"

    reply = api.http.post(base + "/execute", json={"command": "write_file"}, headers=headers)
    assert reply.status_code == 422
    assert "file_path" in reply.json()["error"]["message"]
    reply = api.http.post(base + "/rollback", json={}, headers=headers)
    assert reply.status_code == 422
    assert "commit_hash" in reply.json()["error"]["message"]
    reply = api.http.post(base + "/finalize", json={"title": "t", "images": 3}, headers=headers)
    assert reply.status_code == 422
    assert reply.json()["error"]["field"] == "images"
    reply = api.http.post("/api/v1/sandboxes", json={"type": "component-studio"}, headers=headers)
    assert reply.status_code == 422
    assert reply.json()["error"]["field"] == "repository_id"
    reply = api.http.post(
        base + "/execute",
        json={**write, "file_path": "../../etc/passwd"},
        headers=headers,
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "path_not_allowed"


def test_stopped_sandbox_answers_409_saying_so(api: Api) -> None:
    alice = api.user("alice")
    headers = api.headers(alice)
    sandbox_id = api.create(alice)["sandbox_id"]
    reply = api.http.delete(f"/api/v1/sandboxes/{sandbox_id}", headers=headers, timeout=120)
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "stopped"
    reply = api.http.post(
        f"/api/v1/sandboxes/{sandbox_id}/execute",
        json={"command": "read_file", "file_path": BUTTON},
        headers=headers,
    )
    assert reply.status_code == 409, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_state"
    assert error["state"] == "stopped"
    assert "stopped" in error["message"]
    status = api.http.get(f"/api/v1/sandboxes/{sandbox_id}", headers=headers).json()
    assert status["status"] == "stopped"
    assert api.http.get("/api/v1/sandboxes", headers=headers).json() == []
    ended = api.http.get("/api/v1/sandboxes?include_ended=true", headers=headers).json()
    assert [s["id"] for s in ended] == [sandbox_id]


def test_repository_outside_allowed_roots_is_refused(api: Api, tmp_path_factory) -> None:
    outside = tmp_path_factory.mktemp("elsewhere")
    admin = api.headers("admin")
    reply = api.http.post(
        "/api/v1/repositories", json={"name": "evil", "path": str(outside)}, headers=admin
    )
    assert reply.status_code in (400, 403), reply.text
    assert reply.json()["error"]["message"]
    reply = api.http.post(
        "/api/v1/repositories", json={"name": "both", "path": "/x", "github": "a/b"}, headers=admin
    )
    assert reply.status_code == 422
    repos = api.http.get("/api/v1/repositories", headers=admin).json()
    assert [r["name"] for r in repos] == ["ui-kit"]


@pytest.fixture(scope="module")
def tight(api: Api) -> Iterator[str]:
    """A second application of the API, under /tight, allowing 5 requests then 1 a second."""
    settings = api.settings.model_copy(update={"rate_limit_per_minute": 60, "rate_limit_burst": 5})
    serve.run(build_app(settings, OPTIONS), name="studio-tight", route_prefix="/tight")
    try:
        yield api.url + "/tight"
    finally:
        serve.delete("studio-tight")


async def test_rate_limit_answers_429_with_retry_after(api: Api, tight: str) -> None:
    carol = api.user("carol")
    async with httpx.AsyncClient(base_url=tight, timeout=60) as client:
        replies = await asyncio.gather(
            *(client.get("/api/v1/repositories", headers=api.headers(carol)) for _ in range(40))
        )
        other = await client.get("/api/v1/repositories", headers=api.headers("admin"))
    assert other.status_code == 200, other.text
    statuses = [r.status_code for r in replies]
    # 40 requests within 35 s cannot all fit in a bucket of 5 refilled once a second.
    assert statuses.count(429) >= 1, statuses
    assert set(statuses) <= {200, 429}
    limited = next(r for r in replies if r.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    error = limited.json()["error"]
    assert error["code"] == "rate_limited"
    assert "60 a minute" in error["message"]


def test_deployment_allows_many_ongoing_requests() -> None:
    assert MAX_ONGOING_REQUESTS >= 1000
