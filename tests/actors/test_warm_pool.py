"""WarmPool against the fake cluster's worker counts: what it asks the raylet for, and when."""

from __future__ import annotations

import asyncio
import logging

import pytest

from actors._warm_pool import WarmPool
from tests.actors.fake_backend import FakeBackend, node

POLL = 0.01


def pool(
    backend: FakeBackend, size: int, *, delay: float = 0, boot_timeout: float = 1.0
) -> WarmPool:
    return WarmPool(backend, size, delay=delay, boot_timeout=boot_timeout, poll=POLL)


async def settled(warm: WarmPool) -> None:
    """Until no fill runs (each is a background task)."""
    for _ in range(500):
        await asyncio.sleep(POLL)
        if not warm._fills and not warm._timers:
            return
    raise AssertionError("the pool kept filling")


def never_register(backend: FakeBackend) -> None:
    """The raylet takes each request, and no worker ever registers (the count never moves)."""

    async def asked_for(node_id: str, count: int) -> None:
        backend.prestarts.extend([node_id] * count)

    backend.prestart_workers = asked_for  # type: ignore[method-assign]


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend([node("n1"), node("n2")])


async def test_a_fill_asks_for_one_worker_at_a_time_until_the_node_has_its_size(
    backend: FakeBackend,
) -> None:
    asked_at_once: list[int] = []
    prestart = backend.prestart_workers

    async def counting(node_id: str, count: int) -> None:
        asked_at_once.append(count)
        await prestart(node_id, count)

    backend.prestart_workers = counting  # type: ignore[method-assign]
    backend.idle = {"n1": 1}  # one spare is there already
    warm = pool(backend, 3)
    warm.keep({"n1": float("inf"), "n2": 2})
    await settled(warm)
    assert backend.idle == {"n1": 3, "n2": 2}
    assert asked_at_once == [1, 1, 1, 1]
    warm.keep({"n1": float("inf"), "n2": 2})
    await settled(warm)
    assert len(asked_at_once) == 4  # full: a pass asks for nothing


async def test_nothing_is_filled_while_creations_run_and_the_last_one_fills_after_the_delay(
    backend: FakeBackend,
) -> None:
    warm = pool(backend, 2, delay=0.2)
    warm.creation_started("n1")
    warm.creation_started("n1")
    warm.keep({"n1": 4})
    await settled(warm)
    assert backend.prestarts == []
    warm.creation_ended("n1")
    await asyncio.sleep(0.3)
    assert backend.prestarts == []  # one is still under way
    warm.creation_ended("n1")
    await asyncio.sleep(0.1)
    assert backend.prestarts == []  # the delay
    await asyncio.sleep(0.2)
    await settled(warm)
    assert backend.idle == {"n1": 2}


async def test_a_creation_that_starts_stops_a_running_fill(backend: FakeBackend) -> None:
    never_register(backend)
    warm = pool(backend, 3, boot_timeout=5.0)
    warm.keep({"n1": 4})
    await asyncio.sleep(0.05)
    assert backend.prestarts == ["n1"]
    warm.creation_started("n1")
    await settled(warm)  # well before the boot timeout
    assert backend.prestarts == ["n1"]


async def test_a_node_whose_workers_never_register_gets_one_request_per_pass(
    backend: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    never_register(backend)
    warm = pool(backend, 4, boot_timeout=0.2)
    with caplog.at_level(logging.INFO, logger="actors._warm_pool"):
        warm.keep({"n1": 4})
        await settled(warm)
    assert backend.prestarts == ["n1"]
    assert "no spare worker booted on n1 in time" in caplog.text


async def test_a_raylet_that_cannot_count_gets_one_spare_per_fill(backend: FakeBackend) -> None:
    backend.idle = None
    warm = pool(backend, 4)
    warm.keep({"n1": 4})
    await settled(warm)
    assert backend.prestarts == ["n1"]


async def test_a_sandbox_ending_frees_its_slot_and_fills_at_once_a_delayed_fill(
    backend: FakeBackend,
) -> None:
    warm = pool(backend, 2, delay=60)
    warm.keep({"n1": 1})
    await settled(warm)
    assert backend.idle == {"n1": 1}
    warm.creation_started("n1")  # takes the last slot (and, in Ray, the spare)
    backend.idle = {"n1": 0}
    warm.creation_ended("n1")
    assert warm.target("n1") == 0
    warm.sandbox_ended("n1")  # the delayed fill runs now, for the freed slot
    await settled(warm)
    assert backend.idle == {"n1": 1}
    assert warm.target("n1") == 1


async def test_a_node_no_sandbox_may_go_to_gets_no_spare(backend: FakeBackend) -> None:
    warm = pool(backend, 2)
    warm.keep({"n2": 2})
    warm.creation_ended("n1")
    await settled(warm)
    assert backend.prestarts == ["n2", "n2"]


async def test_close_stops_a_running_fill_and_a_pending_one(backend: FakeBackend) -> None:
    never_register(backend)
    warm = pool(backend, 2, delay=0.1, boot_timeout=5.0)
    warm.keep({"n1": 2})
    warm.creation_started("n2")
    warm.creation_ended("n2")  # pending on its delay
    await asyncio.sleep(0.05)
    warm.close()
    await asyncio.sleep(0.2)
    assert backend.prestarts == ["n1"]
    assert not warm._fills and not warm._timers
    warm.keep({"n1": 2})
    await asyncio.sleep(0.05)
    assert backend.prestarts == ["n1"]


async def test_a_failing_backend_is_logged_and_the_next_pass_tries_again(
    backend: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0
    count = backend.idle_workers

    async def flaky(node_id: str) -> int | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("raylet went away")
        return await count(node_id)

    backend.idle_workers = flaky  # type: ignore[method-assign]
    warm = pool(backend, 1)
    with caplog.at_level(logging.ERROR, logger="actors._warm_pool"):
        warm.keep({"n1": 1})
        await settled(warm)
    assert "filling the warm pool of n1 failed" in caplog.text
    assert backend.prestarts == []
    warm.keep({"n1": 1})
    await settled(warm)
    assert backend.idle == {"n1": 1}


async def test_work_holds_fills_without_taking_a_slot_and_settled_waits_for_the_fill(
    backend: FakeBackend,
) -> None:
    # A ready sandbox's warm-up (actors/manager.py _start_ready): no spare boots beside
    # it, and its setup returns once the spare booted after it is up.
    warm = pool(backend, 2, delay=0.1)
    warm.keep({"n1": 2})
    await settled(warm)
    backend.idle = {"n1": 0}
    warm.work_started("n1")
    warm.keep({"n1": 2})
    await asyncio.sleep(0.05)
    assert warm.target("n1") == 2  # no slot taken by the work
    warm.creation_ended("n1")
    assert backend.idle == {"n1": 0}  # the delay
    await asyncio.wait_for(warm.settled("n1"), timeout=5)
    assert backend.idle == {"n1": 2} and not warm._fills and not warm._timers
    await asyncio.wait_for(warm.settled("n1"), timeout=1)  # nothing due: at once


async def test_a_boot_is_over_once_the_spare_preloaded_and_the_next_waits_for_it(
    backend: FakeBackend,
) -> None:
    # The raylet counts a spare before its preload runs (actors.ray_internals.mark_preloaded):
    # settled returns, and the next spare is asked for, only once the preload is over.
    backend.preload_s = 0.3
    prestarted_at: list[float] = []
    prestart = backend.prestart_workers

    async def timed(node_id: str, count: int) -> None:
        prestarted_at.append(asyncio.get_running_loop().time())
        await prestart(node_id, count)

    backend.prestart_workers = timed  # type: ignore[method-assign]
    warm = pool(backend, 2)
    loop = asyncio.get_running_loop()
    began = loop.time()
    warm.keep({"n1": 2})
    await asyncio.sleep(0.05)
    await asyncio.wait_for(warm.settled("n1"), timeout=5)
    assert loop.time() - began >= 0.6  # two preloads, one after the other
    assert len(prestarted_at) == 2 and prestarted_at[1] - prestarted_at[0] >= 0.3
    assert await backend.preloading_workers("n1") == 0


async def test_a_creation_ends_the_wait_for_a_preload_and_a_stuck_one_is_waited_for_no_more(
    backend: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="actors._warm_pool")
    backend.preload_s = 30.0
    warm = pool(backend, 1, boot_timeout=0.2)
    warm.keep({"n1": 2})
    await asyncio.wait_for(warm.settled("n1"), timeout=5)  # the boot timeout, not 30 s
    assert "still preloading" in caplog.text
    backend.idle = {"n1": 0}
    warm = pool(backend, 1, boot_timeout=10.0)
    warm.keep({"n1": 2})
    await asyncio.sleep(0.05)
    assert warm._fills  # waiting on the preload
    warm.creation_started("n1")
    await settled(warm)  # well before the boot timeout


async def edits(warm: WarmPool, node_id: str, seconds: float, every: float = 0.05) -> None:
    """A sandbox of ``node_id`` answering edits one after the other for ``seconds``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        warm.activity(node_id)
        await asyncio.sleep(every)


async def test_no_spare_boots_among_a_nodes_edits_and_one_boots_once_they_pause(
    backend: FakeBackend,
) -> None:
    warm = WarmPool(backend, 2, delay=0, poll=POLL, quiet=0.3, max_defer=10.0)
    warm.activity("n1")
    warm.keep({"n1": 4, "n2": 4})
    await edits(warm, "n1", 0.6)
    assert "n1" not in backend.prestarts  # busy all along
    assert backend.idle.get("n2") == 2  # a node without edits is filled meanwhile
    await asyncio.sleep(0.15)
    assert "n1" not in backend.prestarts  # not quiet for 0.3 s yet
    await settled(warm)
    assert backend.idle.get("n1") == 2


async def test_edits_that_never_pause_hold_a_boot_back_at_most_max_defer(
    backend: FakeBackend,
) -> None:
    warm = WarmPool(backend, 1, delay=0, poll=POLL, quiet=0.3, max_defer=0.4)
    warm.keep({"n1": 4})
    await edits(warm, "n1", 0.2)
    assert backend.prestarts == []
    await edits(warm, "n1", 0.6)  # still editing when max_defer runs out
    assert backend.prestarts == ["n1"]
    warm.close()


async def test_a_creation_during_the_wait_for_quiet_ends_the_fill(backend: FakeBackend) -> None:
    warm = WarmPool(backend, 1, delay=0, poll=POLL, quiet=0.3, max_defer=10.0)
    warm.activity("n1")
    warm.keep({"n1": 4})
    await asyncio.sleep(0.05)
    warm.creation_started("n1")
    await settled(warm)  # the fill ended, well before quiet
    assert backend.prestarts == []
