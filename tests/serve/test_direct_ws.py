"""The replica's own listener (serve.direct): event WebSocket and execute, alone and in the API."""

from __future__ import annotations

import asyncio
import json
import logging
import logging.handlers
import random
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
import ray
import websockets
from fastapi import FastAPI, Response, WebSocket
from ray import serve
from starlette.requests import Request

from serve import direct
from serve.app import build_app
from serve.direct import DirectListener
from serve.replica import Replica, ServeOptions
from serve.routes import websocket_url
from studio.config import StudioSettings
from tests.serve.conftest import OPTIONS, Api
from tests.serve.test_api_ws import logs_holding, recv, recv_until, write

TIMEOUT = 30


def echo_app() -> FastAPI:
    app = FastAPI()

    @app.websocket("/api/v1/sandboxes/{sandbox_id}/ws")
    async def events(websocket: WebSocket, sandbox_id: str) -> None:
        await websocket.accept()
        await websocket.send_text(f"hello {sandbox_id}")
        if sandbox_id == "hold":  # stays open until the client or the server goes
            await websocket.receive()
        await websocket.close()

    @app.get("/r/{sandbox_id}/{path:path}")
    async def renderer(sandbox_id: str, path: str) -> Response:
        status = 404 if path == "missing.js" else 200
        return Response(f"// {sandbox_id} {path}", status_code=status)

    @app.get("/api/v1/sandboxes")
    async def listing() -> list[str]:
        return ["should never be served on the direct port"]

    @app.api_route("/api/v1/sandboxes/{sandbox_id}/execute", methods=["GET", "POST"])
    async def execute(request: Request, sandbox_id: str) -> dict[str, str]:
        return {"executed": sandbox_id, "method": request.method}

    return app


def free_low_port() -> int:
    """A free port below Ray's worker ports (the listener's range ends there)."""
    for port in random.sample(range(9000, 9990), 200):
        if port_is_free(port) and port_is_free(port + 1):
            return port
    raise RuntimeError("no free port in 9000-9990")


def listened_on(port: int) -> bool:
    """Whether a process listens on ``port`` (a closed connection's TIME_WAIT does not count)."""
    return any(
        conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port
        for conn in psutil.net_connections("tcp")
    )


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
async def listener() -> AsyncIterator[DirectListener]:
    direct = DirectListener(
        echo_app(),
        host="127.0.0.1",
        first_port=free_low_port(),
        advertised_host="studio.test",
        api_hint="port 8000",
    )
    await direct.start()
    try:
        yield direct
    finally:
        await direct.stop()


async def test_listener_serves_the_event_route_and_execute_only(listener: DirectListener) -> None:
    port = listener.port
    assert port is not None
    assert listener.base_url == f"ws://studio.test:{port}"
    assert listener.http_base_url == f"http://studio.test:{port}"
    local = f"ws://127.0.0.1:{port}"
    async with websockets.connect(f"{local}/api/v1/sandboxes/sb_abc/ws") as ws:
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hello sb_abc"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"{local}/api/v1/other/ws")
    assert refused.value.response.status_code == 403
    base = f"http://127.0.0.1:{port}/api/v1/sandboxes"
    async with httpx.AsyncClient() as http:
        executed = await http.post(f"{base}/sb_abc/execute", json={})
        refused = [
            await http.get(base),
            await http.get(f"{base}/sb_abc/execute"),  # the app has GET there; this port not
            await http.post(f"{base}/sb_abc/execute/more"),
        ]
    assert executed.json() == {"executed": "sb_abc", "method": "POST"}
    for reply in refused:
        assert reply.status_code == 404
        message = reply.json()["error"]["message"]
        assert "only the sandbox event WebSocket" in message and "port 8000" in message


async def test_an_edit_on_the_listener_is_logged_without_its_token(
    listener: DirectListener, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{listener.port}/api/v1/sandboxes/sb_abc/execute"
    with caplog.at_level(logging.INFO, logger="ray.serve.direct"):
        async with httpx.AsyncClient() as http:
            reply = await http.post(url, json={}, headers={"Authorization": "Bearer secret-1"})
    assert reply.status_code == 200
    [line] = [r.getMessage() for r in caplog.records if "(direct)" in r.getMessage()]
    assert line.startswith("POST /api/v1/sandboxes/sb_abc/execute 200 ")
    assert "secret-1" not in caplog.text


async def test_a_renderer_request_is_logged_only_when_it_fails_or_is_slow(
    listener: DirectListener, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = f"http://127.0.0.1:{listener.port}/r/sb_abc"
    with caplog.at_level(logging.INFO, logger="ray.serve.direct"):
        async with httpx.AsyncClient() as http:
            served = [await http.get(f"{base}/src/{n}.js") for n in range(5)]
            missing = await http.get(f"{base}/missing.js")
            monkeypatch.setattr(direct, "_RENDERER_LOG_SLOWER_THAN", 0.0)
            slow = await http.get(f"{base}/src/slow.js")
    assert [reply.status_code for reply in served] == [200] * 5
    assert (missing.status_code, slow.status_code) == (404, 200)
    lines = [r.getMessage() for r in caplog.records if "(direct)" in r.getMessage()]
    assert [line.split(" ")[:3] for line in lines] == [
        ["GET", "/r/sb_abc/missing.js", "404"],
        ["GET", "/r/sb_abc/src/slow.js", "200"],
    ]


async def test_starting_leaves_the_process_logging_alone() -> None:
    # Serve's replica logs go through handlers like this one; closing them loses the lines.
    target = logging.Handler()
    buffered = logging.handlers.MemoryHandler(capacity=10, target=target)
    logging.getLogger("ray.serve").addHandler(buffered)
    direct = DirectListener(
        echo_app(), host="127.0.0.1", first_port=free_low_port(), advertised_host="h", api_hint="-"
    )
    try:
        await direct.start()
        assert direct.port is not None
        assert buffered.target is target  # a closed MemoryHandler drops its target
    finally:
        await direct.stop()
        logging.getLogger("ray.serve").removeHandler(buffered)


async def test_stop_frees_the_port_and_closes_open_connections() -> None:
    first = free_low_port()
    direct = DirectListener(
        echo_app(), host="127.0.0.1", first_port=first, advertised_host="h", api_hint="-"
    )
    await direct.start()
    assert direct.port == first and not port_is_free(first)
    async with websockets.connect(f"ws://127.0.0.1:{first}/api/v1/sandboxes/hold/ws") as ws:
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hello hold"
        await direct.stop()
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012  # service restart
    assert direct.port is None and direct.base_url is None
    assert port_is_free(first)
    await direct.stop()  # twice is harmless


async def test_a_taken_port_moves_the_listener_to_the_next_one() -> None:
    first = free_low_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first))
        direct = DirectListener(
            echo_app(), host="127.0.0.1", first_port=first, advertised_host="h", api_hint="-"
        )
        await direct.start()
        try:
            assert direct.port == first + 1
        finally:
            await direct.stop()


async def test_a_first_port_above_rays_worker_range_is_listened_on() -> None:
    # The kernel's ephemeral ports are above Ray's worker range (10002-19999).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        first = probe.getsockname()[1]
    assert first > 19999
    direct = DirectListener(
        echo_app(), host="127.0.0.1", first_port=first, advertised_host="h", api_hint="-"
    )
    await direct.start()
    try:
        assert direct.port == first
    finally:
        await direct.stop()


async def test_no_free_port_leaves_the_listener_off(caplog: pytest.LogCaptureFixture) -> None:
    # 10001 is the last port below Ray's worker range: the only one tried.
    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", 10001))
        except OSError:
            pytest.skip("port 10001 is in use")
        direct = DirectListener(
            echo_app(), host="127.0.0.1", first_port=10001, advertised_host="h", api_hint="-"
        )
        with caplog.at_level(logging.WARNING, logger="serve.direct"):
            await direct.start()
        assert direct.base_url is None
        assert "go through the API's port only" in caplog.text
        await direct.stop()


async def test_websocket_url_prefers_the_listener_unless_behind_tls(
    listener: DirectListener,
) -> None:
    replica = Replica(StudioSettings(public_host="studio.test", ws_port=8000), ServeOptions())
    replica.direct = listener

    def request(headers: dict[str, str]) -> Request:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        return Request({"type": "http", "scheme": "http", "headers": raw, "path": "/"})

    url = websocket_url(request({"Host": "api.test:8000"}), replica, "sb_abc123")
    assert url == f"ws://studio.test:{listener.port}/api/v1/sandboxes/sb_abc123/ws"
    behind_tls = request({"Host": "api.test", "X-Forwarded-Proto": "https"})
    assert websocket_url(behind_tls, replica, "sb_abc123") == (
        "wss://api.test/api/v1/sandboxes/sb_abc123/ws"
    )


# -- behind the API (real Serve, real sandbox) ---------------------------------


@pytest.fixture(scope="module")
def watched(api: Api) -> tuple[str, str, str]:
    """A user, their running sandbox and the websocket_url the API gives for it."""
    user = api.user("direct")
    created = api.create(user)
    return user, created["sandbox_id"], created["websocket_url"]


async def status(api: Api, user: str, sandbox_id: str) -> dict[str, Any]:
    """The sandbox's status answer, through the API's port."""
    reply = await asyncio.to_thread(
        api.http.get, f"/api/v1/sandboxes/{sandbox_id}", headers=api.headers(user)
    )
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


@pytest.mark.ray
@pytest.mark.slow
async def test_api_hands_out_the_replica_listener(api: Api, watched: tuple[str, str, str]) -> None:
    user, sandbox_id, url = watched
    api_port = urlsplit(api.url).port
    direct_port = urlsplit(url).port
    assert direct_port is not None and direct_port != api_port
    assert (await status(api, user, sandbox_id))["websocket_url"] == url
    on_direct = await asyncio.to_thread(httpx.get, url.replace("ws://", "http://"))
    assert on_direct.status_code == 404


@pytest.mark.ray
@pytest.mark.slow
async def test_edits_on_the_execute_url_commit_as_through_the_api(
    api: Api, watched: tuple[str, str, str]
) -> None:
    user, sandbox_id, ws_url = watched
    url = (await status(api, user, sandbox_id))["execute_url"]
    assert urlsplit(url).port == urlsplit(ws_url).port != urlsplit(api.url).port
    assert url.endswith(f"/api/v1/sandboxes/{sandbox_id}/execute")
    edit = {"command": "write_file", "file_path": "src/notes/direct.txt", "content": "direct"}
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        done = await http.post(url, json=edit, headers=api.headers(user))
        assert done.status_code == 200, done.text
        commit = done.json()["commit_hash"]
        # The same checks as through the API: token, owner, body.
        no_token = await http.post(url, json=edit)
        stranger = await http.post(url, json=edit, headers=api.headers(api.user("direct-other")))
        bad = await http.post(
            url, json={**edit, "file_path": "../escape.txt"}, headers=api.headers(user)
        )
    assert no_token.status_code == 401
    assert stranger.status_code == 404
    assert bad.status_code == 400 and "escape" in bad.text
    history = await status(api, user, sandbox_id)
    assert commit in [c["hash"] for c in history["git_commits"]]
    # The edit has its line in the replica's log, as one through the proxy would.
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    line = f"POST /api/v1/sandboxes/{sandbox_id}/execute 200"
    deadline = time.monotonic() + 60
    while not logs_holding(logs / "serve", line):
        assert time.monotonic() < deadline, "no log line for the direct edit"
        await asyncio.sleep(0.5)


@pytest.mark.ray
@pytest.mark.slow
async def test_direct_and_proxied_clients_see_the_same_stream(
    api: Api, watched: tuple[str, str, str]
) -> None:
    user, sandbox_id, url = watched
    proxied = f"{api.ws_base}/api/v1/sandboxes/{sandbox_id}/ws"
    headers = api.headers(user)
    async with (
        websockets.connect(url, additional_headers=headers) as direct,
        websockets.connect(proxied, additional_headers=headers) as through_proxy,
    ):
        assert (await recv(direct))["type"] == "hello"
        assert (await recv(through_proxy))["type"] == "hello"
        commit = await write(api, user, sandbox_id, "direct-and-proxied")
        for ws in (direct, through_proxy):
            got = await recv_until(ws, "commit", hash=commit)
            assert got["sandbox_id"] == sandbox_id
        selected = {"type": "component-selected", "payload": {"component": "Card"}}
        await direct.send(json.dumps(selected))
        got = await recv_until(through_proxy, "component-selected", component="Card")
        await through_proxy.send(json.dumps({**selected, "payload": {"component": "Badge"}}))
        back = await recv_until(direct, "component-selected", component="Badge")
        assert back["seq"] > got["seq"]


@pytest.mark.ray
@pytest.mark.slow
async def test_direct_refusals_and_no_token_in_logs(
    api: Api, watched: tuple[str, str, str]
) -> None:
    user, sandbox_id, url = watched
    stranger = api.user("direct-stranger")
    cases = [
        (url, {}, 4401),
        (f"{url}?token=wrong", {}, 4401),
        (url, api.headers(stranger), 4404),
        (url.replace(sandbox_id, "sb_doesnotexist"), api.headers(user), 4404),
    ]
    for target, headers, code in cases:
        async with websockets.connect(target, additional_headers=headers) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code, target
    token = api.tokens[user]
    async with websockets.connect(f"{url}?token={token}&since=0") as ws:
        assert (await recv(ws))["type"] == "hello"
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    assert not logs_holding(logs, token)


@pytest.mark.ray
@pytest.mark.slow
async def test_two_replicas_listen_on_two_ports_and_free_them(
    api: Api, watched: tuple[str, str, str]
) -> None:
    user, sandbox_id, _ = watched
    app_name = "studio-two-replicas"
    await asyncio.to_thread(
        serve.run,
        build_app(api.settings, OPTIONS.model_copy(update={"num_replicas": 2})),
        name=app_name,
        route_prefix="/two",
    )
    try:
        urls: set[str] = set()
        for _ in range(60):  # requests go to either replica: collect both answers
            reply = await asyncio.to_thread(
                api.http.get, f"/two/api/v1/sandboxes/{sandbox_id}", headers=api.headers(user)
            )
            assert reply.status_code == 200, reply.text
            urls.add(reply.json()["websocket_url"])
            if len(urls) == 2:
                break
        assert len(urls) == 2, urls
        ports = {urlsplit(url).port for url in urls}
        headers = api.headers(user)
        async with (
            websockets.connect(min(urls), additional_headers=headers) as a,
            websockets.connect(max(urls), additional_headers=headers) as b,
        ):
            assert (await recv(a))["type"] == (await recv(b))["type"] == "hello"
            commit = await write(api, user, sandbox_id, "two-replicas")
            for ws in (a, b):
                await recv_until(ws, "commit", hash=commit)
    finally:
        await asyncio.to_thread(serve.delete, app_name)
    # serve.delete returns once the replicas are told to stop; their processes end soon after.
    # Their listeners are gone then; a bind without SO_REUSEADDR could still fail for
    # the 60 s a connection the server closed first stays in TIME_WAIT.
    deadline = time.monotonic() + 60
    while any(port is None or listened_on(port) for port in ports):
        assert time.monotonic() < deadline, f"a stopped replica still holds one of {ports}"
        await asyncio.sleep(0.5)


@pytest.mark.ray
@pytest.mark.slow
async def test_with_the_listener_off_the_api_hands_out_its_own_port_and_streams_there(
    api: Api, watched: tuple[str, str, str]
) -> None:
    user, sandbox_id, _ = watched
    app_name = "studio-no-direct"
    settings = api.settings.model_copy(update={"ws_direct_port": 0})
    await asyncio.to_thread(
        serve.run, build_app(settings, OPTIONS), name=app_name, route_prefix="/off"
    )
    try:
        reply = await asyncio.to_thread(
            api.http.get, f"/off/api/v1/sandboxes/{sandbox_id}", headers=api.headers(user)
        )
        assert reply.status_code == 200, reply.text
        answer = reply.json()
    finally:
        await asyncio.to_thread(serve.delete, app_name)
    # Both URLs name the API's port: that replica has no listener of its own.
    api_port = urlsplit(api.url).port
    assert urlsplit(answer["websocket_url"]).port == api_port
    assert urlsplit(answer["execute_url"]).port == api_port
    # And the sandbox works through them: an edit there is a commit on that stream.
    async with websockets.connect(
        answer["websocket_url"], additional_headers=api.headers(user)
    ) as ws:
        assert (await recv(ws))["type"] == "hello"
        edit = {"command": "write_file", "file_path": "src/notes/off.txt", "content": "off"}
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            done = await http.post(answer["execute_url"], json=edit, headers=api.headers(user))
        assert done.status_code == 200, done.text
        await recv_until(ws, "commit", hash=done.json()["commit_hash"])
