"""StudioManager against the fake cluster: a real registry and real git, no Ray."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from actors.manager import SEQ_MARGIN, ManagerTimeouts, StudioManager
from studio.config import StudioSettings
from studio.errors import (
    Conflict,
    InvalidConfig,
    InvalidRequest,
    InvalidState,
    MissingBaseBranch,
    NotFound,
    PermissionDenied,
    PullRequestError,
    QuotaExceeded,
    RepositoryNotFound,
    SandboxNotFound,
    ServiceUnavailable,
    ViteStartError,
)
from studio.models import CommitInfo
from studio.state import SandboxState
from tests.actors.fake_backend import FakeBackend, node
from tests.support.gitrepo import git, make_repo
from tests.support.prism import VALID_TOKEN, GitHubFront
from tests.support.state_log import record_states, states_written

# The states the registry wrote for a sandbox, as one chain of legal steps.
Written = Callable[[str], list[str]]


@pytest.fixture
def settings(tmp_path: Path) -> StudioSettings:
    return StudioSettings(
        state_dir=tmp_path / "state",
        repo_roots=[tmp_path / "repos"],
        public_host="studio.test",
        health_check_interval=0.1,
    )


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repos" / "ui", {"src/Button.tsx": "export {}\n"})


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend([node("head", slots=None, head=True), node("n1"), node("n2")])


@pytest.fixture
async def manager(settings: StudioSettings, backend: FakeBackend) -> AsyncIterator[StudioManager]:
    studio = StudioManager(
        settings,
        backend,
        node_state_dirs={"n1": "/disk/n1", "n2": "/disk/n2"},
        timeouts=ManagerTimeouts(max_missed_pings=2),
    )
    yield studio
    studio.close()


@pytest.fixture
def written(caplog: pytest.LogCaptureFixture) -> Written:
    record_states(caplog)
    return lambda sandbox_id: states_written(caplog, sandbox_id)


@pytest.fixture
def repo_id(manager: StudioManager, origin: Path) -> int:
    return manager.accounts.register_repository("ui", path=str(origin)).id


# -- create / get / list / teardown / finalize ---------------------------------


async def test_create_places_on_least_loaded_slot_node_and_returns_running(
    manager: StudioManager, backend: FakeBackend, repo_id: int, written: Written
) -> None:
    first = await manager.create_sandbox("alice", repo_id, {})
    second = await manager.create_sandbox("alice", repo_id, {"timeout_hours": 1})
    assert first.status is SandboxState.RUNNING and second.status is SandboxState.RUNNING
    # The head declares no slots; the two workers take one each.
    assert {first.node, second.node} == {"n1", "n2"}
    assert first.renderer_url == f"http://studio.test:{first.port}/"
    assert first.repository_id == repo_id and first.owner == "alice"
    spec = backend.created[1]
    assert spec.config.timeout_hours == 1 and spec.config.repository == "ui"
    assert spec.settings["state_dir"] == f"/disk/{second.node}"
    assert "admin_token" not in spec.settings and "github_token" not in spec.settings
    record = manager.registry.get_sandbox(first.id)
    assert record.state is SandboxState.RUNNING and record.port == first.port
    assert written(first.id) == ["pending", "starting", "running"]


@pytest.mark.parametrize(("bind", "vite_host"), [("127.0.0.1", "10.0.0.2"), ("0.0.0.0", "0.0.0.0")])
async def test_a_sandbox_on_another_node_is_shown_at_that_node_address(
    settings: StudioSettings, origin: Path, bind: str, vite_host: str
) -> None:
    backend = FakeBackend(
        [node("head", slots=None, head=True, address="10.0.0.1"), node("n1", address="10.0.0.2")]
    )
    studio = StudioManager(settings.model_copy(update={"host": bind}), backend)
    try:
        repo = studio.accounts.register_repository("ui", path=str(origin)).id
        created = await studio.create_sandbox("alice", repo, {})
        assert created.node == "n1"
        url = f"http://10.0.0.2:{created.port}/"
        assert created.renderer_url == url
        assert (await studio.get_sandbox(created.id)).renderer_url == url
        assert [s.renderer_url for s in studio.list_sandboxes()] == [url]
        # Vite must listen where that URL points, not on the worker's loopback.
        assert backend.created[0].settings["host"] == vite_host
        # public_host still names the head (the API and the studio page's WebSocket).
        assert backend.created[0].settings["public_host"] == "studio.test"
    finally:
        studio.close()


async def test_create_rejects_bad_overrides_and_unknown_repositories(
    manager: StudioManager, backend: FakeBackend, repo_id: int
) -> None:
    with pytest.raises(InvalidConfig, match="timeout_hours"):
        await manager.create_sandbox("alice", repo_id, {"timeout_hours": -1})
    with pytest.raises(InvalidConfig, match="no_such_field"):
        await manager.create_sandbox("alice", repo_id, {"no_such_field": 1})
    with pytest.raises(RepositoryNotFound):
        await manager.create_sandbox("alice", 999, {})
    assert backend.created == []


async def test_create_holds_users_to_the_limits_and_admins_to_the_bounds(
    settings: StudioSettings, backend: FakeBackend, origin: Path
) -> None:
    studio = StudioManager(settings.model_copy(update={"max_sandboxes_per_user": 1}), backend)
    try:
        repo = studio.accounts.register_repository("ui", path=str(origin)).id
        with pytest.raises(PermissionDenied, match="only an admin may raise it"):
            await studio.create_sandbox("alice", repo, {"timeout_hours": 8})
        with pytest.raises(PermissionDenied, match="only an admin may set vite_port"):
            await studio.create_sandbox("alice", repo, {"vite_port": 6000})
        with pytest.raises(InvalidConfig, match=r"timeout_hours.*less than or equal to 168"):
            await studio.create_sandbox("root", repo, {"timeout_hours": 1000}, is_admin=True)
        assert backend.created == []
        await studio.create_sandbox("alice", repo, {"timeout_hours": 1})
        with pytest.raises(QuotaExceeded, match="max_sandboxes_per_user"):
            await studio.create_sandbox("alice", repo, {}, wait=False)
        # Admins: no quota, and longer timeouts than the service's.
        for _ in range(2):
            await studio.create_sandbox("root", repo, {"timeout_hours": 8}, is_admin=True)
        assert [spec.config.timeout_hours for spec in backend.created] == [1, 8, 8]
    finally:
        studio.close()


async def test_failed_setup_is_recorded_raised_and_cleaned(
    manager: StudioManager, backend: FakeBackend, repo_id: int, written: Written
) -> None:
    backend.next_setup_error = ViteStartError("vite never answered", output=["boom"])
    with pytest.raises(ViteStartError, match="never answered"):
        await manager.create_sandbox("alice", repo_id, {})
    (record,) = manager.registry.list_sandboxes()
    assert record.state is SandboxState.FAILED and record.error == "vite never answered"
    assert written(record.id) == ["pending", "starting", "failed"]
    assert backend.killed == [record.id] and backend.actors == {}
    # Its worktree and Vite went with a teardown the actor accepted, before the kill.
    assert backend.dead[record.id].state is SandboxState.STOPPED
    # A failed sandbox is not supervised: the next pass leaves it alone.
    assert (await manager.reconcile())["sandboxes"] == {}
    # Its teardown (the cleanup job's, or DELETE) goes through STOPPING.
    ended = await manager.teardown_sandbox(record.id, "alice")
    assert ended.status is SandboxState.STOPPED
    assert written(record.id) == ["pending", "starting", "failed", "stopping", "stopped"]


async def test_create_without_waiting_returns_starting_and_sets_up_behind(
    manager: StudioManager, backend: FakeBackend, repo_id: int, written: Written
) -> None:
    backend.setup_gate = gate = asyncio.Event()
    sandbox = await manager.create_sandbox("alice", repo_id, {}, wait=False)
    assert sandbox.status is SandboxState.STARTING and sandbox.renderer_url is None
    actor = backend.actors[sandbox.id]
    assert [c[0] for c in actor.calls] == ["setup"]  # asked, not answered yet
    assert manager.registry.get_sandbox(sandbox.id).state is SandboxState.STARTING
    # The actor, its setup not begun, still says pending: older than the registry,
    # which neither goes back nor shows it.
    assert actor.state is SandboxState.PENDING
    assert (await manager.get_sandbox(sandbox.id, "alice")).status is SandboxState.STARTING
    # A reconcile pass meanwhile waits for the setup; it neither restarts nor doubles it.
    pass_ = asyncio.create_task(manager.reconcile())
    gate.set()
    await pass_
    assert len(backend.created) == 1
    shown = await manager.get_sandbox(sandbox.id, "alice")
    assert shown.status is SandboxState.RUNNING and shown.renderer_url is not None
    assert written(sandbox.id) == ["pending", "starting", "running"]


async def test_create_without_waiting_that_fails_later_is_recorded_and_cleaned(
    manager: StudioManager, backend: FakeBackend, repo_id: int
) -> None:
    backend.setup_gate = gate = asyncio.Event()
    backend.next_setup_error = ViteStartError("vite never answered", output=["boom"])
    sandbox = await manager.create_sandbox("alice", repo_id, {}, wait=False)
    assert sandbox.status is SandboxState.STARTING
    gate.set()
    for _ in range(100):
        if sandbox.id in backend.killed:
            break
        await asyncio.sleep(0.01)
    record = manager.registry.get_sandbox(sandbox.id)
    assert record.state is SandboxState.FAILED and record.error == "vite never answered"
    assert backend.dead[sandbox.id].state is SandboxState.STOPPED


async def test_create_without_waiting_refuses_at_once_what_it_cannot_place(
    settings: StudioSettings, repo_id: int
) -> None:
    backend = FakeBackend([node("n1", slots=1)])
    studio = StudioManager(settings, backend)
    try:
        await studio.create_sandbox("alice", repo_id, {}, wait=False)
        with pytest.raises(ServiceUnavailable, match="free sandbox slot"):
            await studio.create_sandbox("alice", repo_id, {}, wait=False)
    finally:
        await studio.cancel_setups()
        studio.close()


async def test_cancel_setups_disposes_of_half_made_sandboxes(
    manager: StudioManager, backend: FakeBackend, repo_id: int
) -> None:
    backend.setup_gate = asyncio.Event()  # never set: the setup hangs
    sandbox = await manager.create_sandbox("alice", repo_id, {}, wait=False)
    await manager.cancel_setups()
    assert backend.killed == [sandbox.id]
    assert backend.dead[sandbox.id].state is SandboxState.STOPPED
    assert manager.registry.get_sandbox(sandbox.id).state is SandboxState.FAILED


def pool_manager(
    settings: StudioSettings, backend: FakeBackend, *, size: int, delay: float
) -> StudioManager:
    return StudioManager(
        settings.model_copy(update={"warm_workers": size}),
        backend,
        timeouts=ManagerTimeouts(spare_delay=delay),
    )


async def idle_settles(backend: FakeBackend, seconds: float = 2.0) -> dict[str, int]:
    """The spares per node once no fill has asked for one for a while (polls are 0.25 s)."""
    assert backend.idle is not None
    asked = -1
    while asked != len(backend.prestarts):
        asked = len(backend.prestarts)
        await asyncio.sleep(seconds / 2)
    return {n: c for n, c in backend.idle.items() if c}


async def test_the_warm_pool_is_filled_once_the_last_creation_on_its_node_ends(
    settings: StudioSettings, backend: FakeBackend, repo_id: int
) -> None:
    backend.node_views = [node("n1")]
    manager = pool_manager(settings, backend, size=2, delay=0)
    try:
        await manager.create_sandbox("alice", repo_id, {})
        assert await idle_settles(backend) == {"n1": 2}
        # Concurrent creations: none fills while the others are under way (a worker's
        # boot would take CPU from them); the last to end does.
        backend.setup_gate = gate = asyncio.Event()
        creating = [
            asyncio.create_task(manager.create_sandbox("alice", repo_id, {})) for _ in range(3)
        ]
        for _ in range(1000):  # until all three are setting up at once
            if len(backend.actors) == 4:
                break
            await asyncio.sleep(0.01)
        await manager.reconcile()
        assert await idle_settles(backend, 0.6) == {}  # two spares taken, none asked for
        assert backend.prestarts == ["n1", "n1"]
        gate.set()
        await asyncio.gather(*creating)
        # Four sandboxes on four slots: no slot is left for a spare to serve.
        await manager.reconcile()
        assert await idle_settles(backend) == {}
        await manager.teardown_sandbox(next(iter(backend.actors)), "alice")
        await manager.reconcile()
        assert await idle_settles(backend) == {"n1": 1}
    finally:
        manager.close()


async def test_the_pool_is_filled_once_the_delay_after_a_create_has_passed(
    settings: StudioSettings, backend: FakeBackend, repo_id: int
) -> None:
    # Margins of 0.8 s on each side of the delay: a loaded machine's sleeps run late.
    backend.node_views = [node("n1")]
    manager = pool_manager(settings, backend, size=1, delay=2.0)
    try:
        await manager.create_sandbox("alice", repo_id, {})
        # Within the delay a supervision pass fills nothing either.
        await manager.reconcile()
        await asyncio.sleep(1.2)
        assert backend.prestarts == []
        # A second create within the delay: the delay counts again from its end.
        await manager.create_sandbox("alice", repo_id, {})
        await asyncio.sleep(1.2)
        assert backend.prestarts == []
        for _ in range(500):
            if backend.prestarts:
                break
            await asyncio.sleep(0.01)
        assert await idle_settles(backend) == {"n1": 1}
        assert backend.prestarts == ["n1"]
    finally:
        manager.close()


async def test_a_teardown_fills_at_once_the_pool_still_waiting_on_its_delay(
    settings: StudioSettings, backend: FakeBackend, repo_id: int
) -> None:
    backend.node_views = [node("n1")]
    manager = pool_manager(settings, backend, size=1, delay=60)
    try:
        first = await manager.create_sandbox("alice", repo_id, {})
        second = await manager.create_sandbox("alice", repo_id, {})
        await asyncio.sleep(0.1)
        assert backend.prestarts == []
        await manager.teardown_sandbox(first.id, "alice")
        assert await idle_settles(backend) == {"n1": 1}
        # The pool is full: the next teardown asks for no second spare.
        await manager.teardown_sandbox(second.id, "alice")
        await asyncio.sleep(0.3)
        assert backend.prestarts == ["n1"]
    finally:
        manager.close()


async def test_a_pool_not_filled_yet_is_not_filled_after_close(
    settings: StudioSettings, backend: FakeBackend, repo_id: int
) -> None:
    manager = pool_manager(settings, backend, size=2, delay=0.05)
    await manager.create_sandbox("alice", repo_id, {})
    manager.close()
    await asyncio.sleep(0.2)
    assert backend.prestarts == []


async def test_a_supervision_pass_fills_each_open_node_up_to_its_free_slots(
    settings: StudioSettings, repo_id: int
) -> None:
    # The head declares no slots while others do: it is not meant for sandboxes.
    backend = FakeBackend([node("head", slots=None, head=True), node("n1", slots=2), node("n2")])
    manager = pool_manager(settings, backend, size=3, delay=0)
    try:
        await manager.reconcile()
        assert await idle_settles(backend) == {"n1": 2, "n2": 3}
        await manager.reconcile()
        await asyncio.sleep(0.3)
        assert len(backend.prestarts) == 5  # full: nothing more asked for
    finally:
        manager.close()


async def test_warm_workers_zero_keeps_no_spare(
    settings: StudioSettings, backend: FakeBackend, repo_id: int
) -> None:
    manager = pool_manager(settings, backend, size=0, delay=0)
    try:
        await manager.create_sandbox("alice", repo_id, {})
        await manager.reconcile()
        await asyncio.sleep(0.3)
        assert backend.prestarts == []
    finally:
        manager.close()


async def test_no_free_slot_is_service_unavailable(settings: StudioSettings, repo_id: int) -> None:
    backend = FakeBackend([node("n1", slots=1)])
    studio = StudioManager(settings, backend)
    try:
        await studio.create_sandbox("alice", repo_id, {})
        with pytest.raises(ServiceUnavailable, match="free sandbox slot"):
            await studio.create_sandbox("alice", repo_id, {})
    finally:
        studio.close()


async def test_owners_see_only_their_sandboxes(manager: StudioManager, repo_id: int) -> None:
    mine = await manager.create_sandbox("alice", repo_id, {})
    theirs = await manager.create_sandbox("bob", repo_id, {})
    assert [s.id for s in manager.list_sandboxes("alice")] == [mine.id]
    assert {s.id for s in manager.list_sandboxes(None)} == {mine.id, theirs.id}
    assert (await manager.get_sandbox(mine.id, "alice")).id == mine.id
    assert (await manager.get_sandbox(mine.id, None)).id == mine.id
    with pytest.raises(SandboxNotFound):
        await manager.get_sandbox(mine.id, "bob")
    with pytest.raises(SandboxNotFound):
        await manager.teardown_sandbox(mine.id, "bob")
    assert manager.owner_of(theirs.id) == "bob"


async def test_get_stores_commits_and_falls_back_to_the_registry(
    manager: StudioManager, backend: FakeBackend, repo_id: int
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    backend.actors[sandbox.id].commits = [
        CommitInfo(hash="b" * 40, message="AI: two", timestamp="2026-01-01T00:00:02Z"),
        CommitInfo(hash="c" * 40, message="AI: one", timestamp="2026-01-01T00:00:01Z"),
    ]
    live = await manager.get_sandbox(sandbox.id, "alice")
    assert [c.hash for c in live.git_commits] == ["b" * 40, "c" * 40]
    backend.unresponsive.add(sandbox.id)
    stored = await manager.get_sandbox(sandbox.id, "alice")
    assert [c.hash for c in stored.git_commits] == ["b" * 40, "c" * 40]
    assert stored.status is SandboxState.RUNNING


async def test_teardown_keeps_the_record_and_is_idempotent(
    manager: StudioManager, backend: FakeBackend, repo_id: int, written: Written
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    actor = backend.actors[sandbox.id]
    ended = await manager.teardown_sandbox(sandbox.id, "alice")
    assert ended.status is SandboxState.STOPPED and ended.port is None
    assert ("teardown", ("stopped",), {}) in actor.calls
    assert backend.killed == [sandbox.id]
    again = await manager.teardown_sandbox(sandbox.id, "alice")
    assert again.status is SandboxState.STOPPED
    assert written(sandbox.id) == ["pending", "starting", "running", "stopping", "stopped"]
    assert manager.list_sandboxes("alice") == []
    assert [s.id for s in manager.list_sandboxes("alice", include_ended=True)] == [sandbox.id]


async def test_finalize_hands_off_with_the_local_provider(
    manager: StudioManager, backend: FakeBackend, repo_id: int, written: Written
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    actor = backend.actors[sandbox.id]
    result = await manager.finalize_sandbox(sandbox.id, "alice", "Title", "Body")
    assert result.message == "Title"
    # Pictures in the body unless asked otherwise.
    assert ("finalize", ("Title", "Body", None, True), {}) in actor.calls
    assert manager.registry.get_sandbox(sandbox.id).state is SandboxState.FINALIZED
    assert written(sandbox.id)[-3:] == ["running", "stopping", "finalized"]
    assert sandbox.id in backend.killed


async def test_finalize_without_images_tells_the_sandbox(
    manager: StudioManager, backend: FakeBackend, repo_id: int
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    actor = backend.actors[sandbox.id]
    await manager.finalize_sandbox(sandbox.id, "alice", "Title", "Body", images=False)
    assert ("finalize", ("Title", "Body", None, False), {}) in actor.calls


async def test_finalizing_again_after_an_unrecorded_finalize_answers_with_its_pr(
    manager: StudioManager, backend: FakeBackend, repo_id: int, written: Written
) -> None:
    # The actor finalized, the manager stopped before recording it, the client retries.
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    actor = backend.actors[sandbox.id]
    actor.pr_number = 9
    await actor.finalize("T", "D", None)
    again = await manager.finalize_sandbox(sandbox.id, "alice", "T", "D")
    assert (again.pr_number, again.pr_url) == (9, "https://forge.test/pull/9")
    assert "already finalized" in again.message
    assert [c[0] for c in actor.calls][-1] == "info"  # not asked to finalize twice
    assert written(sandbox.id)[-3:] == ["running", "stopping", "finalized"]
    assert sandbox.id in backend.killed


async def test_a_stopped_sandbox_cannot_be_finalized(
    manager: StudioManager, backend: FakeBackend, repo_id: int
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    actor = backend.actors[sandbox.id]
    await manager.teardown_sandbox(sandbox.id, "alice")
    calls = list(actor.calls)
    with pytest.raises(InvalidState, match="cannot finalize: the sandbox is stopped"):
        await manager.finalize_sandbox(sandbox.id, "alice", "T", "D")
    assert actor.calls == calls  # not a wait on an actor that is gone
    assert manager.registry.get_sandbox(sandbox.id).state is SandboxState.STOPPED


async def test_finalizing_again_answers_with_the_same_result(
    manager: StudioManager, backend: FakeBackend, repo_id: int
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    actor = backend.actors[sandbox.id]
    first = await manager.finalize_sandbox(sandbox.id, "alice", "Title", "Body")
    calls = list(actor.calls)
    again = await manager.finalize_sandbox(sandbox.id, "alice", "Other", "Other")
    assert (again.pr_url, again.pr_number) == (first.pr_url, first.pr_number)
    assert again.branch == sandbox.branch
    assert "already finalized" in again.message
    assert actor.calls == calls  # the (killed) actor was not asked
    with pytest.raises(SandboxNotFound):
        await manager.finalize_sandbox(sandbox.id, "mallory", "T", "D")


def _push(permission: bool) -> Any:
    """Prism's example repository, seen by a token with (or without) push access."""

    def change(repo: dict[str, Any]) -> dict[str, Any]:
        return {**repo, "permissions": {"admin": False, "push": permission, "pull": True}}

    return change


def _github_settings(tmp_path: Path, front: GitHubFront) -> StudioSettings:
    """A service whose GitHub is Prism behind the recording front."""
    return StudioSettings(
        state_dir=tmp_path / "gh-state",
        repo_roots=[tmp_path / "repos"],
        github_token=VALID_TOKEN,
        github_api_url=front.url,
    )


async def test_finalize_uses_github_when_configured(
    tmp_path: Path, backend: FakeBackend, origin: Path, github_front: GitHubFront
) -> None:
    settings = _github_settings(tmp_path, github_front)
    github_front.edit("GET", "/repos/octo/ui", _push(True))
    studio = StudioManager(settings, backend)
    try:
        repo = studio.registry.add_repository("gh", str(origin), github="octo/ui")
        sandbox = await studio.create_sandbox("alice", repo.id, {})
        await studio.create_sandbox("alice", repo.id, {})
        # Push access was checked at create, once for both (remembered for a while).
        assert len(github_front.sent("GET", "/repos/octo/ui")) == 1
        actor = backend.actors[sandbox.id]
        await studio.finalize_sandbox(sandbox.id, "alice", "T", "D")
        spec = actor.calls[-1][1][2]
        # No token in the call: the sandbox asks for it when it pushes, while it is live.
        assert spec == {"kind": "github", "base_url": github_front.url}
        live = await studio.create_sandbox("alice", repo.id, {})
        assert studio.push_credential(live.id) == VALID_TOKEN
        with pytest.raises(InvalidState, match="pushes nothing more"):
            studio.push_credential(sandbox.id)
    finally:
        studio.close()


async def test_create_is_refused_when_the_token_cannot_push(
    tmp_path: Path, backend: FakeBackend, origin: Path, github_front: GitHubFront
) -> None:
    settings = _github_settings(tmp_path, github_front)
    github_front.edit("GET", "/repos/octo/ui", _push(False))
    studio = StudioManager(settings, backend)
    try:
        repo = studio.registry.add_repository("gh", str(origin), github="octo/ui")
        with pytest.raises(PermissionDenied, match="octo/ui"):
            await studio.create_sandbox("alice", repo.id, {})
        assert studio.registry.list_sandboxes() == []
        assert backend.actors == {}
    finally:
        studio.close()


async def test_failed_finalize_leaves_the_sandbox_running(
    manager: StudioManager, backend: FakeBackend, repo_id: int, written: Written
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    backend.actors[sandbox.id].finalize_error = PullRequestError("422 from the forge")
    with pytest.raises(PullRequestError, match="422"):
        await manager.finalize_sandbox(sandbox.id, "alice", "T", "D")
    assert manager.registry.get_sandbox(sandbox.id).state is SandboxState.RUNNING
    # No STOPPING was written that the sandbox would have had to come back from.
    assert written(sandbox.id) == ["pending", "starting", "running"]
    assert backend.killed == []


# -- reconcile -----------------------------------------------------------------


async def test_healthy_sandboxes_are_monitored_and_recorded(
    manager: StudioManager, backend: FakeBackend, repo_id: int
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    backend.actors[sandbox.id].last_seq = 42
    summary = await manager.reconcile()
    assert summary["sandboxes"][sandbox.id].startswith("ok")
    assert [c[0] for c in backend.actors[sandbox.id].calls][-3:] == ["ping", "monitor", "info"]
    assert manager.registry.get_sandbox(sandbox.id).last_seq == 42


async def test_dead_actor_is_recreated_on_its_node_with_higher_seq(
    manager: StudioManager, backend: FakeBackend, repo_id: int, written: Written
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    last_seq = manager.registry.get_sandbox(sandbox.id).last_seq
    del backend.actors[sandbox.id]  # the actor died for good
    summary = await manager.reconcile()
    assert summary["sandboxes"][sandbox.id].startswith(f"recreated on {sandbox.node}")
    spec = backend.created[-1]
    assert spec.node_id == sandbox.node and spec.start_seq == last_seq + SEQ_MARGIN
    assert ("setup", (), {"recover": True}) in backend.actors[sandbox.id].calls
    record = manager.registry.get_sandbox(sandbox.id)
    assert record.state is SandboxState.RUNNING and record.last_seq > last_seq
    assert written(sandbox.id)[-3:] == ["running", "starting", "running"]


async def test_sandbox_on_a_dead_node_comes_back_elsewhere(
    manager: StudioManager, backend: FakeBackend, repo_id: int, written: Written
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    lost = sandbox.node
    assert lost is not None
    # Its Vite was restarting when the node went: the pass records what the actor said.
    backend.actors[sandbox.id].state = SandboxState.RESTARTING
    assert (await manager.reconcile())["sandboxes"][sandbox.id].startswith("ok")
    assert manager.registry.get_sandbox(sandbox.id).state is SandboxState.RESTARTING
    backend.kill_node(lost)
    summary = await manager.reconcile()
    survivor = "n2" if lost == "n1" else "n1"
    assert summary["sandboxes"][sandbox.id] == f"recreated on {survivor}: its node {lost} is gone"
    assert sandbox.id in backend.killed  # the stuck actor is killed first
    assert backend.created[-1].settings["state_dir"] == f"/disk/{survivor}"
    assert manager.registry.get_sandbox(sandbox.id).node_id == survivor
    assert written(sandbox.id) == [
        "pending",
        "starting",
        "running",
        "restarting",
        "starting",
        "running",
    ]


async def test_a_node_lost_with_sandboxes_starts_one_pass_at_once(
    manager: StudioManager, backend: FakeBackend, repo_id: int
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    lost = sandbox.node
    assert lost is not None
    assert await manager.check_nodes() is None  # every node alive: no pass
    backend.kill_node(lost)
    summary = await manager.check_nodes()
    assert summary is not None
    survivor = "n2" if lost == "n1" else "n1"
    assert summary["sandboxes"][sandbox.id] == f"recreated on {survivor}: its node {lost} is gone"
    assert manager.registry.get_sandbox(sandbox.id).node_id == survivor
    # The loss was answered: the next looks leave the sandbox to the regular passes.
    assert await manager.check_nodes() is None


async def test_a_dead_node_without_sandboxes_starts_no_pass(
    manager: StudioManager, backend: FakeBackend, repo_id: int
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    other = "n2" if sandbox.node == "n1" else "n1"
    backend.kill_node(other)
    assert await manager.check_nodes() is None
    assert manager.registry.get_sandbox(sandbox.id).node_id == sandbox.node


async def test_unschedulable_actor_is_recreated_on_another_node(
    manager: StudioManager, backend: FakeBackend, repo_id: int
) -> None:
    # Ray says the pinned node is gone before its node list does.
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    backend.unschedulable.add(sandbox.id)
    summary = await manager.reconcile()
    survivor = "n2" if sandbox.node == "n1" else "n1"
    assert summary["sandboxes"][sandbox.id].startswith(f"recreated on {survivor}"), summary


async def test_unresponsive_actor_gets_time_then_is_recreated(
    manager: StudioManager, backend: FakeBackend, repo_id: int
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    backend.unresponsive.add(sandbox.id)
    assert (await manager.reconcile())["sandboxes"][sandbox.id].startswith("wait")
    backend.unresponsive.discard(sandbox.id)
    # An answer resets the count of missed pings.
    assert (await manager.reconcile())["sandboxes"][sandbox.id].startswith("ok")
    backend.unresponsive.add(sandbox.id)
    assert (await manager.reconcile())["sandboxes"][sandbox.id].startswith("wait")
    # The second miss in a row (max_missed_pings=2): a new actor replaces it.
    summary = await manager.reconcile()
    assert summary["sandboxes"][sandbox.id].startswith("recreated"), summary
    assert sandbox.id in backend.killed and len(backend.created) == 2


async def test_idle_sandbox_is_torn_down(
    manager: StudioManager, backend: FakeBackend, repo_id: int, written: Written
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    backend.actors[sandbox.id].idle = True
    summary = await manager.reconcile()
    assert summary["sandboxes"][sandbox.id].startswith("teardown: idle")
    record = manager.registry.get_sandbox(sandbox.id)
    assert record.state is SandboxState.STOPPED and record.port is None
    assert written(sandbox.id)[-3:] == ["running", "stopping", "stopped"]
    assert sandbox.id in backend.killed


async def test_failed_sandbox_is_recorded(
    manager: StudioManager, backend: FakeBackend, repo_id: int, written: Written
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    backend.actors[sandbox.id].failed = "Vite failed 4 times: Error: boom"
    await manager.reconcile()
    record = manager.registry.get_sandbox(sandbox.id)
    assert record.state is SandboxState.FAILED and "boom" in (record.error or "")
    assert written(sandbox.id)[-2:] == ["running", "failed"]


async def test_an_actor_that_ended_unrecorded_is_recorded_by_its_path_and_killed(
    manager: StudioManager, backend: FakeBackend, repo_id: int, written: Written
) -> None:
    # The actor finalized, and the manager stopped before writing it down.
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    actor = backend.actors[sandbox.id]
    actor.pr_number = 7
    await actor.finalize("T", "D", None)
    summary = await manager.reconcile()
    assert summary["sandboxes"][sandbox.id] == "teardown: its actor has already ended finalized"
    record = manager.registry.get_sandbox(sandbox.id)
    assert (record.state, record.pr_number) == (SandboxState.FINALIZED, 7)
    assert record.pr_url == "https://forge.test/pull/7" and record.port is None
    assert written(sandbox.id)[-3:] == ["running", "stopping", "finalized"]
    assert sandbox.id in backend.killed


async def stopped_halfway(manager: StudioManager, backend: FakeBackend, sandbox_id: str) -> None:
    """A teardown whose manager stops while the actor is still tearing down."""
    actor = backend.actors[sandbox_id]
    actor.teardown_gate = asyncio.Event()  # never set: the teardown hangs
    teardown = asyncio.create_task(manager.teardown_sandbox(sandbox_id, "alice"))
    for _ in range(100):
        if actor.calls[-1][0] == "teardown":
            break
        await asyncio.sleep(0.01)
    teardown.cancel()
    with pytest.raises(asyncio.CancelledError):
        await teardown
    actor.teardown_gate = None


async def test_a_teardown_left_half_way_is_shown_stopping_and_finished_by_the_next_pass(
    settings: StudioSettings,
    backend: FakeBackend,
    manager: StudioManager,
    repo_id: int,
    written: Written,
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    await stopped_halfway(manager, backend, sandbox.id)
    manager.close()
    again = StudioManager(settings, backend)
    try:
        # Shown as it is: stopping, with no renderer to open, still listed.
        shown = await again.get_sandbox(sandbox.id, "alice")
        assert (shown.status, shown.port, shown.renderer_url) == (SandboxState.STOPPING, None, None)
        assert [s.status for s in again.list_sandboxes("alice")] == [SandboxState.STOPPING]
        summary = await again.reconcile()
        assert summary["sandboxes"][sandbox.id] == "stopped: finished a teardown left half-way"
        assert backend.dead[sandbox.id].state is SandboxState.STOPPED
        assert again.registry.get_sandbox(sandbox.id).state is SandboxState.STOPPED
        assert written(sandbox.id)[-3:] == ["running", "stopping", "stopped"]
        assert (await again.reconcile())["sandboxes"] == {}
    finally:
        again.close()


async def test_a_teardown_of_a_sandbox_left_stopping_finishes_it(
    manager: StudioManager, backend: FakeBackend, repo_id: int, written: Written
) -> None:
    # What `studio up` does on its way down: tear down whatever has not ended.
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    await stopped_halfway(manager, backend, sandbox.id)
    ended = await manager.teardown_sandbox(sandbox.id, "alice")
    assert ended.status is SandboxState.STOPPED
    assert written(sandbox.id)[-3:] == ["running", "stopping", "stopped"]


async def test_a_sandbox_left_stopping_on_a_lost_node_is_finished_without_asking_it(
    manager: StudioManager, backend: FakeBackend, repo_id: int, written: Written
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    assert sandbox.node is not None
    actor = backend.actors[sandbox.id]
    await stopped_halfway(manager, backend, sandbox.id)
    backend.kill_node(sandbox.node)
    calls = len(actor.calls)
    summary = await manager.reconcile()
    assert summary["sandboxes"][sandbox.id] == "stopped: finished a teardown left half-way"
    assert len(actor.calls) == calls and sandbox.id in backend.killed
    assert written(sandbox.id)[-2:] == ["stopping", "stopped"]


async def test_one_failing_sandbox_does_not_stop_the_pass(
    manager: StudioManager, backend: FakeBackend, repo_id: int
) -> None:
    bad = await manager.create_sandbox("alice", repo_id, {})
    good = await manager.create_sandbox("alice", repo_id, {})
    backend.broken.add(bad.id)
    backend.actors[good.id].idle = True
    summary = await manager.reconcile()
    assert summary["sandboxes"][bad.id].startswith("error: monitor")
    assert summary["sandboxes"][good.id].startswith("teardown")
    assert manager.registry.get_sandbox(bad.id).state is SandboxState.RUNNING


async def test_restarted_manager_reloads_and_readopts(
    settings: StudioSettings, backend: FakeBackend, manager: StudioManager, repo_id: int
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    token = manager.accounts.admin_token
    manager.close()
    again = StudioManager(settings, backend)
    try:
        assert again.accounts.admin_token == token
        assert [s.id for s in again.list_sandboxes("alice")] == [sandbox.id]
        summary = await again.reconcile()
        assert summary["sandboxes"][sandbox.id].startswith("ok")
        assert len(backend.created) == 1  # adopted by name, not recreated
        assert (await again.orphans())["actors"] == []
    finally:
        again.close()


async def test_orphans_are_reported(
    manager: StudioManager, backend: FakeBackend, repo_id: int
) -> None:
    sandbox = await manager.create_sandbox("alice", repo_id, {})
    assert sandbox.node is not None
    other = "n2" if sandbox.node == "n1" else "n1"
    backend.actors["sb_stray000"] = backend.actors[sandbox.id]
    backend.worktrees = {
        sandbox.node: [f"/disk/{sandbox.node}/worktrees/{sandbox.id}"],
        other: [f"/disk/{other}/worktrees/{sandbox.id}", f"/disk/{other}/worktrees/sb_gone111"],
    }
    backend.pid_files = {sandbox.node: [f"/r/vite-{sandbox.id}.json", "/r/vite-sb_old999.json"]}
    found = await manager.orphans()
    assert found["actors"] == ["sb_stray000"]
    assert found["worktrees"] == [
        {"node_id": other, "path": f"/disk/{other}/worktrees/{sandbox.id}"},
        {"node_id": other, "path": f"/disk/{other}/worktrees/sb_gone111"},
    ]
    assert found["processes"] == [{"node_id": sandbox.node, "path": "/r/vite-sb_old999.json"}]
    assert ("head", str(manager.settings.state_dir)) in backend.scans
    health = await manager.health()
    assert health["ok"] and health["sandboxes"] == {"running": 1} and health["nodes_alive"] == 3


# -- users and repositories ----------------------------------------------------


async def test_admin_token_from_settings(tmp_path: Path, backend: FakeBackend) -> None:
    settings = StudioSettings(state_dir=tmp_path / "s", admin_token="secret-admin")
    studio = StudioManager(settings, backend)
    try:
        assert studio.accounts.admin_token == "secret-admin"
        admin = studio.accounts.authenticate("secret-admin")
        assert admin is not None and admin.is_admin and admin.name == "admin"
    finally:
        studio.close()
    # A changed token replaces the admin's; the old one stops working.
    changed = StudioManager(settings.model_copy(update={"admin_token": "new-one"}), backend)
    try:
        assert changed.accounts.authenticate("secret-admin") is None
        assert changed.accounts.authenticate("new-one") is not None
    finally:
        changed.close()


async def test_users(manager: StudioManager, settings: StudioSettings) -> None:
    token_file = settings.state_dir / "admin-token"
    assert token_file.read_text().strip() == manager.accounts.admin_token
    assert token_file.stat().st_mode & 0o077 == 0
    user, token = manager.accounts.create_user("alice")
    assert user.name == "alice" and not user.is_admin
    # Never "-…" (a command line would take it for an option); recognisable.
    assert token.startswith("st_") and manager.accounts.admin_token.startswith("st_")
    assert manager.accounts.authenticate(token) == user
    assert manager.accounts.authenticate("wrong") is None
    assert [u.name for u in manager.accounts.list_users()] == ["admin", "alice"]
    with pytest.raises(Conflict):
        manager.accounts.create_user("alice")
    with pytest.raises(InvalidRequest, match="admin user cannot be deleted"):
        manager.accounts.delete_user("admin")
    manager.accounts.delete_user("alice")
    assert manager.accounts.authenticate(token) is None
    with pytest.raises(NotFound):
        manager.accounts.delete_user("alice")


def test_register_repository_checks(manager: StudioManager, origin: Path, tmp_path: Path) -> None:
    accounts = manager.accounts
    outside = make_repo(tmp_path / "elsewhere", {"a.txt": "a\n"})
    with pytest.raises(PermissionDenied, match=str(tmp_path / "repos")):
        accounts.register_repository("x", path=str(outside))
    with pytest.raises(PermissionDenied):
        accounts.register_repository("x", path=str(tmp_path / "repos" / ".." / "elsewhere"))
    plain = tmp_path / "repos" / "plain"
    plain.mkdir()
    with pytest.raises(InvalidRequest, match="not a git repository"):
        accounts.register_repository("x", path=str(plain))
    with pytest.raises(RepositoryNotFound):
        accounts.register_repository("x", path=str(tmp_path / "repos" / "missing"))
    with pytest.raises(MissingBaseBranch, match="develop"):
        accounts.register_repository("x", path=str(origin), default_branch="develop")
    with pytest.raises(InvalidRequest):
        accounts.register_repository("x")
    git(origin, "checkout", "-q", "-b", "trunk")
    record = accounts.register_repository("ui", path=str(origin), config={"timeout_hours": 2})
    assert record.default_branch == "trunk" and record.source == str(origin.resolve())
    assert record.config == {"timeout_hours": 2}
    with pytest.raises(Conflict):
        accounts.register_repository("ui", path=str(origin))
    # A clone URL is a network remote: this machine's disk goes through the roots check.
    for local in (f"file://{origin}", str(origin), "ext::sh -c touch% /tmp/pwned"):
        with pytest.raises(PermissionDenied, match="not a network URL"):
            accounts.register_repository("remote", clone_url=local)
    assert [r.name for r in accounts.list_repositories()] == ["ui"]
