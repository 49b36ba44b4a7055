"""One WebSocket connection of a sandbox's stream, once it is accepted.

After the ``hello`` and the replayed backlog, four tasks race and the first
to finish ends the connection:

- the sender moves events from the client's hub queue to the socket;
- the receiver reads what the client sends, each message within
  ``max_message_bytes`` and the connection's message rate (else the connection
  is closed: 1009, 4429), (``component-selected`` goes to
  the sandbox, which numbers it and rebroadcasts it to every client; ``ping``
  is answered with a ``pong``) and notices the client leaving;
- the pinger sends a ``ping`` every ``ping_interval`` and drops a client
  whose ``pong`` is later than ``pong_timeout``: a client that does not read
  is found this way even when nothing blocks on the server side;
- the drop watcher ends the connection when the hub drops the client.

Nothing here can hold a request open after the client is gone: the
receiver sees the disconnect and the others are cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from serve._ws_protocol import text_writer
from serve.hub import CLOSE_GONE, CLOSE_SLOW, Event, EventHub, HubClient
from serve.ratelimit import TokenBucket
from studio.errors import StudioError
from studio.messages import (
    ClientComponentSelected,
    ClientPing,
    ClientPong,
    HelloPayload,
    MessageType,
    encode,
    make_message,
    parse_client_message,
)

__all__ = [
    "CLOSE_RATE_LIMITED",
    "CLOSE_TOO_BIG",
    "Publish",
    "SessionOptions",
    "close",
    "error_text",
    "run_session",
    "stream_sandbox",
]

logger = logging.getLogger(__name__)

# (message, client_id) -> the sandbox appended it to its events.
Publish = Callable[[dict[str, Any], str], Awaitable[None]]

# A client message over SessionOptions.max_message_bytes (RFC 6455: "message too big").
CLOSE_TOO_BIG = 1009
# A client sending faster than its bucket allows: 4000 + HTTP 429, like the refusals.
CLOSE_RATE_LIMITED = 4429
# Seconds a close may take before the connection is abandoned to the proxy.
_CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True)
class SessionOptions:
    """Keep-alive timing of a connection, and what its client may send."""

    ping_interval: float = 20.0
    pong_timeout: float = 60.0
    # A client message larger than this closes the connection with 1009.
    max_message_bytes: int = 64 * 1024
    # A token bucket per connection: past it the connection is closed with 4429.
    messages_per_second: float = 20.0
    message_burst: int = 60


async def stream_sandbox(
    websocket: WebSocket,
    hub: EventHub,
    sandbox_id: str,
    *,
    since: int | None,
    status: str,
    last_seq: int,
    publish: Publish,
    options: SessionOptions,
) -> None:
    """Stream ``sandbox_id`` to the accepted ``websocket``: hello, backlog, live events.

    ``status`` and ``last_seq`` are where the sandbox stood just before; a
    client without ``since`` starts there. The client joins the hub before
    its backlog is read, so an event is either in the backlog or in its queue
    (or both: duplicates are skipped by sequence number).
    """
    start = last_seq if since is None else max(since, 0)
    client = hub.join(sandbox_id, min(start, last_seq))
    client.write_now = text_writer(websocket.scope)
    try:
        hello = make_message(
            MessageType.HELLO,
            seq=last_seq,
            sandbox_id=sandbox_id,
            payload=HelloPayload(status=status, last_seq=last_seq),
        )
        backlog = await hub.backlog(sandbox_id, client.position)
        if start > last_seq:
            # A position the sandbox never reached comes from another incarnation.
            backlog_note = client.reload(f"since={start} is past the newest event {last_seq}")
        else:
            backlog_note = None
        await run_session(
            websocket,
            client,
            hello=encode(hello),
            backlog=backlog,
            publish=publish,
            options=options,
            notice=backlog_note,
        )
    finally:
        hub.leave(client)


async def run_session(
    websocket: WebSocket,
    client: HubClient,
    *,
    hello: str,
    backlog: list[Event],
    publish: Publish,
    options: SessionOptions,
    notice: str | None = None,
) -> None:
    """Serve ``client`` on the accepted ``websocket`` until either side ends it.

    ``notice`` (a reload, say) is sent right after ``hello``.
    """
    lock = asyncio.Lock()
    pending_pongs: dict[str, float] = {}
    nonces = itertools.count(1)
    loop = asyncio.get_running_loop()

    async def send(text: str) -> None:
        async with lock:
            await websocket.send_text(text)

    async def sender() -> None:
        await send(hello)
        if notice is not None:
            await send(notice)
        for event in backlog:
            for text in client.prepare(event):
                await send(text)
        while True:
            # While idle the hub may write events itself (HubClient.deliver_now); get()
            # suspends only on an empty queue, so idle is never True with events queued.
            client.idle = True
            event = await client.queue.get()
            client.idle = False
            for text in client.prepare(event):
                await send(text)
            client.queue.task_done()

    bucket = TokenBucket(
        options.message_burst, options.messages_per_second, float(options.message_burst), 0.0
    )
    bucket.updated = loop.time()

    async def receiver() -> None:
        while True:
            frame = await websocket.receive()
            if frame["type"] == "websocket.disconnect":
                return
            text = frame.get("text")
            data = text.encode("utf-8", "surrogatepass") if text is not None else None
            if data is None:
                data = frame.get("bytes") or b""
            if len(data) > options.max_message_bytes:
                client.drop(
                    CLOSE_TOO_BIG,
                    f"message of {len(data)} bytes; the limit is {options.max_message_bytes}",
                )
                return
            if bucket.take(loop.time()) > 0:
                client.drop(
                    CLOSE_RATE_LIMITED,
                    f"too many messages: the limit is {options.messages_per_second:g} a second "
                    f"(bursts of {options.message_burst})",
                )
                return
            await handle(data.decode("utf-8", "replace"))

    async def handle(raw: str) -> None:
        try:
            message = parse_client_message(raw)
        except StudioError as exc:
            await send(error_text(client, exc))
            return
        if isinstance(message, ClientPing):
            await send(client.control(MessageType.PONG, {"nonce": message.payload.nonce}))
        elif isinstance(message, ClientPong):
            if message.payload.nonce is not None:
                pending_pongs.pop(message.payload.nonce, None)
        elif isinstance(message, ClientComponentSelected):
            selected = message.payload.model_copy(update={"client_id": client.client_id})
            try:
                await publish(
                    {"type": message.type.value, "payload": selected.model_dump(exclude_none=True)},
                    client.client_id,
                )
            except StudioError as exc:
                await send(error_text(client, exc))

    async def pinger() -> None:
        while True:
            await asyncio.sleep(options.ping_interval)
            now = loop.time()
            if any(now - sent > options.pong_timeout for sent in pending_pongs.values()):
                client.drop(CLOSE_SLOW, "client too slow: no pong to a ping in time")
                return
            nonce = f"p{next(nonces)}"
            pending_pongs[nonce] = now
            await send(client.control(MessageType.PING, {"nonce": nonce}))

    sending = asyncio.create_task(sender(), name="ws-sender")
    tasks = [
        sending,
        asyncio.create_task(receiver(), name="ws-receiver"),
        asyncio.create_task(pinger(), name="ws-pinger"),
        asyncio.create_task(client.dropped.wait(), name="ws-dropped"),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if client.close_code == CLOSE_GONE and not sending.done():
            # The stream ended: what it said last (``stopped``) is still queued.
            await _sent_all(client, sending)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            if not isinstance(error, WebSocketDisconnect | OSError | RuntimeError):
                logger.warning("websocket session ended by an error: %r", error)
    if client.dropped.is_set():
        await close(websocket, client.close_code or CLOSE_SLOW, client.close_reason)


async def _sent_all(client: HubClient, sending: asyncio.Task[None]) -> None:
    """Wait (bounded) until ``sending`` has sent every event queued for ``client``."""
    emptied = asyncio.create_task(client.queue.join())
    try:
        await asyncio.wait(
            {emptied, sending}, timeout=_CLOSE_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        emptied.cancel()


async def close(websocket: WebSocket, code: int, reason: str) -> None:
    """Close ``websocket`` with ``code`` unless it is already closed; never wait long."""
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    # A client that stopped reading may never take the close frame: do not wait on it.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code=code, reason=reason[:120]), _CLOSE_TIMEOUT)


def error_text(client: HubClient, error: StudioError) -> str:
    """An ``error`` message for ``client`` alone, saying what it did wrong."""
    return client.control(MessageType.ERROR, {"message": error.message, "code": error.code})
