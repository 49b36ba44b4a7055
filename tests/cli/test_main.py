"""The client commands of ``studio`` against a real HTTP server on loopback.

The server is a small FastAPI app run by uvicorn in a thread, answering with
the API's shapes (docs/api.md: the five sandbox endpoints) and its error body
``{"error": {"code", "message"}}``. It records what it was sent, so the tests
check the requests the CLI makes as well as how it renders the answers.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from cli.main import main

TOKEN = "secret-admin-token"
ROOT = Path(__file__).resolve().parents[2]


class FakeApi:
    """State and request log of the fake API."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.sandboxes: dict[str, dict[str, Any]] = {}
        self.repositories = [{"id": 1, "name": "ui-kit", "default_branch": "main"}]
        self.create_delay = 0.0


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def build_app(state: FakeApi) -> FastAPI:
    app = FastAPI()
    now = datetime(2026, 11, 25, 14, 30, tzinfo=UTC).isoformat()

    @app.middleware("http")
    async def auth(request: Request, call_next: Any) -> Any:
        body = await request.body()
        state.requests.append(
            (request.method, request.url.path, json.loads(body) if body else None)
        )
        if request.url.path != "/healthz" and request.headers.get("authorization") != (
            f"Bearer {TOKEN}"
        ):
            return _error(401, "unauthenticated", "missing or unknown bearer token")
        return await call_next(request)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/repositories")
    def repositories() -> list[dict[str, Any]]:
        return state.repositories

    @app.post("/api/v1/sandboxes", status_code=201)
    async def create(request: Request) -> Any:
        body = await request.json()
        if body.get("repository_id") != 1:
            return _error(404, "repository_not_found", "no repository with id 2 is registered")
        if body.get("timeout_hours") == -1:
            return _error(422, "invalid_config", "timeout_hours: must be greater than 0")
        await asyncio.sleep(state.create_delay)
        ident = f"sb_test{len(state.sandboxes):04d}"
        sandbox = {
            "id": ident,
            "owner": "admin",
            "status": "running",
            "renderer_url": "http://127.0.0.1:5173/",
            "websocket_url": f"ws://127.0.0.1:8000/api/v1/sandboxes/{ident}/ws",
            "execute_url": f"http://127.0.0.1:8000/api/v1/sandboxes/{ident}/execute",
            "branch": f"design/studio-{ident[3:]}",
            "git_commits": [
                {"hash": "a" * 40, "message": "initial commit", "timestamp": now, "is_base": True}
            ],
            "last_activity": now,
            "restarts": 0,
            "node": "node-1",
        }
        state.sandboxes[ident] = sandbox
        return {"sandbox_id": ident, **{k: sandbox[k] for k in _CREATE_FIELDS}}

    @app.get("/api/v1/sandboxes")
    def listing() -> list[dict[str, Any]]:
        return list(state.sandboxes.values())

    def _find(ident: str) -> dict[str, Any] | None:
        return state.sandboxes.get(ident)

    @app.get("/api/v1/sandboxes/{ident}")
    def show(ident: str) -> Any:
        sandbox = _find(ident)
        if sandbox is None:
            return _error(404, "sandbox_not_found", f"no sandbox {ident}")
        return sandbox

    @app.post("/api/v1/sandboxes/{ident}/execute")
    async def execute(ident: str, request: Request) -> Any:
        body = await request.json()
        if _find(ident) is None:
            return _error(404, "sandbox_not_found", f"no sandbox {ident}")
        if body["command"] == "read_file":
            return {"output": "read", "commit_hash": None, "content": "export const A = 1;\n"}
        if body["command"] == "list_files":
            return {"output": "2 files", "files": ["src/A.tsx", "src/B.tsx"]}
        if body["file_path"].startswith(".."):
            return _error(400, "path_not_allowed", "path escapes the worktree")
        return {"output": "File written successfully", "commit_hash": "b" * 40}

    @app.post("/api/v1/sandboxes/{ident}/rollback")
    async def rollback(ident: str, request: Request) -> Any:
        await request.json()
        return {"success": True, "current_hash": "c" * 40, "previous_hash": "d" * 40}

    @app.post("/api/v1/sandboxes/{ident}/finalize")
    async def finalize(ident: str, request: Request) -> Any:
        body = await request.json()
        sandbox = _find(ident)
        if sandbox is None:
            return _error(404, "sandbox_not_found", f"no sandbox {ident}")
        if sandbox["status"] != "running":
            return _error(409, "invalid_state", f"sandbox {ident} is {sandbox['status']}")
        sandbox["status"] = "finalized"
        return {
            "pr_url": None,
            "pr_number": None,
            "branch": sandbox["branch"],
            "pushed_to": "origin",
            "message": "pushed to the origin; no pull request (not a GitHub repository)",
            "commits": 1,
            "screenshots_ref": f"refs/heads/studio-screenshots/{ident}" if body["images"] else None,
            "screenshots_commit": "5" * 40 if body["images"] else None,
        }

    @app.delete("/api/v1/sandboxes/{ident}")
    def remove(ident: str) -> Any:
        sandbox = _find(ident)
        if sandbox is None:
            return _error(404, "sandbox_not_found", f"no sandbox {ident}")
        sandbox["status"] = "stopped"
        return sandbox

    @app.get("/api/v1/limited")
    def limited() -> Any:
        return _error(429, "rate_limited", "too many requests", **{"Retry-After": "3"})

    return app


_CREATE_FIELDS = ("renderer_url", "websocket_url", "execute_url", "branch", "status")


@pytest.fixture
def api() -> Iterator[tuple[str, FakeApi]]:
    state = FakeApi()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(build_app(state), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}", state
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def run(url: str, *argv: str, token: str | None = TOKEN) -> tuple[int, str]:
    out = io.StringIO()
    options = ["--url", url] if token is None else ["--url", url, "--token", token]
    code = main([argv[0], *options, *argv[1:]], out=out)
    return code, out.getvalue()


def test_create_sends_the_plan_request_and_prints_the_urls(api, capsys) -> None:
    url, state = api
    state.create_delay = 0.2
    code, out = run(
        url, "create", "--repo", "1", "--set", "timeout_hours=2", "--set", "branch=main"
    )
    assert code == 0
    assert ("POST", "/api/v1/sandboxes") in [(m, p) for m, p, _ in state.requests]
    body = next(b for m, p, b in state.requests if m == "POST" and p == "/api/v1/sandboxes")
    assert body == {
        "type": "component-studio",
        "repository_id": 1,
        "timeout_hours": 2,
        "branch": "main",
    }
    assert "sb_test0000  running" in out
    assert "http://127.0.0.1:5173/" in out
    assert "ws://127.0.0.1:8000/api/v1/sandboxes/sb_test0000/ws" in out
    err = capsys.readouterr().err
    assert "creating a sandbox on repository 1" in err
    # This API answers 201 running even to wait=false: nothing to follow.
    assert "running in" in err


def test_create_picks_the_only_repository_or_resolves_a_name(api) -> None:
    url, state = api
    assert run(url, "create")[0] == 0
    assert run(url, "create", "--repo", "ui-kit")[0] == 0
    bodies = [b for m, p, b in state.requests if m == "POST" and p == "/api/v1/sandboxes"]
    assert [b["repository_id"] for b in bodies] == [1, 1]


def test_create_with_an_unknown_repository_name_lists_the_registered_ones(api, capsys) -> None:
    url, _state = api
    assert run(url, "create", "--repo", "nope")[0] == 1
    assert "no repository named 'nope' is registered (registered: ui-kit)" in (
        capsys.readouterr().err
    )


def test_create_json_is_the_api_answer(api) -> None:
    url, _state = api
    code, out = run(url, "create", "--json")
    assert code == 0
    answer = json.loads(out)
    assert set(answer) == {"sandbox_id", *_CREATE_FIELDS}


def test_api_errors_are_reported_with_code_and_message(api, capsys) -> None:
    url, _state = api
    assert run(url, "create", "--repo", "2")[0] == 1
    assert "404 repository_not_found: no repository with id 2" in capsys.readouterr().err
    assert run(url, "create", "--set", "timeout_hours=-1")[0] == 1
    assert "422 invalid_config: timeout_hours" in capsys.readouterr().err
    assert run(url, "show", "sb_missing1")[0] == 1
    assert "404 sandbox_not_found" in capsys.readouterr().err


def test_wrong_token_says_so(api, capsys) -> None:
    url, _state = api
    assert run(url, "ls", token="wrong")[0] == 3
    err = capsys.readouterr().err
    assert "refused the token (401" in err
    assert "STUDIO_TOKEN" in err


def test_api_not_running_says_start_it(capsys) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    assert run(f"http://127.0.0.1:{port}", "ls")[0] == 2
    err = capsys.readouterr().err
    assert f"cannot reach the Component Studio API at http://127.0.0.1:{port}" in err
    assert "is `studio up` running?" in err


def test_ls_show_and_rm(api) -> None:
    url, _state = api
    run(url, "create")
    run(url, "create")
    code, out = run(url, "ls")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "BRANCH", "RENDERER", "LAST", "ACTIVITY"]
    assert [line.split()[0] for line in lines[1:]] == ["sb_test0000", "sb_test0001"]
    code, out = run(url, "show", "sb_test0001")
    assert code == 0
    assert "branch:        design/studio-test0001" in out
    assert "(base)" in out
    code, out = run(url, "rm", "sb_test0001")
    assert (code, out) == (0, "sb_test0001 stopped; branch design/studio-test0001 kept\n")
    code, out = run(url, "show", "sb_test0001", "--json")
    assert json.loads(out)["status"] == "stopped"


def test_ls_when_there_are_none(api) -> None:
    url, _state = api
    assert run(url, "ls") == (0, "no sandboxes\n")


def test_exec_write_delete_read_ls(api, tmp_path: Path) -> None:
    url, state = api
    run(url, "create")
    source = tmp_path / "Button.tsx"
    source.write_text("export const Button = () => null;\n")
    code, out = run(
        url,
        "exec",
        "sb_test0000",
        "write",
        "src/Button.tsx",
        "--file",
        str(source),
        "-m",
        "Round the corners",
    )
    assert code == 0
    assert out == f"File written successfully (commit {'b' * 12})\n"
    body = state.requests[-1][2]
    assert body == {
        "command": "write_file",
        "file_path": "src/Button.tsx",
        "content": "export const Button = () => null;\n",
        "description": "Round the corners",
    }
    run(url, "exec", "sb_test0000", "write", "a.txt", "--content", "hi")
    assert state.requests[-1][2]["content"] == "hi"
    run(url, "exec", "sb_test0000", "delete", "a.txt")
    assert state.requests[-1][2] == {
        "command": "delete_file",
        "file_path": "a.txt",
        "description": "Delete a.txt",
    }
    code, out = run(url, "exec", "sb_test0000", "read", "src/A.tsx")
    assert (code, out) == (0, "export const A = 1;\n")
    code, out = run(url, "exec", "sb_test0000", "ls", "src")
    assert (code, out) == (0, "src/A.tsx\nsrc/B.tsx\n")
    assert state.requests[-1][2] == {"command": "list_files", "file_path": "src"}


def test_exec_errors(api, capsys, tmp_path: Path) -> None:
    url, _state = api
    run(url, "create")
    prefix = ["exec", "--url", url, "--token", TOKEN, "sb_test0000"]
    assert main([*prefix, "write", "../x", "--content", "x"]) == 1
    assert "400 path_not_allowed: path escapes the worktree" in capsys.readouterr().err
    assert main([*prefix, "write", "x"]) == 1
    assert "exactly one of --file F or --content C" in capsys.readouterr().err
    assert main([*prefix, "write", "x", "--file", str(tmp_path / "missing")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_rollback_forms(api) -> None:
    url, state = api
    code, out = run(url, "rollback", "sb_test0000", "--to", "abc1234")
    assert (code, out) == (0, f"now at {'c' * 12} (was {'d' * 12})\n")
    assert state.requests[-1][2] == {"commit_hash": "abc1234"}
    run(url, "rollback", "sb_test0000", "--steps", "2")
    assert state.requests[-1][2] == {"steps": 2}
    run(url, "rollback", "sb_test0000", "--undo")
    assert state.requests[-1][2] == {"undo": True}
    with pytest.raises(SystemExit):
        main(["rollback", "sb_test0000", "--steps", "1", "--undo"])


def test_finalize_prints_what_happened_and_twice_is_an_error(api, capsys) -> None:
    url, state = api
    run(url, "create")
    code, out = run(
        url, "finalize", "sb_test0000", "--title", "Design updates", "--description", "Buttons"
    )
    assert code == 0
    assert "pushed to the origin; no pull request" in out
    assert "branch design/studio-test0000 pushed to origin" in out
    assert "pictures on studio-screenshots/sb_test0000 at 555555555555" in out
    assert state.requests[-1][2] == {
        "title": "Design updates",
        "description": "Buttons",
        "images": True,
    }
    assert run(url, "finalize", "sb_test0000", "--title", "again")[0] == 1
    assert "409 invalid_state: sandbox sb_test0000 is finalized" in capsys.readouterr().err


def test_finalize_without_images_says_so_to_the_api(api) -> None:
    url, state = api
    run(url, "create")
    code, out = run(url, "finalize", "sb_test0000", "--title", "T", "--no-images")
    assert code == 0
    assert state.requests[-1][2] == {"title": "T", "description": "", "images": False}
    assert "pictures on" not in out


def test_rate_limited_answer_names_the_wait(api) -> None:
    from cli.http import ApiClient, CliError

    url, _state = api
    with ApiClient(url, TOKEN) as client, pytest.raises(CliError) as caught:
        client.request("GET", "/limited")
    assert caught.value.message == "429 rate_limited: too many requests (retry after 3 s)"


def test_console_script_reads_url_and_token_from_the_environment(api) -> None:
    url, _state = api
    env = {**os.environ, "STUDIO_URL": url, "STUDIO_TOKEN": TOKEN}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "ls", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_client_options_also_follow_the_exec_action(api) -> None:
    url, _state = api
    run(url, "create")
    out = io.StringIO()
    code = main(
        ["exec", "sb_test0000", "read", "src/A.tsx", "--url", url, "--token", TOKEN, "--json"],
        out=out,
    )
    assert code == 0
    assert json.loads(out.getvalue())["content"] == "export const A = 1;\n"
