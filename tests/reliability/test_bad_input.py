"""Bad input to the running service: a clear error every time, and nothing changed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from tests.reliability.conftest import BUTTON, branch_commits, execute, worktree_of
from tests.serve.conftest import Api
from tests.serve.test_api_ws import recv, ws_url
from tests.support.gitrepo import git

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def owned(api: Api) -> Iterator[tuple[str, str]]:
    """A user and a running sandbox with one edit, shared by this module's tests."""
    user = api.user("bad")
    sandbox_id = api.create(user)["sandbox_id"]
    reply = execute(
        api, user, sandbox_id, command="write_file", file_path="src/one.txt", content="1\n"
    )
    assert reply.status_code == 200, reply.text
    try:
        yield user, sandbox_id
    finally:
        api.http.delete(f"/api/v1/sandboxes/{sandbox_id}", headers=api.headers(user), timeout=120)


def unchanged(api: Api, sandbox_id: str, before: list[str]) -> None:
    assert branch_commits(api, sandbox_id) == before
    assert git(worktree_of(api, sandbox_id), "status", "--porcelain") == ""


def assert_error(reply: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    error = dict(reply.json()["error"])
    assert error["message"], error
    if code is not None:
        assert error["code"] == code, error
    return error


def test_unknown_sandbox_commit_and_repository(api: Api, owned: tuple[str, str]) -> None:
    user, sandbox_id = owned
    headers = api.headers(user)
    before = branch_commits(api, sandbox_id)
    for unknown in ("sb_doesnotexist", "sb_" + "a" * 300, "not-an-id", "..%2F..%2Fetc"):
        reply = api.http.get(f"/api/v1/sandboxes/{unknown}", headers=headers)
        assert_error(reply, 404)
        reply = api.http.post(
            f"/api/v1/sandboxes/{unknown}/execute",
            json={"command": "write_file", "file_path": "a.txt", "content": "a"},
            headers=headers,
        )
        assert_error(reply, 404)
    for commit in ("deadbeef", "0" * 40, "f" * 64):
        reply = api.http.post(
            f"/api/v1/sandboxes/{sandbox_id}/rollback",
            json={"commit_hash": commit},
            headers=headers,
        )
        assert_error(reply, 404, "commit_not_found")
    reply = api.http.post(
        f"/api/v1/sandboxes/{sandbox_id}/rollback", json={"commit_hash": "HEAD~1"}, headers=headers
    )
    assert_error(reply, 422)
    reply = api.http.post(
        "/api/v1/sandboxes",
        json={"type": "component-studio", "repository_id": 9999},
        headers=headers,
    )
    assert_error(reply, 404, "repository_not_found")
    unchanged(api, sandbox_id, before)


def test_rollback_beyond_the_base_is_a_client_error(api: Api, owned: tuple[str, str]) -> None:
    user, sandbox_id = owned
    headers = api.headers(user)
    before = branch_commits(api, sandbox_id)
    for steps in (2, 50, 9999):
        reply = api.http.post(
            f"/api/v1/sandboxes/{sandbox_id}/rollback", json={"steps": steps}, headers=headers
        )
        assert "base" in reply.json()["error"]["message"]
        unchanged(api, sandbox_id, before)
        assert 400 <= reply.status_code < 500, reply.text


def test_bad_rollbacks_change_nothing(api: Api, owned: tuple[str, str]) -> None:
    user, sandbox_id = owned
    headers = api.headers(user)
    before = branch_commits(api, sandbox_id)
    url = f"/api/v1/sandboxes/{sandbox_id}/rollback"
    for steps in (2, 9999):
        reply = api.http.post(url, json={"steps": steps}, headers=headers)
        # Refused, saying where the base is.
        assert reply.json()["error"]["code"] == "rollback_out_of_range", reply.text
        assert "base" in reply.json()["error"]["message"]
    for steps in (0, -1, 10**6):
        assert_error(api.http.post(url, json={"steps": steps}, headers=headers), 422)
    both = {"steps": 1, "commit_hash": before[-1]}
    assert 400 <= api.http.post(url, json=both, headers=headers).status_code < 500
    # Nothing was rolled back: there is nothing to undo.
    reply = api.http.post(url, json={"undo": True}, headers=headers)
    assert 400 <= reply.status_code < 500, reply.text
    assert reply.json()["error"]["message"]
    unchanged(api, sandbox_id, before)


def test_oversized_content_and_invalid_bodies(api: Api, owned: tuple[str, str]) -> None:
    user, sandbox_id = owned
    headers = api.headers(user)
    url = f"/api/v1/sandboxes/{sandbox_id}/execute"
    before = branch_commits(api, sandbox_id)
    limit = api.settings.max_file_bytes
    big = {"command": "write_file", "file_path": "src/big.txt", "content": "x" * (limit + 1)}
    assert_error(api.http.post(url, json=big, headers=headers), 413, "payload_too_large")
    batch = {
        "command": "write_files",
        "files": [
            {"file_path": "src/small.txt", "content": "ok"},
            {"file_path": "src/big.txt", "content": "é" * (limit // 2 + 1)},
        ],
    }
    assert_error(api.http.post(url, json=batch, headers=headers), 413, "payload_too_large")
    for raw in (b"{not json", b"", b"\xff\xfe\x00", b"[]", b'"write_file"', b"null"):
        reply = api.http.post(
            url, content=raw, headers={**headers, "Content-Type": "application/json"}
        )
        # FastAPI's own refusal of an unparsable body: 400 or 422, in the API's error shape.
        assert reply.status_code in (400, 422), reply.text
        assert reply.json()["error"]["message"]
    for body in (
        {"command": "format_disk"},
        {"command": "write_file", "file_path": "a.txt"},
        {"command": "write_file", "file_path": "a.txt", "content": 5},
        {"command": "write_file", "file_path": "", "content": "x"},
        {"command": "write_files", "files": []},
    ):
        reply = api.http.post(url, json=body, headers=headers)
        assert reply.status_code in (400, 422), (body, reply.text)
        assert reply.json()["error"]["message"]
    unchanged(api, sandbox_id, before)
    assert not (worktree_of(api, sandbox_id) / "src/small.txt").exists()


@pytest.fixture
def finalized(api: Api) -> Iterator[tuple[str, str, list[str]]]:
    """A user's sandbox, finalized: (user, sandbox id, its branch's commits)."""
    user = api.user("final")
    headers = api.headers(user)
    sandbox_id = api.create(user)["sandbox_id"]
    try:
        first = api.http.post(
            f"/api/v1/sandboxes/{sandbox_id}/finalize",
            json={"title": "one"},
            headers=headers,
            timeout=300,
        )
        assert first.status_code == 200, first.text
        yield user, sandbox_id, branch_commits(api, sandbox_id)
    finally:
        api.http.delete(f"/api/v1/sandboxes/{sandbox_id}", headers=headers, timeout=120)


def test_a_finalized_sandbox_refuses_work_saying_so(
    api: Api, finalized: tuple[str, str, list[str]]
) -> None:
    user, sandbox_id, kept = finalized
    headers = api.headers(user)
    url = f"/api/v1/sandboxes/{sandbox_id}"
    write = {"command": "write_file", "file_path": BUTTON, "content": "x"}
    error = assert_error(api.http.post(url + "/execute", json=write, headers=headers), 409)
    assert error["state"] == "finalized" and "finalized" in error["message"]
    assert_error(api.http.post(url + "/rollback", json={"steps": 1}, headers=headers), 409)
    assert branch_commits(api, sandbox_id) == kept
    assert api.http.get(url, headers=headers).json()["status"] == "finalized"


def test_finalize_twice_changes_nothing(api: Api, finalized: tuple[str, str, list[str]]) -> None:
    user, sandbox_id, kept = finalized
    url = f"/api/v1/sandboxes/{sandbox_id}/finalize"
    first = api.http.post(url, json={"title": "two"}, headers=api.headers(user), timeout=120)
    again = api.http.post(url, json={"title": "three"}, headers=api.headers(user), timeout=120)
    # Either a conflict saying it is finalized, or the same answer again (idempotent).
    for reply in (first, again):
        if reply.status_code == 409:
            assert reply.json()["error"]["state"] == "finalized", reply.text
        else:
            assert reply.status_code == 200, reply.text
    assert first.status_code == again.status_code and first.text == again.text
    assert branch_commits(api, sandbox_id) == kept
    status = api.http.get(f"/api/v1/sandboxes/{sandbox_id}", headers=api.headers(user)).json()
    assert status["status"] == "finalized"


async def test_garbage_websocket_frames_get_errors_and_the_stream_goes_on(
    api: Api, owned: tuple[str, str]
) -> None:
    user, sandbox_id = owned
    headers = api.headers(user)
    before = branch_commits(api, sandbox_id)
    garbage: list[str | bytes] = [
        b"\x00\x01\x02\xff",
        "{not json",
        "[]",
        "null",
        json.dumps({"type": "rm -rf", "payload": {}}),
        json.dumps({"type": "commit", "payload": {"hash": "0" * 40}}),
        json.dumps({"type": "component-selected", "payload": "Button"}),
        json.dumps({"payload": {}}),
        "x" * (32 * 1024),
    ]
    async with websockets.connect(
        ws_url(api, sandbox_id), additional_headers=headers, max_size=None
    ) as ws:
        assert (await recv(ws))["type"] == "hello"
        for frame in garbage:
            await ws.send(frame)
            answer = await recv(ws)
            assert answer["type"] == "error", (frame[:40], answer)
            assert answer["payload"]["message"]
            assert len(json.dumps(answer)) < 4096
        # Still a working session: a ping is answered.
        await ws.send(json.dumps({"type": "ping", "payload": {"nonce": "still"}}))
        answer = await recv(ws)
        assert (answer["type"], answer["payload"]["nonce"]) == ("pong", "still")
        # A message over ws_max_message_bytes ends the session (docs/limits.md).
        await ws.send("x" * (api.settings.ws_max_message_bytes + 1))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await recv(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        assert "the limit is" in closed.value.rcvd.reason
    await asyncio.to_thread(unchanged, api, sandbox_id, before)
