"""ReadySandboxes' pacing on a real registry: one setup at a time, back-off after a failure,
no setup while a taken sandbox's first page loads, a warmed sandbox handed out first."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors._ready import ReadySandboxes
from studio.naming import READY_OWNER
from studio.state import SandboxState
from studio.store import Registry
from tests.studio.test_store import added, sandbox


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    opened = Registry(tmp_path / "registry.sqlite")
    yield opened
    opened.close()


def test_one_setup_at_a_time_and_a_failing_repository_waits_before_the_next_try(
    registry: Registry, tmp_path: Path
) -> None:
    first = registry.add_repository("one", str(tmp_path / "one"))
    second = registry.add_repository("two", str(tmp_path / "two"))
    started: list[int] = []
    now = [0.0]

    async def start(repository_id: int) -> None:
        started.append(repository_id)
        raise RuntimeError("its Vite did not start")

    async def scenario() -> None:
        ready = ReadySandboxes(1, registry, start, clock=lambda: now[0])
        ready.keep([first.id, second.id])
        ready.keep([first.id, second.id])  # the first is still under way: nothing more
        await asyncio.sleep(0.05)
        assert started == [first.id]
        ready.keep([first.id, second.id])  # the first backs off; the second's turn
        await asyncio.sleep(0.05)
        assert started == [first.id, second.id]
        ready.keep([first.id, second.id])  # both back off
        await asyncio.sleep(0.05)
        assert started == [first.id, second.id]
        now[0] += 31.0
        ready.keep([first.id, second.id])
        await asyncio.sleep(0.05)
        assert started == [first.id, second.id, first.id]
        # Failed twice in a row: the wait doubles.
        now[0] += 31.0
        ready.keep([first.id])
        await asyncio.sleep(0.05)
        assert started == [first.id, second.id, first.id]
        await ready.close()
        now[0] += 1000.0
        ready.keep([first.id, second.id])  # closed: never again
        await asyncio.sleep(0.05)
        assert len(started) == 3

    asyncio.run(scenario())


def test_nothing_is_started_or_handed_out_with_size_zero(
    registry: Registry, tmp_path: Path
) -> None:
    repository = registry.add_repository("one", str(tmp_path / "one"))

    async def start(repository_id: int) -> None:
        raise AssertionError("size 0 starts nothing")

    async def scenario() -> None:
        ready = ReadySandboxes(0, registry, start)
        ready.keep([repository.id])
        await asyncio.sleep(0.05)
        claim = ready.claim(repository.id, "alice", "0" * 40)
        assert claim.taken is None and claim.stale == []

    asyncio.run(scenario())


HEAD = "0" * 40


def add_held(registry: Registry, repository_id: int, n: int) -> None:
    """A held sandbox of the repository, RUNNING, based on HEAD (sb_test<n>)."""
    record = sandbox(repository_id, n, owner=READY_OWNER, state=SandboxState.RUNNING)
    added(registry, record.model_copy(update={"base_commit": HEAD}))


def test_a_taken_sandbox_is_replaced_only_after_the_quiet_period(
    registry: Registry, tmp_path: Path
) -> None:
    repository = registry.add_repository("one", str(tmp_path / "one"))
    add_held(registry, repository.id, 1)
    started: list[int] = []
    now = [100.0]

    async def start(repository_id: int) -> None:
        started.append(repository_id)

    async def scenario() -> None:
        ready = ReadySandboxes(1, registry, start, quiet_s=10.0, clock=lambda: now[0])
        ready.keep([repository.id])  # one is held: nothing to start
        await asyncio.sleep(0.05)
        assert started == []
        claim = ready.claim(repository.id, "alice", HEAD)
        assert claim.taken is not None and claim.taken.owner == "alice"
        now[0] += 9.0  # alice's first page is loading: the node's CPU is hers
        ready.keep([repository.id])
        await asyncio.sleep(0.05)
        assert started == []
        now[0] += 1.0
        ready.keep([repository.id])
        await asyncio.sleep(0.05)
        assert started == [repository.id]
        await ready.close()

    asyncio.run(scenario())


def test_a_warmed_sandbox_is_handed_out_before_one_whose_warm_up_is_under_way(
    registry: Registry, tmp_path: Path
) -> None:
    repository = registry.add_repository("one", str(tmp_path / "one"))
    warm = asyncio.Event()

    async def start(repository_id: int) -> None:
        # its Vite is up (RUNNING); the warm-up is what this setup waits for
        add_held(registry, repository_id, 3)
        await warm.wait()

    async def scenario() -> None:
        ready = ReadySandboxes(2, registry, start)
        add_held(registry, repository.id, 1)
        ready.keep([repository.id])
        await asyncio.sleep(0.05)
        assert ready.status() == {repository.id: {"running": 1, "warming": 1}}
        first = ready.claim(repository.id, "alice", HEAD).taken
        assert first is not None and first.id == "sb_test000001"
        # Only the warming one is left: still a running Vite, far ahead of a setup.
        second = ready.claim(repository.id, "bob", HEAD).taken
        assert second is not None and second.id == "sb_test000003"
        warm.set()
        await ready.close()

    asyncio.run(scenario())


def test_a_sandbox_warmed_is_running_again_in_the_status(
    registry: Registry, tmp_path: Path
) -> None:
    repository = registry.add_repository("one", str(tmp_path / "one"))

    async def start(repository_id: int) -> None:
        add_held(registry, repository_id, 1)

    async def scenario() -> None:
        ready = ReadySandboxes(1, registry, start)
        ready.keep([repository.id])
        await asyncio.sleep(0.05)
        assert ready.status() == {repository.id: {"running": 1}}

    asyncio.run(scenario())
