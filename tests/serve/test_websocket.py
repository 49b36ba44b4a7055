"""The WebSocket session on a real uvicorn server and real `websockets` clients.

The sandbox side is a real in-process EventLog instead of a Ray actor, so the
session logic (hello, replay, rebroadcast, ping/pong, slow clients, leaving)
is tested fast; tests/serve/test_api.py runs the same code behind Ray Serve.
Every test runs twice: with uvicorn's own WebSocket protocol (what Serve's
proxy gives the app) and with the direct listener's, where the hub writes
events to idle clients itself (serve._ws_protocol).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
import websockets
from fastapi import FastAPI, WebSocket

from serve._ws_protocol import FrameWriterProtocol
from serve.hub import CLOSE_GONE, CLOSE_SLOW, EventHub
from serve.websocket import SessionOptions, stream_sandbox
from studio.events import EventLog
from studio.messages import parse_client_message

SID = "sb_wstest01"


class SandboxGone(Exception):
    """What the event source raises once the sandbox's actor is gone for good."""


class Sandbox:
    def __init__(self) -> None:
        self.log = EventLog(SID, maxlen=50)
        self.log.append("status", {"status": "running"})
        self.gone = False

    async def events(
        self,
        _sid: str,
        after: int,
        timeout: float,  # noqa: ASYNC109
    ) -> list[dict[str, Any]]:
        if self.gone and after >= self.log.last_seq:
            raise SandboxGone(f"no running sandbox {SID!r}")
        return [m.model_dump(mode="json") for m in await self.log.wait(after, timeout)]

    async def publish(self, message: dict[str, Any], client_id: str) -> None:
        parsed = parse_client_message(json.dumps(message))
        payload = parsed.payload.model_copy(update={"client_id": client_id})
        self.log.append("component-selected", payload)

    def commit(self, n: int, message: str = "") -> None:
        self.log.append(
            "commit",
            {
                "hash": f"{n:07x}",
                "message": message or f"edit {n}",
                "timestamp": "2026-01-01T00:00:00Z",
            },
        )


def make_app(sandbox: Sandbox, hub: EventHub, options: SessionOptions) -> FastAPI:
    app = FastAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, since: int | None = None) -> None:
        await websocket.accept()
        await stream_sandbox(
            websocket,
            hub,
            SID,
            since=since,
            status="running",
            last_seq=sandbox.log.last_seq,
            publish=sandbox.publish,
            options=options,
        )

    return app


# The ws= of uvicorn.Config: a protocol name or class.
Protocol = str | type[asyncio.Protocol]


@pytest.fixture(
    params=["websockets-sansio", FrameWriterProtocol], ids=["asgi-send", "direct-write"]
)
def protocol(request: pytest.FixtureRequest) -> Protocol:
    return request.param  # type: ignore[no-any-return]


class Server:
    def __init__(
        self,
        options: SessionOptions,
        protocol: Protocol,
        queue_size: int = 256,
        *,
        deflate: bool = False,
    ) -> None:
        self.sandbox = Sandbox()
        self.hub = EventHub(
            self.sandbox.events,
            queue_size=queue_size,
            poll_timeout=5,
            is_permanent=lambda exc: isinstance(exc, SandboxGone),
        )
        app = make_app(self.sandbox, self.hub, options)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            ws=protocol,
            # As the direct listener; with compression each client's frame differs.
            ws_per_message_deflate=deflate,
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws"

    async def __aenter__(self) -> Server:
        self.task = asyncio.create_task(self.server.serve())
        # uvicorn says it started only through this flag.
        while not self.server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.hub.close()
        self.server.should_exit = True
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def server(protocol: Protocol) -> AsyncIterator[Server]:
    async with Server(SessionOptions(ping_interval=30, pong_timeout=60), protocol) as s:
        yield s


async def recv(ws: websockets.ClientConnection) -> dict[str, Any]:
    """The next message that is not a ping (pings are answered, as the studio page does)."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if message["type"] != "ping":
            return message
        await ws.send(json.dumps({"type": "pong", "payload": message["payload"]}))


async def test_hello_then_live_events(server: Server) -> None:
    async with websockets.connect(server.url) as ws:
        hello = await recv(ws)
        assert hello["type"] == "hello"
        assert hello["payload"]["status"] == "running"
        assert hello["payload"]["last_seq"] == 1
        server.sandbox.commit(1)
        commit = await recv(ws)
        assert (commit["type"], commit["seq"]) == ("commit", 2)


async def test_the_last_events_of_a_stream_that_ends_are_sent_before_the_close(
    server: Server,
) -> None:
    # The client stops reading once 4 messages wait in its buffer; with 40
    # messages of 256 KiB the socket fills and the server's sender blocks, so
    # the hub ends the stream while events are still queued for this client.
    async with websockets.connect(server.url, max_queue=4, max_size=None) as ws:
        assert (await recv(ws))["type"] == "hello"
        for n in range(40):
            server.sandbox.commit(n, "x" * 256 * 1024)
        server.sandbox.log.append("status", {"status": "stopped"})
        server.sandbox.gone = True
        while server.hub.clients(SID):  # noqa: ASYNC110 (the hub has no signal for it)
            await asyncio.sleep(0.01)
        seqs = [(await recv(ws))["seq"] for _ in range(41)]
        assert seqs == list(range(2, 43))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await recv(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_GONE


async def test_reconnect_with_since_replays_what_was_missed(server: Server) -> None:
    for n in range(1, 4):
        server.sandbox.commit(n)
    async with websockets.connect(server.url + "?since=2") as ws:
        assert (await recv(ws))["type"] == "hello"
        assert [(await recv(ws))["seq"] for _ in range(2)] == [3, 4]
        server.sandbox.commit(4)
        assert (await recv(ws))["seq"] == 5


async def test_since_older_than_the_ring_says_reload(server: Server) -> None:
    for n in range(60):
        server.sandbox.commit(n)
    async with websockets.connect(server.url + "?since=1") as ws:
        assert (await recv(ws))["type"] == "hello"
        reload = await recv(ws)
        assert reload["type"] == "reload"
        assert "missed" in reload["payload"]["reason"]
        seqs = [(await recv(ws))["seq"] for _ in range(server.sandbox.log.maxlen)]
        assert seqs == list(range(server.sandbox.log.oldest_seq, server.sandbox.log.last_seq + 1))


async def test_since_in_the_future_says_reload(server: Server) -> None:
    async with websockets.connect(server.url + "?since=999") as ws:
        assert (await recv(ws))["type"] == "hello"
        assert (await recv(ws))["type"] == "reload"


async def test_selection_goes_to_the_others_not_back(server: Server) -> None:
    async with websockets.connect(server.url) as a, websockets.connect(server.url) as b:
        await recv(a), await recv(b)
        selected = {"type": "component-selected", "payload": {"component": "Button"}}
        await a.send(json.dumps(selected))
        got = await recv(b)
        assert got["type"] == "component-selected"
        assert got["payload"]["component"] == "Button"
        server.sandbox.commit(9)
        # a's next message is the commit: its own selection was not echoed.
        assert (await recv(a))["type"] == "commit"


async def test_ping_is_answered_and_bad_messages_get_an_error(server: Server) -> None:
    async with websockets.connect(server.url) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "ping", "payload": {"nonce": "n1"}}))
        assert (await recv(ws)) | {"ts": None} == {
            "type": "pong",
            "seq": 1,
            "ts": None,
            "sandbox_id": SID,
            "payload": {"nonce": "n1"},
        }
        await ws.send(json.dumps({"type": "commit"}))
        error = await recv(ws)
        assert error["type"] == "error"
        assert "server only" in error["payload"]["message"]
        await ws.send("not json")
        assert (await recv(ws))["payload"]["code"] == "invalid_request"


async def test_server_pings_and_a_silent_client_is_dropped(protocol: Protocol) -> None:
    options = SessionOptions(ping_interval=0.1, pong_timeout=0.3)
    async with Server(options, protocol) as server:
        good = await websockets.connect(server.url)
        mute = await websockets.connect(server.url)
        try:
            for ws in (good, mute):
                assert json.loads(await ws.recv())["type"] == "hello"
            answered = 0
            while answered < 8:
                message = json.loads(await asyncio.wait_for(good.recv(), 5))
                if message["type"] == "ping":
                    await good.send(json.dumps({"type": "pong", "payload": message["payload"]}))
                    answered += 1
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(mute.recv(), 5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == CLOSE_SLOW
            server.sandbox.commit(1)
            while (message := json.loads(await asyncio.wait_for(good.recv(), 5)))["type"] == "ping":
                await good.send(json.dumps({"type": "pong", "payload": message["payload"]}))
            assert message["type"] == "commit"
        finally:
            await good.close()
            await mute.close()


async def test_client_that_never_reads_is_dropped_others_keep_receiving(
    protocol: Protocol,
) -> None:
    options = SessionOptions(ping_interval=0.2, pong_timeout=1.0)
    async with Server(options, protocol, queue_size=8) as server:
        # max_queue=1: the client library stops reading the socket after one message.
        stuck = await websockets.connect(server.url, max_queue=1)
        async with websockets.connect(server.url) as good:
            await recv(good)
            big = "x" * 500
            n = 0
            # Events keep coming; the stuck client goes, the good one sees every event.
            while server.hub.clients(SID) == 2 and n < 2000:
                server.sandbox.log.append("log", {"stream": "stdout", "line": f"{n} {big}"})
                message = await recv(good)
                assert message["payload"]["line"].startswith(f"{n} ")
                n += 1
                await asyncio.sleep(0.005)
            assert server.hub.clients(SID) == 1
            server.sandbox.commit(1)
            assert (await recv(good))["type"] == "commit"
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stuck.close(), 2)


async def test_thousand_sequential_connections_leave_nothing_behind(server: Server) -> None:
    for _ in range(1000):
        async with websockets.connect(server.url) as ws:
            assert (await recv(ws))["type"] == "hello"
    for _ in range(100):
        if not server.hub.feeds():
            break
        await asyncio.sleep(0.02)
    assert server.hub.feeds() == []
    assert server.hub.clients(SID) == 0


def count_direct_writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts the hub wrote itself through FrameWriterProtocol, from now on."""
    written: list[str] = []
    original = FrameWriterProtocol.write_text_now

    def counting(self: FrameWriterProtocol, text: str) -> bool:
        done = original(self, text)
        if done:
            written.append(text)
        return done

    monkeypatch.setattr(FrameWriterProtocol, "write_text_now", counting)
    return written


async def burst_to_two_clients(server: Server) -> None:
    """60 commits in bursts, seen in order by two clients (idle or busy senders alike)."""
    async with websockets.connect(server.url) as a, websockets.connect(server.url) as b:
        await recv(a)
        await recv(b)
        for n in range(1, 61):
            server.sandbox.commit(n)
            if n % 3 == 0:
                await asyncio.sleep(0.01)
        for ws in (a, b):
            seen = [(await recv(ws))["payload"]["message"] for _ in range(60)]
            assert seen == [f"edit {n}" for n in range(1, 61)]


async def test_live_events_are_written_by_the_hub_only_on_the_direct_protocol(
    protocol: Protocol, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = count_direct_writes(monkeypatch)
    async with Server(SessionOptions(ping_interval=30, pong_timeout=60), protocol) as server:
        await burst_to_two_clients(server)
    assert bool(written) == (protocol is FrameWriterProtocol)


async def test_compressed_connections_are_never_written_directly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written = count_direct_writes(monkeypatch)
    options = SessionOptions(ping_interval=30, pong_timeout=60)
    async with Server(options, FrameWriterProtocol, deflate=True) as server:
        await burst_to_two_clients(server)
    assert written == []
