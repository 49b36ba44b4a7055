"""A sandbox event stream on loopback for the studio page to connect to.

Real WebSocket protocol (the ``websockets`` library) in a background thread
with its own event loop, driven from synchronous test code: the test sends
events, drops connections and reads what the page sent and which URLs it
connected with.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

__all__ = ["FakeEventStream"]


class FakeEventStream:
    """``ws://127.0.0.1:<port>/api/v1/sandboxes/<id>/ws``, as the Serve proxy would offer it."""

    def __init__(self, sandbox_id: str = "sb_template_test") -> None:
        self.sandbox_id = sandbox_id
        self.seq = 0
        self.paths: list[str] = []
        self.received: list[dict[str, Any]] = []
        self._clients: set[ServerConnection] = set()
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fake-event-stream", daemon=True
        )
        self._server: Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/sandboxes/{self.sandbox_id}/ws"

    def __enter__(self) -> FakeEventStream:
        self._thread.start()

        async def start() -> Server:
            return await serve(self._handle, "127.0.0.1", 0)

        self._server = self._call(start())
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    def __exit__(self, *exc_info: object) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        try:
            self._call(shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _message(self, kind: str, payload: dict[str, Any]) -> str:
        return json.dumps(
            {
                "type": kind,
                "seq": self.seq,
                "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "sandbox_id": self.sandbox_id,
                "payload": payload,
            }
        )

    async def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        self.paths.append(connection.request.path)
        self._clients.add(connection)
        self._notify()
        try:
            await connection.send(self._message("hello", {"sandbox_id": self.sandbox_id}))
            async for raw in connection:
                self.received.append(json.loads(raw))
                self._notify()
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(connection)
            self._notify()

    def send(self, kind: str, payload: dict[str, Any]) -> int:
        """Send an event with the next sequence number to every connected page; returns the seq."""

        async def broadcast() -> int:
            self.seq += 1
            text = self._message(kind, payload)
            for client in list(self._clients):
                await client.send(text)
            return self.seq

        seq: int = self._call(broadcast())
        return seq

    def drop(self) -> None:
        """Close every connection from the server side, as a restarting replica would."""

        async def close_all() -> None:
            for client in list(self._clients):
                await client.close(code=1012, reason="service restart")

        self._call(close_all())

    def clients(self) -> int:
        return len(self._clients)

    def wait_until(
        self, condition: Callable[[], Any], timeout: float = 15.0, what: str = ""
    ) -> Any:
        """Wait until ``condition()`` is truthy (re-checked on every connection or message)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = condition()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out waiting for {what or condition}: "
                        f"paths={self.paths} received={self.received}"
                    )
                self._changed.wait(min(remaining, 0.2))
