"""Nodes prepared before their first sandbox (actors._node_prep), against the fake cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from actors._node_prep import (
    PREPARING,
    READY,
    TEMPLATE,
    NodePreparer,
    NodeWork,
    PrepReport,
    RepositoryWork,
)
from actors.manager import StudioManager
from studio.config import StudioSettings
from studio.errors import PreparationFailed
from studio.messages import PrepareStep
from studio.store import Registry
from tests.actors.fake_backend import FakeBackend, node
from tests.support.gitrepo import make_repo


def work(node_id: str, *repositories: str) -> NodeWork:
    return NodeWork(
        node_id,
        {"state_dir": f"/disk/{node_id}"},
        tuple(RepositoryWork(name, {"name": name}, {}) for name in repositories),
    )


async def until(check: Callable[[], bool]) -> None:
    """Until ``check`` holds (what it waits on happens in background tasks)."""
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("it never happened")


async def idle(preparer: NodePreparer) -> None:
    """Until no preparation runs (each is a background task)."""
    for _ in range(500):
        if not preparer._tasks:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("a preparation kept running")


async def test_each_node_is_prepared_once_and_again_only_for_a_new_repository() -> None:
    backend = FakeBackend([])
    preparer = NodePreparer(backend)
    preparer.keep([work("n1"), work("n2", "ui")])
    await idle(preparer)
    assert [(w.node_id, [r.name for r in w.repositories]) for w in backend.preparations] == [
        ("n1", []),
        ("n2", ["ui"]),
    ]
    preparer.keep([work("n1"), work("n2", "ui")])
    await idle(preparer)
    assert len(backend.preparations) == 2  # nothing new: nothing asked for
    preparer.keep([work("n1", "ui", "kit"), work("n2", "ui", "kit")])
    await idle(preparer)
    # Only what each node lacks, under the node's own settings.
    assert [(w.node_id, [r.name for r in w.repositories]) for w in backend.preparations[2:]] == [
        ("n1", ["ui", "kit"]),
        ("n2", ["kit"]),
    ]
    assert backend.preparations[-1].settings == {"state_dir": "/disk/n2"}
    assert preparer.status() == {
        "n1": {TEMPLATE: READY, "ui": READY, "kit": READY},
        "n2": {TEMPLATE: READY, "ui": READY, "kit": READY},
    }


async def test_a_preparation_under_way_says_so_and_is_not_asked_for_twice() -> None:
    backend = FakeBackend([])
    gate = asyncio.Event()
    prepare = backend.prepare_node

    async def slow(node_work: NodeWork) -> AsyncIterator[PrepReport]:
        await gate.wait()
        async for report in prepare(node_work):
            yield report

    backend.prepare_node = slow  # type: ignore[method-assign]
    preparer = NodePreparer(backend)
    preparer.keep([work("n1", "ui")])
    preparer.keep([work("n1", "ui")])
    await asyncio.sleep(0.05)
    assert preparer.status() == {"n1": {TEMPLATE: PREPARING, "ui": PREPARING}}
    gate.set()
    await idle(preparer)
    assert len(backend.preparations) == 1
    assert preparer.status() == {"n1": {TEMPLATE: READY, "ui": READY}}


async def test_a_failed_preparation_is_reported_and_not_repeated_until_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = FakeBackend([])
    backend.next_prepare_error = ConnectionError("the node went away")
    preparer = NodePreparer(backend)
    preparer.keep([work("n1", "ui")])
    await idle(preparer)
    assert preparer.status() == {
        "n1": {TEMPLATE: "failed: the node went away", "ui": "failed: the node went away"}
    }
    assert "preparing a node failed" in caplog.text
    preparer.keep([work("n1", "ui")])
    await idle(preparer)
    assert len(backend.preparations) == 1
    with pytest.raises(PreparationFailed, match="the node went away") as failed:
        preparer.check("n1", "ui")
    assert failed.value.details["preparation"]["state"] == "failed"
    assert preparer.retry("ui") == 1
    preparer.keep([work("n1", "ui")])
    await idle(preparer)
    assert len(backend.preparations) == 2
    assert preparer.status() == {"n1": {TEMPLATE: READY, "ui": READY}}


async def test_a_create_waits_for_the_preparation_under_way_and_sees_its_steps() -> None:
    backend = FakeBackend([])
    # Each step goes on once the waiting create has been told of the one before.
    gates = {step: asyncio.Event() for step in PrepareStep}

    async def stepwise(node_work: NodeWork) -> AsyncIterator[PrepReport]:
        backend.preparations.append(node_work)
        yield PrepReport(TEMPLATE, state=READY)
        for step in (PrepareStep.MIRROR, PrepareStep.INSTALL):
            yield PrepReport("ui", step=step.value)
            await gates[step].wait()
        yield PrepReport("ui", state=READY, stories=3)

    backend.prepare_node = stepwise  # type: ignore[method-assign]
    preparer = NodePreparer(backend)
    [ui] = work("n1", "ui").repositories
    preparer.keep([work("n1", "ui")])
    seen: list[str] = []

    async def step(name: PrepareStep) -> None:
        seen.append(name.value)
        gates[name].set()

    await asyncio.wait_for(preparer.ready(work("n1"), ui, step), 10)
    assert seen == ["mirror", "install"]
    assert len(backend.preparations) == 1  # waited for, not run again
    # Ready: a later create does not wait, and a new node prepares it on first use.
    await asyncio.wait_for(preparer.ready(work("n1"), ui, step), 10)
    assert seen == ["mirror", "install"]
    await asyncio.wait_for(preparer.ready(work("n2"), ui, step), 10)
    assert [(w.node_id, [r.name for r in w.repositories]) for w in backend.preparations] == [
        ("n1", ["ui"]),
        ("n2", ["ui"]),
    ]


async def test_close_stops_what_runs_and_prepares_nothing_more() -> None:
    backend = FakeBackend([])
    stopped = asyncio.Event()

    async def hangs(node_work: NodeWork) -> AsyncIterator[PrepReport]:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        yield PrepReport(TEMPLATE, state=READY)  # never reached

    backend.prepare_node = hangs  # type: ignore[method-assign]
    preparer = NodePreparer(backend)
    preparer.keep([work("n1")])
    await asyncio.sleep(0.01)
    await preparer.close()
    assert stopped.is_set()
    preparer.keep([work("n2")])
    assert "n2" not in preparer.status()


# -- through the manager ---------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> StudioSettings:
    return StudioSettings(
        state_dir=tmp_path / "state",
        repo_roots=[tmp_path / "repos"],
        admin_token="admin-secret",
        github_token="gh-secret",
    )


async def test_the_manager_prepares_nodes_that_take_sandboxes_and_each_registered_repository(
    settings: StudioSettings, tmp_path: Path
) -> None:
    backend = FakeBackend([node("head", slots=0, head=True), node("n1"), node("n2", alive=False)])
    manager = StudioManager(settings, backend, node_state_dirs={"n1": "/disk/n1"})
    try:
        await manager.reconcile()
        await idle(manager.preparer)
        # The node sandboxes may go to, before any repository: its template part (the hint).
        assert [(w.node_id, w.repositories) for w in backend.preparations] == [("n1", ())]
        origin = make_repo(tmp_path / "repos" / "ui", {"src/Button.tsx": "export {}\n"})
        await manager.register_repository("ui", path=str(origin), config={"branch": "main"})
        await idle(manager.preparer)  # at once, not at the next pass
        [(prepared, repository)] = [
            (w, r) for w in backend.preparations[1:] for r in w.repositories
        ]
        assert prepared.node_id == "n1"
        assert prepared.settings["state_dir"] == "/disk/n1"
        # No secret travels to the node's preparation.
        assert "admin_token" not in prepared.settings
        assert "github_token" not in prepared.settings
        assert repository.name == "ui"
        assert repository.source["source"] == str(origin.resolve())
        assert repository.source["default_branch"] == repository.config["branch"] == "main"
        assert (await manager.health())["preparation"] == {"n1": {TEMPLATE: READY, "ui": READY}}
        await manager.reconcile()
        await idle(manager.preparer)
        assert len(backend.preparations) == 2
    finally:
        await manager.stop_preparing()
        manager.close()


async def test_the_registry_keeps_each_preparation_and_a_restart_runs_one_left_preparing(
    tmp_path: Path,
) -> None:
    registry = Registry(tmp_path / "registry.db")
    try:
        ui = registry.add_repository("ui", "/src/ui")
        kit = registry.add_repository("kit", "/src/kit")
        backend = FakeBackend([])
        backend.next_prepare_error = None
        preparer = NodePreparer(backend, registry)
        node_work = NodeWork(
            "n1",
            {},
            (
                RepositoryWork("ui", {}, {}, ui.id),
                RepositoryWork("kit", {}, {}, kit.id),
            ),
        )
        preparer.keep([node_work])
        await idle(preparer)
        shown = registry.get_repository(ui.id).preparation
        assert shown.state == "ready"
        assert [(n.node_id, n.state) for n in shown.nodes] == [("n1", "ready")]
        assert shown.finished_at is not None
        # A manager that stopped half-way: kit still says preparing.
        kept = registry.get_repository(kit.id).preparation.nodes[0]
        registry.save_preparation(kit.id, kept.model_copy(update={"state": "preparing"}))

        again = NodePreparer(backend, registry)
        assert again.status() == {"n1": {"ui": READY}}
        assert registry.get_repository(kit.id).preparation.state == "pending"
        again.keep([node_work])
        await idle(again)
        assert [r.name for r in backend.preparations[-1].repositories] == ["kit"]
        assert registry.get_repository(kit.id).preparation.state == "ready"
    finally:
        registry.close()


async def test_a_create_waits_on_the_manager_for_the_preparation_and_fails_fast_on_a_failed_one(
    settings: StudioSettings, tmp_path: Path
) -> None:
    backend = FakeBackend([node("n1")])
    gate = asyncio.Event()
    fail = True

    async def gated(node_work: NodeWork) -> AsyncIterator[PrepReport]:
        backend.preparations.append(node_work)
        yield PrepReport(TEMPLATE, state=READY)
        for repository in node_work.repositories:
            yield PrepReport(repository.name, step="install")
            await gate.wait()
            if fail:
                yield PrepReport(
                    repository.name, state="failed", error="npm ci failed", output=("E404",)
                )
            else:
                yield PrepReport(repository.name, state=READY, stories=2)

    backend.prepare_node = gated  # type: ignore[method-assign]
    manager = StudioManager(settings, backend)
    try:
        origin = make_repo(tmp_path / "repos" / "ui", {"src/Button.tsx": "export {}\n"})
        repository = await manager.register_repository("ui", path=str(origin))
        assert repository.preparation.state == "preparing"
        create = asyncio.create_task(manager.create_sandbox("alice", repository.id))
        await until(lambda: bool(backend.actors))
        [actor] = backend.actors.values()
        await until(lambda: any(method == "preparation_step" for method, _, _ in actor.calls))
        assert ("preparation_step", ("install",), {}) in actor.calls
        assert not any(method == "setup" for method, _, _ in actor.calls)  # still waiting
        gate.set()
        with pytest.raises(PreparationFailed, match="npm ci failed"):
            await create
        assert [m for m, _, _ in actor.calls if m.startswith("preparation")] == [
            "preparation_step",
            "preparation_failed",
        ]
        [failed] = manager.registry.list_sandboxes()
        assert failed.state.value in ("failed", "stopped")
        assert "npm ci failed" in (failed.error or "")
        shown = manager.registry.get_repository(repository.id).preparation
        assert (shown.state, shown.step, shown.output) == ("failed", "install", ["E404"])

        # Fails fast now: no sandbox, no actor.
        with pytest.raises(PreparationFailed) as fast:
            await manager.create_sandbox("alice", repository.id)
        assert fast.value.details["preparation"]["output"] == ["E404"]
        assert len(manager.registry.list_sandboxes()) == 1

        fail = False
        retried = await manager.prepare_repository(repository.id)
        assert retried.preparation.state == "preparing"
        created = await manager.create_sandbox("alice", repository.id)
        assert created.status.value == "running"
        ready = manager.registry.get_repository(repository.id).preparation
        assert (ready.state, ready.stories, ready.error) == ("ready", 2, None)
        assert len(backend.preparations) == 2
    finally:
        await manager.stop_preparing()
        manager.close()


async def test_no_held_sandbox_starts_while_a_preparation_runs_and_one_starts_when_it_ends(
    settings: StudioSettings, tmp_path: Path
) -> None:
    # A held sandbox's setup is seconds of CPU that the preparation someone waits on
    # would otherwise have (docs/performance.md, the corpus).
    backend = FakeBackend([node("n1")])
    gate = asyncio.Event()
    prepare = backend.prepare_node

    async def gated(node_work: NodeWork) -> AsyncIterator[PrepReport]:
        if node_work.repositories:
            await gate.wait()
        async for report in prepare(node_work):
            yield report

    backend.prepare_node = gated  # type: ignore[method-assign]
    manager = StudioManager(settings.model_copy(update={"ready_sandboxes": 1}), backend)
    try:
        origin = make_repo(tmp_path / "repos" / "ui", {"src/Button.tsx": "export {}\n"})
        await manager.register_repository("ui", path=str(origin))
        assert manager.preparer.preparing()
        await manager.reconcile()
        await manager.reconcile()
        await asyncio.sleep(0.05)
        assert not backend.actors, "a held sandbox started beside the preparation"
        assert manager.preparer.preparing()

        gate.set()
        # at the preparation's end, not at the next supervision pass
        await until(lambda: bool(backend.actors))
        assert not manager.preparer.preparing()
        await until(lambda: len(manager.ready.held()) == 1)
    finally:
        await manager.cancel_setups()
        await manager.stop_preparing()
        manager.close()
