"""The event log: numbering, the ring, catching up, and waiting across threads."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from studio.errors import InvalidRequest
from studio.events import DEFAULT_MAXLEN, Backlog, EventLog
from studio.messages import (
    ComponentSelectedPayload,
    MessageType,
    PongPayload,
    StatusMessage,
    encode,
)

SB = "sb_events0001"

# Generous bounds so a loaded machine never fails a test; they only stop hangs.
SHORT = 0.05
LONG = 30.0


def status(log: EventLog, name: str = "running") -> int:
    return log.append("status", {"status": name}).seq


def test_numbers_start_at_one_and_increase() -> None:
    log = EventLog(SB)
    assert log.maxlen == DEFAULT_MAXLEN == 1000
    assert log.last_seq == 0
    assert log.oldest_seq == 1
    first = log.append(MessageType.STATUS, {"status": "starting"})
    assert isinstance(first, StatusMessage)
    assert first.seq == 1
    assert first.sandbox_id == SB
    assert first.ts.tzinfo is UTC
    assert [status(log) for _ in range(3)] == [2, 3, 4]
    assert log.last_seq == 4
    assert log.oldest_seq == 1


def test_append_with_model_payload_and_explicit_ts() -> None:
    log = EventLog(SB)
    ts = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)
    message = log.append("component-selected", ComponentSelectedPayload(component="Button"), ts=ts)
    assert message.ts == ts
    assert '"ts":"2026-11-25T14:30:00Z"' in encode(message)


def test_bad_payload_does_not_use_up_a_number() -> None:
    log = EventLog(SB)
    status(log)
    with pytest.raises(ValidationError):
        log.append("status", {"detail": "no status"})
    with pytest.raises(TypeError):
        log.append("ping", PongPayload())
    with pytest.raises(ValueError, match="not a valid MessageType"):
        log.append("shout", {})
    assert status(log) == 2
    assert [m.seq for m in log.since(0)] == [1, 2]


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="maxlen must be at least 1"):
        EventLog(SB, maxlen=0)
    with pytest.raises(ValueError, match="start_seq must be at least 1"):
        EventLog(SB, start_seq=0)
    with pytest.raises(InvalidRequest, match="malformed"):
        EventLog("nope")


def test_since() -> None:
    log = EventLog(SB)
    for _ in range(5):
        status(log)
    assert [m.seq for m in log.since(0)] == [1, 2, 3, 4, 5]
    assert [m.seq for m in log.since(3)] == [4, 5]
    assert log.since(5) == []
    assert log.since(99) == []
    assert [m.seq for m in log.since(-7)] == [1, 2, 3, 4, 5]
    assert EventLog(SB).since(0) == []


def test_ring_forgets_the_oldest_and_says_so() -> None:
    log = EventLog(SB, maxlen=3)
    for _ in range(7):
        status(log)
    assert log.oldest_seq == 5
    assert [m.seq for m in log.since(0)] == [5, 6, 7]
    assert [m.seq for m in log.since(5)] == [6, 7]
    # after 3: 4 was pushed out, so the reader lost something.
    assert log.backlog(3) == Backlog(messages=log.since(3), missed=True, oldest_seq=5, last_seq=7)
    # after 4: the next one it needs (5) is still there.
    backlog = log.backlog(4)
    assert not backlog.missed
    assert [m.seq for m in backlog.messages] == [5, 6, 7]
    assert log.backlog(7) == Backlog(messages=[], missed=False, oldest_seq=5, last_seq=7)


def test_restart_keeps_numbers_increasing() -> None:
    before = EventLog(SB)
    for _ in range(10):
        status(before)
    # The restarted actor starts past what its previous incarnation handed out.
    after = EventLog(SB, start_seq=before.last_seq + 1)
    assert after.last_seq == 10
    assert after.oldest_seq == 11
    # A client that had seen everything loses nothing...
    assert after.backlog(10) == Backlog(messages=[], missed=False, oldest_seq=11, last_seq=10)
    assert status(after) == 11
    assert [m.seq for m in after.since(10)] == [11]
    # ...one that was behind is told to reload...
    assert after.backlog(8).missed
    # ...and so is one holding a number this log never gave out.
    assert after.backlog(50).missed
    assert after.backlog(50).messages == []


def test_fresh_reader_of_a_fresh_log_missed_nothing() -> None:
    log = EventLog(SB)
    assert log.backlog(0) == Backlog(messages=[], missed=False, oldest_seq=1, last_seq=0)
    status(log)
    assert not log.backlog(0).missed


def test_concurrent_appends_are_numbered_without_gaps() -> None:
    log = EventLog(SB, maxlen=10_000)
    threads = [threading.Thread(target=lambda: [status(log) for _ in range(200)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=LONG)
    seqs = [m.seq for m in log.since(0)]
    assert seqs == list(range(1, 1601))
    timestamps = [m.ts for m in log.since(0)]
    assert timestamps == sorted(timestamps)


# --- waiting ----------------------------------------------------------------


async def test_wait_returns_at_once_when_there_is_something() -> None:
    log = EventLog(SB)
    status(log)
    status(log)
    assert [m.seq for m in await log.wait(0, LONG)] == [1, 2]
    assert [m.seq for m in await log.wait(1, LONG)] == [2]


async def test_wait_times_out_with_nothing() -> None:
    log = EventLog(SB)
    assert await log.wait(0, SHORT) == []
    assert await log.wait(0, 0) == []
    assert await log.wait(0, -1) == []
    status(log)
    assert await log.wait(1, SHORT) == []
    assert log._waiters == set()


async def test_wait_woken_by_append_on_the_same_loop() -> None:
    log = EventLog(SB)
    waiter = asyncio.create_task(log.wait(0, LONG))
    await asyncio.sleep(0)
    assert not waiter.done()
    status(log, "starting")
    messages = await asyncio.wait_for(waiter, LONG)
    assert [m.payload.status for m in messages if isinstance(m, StatusMessage)] == ["starting"]


async def test_wait_woken_by_append_from_another_thread() -> None:
    log = EventLog(SB)
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def producer() -> None:
        asyncio.run_coroutine_threadsafe(started.wait(), loop).result(timeout=LONG)
        status(log, "running")

    thread = threading.Thread(target=producer)
    thread.start()
    try:
        waiter = asyncio.create_task(log.wait(0, LONG))
        await asyncio.sleep(0)
        started.set()
        messages = await asyncio.wait_for(waiter, LONG)
    finally:
        await asyncio.to_thread(thread.join, LONG)
    assert [m.seq for m in messages] == [1]
    assert log._waiters == set()


async def test_many_waiters_all_woken() -> None:
    log = EventLog(SB)
    waiters = [asyncio.create_task(log.wait(0, LONG)) for _ in range(20)]
    await asyncio.sleep(0)
    await asyncio.to_thread(status, log)
    results = await asyncio.wait_for(asyncio.gather(*waiters), LONG)
    assert all([m.seq for m in result] == [1] for result in results)


async def test_waiters_on_loops_in_other_threads() -> None:
    log = EventLog(SB)
    ready = threading.Barrier(4)
    results: dict[int, list[int]] = {}

    def reader(index: int) -> None:
        async def main() -> None:
            task = asyncio.create_task(log.wait(0, LONG))
            await asyncio.sleep(0)
            await asyncio.to_thread(ready.wait, LONG)
            results[index] = [m.seq for m in await task]

        asyncio.run(main())

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    await asyncio.to_thread(ready.wait, LONG)
    status(log)
    for thread in threads:
        await asyncio.to_thread(thread.join, LONG)
    assert results == {0: [1], 1: [1], 2: [1]}


async def test_cancelled_wait_unregisters() -> None:
    log = EventLog(SB)
    waiter = asyncio.create_task(log.wait(0, LONG))
    await asyncio.sleep(0)
    assert len(log._waiters) == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert log._waiters == set()
    status(log)  # waking nobody must be harmless


async def test_wait_skips_what_the_reader_already_has() -> None:
    log = EventLog(SB)
    status(log)
    waiter = asyncio.create_task(log.wait(1, LONG))
    await asyncio.sleep(0)
    assert not waiter.done()
    status(log)
    assert [m.seq for m in await asyncio.wait_for(waiter, LONG)] == [2]


async def test_long_poll_loop_sees_every_message_once() -> None:
    log = EventLog(SB, maxlen=10_000)
    total = 300

    def produce() -> None:
        for _ in range(total):
            status(log)

    seen: list[int] = []
    producer = asyncio.create_task(asyncio.to_thread(produce))
    after = 0
    while after < total:
        batch = await log.wait(after, LONG)
        assert batch, "wait timed out while the producer was still appending"
        seen.extend(m.seq for m in batch)
        after = batch[-1].seq
    await producer
    assert seen == list(range(1, total + 1))


async def test_poll_reports_a_gap_at_once() -> None:
    log = EventLog(SB, maxlen=2)
    for _ in range(5):
        status(log)
    backlog = await log.poll(1, LONG)
    assert backlog.missed
    assert [m.seq for m in backlog.messages] == [4, 5]
    # A number from another incarnation: nothing to send, but the gap is news now.
    ahead = await log.poll(40, LONG)
    assert ahead.missed and ahead.messages == []
    # wait() on the same number sleeps until its timeout instead.
    assert await log.wait(40, SHORT) == []


async def test_poll_waits_like_wait() -> None:
    log = EventLog(SB)
    assert await log.poll(0, SHORT) == Backlog(messages=[], missed=False, oldest_seq=1, last_seq=0)
    poller = asyncio.create_task(log.poll(0, LONG))
    await asyncio.sleep(0)
    await asyncio.to_thread(status, log)
    backlog = await asyncio.wait_for(poller, LONG)
    assert [m.seq for m in backlog.messages] == [1]
    assert not backlog.missed


def test_append_after_the_waiters_loop_closed() -> None:
    # A reader whose loop shut down without unregistering (a killed replica's
    # thread, say) must not make the writer fail.
    log = EventLog(SB)
    loop = asyncio.new_event_loop()
    log._waiters.add((loop, loop.create_future()))
    loop.close()
    status(log)
    assert log._waiters == set()
    assert [m.seq for m in log.since(0)] == [1]


async def test_answered_returns_once_every_woken_reader_has_returned() -> None:
    log = EventLog(SB)
    readers = [asyncio.create_task(log.wait(0, LONG)) for _ in range(3)]
    readers.append(asyncio.create_task(log.poll(0, LONG)))
    await asyncio.sleep(0)
    await asyncio.to_thread(status, log, "stopped")
    assert await log.answered(LONG)
    assert all(reader.done() for reader in readers)
    assert log._reading == []


async def test_answered_does_not_wait_for_readers_with_nothing_to_get() -> None:
    log = EventLog(SB)
    status(log, "stopped")
    reader = asyncio.create_task(log.wait(1, LONG))
    await asyncio.sleep(0)
    try:
        assert await asyncio.wait_for(log.answered(LONG), LONG)
        assert not reader.done()
    finally:
        reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert log._reading == []


async def test_answered_gives_up_on_a_reader_whose_loop_is_stuck() -> None:
    log = EventLog(SB)
    registered, unstick = threading.Event(), threading.Event()
    got: list[int] = []

    def reader() -> None:
        async def main() -> None:
            task = asyncio.create_task(log.wait(0, LONG))
            await asyncio.sleep(0)
            registered.set()
            # The loop is blocked here, so the wake-up of the append cannot run yet.
            unstick.wait(LONG)
            got.extend(m.seq for m in await task)

        asyncio.run(main())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert await asyncio.to_thread(registered.wait, LONG)
        status(log, "stopped")
        assert not await log.answered(0.05)
    finally:
        unstick.set()
        await asyncio.to_thread(thread.join, LONG)
    assert got == [1]
    assert await log.answered(0)
