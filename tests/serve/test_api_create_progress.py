"""Create without waiting: 202 at once, the setup steps on the stream, the CLI's progress.

Against the real API on the session's Ray: the steps are the sandbox's own
``status`` events (mirror, worktree, install, vite), in order, before it is
running; the CLI shows them as they happen and ends with the sandbox's URLs,
or with the reason its setup failed.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from cli.main import main
from tests.serve.conftest import CREATE_FIELDS, Api, open_renderer

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STEPS = ["mirror", "worktree", "install", "vite"]
TIMEOUT = 120


def repo_of(api: Api) -> list[str]:
    """``--repo <id>``: the package's API may hold other tests' repositories too."""
    return ["--repo", str(api.repository_id)]


def _create_now(api: Api, user: str, **overrides: Any) -> httpx.Response:
    return api.http.post(
        "/api/v1/sandboxes",
        params={"wait": "false"},
        json={"type": "component-studio", "repository_id": api.repository_id, **overrides},
        headers=api.headers(user),
        timeout=TIMEOUT,
    )


def _statuses_until_settled(api: Api, user: str, websocket_url: str) -> list[dict[str, Any]]:
    """The ``status`` payloads from the stream's start until one that is not ``starting``."""
    statuses: list[dict[str, Any]] = []
    with connect(f"{websocket_url}?since=0", additional_headers=api.headers(user)) as ws:
        while True:
            message = json.loads(ws.recv(timeout=TIMEOUT))
            if message["type"] == "ping":
                ws.send(json.dumps({"type": "pong", "payload": message["payload"]}))
            elif message["type"] == "status":
                statuses.append({"seq": message["seq"], **message["payload"]})
                if message["payload"]["status"] not in ("pending", "starting"):
                    return statuses


def _remove(api: Api, user: str, sandbox_id: str) -> None:
    reply = api.http.delete(
        f"/api/v1/sandboxes/{sandbox_id}", headers=api.headers(user), timeout=TIMEOUT
    )
    assert reply.status_code == 200, reply.text


def test_create_without_waiting_answers_202_and_the_stream_names_each_step(api: Api) -> None:
    user = api.user("progress")
    reply = _create_now(api, user)
    assert reply.status_code == 202, reply.text
    created = reply.json()
    sandbox_id = created["sandbox_id"]
    try:
        assert created["status"] in ("pending", "starting")
        assert created["renderer_url"] is None
        statuses = _statuses_until_settled(api, user, created["websocket_url"])
        steps = [s["step"] for s in statuses if s.get("step")]
        assert steps == STEPS
        assert all(s["status"] == "starting" for s in statuses[:-1])
        assert statuses[-1]["status"] == "running"
        assert [s["seq"] for s in statuses] == sorted(s["seq"] for s in statuses)

        shown = api.http.get(f"/api/v1/sandboxes/{sandbox_id}", headers=api.headers(user)).json()
        assert shown["status"] == "running"
        with open_renderer(shown["renderer_url"]) as renderer:
            assert renderer.get("@vite/client").status_code == 200
    finally:
        _remove(api, user, sandbox_id)


def test_create_without_waiting_still_refuses_bad_input_at_once(api: Api) -> None:
    user = api.user("progress-bad")
    reply = _create_now(api, user, timeout_hours=-1)
    assert reply.status_code in (400, 422), reply.text
    assert "timeout_hours" in reply.text
    listed = api.http.get("/api/v1/sandboxes", headers=api.headers(user)).json()
    assert listed == []


def test_studio_create_shows_each_step_then_the_urls(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    user = api.user("cli-progress")
    code = main(["create", *repo_of(api), "--url", api.url, "--token", api.tokens[user]])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    sandbox_id = captured.out.split()[0]
    try:
        timed = re.findall(r"^  (\w+)\s+(\d+\.\d\d)s$", captured.err, flags=re.MULTILINE)
        assert [name for name, _ in timed] == ["actor", *STEPS]
        assert re.search(r"^running in \d+\.\ds$", captured.err, flags=re.MULTILINE)
        assert f"{sandbox_id}  running" in captured.out
        renderer = re.search(r"renderer:\s+(\S+)", captured.out)
        assert renderer is not None
        # The printed URL is the proxy's with its ticket: opened, it serves the page.
        with open_renderer(renderer.group(1)) as page:
            assert page.get("@vite/client").status_code == 200
    finally:
        _remove(api, user, sandbox_id)


def test_studio_create_json_ends_running_with_the_create_fields(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    user = api.user("cli-progress-json")
    code = main(["create", *repo_of(api), "--json", "--url", api.url, "--token", api.tokens[user]])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    created = json.loads(captured.out)
    try:
        assert set(created) == CREATE_FIELDS
        assert created["status"] == "running"
        assert created["renderer_url"].startswith("http://")
    finally:
        _remove(api, user, created["sandbox_id"])


def test_studio_create_says_why_a_setup_failed(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    user = api.user("cli-progress-fail")
    # Vite cannot answer within 10 ms: the setup fails at its last step.
    code = main(
        [
            "create",
            *repo_of(api),
            "--url",
            api.url,
            "--token",
            api.tokens[user],
            "--set",
            "ready_timeout=0.01",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    match = re.search(r"sandbox (sb_\w+) did not start \(failed\): (.+)", captured.err)
    assert match is not None, captured.err
    assert "vite" in captured.err
    assert re.search(r"^failed in \d+\.\ds$", captured.err, flags=re.MULTILINE)
    shown = api.http.get(f"/api/v1/sandboxes/{match.group(1)}", headers=api.headers(user)).json()
    assert shown["status"] == "failed"
    assert shown["renderer_url"] is None
    # The manager disposes of the half-made sandbox just after it says failed.
    worktree = api.settings.state_dir / "worktrees" / match.group(1)
    deadline = time.monotonic() + 30
    while worktree.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not worktree.exists()


def test_a_failed_create_answers_with_the_reason_and_leaves_no_worktree(api: Api) -> None:
    user = api.user("failed-create")
    reply = api.http.post(
        "/api/v1/sandboxes",
        json={
            "type": "component-studio",
            "repository_id": api.repository_id,
            "ready_timeout": 0.01,
        },
        headers=api.headers(user),
        timeout=TIMEOUT,
    )
    assert reply.status_code == 502, reply.text
    assert reply.json()["error"]["code"] == "vite_start_error"
    listed = api.http.get(
        "/api/v1/sandboxes", params={"include_ended": "true"}, headers=api.headers(user)
    ).json()
    assert [s["status"] for s in listed] == ["failed"]
    assert not (api.settings.state_dir / "worktrees" / listed[0]["id"]).exists()
