"""Faults on the running service: nothing the caller was told is committed is ever lost.

Vite SIGKILLed again and again, a Vite that crashes on every start, a sandbox
actor's worker SIGKILLed in the middle of a burst of executes, the manager's
worker SIGKILLed, stale git locks left by a crash, and the inactivity timeout.
Everything goes through the real API (Serve, manager, sandbox actors, Vite).
"""

from __future__ import annotations

import asyncio
import os
import signal
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
import websockets

from actors.handles import get_manager, sandbox_handle
from studio.naming import branch_name
from studio.vite import read_studio_config
from tests.reliability.conftest import (
    Made,
    branch_commits,
    execute,
    listener_pid,
    mirror_of,
    wait_for,
    worktree_of,
    write,
)
from tests.serve.conftest import Api, open_renderer
from tests.serve.test_api_ws import recv, recv_until, ws_url
from tests.support.fakevite import install_fake_vite
from tests.support.gitrepo import git

pytestmark = [pytest.mark.ray]

# Restarts in quick succession: backoff short, and a Vite that served a page and took
# an edit counts as a stable start, so twenty kills in a row are twenty separate crashes
# (Vite is restarted the moment it exits, so kills can come faster than a second apart).
QUICK_RESTARTS: dict[str, Any] = {
    "max_restarts": 3,
    "restart_backoff": 0.05,
    "restart_backoff_max": 0.2,
    "stable_start": 0.1,
}


async def status_event(ws: Any, wanted: str) -> dict[str, Any]:
    """The next ``status`` event saying ``wanted``; fails at once on ``failed`` instead."""
    while True:
        message = await recv(ws)
        if message["type"] == "status":
            status = message["payload"]["status"]
            if status == wanted:
                return message
            assert status != "failed" or wanted == "failed", message


def renderer_port(api: Api, user: str, sandbox_id: str) -> int:
    """The port the sandbox's Vite listens on now (its studio app's config)."""
    return int(read_studio_config(worktree_of(api, sandbox_id) / ".studio")["port"])


def renderer_page(api: Api, user: str, sandbox_id: str) -> int:
    """The status of the renderer's page, opened as its owner through the API's proxy."""
    status = api.http.get(f"/api/v1/sandboxes/{sandbox_id}", headers=api.headers(user)).json()
    with open_renderer(str(status["renderer_url"])) as renderer:
        return renderer.get("").status_code


@pytest.mark.slow
async def test_vite_sigkilled_twenty_times_restarts_each_time_and_keeps_edits(
    api: Api, sandboxes: Made
) -> None:
    user = api.user("killer")
    sandbox_id = sandboxes.create(user, **QUICK_RESTARTS)["sandbox_id"]
    hashes = []
    async with websockets.connect(
        ws_url(api, sandbox_id), additional_headers=api.headers(user)
    ) as ws:
        assert (await recv(ws))["type"] == "hello"
        for n in range(20):
            port = await asyncio.to_thread(renderer_port, api, user, sandbox_id)
            pid = await asyncio.to_thread(wait_for, partial(listener_pid, port), 30, "Vite")
            os.kill(pid, signal.SIGKILL)
            restarting = await status_event(ws, "restarting")
            assert restarting["payload"]["restarts"] >= n + 1
            await status_event(ws, "running")
            port = await asyncio.to_thread(renderer_port, api, user, sandbox_id)
            assert await asyncio.to_thread(renderer_page, api, user, sandbox_id) == 200, n
            assert listener_pid(port) not in (None, pid)
            hashes.append(
                await asyncio.to_thread(write, api, user, sandbox_id, f"src/kill/{n}.txt", f"{n}\n")
            )
    status = api.http.get(f"/api/v1/sandboxes/{sandbox_id}", headers=api.headers(user)).json()
    assert status["status"] == "running"
    assert status["restarts"] >= 20
    on_branch = branch_commits(api, sandbox_id)
    assert [h for h in hashes if h not in on_branch] == []
    # Newest first, the twenty edits in the order they were made.
    assert on_branch[:20] == hashes[::-1]


async def test_vite_crashing_on_start_fails_the_sandbox_with_its_output(
    api: Api, sandboxes: Made
) -> None:
    user = api.user("crash")
    sandbox_id = sandboxes.create(user, **{**QUICK_RESTARTS, "max_restarts": 2})["sandbox_id"]
    headers = api.headers(user)
    kept = await asyncio.to_thread(write, api, user, sandbox_id, "src/kept.txt", "kept\n")
    worktree = worktree_of(api, sandbox_id)
    async with websockets.connect(ws_url(api, sandbox_id), additional_headers=headers) as ws:
        assert (await recv(ws))["type"] == "hello"
        # From now on every start of "Vite" prints a config error and exits 1.
        install_fake_vite(worktree / ".studio", "crash")
        port = await asyncio.to_thread(renderer_port, api, user, sandbox_id)
        pid = listener_pid(port)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        error = await recv_until(ws, "error")
        assert any("simulated broken config" in line for line in error["payload"]["output"])
        assert "max_restarts=2" in error["payload"]["message"]
        await recv_until(ws, "status", status="failed")
    status = api.http.get(f"/api/v1/sandboxes/{sandbox_id}", headers=headers).json()
    assert status["status"] == "failed"
    assert "max_restarts=2" in status["error"]
    refused = execute(
        api, user, sandbox_id, command="write_file", file_path="src/x.txt", content="x"
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["state"] == "failed"
    assert branch_commits(api, sandbox_id)[0] == kept
    reply = api.http.delete(f"/api/v1/sandboxes/{sandbox_id}", headers=headers, timeout=120)
    assert reply.status_code == 200, reply.text
    assert not worktree.exists()
    assert branch_commits(api, sandbox_id)[0] == kept


@pytest.mark.slow
async def test_actor_worker_killed_mid_burst_loses_no_acknowledged_commit(
    api: Api, sandboxes: Made, client: httpx.AsyncClient
) -> None:
    user = api.user("burst")
    sandbox_id = sandboxes.create(user)["sandbox_id"]
    headers = api.headers(user)
    pid = (await sandbox_handle(sandbox_id).ping.remote())["pid"]
    finished = 0
    some_finished = asyncio.Event()

    async def one(n: int) -> tuple[int, dict[str, Any]]:
        nonlocal finished
        reply = await client.post(
            f"/api/v1/sandboxes/{sandbox_id}/execute",
            json={
                "command": "write_file",
                "file_path": f"src/burst/{n}.txt",
                "content": f"{n}\n",
                "description": f"burst {n}",
            },
            headers=headers,
            timeout=300,
        )
        finished += 1
        if finished >= 5:
            some_finished.set()
        return reply.status_code, reply.json()

    tasks = [asyncio.create_task(one(n)) for n in range(40)]
    try:
        await asyncio.wait_for(some_finished.wait(), 120)
        os.kill(pid, signal.SIGKILL)
        # A hang would be a failure too: every caller must get an answer.
        results = await asyncio.wait_for(asyncio.gather(*tasks), 300)
    finally:
        for task in tasks:
            task.cancel()
    acknowledged = [body["commit_hash"] for status, body in results if status == 200]
    failed = [(status, body) for status, body in results if status != 200]
    assert acknowledged, results
    assert failed, "the kill came after every execute had finished: nothing was tested"
    for status, body in failed:
        assert status in (409, 500, 503), (status, body)
        assert body["error"]["message"], body
        assert body["error"]["code"] != "internal_error", body
    # The actor comes back (Ray restarts it and it recovers its worktree).
    answers: list[str] = []

    def answers_again() -> bool:
        reply = execute(api, user, sandbox_id, command="read_file", file_path="README.md")
        answers.append(f"{reply.status_code} {reply.text[:300]}")
        return bool(reply.status_code == 200)

    try:
        await asyncio.to_thread(wait_for, answers_again, 180, "the sandbox to answer again", 0.5)
    except AssertionError as exc:
        now = api.http.get(f"/api/v1/sandboxes/{sandbox_id}", headers=headers).text
        raise AssertionError(f"{exc}; last answers {answers[-3:]}; status {now}") from None
    on_branch = branch_commits(api, sandbox_id)
    assert [h for h in acknowledged if h not in on_branch] == []
    assert (await sandbox_handle(sandbox_id).ping.remote())["pid"] != pid
    listing = execute(api, user, sandbox_id, command="list_files", file_path="src/burst")
    assert listing.status_code == 200, listing.text
    # Every acknowledged write is in the recovered worktree as well as on the branch.
    on_disk = set(listing.json()["files"])
    history = api.http.get(
        f"/api/v1/sandboxes/{sandbox_id}/commits?count=100", headers=headers
    ).json()
    assert {c["hash"] for c in history} >= set(acknowledged)
    assert len(on_disk) >= len(acknowledged)
    assert write(api, user, sandbox_id, "src/after-kill.txt", "ok\n") in branch_commits(
        api, sandbox_id
    )


@pytest.mark.slow
def test_manager_killed_registry_intact_and_api_keeps_answering(api: Api, sandboxes: Made) -> None:
    user = api.user("mgr")
    headers = api.headers(user)
    sandbox_id = sandboxes.create(user)["sandbox_id"]
    manager = get_manager()
    pid = ray.get(manager.pid.remote(), timeout=30)
    os.kill(pid, signal.SIGKILL)
    statuses: list[int] = []

    def listed() -> list[dict[str, Any]] | None:
        reply = api.http.get("/api/v1/sandboxes", headers=headers, timeout=60)
        statuses.append(reply.status_code)
        if reply.status_code == 503:
            assert int(reply.headers["Retry-After"]) >= 1
            assert reply.json()["error"]["message"]
            return None
        assert reply.status_code == 200, reply.text
        return list(reply.json())

    found = wait_for(listed, 90, "the API to list sandboxes after the manager's death", 0.1)
    assert [s["id"] for s in found] == [sandbox_id]
    assert set(statuses) <= {200, 503}, statuses
    assert ray.get(get_manager().pid.remote(), timeout=60) != pid
    # The registry survived: repository, users (their tokens), the sandbox's commits.
    repos = api.http.get("/api/v1/repositories", headers=api.headers("admin")).json()
    assert [r["name"] for r in repos] == ["ui-kit"]
    users = api.http.get("/api/v1/users", headers=api.headers("admin")).json()
    assert user in [u["name"] for u in users]
    sha = write(api, user, sandbox_id, "src/after-manager.txt", "x\n")
    status = api.http.get(f"/api/v1/sandboxes/{sandbox_id}", headers=headers).json()
    assert status["status"] == "running"
    # Re-adopted: the new manager's supervision pass reaches the sandbox.
    outcome = ray.get(get_manager().reconcile.remote(), timeout=120)
    assert outcome["sandboxes"][sandbox_id].startswith(("ok", "busy")), outcome
    assert sha in [c["hash"] for c in status["git_commits"]]


def test_stale_index_lock_and_locked_worktree_never_wedge_the_sandbox(
    api: Api, sandboxes: Made
) -> None:
    user = api.user("locks")
    headers = api.headers(user)
    sandbox_id = sandboxes.create(user)["sandbox_id"]
    worktree = worktree_of(api, sandbox_id)
    gitdir = Path(git(worktree, "rev-parse", "--absolute-git-dir"))
    # What a git killed mid-commit and a crash inside `worktree add` leave behind.
    (gitdir / "index.lock").write_text("")
    (gitdir / "locked").write_text("initializing\n")
    before = branch_commits(api, sandbox_id)
    answers: list[tuple[int, dict[str, Any]]] = []

    def attempt() -> str | None:
        reply = execute(
            api,
            user,
            sandbox_id,
            command="write_file",
            file_path="src/after-lock.txt",
            content="ok\n",
            description="after the lock",
        )
        answers.append((reply.status_code, reply.json()))
        if reply.status_code == 200:
            return str(reply.json()["commit_hash"])
        # Until the lock counts as stale: a clear error naming it, nothing changed.
        error = reply.json()["error"]
        assert error["code"] == "git_locked", reply.text
        assert "index.lock" in error["message"]
        assert branch_commits(api, sandbox_id) == before
        return None

    sha = wait_for(attempt, 60, "an execute to get past the stale lock", 0.5)
    assert branch_commits(api, sandbox_id)[0] == sha
    assert not (gitdir / "index.lock").exists()
    assert git(worktree, "status", "--porcelain") == ""
    reply = api.http.delete(f"/api/v1/sandboxes/{sandbox_id}", headers=headers, timeout=120)
    assert reply.status_code == 200, reply.text
    assert not worktree.exists()
    assert str(worktree) not in git(mirror_of(api), "worktree", "list")
    assert branch_commits(api, sandbox_id)[0] == sha


@pytest.mark.slow
def test_inactivity_timeout_tears_down_and_keeps_the_branch(api: Api, sandboxes: Made) -> None:
    user = api.user("idle")
    headers = api.headers(user)
    # 0.001 h = 3.6 s of inactivity: enough to make an edit first, short enough to wait for.
    sandbox_id = sandboxes.create(user, timeout_hours=0.001)["sandbox_id"]
    port = renderer_port(api, user, sandbox_id)
    sha = write(api, user, sandbox_id, "src/before-idle.txt", "idle\n")

    def stopped() -> bool:
        status = api.http.get(f"/api/v1/sandboxes/{sandbox_id}", headers=headers).json()
        return bool(status["status"] == "stopped")

    wait_for(stopped, 120, "the manager to tear the idle sandbox down", 0.5)
    assert not worktree_of(api, sandbox_id).exists()
    wait_for(lambda: listener_pid(port) is None, 30, "the idle sandbox's Vite to be gone")
    assert branch_commits(api, sandbox_id)[0] == sha
    assert git(mirror_of(api), "show", f"{branch_name(sandbox_id)}:src/before-idle.txt") == "idle"
