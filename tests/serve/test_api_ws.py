"""The sandbox WebSocket behind Ray Serve: fan-out, replay, many connections, slow clients."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import ray
import websockets

from serve.hub import CLOSE_SLOW
from tests.serve.conftest import OPTIONS, Api

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TIMEOUT = 30


def ws_url(api: Api, sandbox_id: str, **query: Any) -> str:
    url = f"{api.ws_base}/api/v1/sandboxes/{sandbox_id}/ws"
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return url


async def recv(ws: websockets.ClientConnection) -> dict[str, Any]:
    """The next message that is not a ping; pings are answered as the studio page does."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if message["type"] != "ping":
            return dict(message)
        await ws.send(json.dumps({"type": "pong", "payload": message["payload"]}))


async def recv_until(ws: websockets.ClientConnection, kind: str, **payload: Any) -> dict[str, Any]:
    while True:
        message = await recv(ws)
        fields = message["payload"]
        if message["type"] == kind and all(fields.get(k) == v for k, v in payload.items()):
            return message


async def write(api: Api, user: str, sandbox_id: str, name: str) -> str:
    reply = await asyncio.to_thread(
        api.http.post,
        f"/api/v1/sandboxes/{sandbox_id}/execute",
        json={
            "command": "write_file",
            "file_path": f"src/notes/{name}.txt",
            "content": name,
            "description": f"note {name}",
        },
        headers=api.headers(user),
    )
    assert reply.status_code == 200, reply.text
    return str(reply.json()["commit_hash"])


@pytest.fixture(scope="module")
def owned(api: Api) -> tuple[str, str]:
    """A user and a running sandbox of theirs, shared by this module's tests."""
    user = api.user("wsuser")
    return user, api.create(user)["sandbox_id"]


async def test_two_hundred_clients_all_receive_the_commit(api: Api, owned: tuple[str, str]) -> None:
    user, sandbox_id = owned
    token = api.tokens[user]
    hellos = 0
    all_connected = asyncio.Event()
    commit_hash: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def client(n: int) -> str:
        nonlocal hellos
        # Half use the query parameter (as browsers must), half the header.
        if n % 2:
            ws = await websockets.connect(ws_url(api, sandbox_id, token=token), open_timeout=60)
        else:
            ws = await websockets.connect(
                ws_url(api, sandbox_id), additional_headers=api.headers(user), open_timeout=60
            )
        async with ws:
            hello = await recv(ws)
            assert hello["type"] == "hello"
            hellos += 1
            if hellos == 200:
                all_connected.set()
            while True:
                message = await recv(ws)
                if message["type"] == "commit" and commit_hash.done():
                    if message["payload"]["hash"] == commit_hash.result():
                        return str(message["payload"]["hash"])
                elif message["type"] == "commit":
                    # The commit can arrive before the writer's HTTP answer does.
                    await asyncio.wait_for(asyncio.shield(commit_hash), TIMEOUT)
                    if message["payload"]["hash"] == commit_hash.result():
                        return str(message["payload"]["hash"])

    tasks = [asyncio.create_task(client(n)) for n in range(200)]
    try:
        await asyncio.wait_for(all_connected.wait(), 120)
        commit_hash.set_result(await write(api, user, sandbox_id, "fanout"))
        received = await asyncio.wait_for(asyncio.gather(*tasks), 120)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert received == [commit_hash.result()] * 200


async def test_reconnect_with_since_replays_what_was_missed(
    api: Api, owned: tuple[str, str]
) -> None:
    user, sandbox_id = owned
    async with websockets.connect(
        ws_url(api, sandbox_id), additional_headers=api.headers(user)
    ) as ws:
        last_seq = (await recv(ws))["payload"]["last_seq"]
    missed = [await write(api, user, sandbox_id, f"missed{n}") for n in range(2)]
    async with websockets.connect(
        ws_url(api, sandbox_id, since=last_seq), additional_headers=api.headers(user)
    ) as ws:
        assert (await recv(ws))["type"] == "hello"
        replayed = []
        seqs = []
        while len(replayed) < 2:
            message = await recv(ws)
            seqs.append(message["seq"])
            if message["type"] == "commit":
                replayed.append(message["payload"]["hash"])
        assert replayed == missed
        assert seqs == sorted(seqs) and seqs[0] == last_seq + 1


async def test_selection_reaches_the_other_clients(api: Api, owned: tuple[str, str]) -> None:
    user, sandbox_id = owned
    headers = api.headers(user)
    async with (
        websockets.connect(ws_url(api, sandbox_id), additional_headers=headers) as a,
        websockets.connect(ws_url(api, sandbox_id), additional_headers=headers) as b,
    ):
        await recv(a), await recv(b)
        selected = {"type": "component-selected", "payload": {"component": "Button"}}
        await a.send(json.dumps(selected))
        got = await recv_until(b, "component-selected", component="Button")
        assert got["payload"]["client_id"]
        commit = await write(api, user, sandbox_id, "after-selection")
        # a's own selection is not echoed: the next thing it sees is the commit.
        message = await recv(a)
        assert (message["type"], message["payload"]["hash"]) == ("commit", commit)


async def test_sixth_and_hundredth_sequential_connection_work(
    api: Api, owned: tuple[str, str]
) -> None:
    user, sandbox_id = owned
    for n in range(1, 101):
        async with websockets.connect(
            ws_url(api, sandbox_id), additional_headers=api.headers(user), open_timeout=TIMEOUT
        ) as ws:
            hello = await recv(ws)
            assert hello["type"] == "hello", n
    reply = await asyncio.to_thread(api.http.get, "/healthz")
    assert reply.status_code == 200


async def test_refusals_close_with_the_http_status(api: Api, owned: tuple[str, str]) -> None:
    user, sandbox_id = owned
    stranger = api.user("stranger")
    cases = [
        (ws_url(api, sandbox_id), {}, 4401),
        (ws_url(api, sandbox_id, token="wrong"), {}, 4401),
        (ws_url(api, sandbox_id), api.headers(stranger), 4404),
        (ws_url(api, "sb_doesnotexist"), api.headers(user), 4404),
    ]
    for url, headers, code in cases:
        async with websockets.connect(url, additional_headers=headers) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == code, url


async def test_slow_client_is_dropped_and_others_keep_receiving(
    api: Api, owned: tuple[str, str]
) -> None:
    user, sandbox_id = owned
    headers = api.headers(user)
    # max_queue=1: the client library stops reading the socket after one message.
    stuck = await websockets.connect(
        ws_url(api, sandbox_id), additional_headers=headers, max_queue=1
    )
    try:
        async with websockets.connect(ws_url(api, sandbox_id), additional_headers=headers) as good:
            await recv(good)
            # Long enough for the stuck client to miss a pong deadline.
            until = time.monotonic() + OPTIONS.pong_timeout + 3 * OPTIONS.ping_interval + 2
            n = 0
            while time.monotonic() < until:
                commit = await write(api, user, sandbox_id, f"slow{n}")
                assert (await recv_until(good, "commit", hash=commit))["payload"]["hash"] == commit
                n += 1
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(stuck.recv(), TIMEOUT)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CLOSE_SLOW
    finally:
        await stuck.close()


async def test_stopped_sandbox_refuses_the_websocket(api: Api) -> None:
    user = api.user("stopper")
    sandbox_id = api.create(user)["sandbox_id"]
    async with websockets.connect(
        ws_url(api, sandbox_id), additional_headers=api.headers(user)
    ) as ws:
        await recv(ws)
        reply = await asyncio.to_thread(
            api.http.delete, f"/api/v1/sandboxes/{sandbox_id}", headers=api.headers(user)
        )
        assert reply.status_code == 200
        await recv_until(ws, "status", status="stopped")
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await recv(ws)
    async with websockets.connect(
        ws_url(api, sandbox_id), additional_headers=api.headers(user)
    ) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4409


def logs_holding(logs: Path, text: str) -> list[str]:
    files = [p for p in logs.rglob("*") if p.is_file()]
    return [str(p) for p in files if text in p.read_text(errors="replace")]


async def test_query_token_is_never_logged(api: Api, owned: tuple[str, str]) -> None:
    user, sandbox_id = owned
    token = api.tokens[user]
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())

    def proxy_ws_lines() -> int:
        # The replica logs the route when its handler ends, the proxy when the
        # client's connection does; either proves the connection went through a log.
        return sum(p.read_text(errors="replace").count(" -- WS ") for p in logs.glob("serve/*.log"))

    before = proxy_ws_lines()
    async with websockets.connect(ws_url(api, sandbox_id, token=token, since=0)) as ws:
        assert (await recv(ws))["type"] == "hello"
    # Access log lines are written when the connection ends.
    deadline = time.monotonic() + 90  # slow under a loaded full run
    while proxy_ws_lines() == before:
        assert time.monotonic() < deadline, "no access log line for the connection"
        await asyncio.sleep(0.5)
    assert not logs_holding(logs, token)
