"""The hub's fan-out against a real in-process event log (no Ray, no sockets)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from serve.hub import CLOSE_GONE, CLOSE_SLOW, Event, EventHub, HubClient
from studio.errors import SandboxNotFound, ServiceUnavailable
from studio.events import EventLog
from studio.messages import make_message

SID = "sb_hubtest1"


class LogSource:
    """An EventSource over an EventLog, counting polls in flight and cancellations."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0
        self.calls = 0
        self.fail_with: list[BaseException] = []

    # The long-poll's timeout travels with the call, as the actor's does.
    async def __call__(
        self,
        sandbox_id: str,
        after: int,
        timeout: float,  # noqa: ASYNC109
    ) -> list[dict[str, Any]]:
        assert sandbox_id == self.log.sandbox_id
        self.calls += 1
        if self.fail_with:
            raise self.fail_with.pop(0)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            messages = await self.log.wait(after, timeout)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        return [m.model_dump(mode="json") for m in messages]


def commit(log: EventLog, n: int) -> None:
    log.append(
        "commit",
        {"hash": f"{n:07x}", "message": f"edit {n}", "timestamp": "2026-01-01T00:00:00Z"},
    )


async def next_event(client: HubClient) -> Event:
    return await asyncio.wait_for(client.queue.get(), 5)


def event(seq: int, *, kind: str = "commit", origin: str | None = None) -> Event:
    if kind == "component-selected":
        payload: dict[str, Any] = {"component": "Button", "client_id": origin}
    else:
        payload = {"hash": "abc1234", "message": "m", "timestamp": "2026-01-01T00:00:00Z"}
    return Event.of(make_message(kind, seq=seq, sandbox_id=SID, payload=payload))


def test_event_is_encoded_once_from_the_actor_dict() -> None:
    message = make_message("status", seq=3, sandbox_id=SID, payload={"status": "running"})
    ev = Event.of(message.model_dump(mode="json"))
    assert (ev.seq, ev.type, ev.origin) == (3, "status", None)
    assert json.loads(ev.text)["payload"] == {"status": "running"}
    assert json.loads(ev.text)["ts"].endswith("Z")


async def test_prepare_skips_duplicates_and_own_echo_and_reports_gaps() -> None:
    client = HubClient(SID, "c-me", position=4, queue=asyncio.Queue())
    assert client.prepare(event(3)) == []
    assert client.prepare(event(4)) == []
    assert [json.loads(t)["seq"] for t in client.prepare(event(5))] == [5]
    gap = [json.loads(t) for t in client.prepare(event(9))]
    assert [m["type"] for m in gap] == ["reload", "commit"]
    assert "6 to 8" in gap[0]["payload"]["reason"]
    assert gap[0]["seq"] == 5
    # Its own selection advances the position but is not sent back.
    assert client.prepare(event(10, kind="component-selected", origin="c-me")) == []
    other = client.prepare(event(11, kind="component-selected", origin="c-other"))
    assert json.loads(other[0])["payload"]["client_id"] == "c-other"
    assert client.position == 11


async def test_one_feed_fans_out_to_every_client() -> None:
    log = EventLog(SID)
    source = LogSource(log)
    hub = EventHub(source, poll_timeout=5)
    clients = [hub.join(SID, 0) for _ in range(20)]
    commit(log, 1)
    commit(log, 2)
    for client in clients:
        seqs = [(await next_event(client)).seq]
        while seqs[-1] < 2:
            seqs.append((await next_event(client)).seq)
        assert seqs[-1] == 2
    assert source.max_in_flight == 1
    assert hub.feeds() == [SID]
    assert hub.clients(SID) == 20
    await hub.close()


async def test_backlog_reads_without_waiting() -> None:
    log = EventLog(SID)
    for n in range(1, 4):
        commit(log, n)
    hub = EventHub(LogSource(log))
    assert [e.seq for e in await hub.backlog(SID, 1)] == [2, 3]
    assert await hub.backlog(SID, 3) == []


async def test_slow_client_is_dropped_and_others_keep_receiving() -> None:
    log = EventLog(SID)
    hub = EventHub(LogSource(log), queue_size=3, poll_timeout=5)
    slow = hub.join(SID, 0)
    fast = hub.join(SID, 0)
    for n in range(1, 11):
        commit(log, n)
        assert (await next_event(fast)).seq == n
    await asyncio.wait_for(slow.dropped.wait(), 5)
    assert slow.close_code == CLOSE_SLOW
    assert hub.clients(SID) == 1
    commit(log, 11)
    assert (await next_event(fast)).seq == 11
    await hub.close()


async def test_last_client_leaving_cancels_the_poll() -> None:
    log = EventLog(SID)
    source = LogSource(log)
    hub = EventHub(source, poll_timeout=30)
    a, b = hub.join(SID, 0), hub.join(SID, 0)
    for _ in range(100):
        if source.in_flight:
            break
        await asyncio.sleep(0.01)
    hub.leave(a)
    await asyncio.sleep(0.05)
    assert source.cancelled == 0
    hub.leave(b)
    for _ in range(100):
        if source.cancelled:
            break
        await asyncio.sleep(0.01)
    assert source.cancelled == 1
    assert source.in_flight == 0
    assert hub.feeds() == []


async def test_passing_failure_is_retried_and_permanent_one_ends_the_feed() -> None:
    log = EventLog(SID)
    source = LogSource(log)
    source.fail_with = [ServiceUnavailable("restarting"), ServiceUnavailable("restarting")]
    hub = EventHub(
        source,
        poll_timeout=5,
        retry_delay=0.01,
        is_permanent=lambda exc: isinstance(exc, SandboxNotFound),
    )
    client = hub.join(SID, 0)
    commit(log, 1)
    assert (await next_event(client)).seq == 1
    assert source.calls >= 3

    failing = LogSource(log)
    failing.fail_with = [SandboxNotFound("gone")]
    gone = EventHub(failing, is_permanent=lambda exc: isinstance(exc, SandboxNotFound))
    watcher = gone.join(SID, 5)
    await asyncio.wait_for(watcher.dropped.wait(), 5)
    assert watcher.close_code == CLOSE_GONE
    assert "gone" in watcher.close_reason
    assert gone.feeds() == []
    await hub.close()


async def test_malformed_event_is_skipped() -> None:
    async def source(_sid: str, after: int, _timeout: float) -> list[dict[str, Any]]:
        if after:
            await asyncio.sleep(10)
        good = make_message("status", seq=2, sandbox_id=SID, payload={"status": "running"})
        return [{"type": "bogus", "seq": 1}, good.model_dump(mode="json")]

    hub = EventHub(source)
    client = hub.join(SID, 0)
    assert (await next_event(client)).seq == 2
    await hub.close()


@pytest.mark.parametrize("size", [0, -1])
def test_queue_size_must_be_positive(size: int) -> None:
    with pytest.raises(ValueError, match="queue_size"):
        EventHub(LogSource(EventLog(SID)), queue_size=size)


async def test_keepalive_marks_a_watched_sandbox_active() -> None:
    log = EventLog(SID)
    touched: list[str] = []

    async def keepalive(sandbox_id: str) -> None:
        touched.append(sandbox_id)
        if len(touched) == 1:
            raise ServiceUnavailable("a failing touch does not stop the feed")

    hub = EventHub(LogSource(log), poll_timeout=0.01, keepalive=keepalive, keepalive_interval=0)
    client = hub.join(SID, 0)
    commit(log, 1)
    assert (await next_event(client)).seq == 1
    for _ in range(200):
        if len(touched) >= 3:
            break
        await asyncio.sleep(0.01)
    assert touched[:3] == [SID] * 3
    await hub.close()


class Writer:
    """A connection's text writer: records what it wrote; refuses while ``accepting`` is False."""

    def __init__(self) -> None:
        self.written: list[int] = []
        self.accepting = True

    def __call__(self, text: str) -> bool:
        if self.accepting:
            self.written.append(json.loads(text)["seq"])
        return self.accepting


def writing_client(position: int = 0) -> tuple[HubClient, Writer]:
    writer = Writer()
    client = HubClient(SID, "c-me", position=position, queue=asyncio.Queue(), write_now=writer)
    client.idle = True
    return client, writer


async def test_idle_client_gets_the_next_event_written_at_once() -> None:
    client, writer = writing_client(position=4)
    assert client.deliver_now(event(5))
    assert writer.written == [5] and client.position == 5 and client.queue.empty()
    # Its own selection is not written back, but the position moves past it.
    assert client.deliver_now(event(6, kind="component-selected", origin="c-me"))
    assert writer.written == [5] and client.position == 6


async def test_anything_but_the_next_event_for_an_idle_client_takes_the_queue() -> None:
    client, writer = writing_client(position=4)
    assert not client.deliver_now(event(4))  # a duplicate: prepare() skips it
    assert not client.deliver_now(event(7))  # a hole: prepare() sends a reload first
    client.idle = False  # the sender is busy with an earlier event
    assert not client.deliver_now(event(5))
    client.idle = True
    client.queue.put_nowait(event(5))  # an event waits: the next must queue behind it
    assert not client.deliver_now(event(6))
    assert writer.written == [] and client.position == 4


async def test_a_refused_write_leaves_the_event_to_the_queue() -> None:
    client, writer = writing_client()
    writer.accepting = False
    assert not client.deliver_now(event(1))
    assert client.position == 0
    assert [json.loads(t)["seq"] for t in client.prepare(event(1))] == [1]


async def test_hub_writes_to_idle_clients_and_queues_for_busy_ones() -> None:
    log = EventLog(SID)
    hub = EventHub(LogSource(log), poll_timeout=5)
    writer = Writer()
    hub_idle = hub.join(SID, 0)
    hub_idle.write_now, hub_idle.idle = writer, True
    busy = hub.join(SID, 0)
    commit(log, 1)
    assert (await next_event(busy)).seq == 1
    await asyncio.sleep(0)
    assert writer.written == [1] and hub_idle.position == 1 and hub_idle.queue.empty()
    # A refused write (the client stopped reading) puts it on the queue instead.
    writer.accepting = False
    commit(log, 2)
    assert (await next_event(hub_idle)).seq == 2
    await hub.close()
