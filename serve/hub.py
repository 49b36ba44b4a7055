"""The WebSocket hub of a replica: one event feed per sandbox, fanned out.

However many clients watch a sandbox through this replica, one task reads
its events (a long-poll against the sandbox actor, through the injected
:data:`EventSource`) and offers each event to every client's bounded queue,
or, when the client's connection offers it and nothing is queued ahead,
writes it to the socket at once (:meth:`HubClient.deliver_now`). Offering
never waits: a client whose queue is full is dropped (it is too slow), and
the others do not notice. The feed starts with the first client
and stops when the last one leaves, cancelling the poll in flight.

Each :class:`HubClient` keeps its own position in the stream, so a client
that replays a backlog (``?since=``) and then follows the live feed sees
every event once, in order, and is told with a ``reload`` when events it
never saw are gone (:meth:`HubClient.prepare`). No I/O here besides the
source: the WebSocket side is ``serve.websocket``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from actors import metrics
from studio.messages import Message, MessageType, encode, make_message

__all__ = [
    "CLOSE_GONE",
    "CLOSE_SLOW",
    "Event",
    "EventHub",
    "EventSource",
    "HubClient",
    "KeepAlive",
]

logger = logging.getLogger(__name__)

# Close codes of the 4000-4999 range, which RFC 6455 leaves to applications.
CLOSE_SLOW = 4408
CLOSE_GONE = 4410

# (sandbox_id, after_seq, timeout) -> events with seq > after_seq, [] on timeout.
EventSource = Callable[[str, int, float], Awaitable[list[dict[str, Any]]]]
# (sandbox_id) -> the sandbox counts as active (a watched sandbox is not idle).
KeepAlive = Callable[[str], Awaitable[None]]

_client_ids = itertools.count(1)
_MESSAGE: TypeAdapter[Message] = TypeAdapter(Message)


@dataclass(frozen=True)
class Event:
    """One event of a sandbox's stream, encoded once for all of its clients."""

    seq: int
    type: str
    origin: str | None
    """The ``client_id`` of a ``component-selected`` (so its sender is not sent its echo)."""
    text: str

    @classmethod
    def of(cls, raw: dict[str, Any] | BaseModel) -> Event:
        """Validate a message (as the actor returns it) and encode it.

        Raises :class:`pydantic.ValidationError` when it is not a message.
        """
        message = _MESSAGE.validate_python(raw if isinstance(raw, dict) else raw.model_dump())
        origin = None
        if message.type == MessageType.COMPONENT_SELECTED:
            origin = getattr(message.payload, "client_id", None)
        return cls(message.seq, message.type.value, origin, encode(message))


@dataclass(eq=False)
class HubClient:
    """One connection's view of a sandbox's stream.

    ``position`` is the sequence number of the last event it was given (or
    skipped as its own echo); events at or below it are duplicates.
    """

    sandbox_id: str
    client_id: str
    position: int
    queue: asyncio.Queue[Event]
    dropped: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None
    close_reason: str = ""
    write_now: Callable[[str], bool] | None = None
    """Writes a text to the socket at once, or says it cannot (``serve._ws_protocol``)."""
    idle: bool = False
    """The connection's sender waits on an empty queue: nothing is ahead of a new event."""

    def offer(self, event: Event) -> bool:
        """Queue ``event`` without waiting; False when the queue is full."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    def deliver_now(self, event: Event) -> bool:
        """Write ``event`` straight to the socket when nothing is ahead of it.

        Only the next event in order, for an idle sender with an empty
        queue and a writer that accepts it; False otherwise, and the event
        goes through the queue (holes, duplicates and slow clients are
        handled there).
        """
        if self.write_now is None or not self.idle or not self.queue.empty():
            return False
        if event.seq != self.position + 1:
            return False
        if (event.origin is None or event.origin != self.client_id) and not self.write_now(
            event.text
        ):
            return False
        self.position = event.seq
        return True

    def drop(self, code: int, reason: str) -> None:
        """Mark the client to be closed with ``code`` (the first reason wins)."""
        if not self.dropped.is_set():
            self.close_code, self.close_reason = code, reason
            self.dropped.set()

    def prepare(self, event: Event) -> list[str]:
        """The texts to send this client for ``event``: none, the event, or a reload first.

        Duplicates (seq at or below the position) and the client's own
        ``component-selected`` echoes give nothing; an event past a hole in
        the numbering is preceded by a ``reload`` saying events were missed.
        """
        if event.seq <= self.position:
            return []
        out: list[str] = []
        if event.seq > self.position + 1:
            out.append(self.reload(f"missed events {self.position + 1} to {event.seq - 1}"))
        self.position = event.seq
        if event.origin is None or event.origin != self.client_id:
            out.append(event.text)
        return out

    def reload(self, reason: str) -> str:
        """A ``reload`` message at the client's position (it takes no new number)."""
        return self.control(MessageType.RELOAD, {"reason": reason})

    def control(self, kind: MessageType, payload: dict[str, Any]) -> str:
        """A message made by the server for this client alone, at its position."""
        message = make_message(kind, seq=self.position, sandbox_id=self.sandbox_id, payload=payload)
        return encode(message)


@dataclass(eq=False)
class _Feed:
    sandbox_id: str
    cursor: int
    clients: set[HubClient] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


class EventHub:
    """Feeds by sandbox for one replica; clients join and leave.

    ``is_permanent(exc)`` tells a sandbox that is gone for good (its feed
    ends and its clients are closed with :data:`CLOSE_GONE`) from a passing
    failure (an actor restarting: the feed retries with a growing delay).
    ``keepalive(sandbox_id)``, when given, is called as the feed starts and
    then about every ``keepalive_interval`` seconds while it runs: a sandbox
    someone is watching is not idle.
    """

    def __init__(
        self,
        source: EventSource,
        *,
        queue_size: int = 256,
        poll_timeout: float = 15.0,
        retry_delay: float = 0.25,
        max_retry_delay: float = 5.0,
        is_permanent: Callable[[BaseException], bool] = lambda _exc: False,
        keepalive: KeepAlive | None = None,
        keepalive_interval: float = 60.0,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self._source = source
        self.queue_size = queue_size
        self.poll_timeout = poll_timeout
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._is_permanent = is_permanent
        self._keepalive = keepalive
        self._keepalive_interval = keepalive_interval
        self._feeds: dict[str, _Feed] = {}

    def join(self, sandbox_id: str, position: int, *, client_id: str | None = None) -> HubClient:
        """A new client of ``sandbox_id`` at ``position``; starts the feed if it is the first."""
        client = HubClient(
            sandbox_id=sandbox_id,
            client_id=client_id or f"c{next(_client_ids)}",
            position=position,
            queue=asyncio.Queue(maxsize=self.queue_size),
        )
        feed = self._feeds.get(sandbox_id)
        if feed is None:
            feed = _Feed(sandbox_id, cursor=position)
            self._feeds[sandbox_id] = feed
        feed.clients.add(client)
        self._count_clients()
        if feed.task is None or feed.task.done():
            feed.task = asyncio.create_task(self._run(feed), name=f"feed:{sandbox_id}")
        return client

    async def backlog(self, sandbox_id: str, after_seq: int) -> list[Event]:
        """What ``sandbox_id`` holds after ``after_seq``, read now (no waiting)."""
        return _decode(await self._source(sandbox_id, after_seq, 0.0))

    def leave(self, client: HubClient) -> None:
        """Forget ``client``; the last one to leave stops the feed."""
        feed = self._feeds.get(client.sandbox_id)
        if feed is None:
            return
        feed.clients.discard(client)
        self._count_clients()
        if not feed.clients:
            del self._feeds[client.sandbox_id]
            if feed.task is not None:
                feed.task.cancel()

    def _count_clients(self) -> None:
        total = sum(len(feed.clients) for feed in self._feeds.values())
        metrics.record(lambda: metrics.websocket_clients().set(total))

    def clients(self, sandbox_id: str) -> int:
        """How many clients of ``sandbox_id`` this replica serves."""
        feed = self._feeds.get(sandbox_id)
        return len(feed.clients) if feed else 0

    def feeds(self) -> list[str]:
        """Sandboxes with a running feed."""
        return [sid for sid, f in self._feeds.items() if f.task and not f.task.done()]

    async def close(self) -> None:
        """Stop every feed and drop every client (replica shutdown)."""
        feeds = list(self._feeds.values())
        self._feeds.clear()
        for feed in feeds:
            for client in feed.clients:
                client.drop(CLOSE_GONE, "server shutting down")
            if feed.task is not None:
                feed.task.cancel()
        tasks = [f.task for f in feeds if f.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    def _publish(self, feed: _Feed, events: list[Event]) -> None:
        """Give ``events`` to every client of ``feed``, dropping the ones that are full.

        An idle client gets an event written at once, in this loop (one
        frame's bytes for all); the others get it in their queue.
        """
        for client in list(feed.clients):
            for event in events:
                if client.deliver_now(event):
                    continue
                if not client.offer(event):
                    logger.info(
                        "dropping slow websocket client",
                        extra={"sandbox_id": feed.sandbox_id, "client_id": client.client_id},
                    )
                    client.drop(CLOSE_SLOW, "client too slow: its queue of events is full")
                    feed.clients.discard(client)
                    break

    async def _run(self, feed: _Feed) -> None:
        delay = self._retry_delay
        loop = asyncio.get_running_loop()
        kept_alive = -math.inf
        while feed.clients:
            if self._keepalive is not None and loop.time() - kept_alive >= self._keepalive_interval:
                kept_alive = loop.time()
                await self._keep_alive(feed.sandbox_id)
            try:
                events = await self._source(feed.sandbox_id, feed.cursor, self.poll_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._is_permanent(exc):
                    self._end(feed, f"sandbox event stream ended: {exc}")
                    return
                logger.warning(
                    "event feed failed, retrying in %.2f s: %s",
                    delay,
                    exc,
                    extra={"sandbox_id": feed.sandbox_id},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry_delay)
                continue
            delay = self._retry_delay
            if not events:
                continue
            decoded = _decode(events)
            if decoded:
                feed.cursor = max(feed.cursor, max(e.seq for e in decoded))
                self._publish(feed, decoded)

    async def _keep_alive(self, sandbox_id: str) -> None:
        assert self._keepalive is not None
        try:
            await self._keepalive(sandbox_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Only idleness bookkeeping: the poll right after says if the sandbox is gone.
            logger.debug("keepalive of %s failed: %s", sandbox_id, exc)

    def _end(self, feed: _Feed, reason: str) -> None:
        for client in list(feed.clients):
            client.drop(CLOSE_GONE, reason)
        feed.clients.clear()
        if self._feeds.get(feed.sandbox_id) is feed:
            del self._feeds[feed.sandbox_id]


def _decode(events: list[dict[str, Any]]) -> list[Event]:
    decoded = []
    for raw in events:
        try:
            decoded.append(Event.of(raw))
        except ValidationError as exc:
            logger.error("skipping a malformed event: %s", exc)
    return decoded
