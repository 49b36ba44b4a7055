"""The actors on the session's real Ray: real git, real Vite, real worker deaths."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import pytest
import ray

from actors._prestart import idle_workers, prestart_workers
from actors._sandbox_worker import SANDBOX_WORKER_VARIABLE, sandbox_runtime_env
from actors.handles import forget_sandbox_handle, get_manager, sandbox_handle
from actors.ray_errors import to_studio_error
from studio.errors import InvalidRequest, SandboxNotFound
from studio.state import SandboxState
from tests.actors.conftest import Studio, get, open_studio, vite_answers
from tests.support.gitrepo import git

pytestmark = pytest.mark.usefixtures("ray_session")


def write(sandbox_id: str, path: str, content: str, description: str) -> str:
    result = get(
        sandbox_handle(sandbox_id).execute.remote(
            {
                "command": "write_file",
                "file_path": path,
                "content": content,
                "description": description,
            }
        ),
        timeout=60,
    )
    assert result.commit_hash
    return str(result.commit_hash)


def follow_until_gone(handle: Any, after_seq: int) -> list[str]:
    """The statuses a long-poll loop on ``handle`` sees until its actor is gone."""
    statuses: list[str] = []
    while True:
        try:
            events = ray.get(handle.events.remote(after_seq, 60), timeout=90)
        except ray.exceptions.RayActorError:
            return statuses
        for event in events:
            after_seq = event["seq"]
            if event["type"] == "status":
                statuses.append(event["payload"]["status"])


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_an_edit_tells_the_manager_its_node_is_busy_for_the_warm_pool(studio: Studio) -> None:
    # the node's warm pool boots no spare among a sandbox's edits (actors/_warm_pool.py)
    info = get(studio.manager.create_sandbox.remote("alice", studio.repository_id, {}))
    assert get(studio.manager.health.remote())["warm_pool"] == {}
    write(info.id, "src/busy.ts", "export const busy = 1;\n", "an edit")
    wait_for(
        lambda: info.node in get(studio.manager.health.remote())["warm_pool"], 30, "the notice"
    )
    seen = get(studio.manager.health.remote())["warm_pool"][info.node]
    assert 0 <= seen["last_edit_s"] < 30


def test_create_execute_commit_teardown(studio: Studio) -> None:
    info = get(studio.manager.create_sandbox.remote("alice", studio.repository_id, {}))
    assert info.status is SandboxState.RUNNING and info.owner == "alice"
    assert info.port is not None and info.renderer_url == f"http://localhost:{info.port}/"
    assert vite_answers(info.port)
    handle = sandbox_handle(info.id)
    assert get(handle.ping.remote())["state"] == "running"
    commit = write(info.id, "src/components/Hello.tsx", "export const Hello = () => null;\n", "hi")
    history = get(handle.history.remote())
    assert history[0].hash == commit
    events = get(handle.events.remote(0, 5))
    assert any(e["type"] == "commit" and e["payload"]["hash"] == commit for e in events)
    assert [e["seq"] for e in events] == sorted({e["seq"] for e in events})
    # The streaming method replays from a seq, then follows; cancelling ends it.
    stream = handle.stream.remote(events[0]["seq"] - 1)
    assert get(next(stream), timeout=30)["seq"] == events[0]["seq"]
    ray.cancel(stream)
    # A long-poll past the newest event waits, then answers [].
    assert get(handle.events.remote(events[-1]["seq"], 0.2)) == []
    with pytest.raises(ray.exceptions.RayTaskError) as bad:
        get(handle.execute.remote({"command": "format_disk"}))
    assert isinstance(to_studio_error(bad.value), InvalidRequest)
    shown = get(studio.manager.get_sandbox.remote(info.id, "alice"))
    assert commit in [c.hash for c in shown.git_commits]
    with pytest.raises(ray.exceptions.RayTaskError) as hidden:
        get(studio.manager.get_sandbox.remote(info.id, "bob"))
    assert isinstance(to_studio_error(hidden.value), SandboxNotFound)

    stray = studio.settings.state_dir / "worktrees" / "sb_stray0001"
    stray.mkdir()
    found = get(studio.manager.orphans.remote())
    assert [w["path"] for w in found["worktrees"]] == [str(stray)]
    assert found["actors"] == []
    stray.rmdir()

    # Followers long-poll as a replica's feed does; the manager kills the actor
    # right after its teardown, and they must have had the final status first.
    last_seq = get(handle.ping.remote())["last_seq"]
    with ThreadPoolExecutor(4) as pool:
        followers = [pool.submit(follow_until_gone, handle, last_seq) for _ in range(4)]
        ended = get(studio.manager.teardown_sandbox.remote(info.id, "alice"))
        seen = [follower.result(timeout=90) for follower in followers]
    assert ended.status is SandboxState.STOPPED
    for statuses in seen:
        assert statuses[-1] == "stopped", statuses
    assert not (studio.settings.state_dir / "worktrees" / info.id).exists()
    wait_for(lambda: not vite_answers(info.port), 10, "Vite to stop")
    # The branch and its commit are kept.
    mirror = studio.settings.state_dir / "mirrors" / "ui-kit.git"
    assert git(mirror, "rev-parse", info.branch) == commit
    # The actor is gone: a fresh lookup (not the cached handle) says so.
    forget_sandbox_handle(info.id)

    def actor_gone() -> bool:
        try:
            sandbox_handle(info.id)
        except SandboxNotFound:
            return True
        forget_sandbox_handle(info.id)
        return False

    wait_for(actor_gone, 10, "the actor's name to be released")


def test_ten_sandboxes_at_once(studio: Studio) -> None:
    refs = [
        studio.manager.create_sandbox.remote("alice", studio.repository_id, {}) for _ in range(10)
    ]
    infos = get(refs, timeout=300)
    assert all(i.status is SandboxState.RUNNING for i in infos)
    ports = {i.port for i in infos}
    assert len(ports) == 10 and None not in ports
    assert all(vite_answers(p) for p in ports if p is not None)
    assert len(get(studio.manager.list_sandboxes.remote("alice"))) == 10


def test_sandbox_worker_killed_comes_back_with_its_commits(studio: Studio) -> None:
    info = get(studio.manager.create_sandbox.remote("alice", studio.repository_id, {}))
    first = write(info.id, "src/components/One.tsx", "export const One = () => 1;\n", "one")
    second = write(info.id, "src/components/Two.tsx", "export const Two = () => 2;\n", "two")
    handle = sandbox_handle(info.id)
    before = get(handle.ping.remote())

    os.kill(before["pid"], signal.SIGKILL)

    # Calls are retried through the restart; info waits for the recovery.
    after = get(handle.info.remote(), timeout=120)
    ping = get(handle.ping.remote())
    assert ping["pid"] != before["pid"] and ping["reconstructed"]
    assert after.status is SandboxState.RUNNING and after.port is not None
    assert vite_answers(after.port)
    hashes = [c.hash for c in get(handle.history.remote())]
    assert hashes[:2] == [second, first]
    events = get(handle.events.remote(before["last_seq"], 5))
    assert events and all(e["seq"] > before["last_seq"] for e in events)
    assert any(e["type"] == "status" and e["payload"].get("recovered") for e in events)
    # Work goes on after the recovery.
    write(info.id, "src/components/Three.tsx", "export const Three = () => 3;\n", "three")


def test_manager_killed_keeps_registry_and_readopts(studio: Studio) -> None:
    info = get(studio.manager.create_sandbox.remote("alice", studio.repository_id, {}))
    commit = write(info.id, "src/components/Kept.tsx", "export const Kept = () => 0;\n", "kept")
    token = studio.settings.admin_token
    pid = get(studio.manager.pid.remote())

    os.kill(pid, signal.SIGKILL)

    manager = get_manager()
    listed = get(manager.list_sandboxes.remote("alice"), timeout=60)
    assert get(manager.pid.remote()) != pid
    assert [s.id for s in listed] == [info.id]
    # The same admin, and no remote method hands its token out.
    assert get(manager.authenticate.remote(token)).is_admin
    assert not hasattr(manager, "admin_token")
    assert [r.name for r in get(manager.list_repositories.remote())] == ["ui-kit"]
    sandbox_pid = get(sandbox_handle(info.id).ping.remote())["pid"]
    passed = get(manager.reconcile.remote(), timeout=60)
    # Adopted by name: the same actor, not a recreated one.
    assert not passed["sandboxes"][info.id].startswith("recreate"), passed
    assert get(sandbox_handle(info.id).ping.remote())["pid"] == sandbox_pid
    shown = get(manager.get_sandbox.remote(info.id, "alice"))
    assert shown.status is SandboxState.RUNNING and commit in [c.hash for c in shown.git_commits]
    assert get(manager.orphans.remote())["actors"] == []
    write(info.id, "src/components/After.tsx", "export const After = () => 0;\n", "after")


def test_reconcile_loop_culls_an_idle_sandbox(studio: Studio) -> None:
    # About two seconds of inactivity allowed; the manager's loop runs every 2 s.
    info = get(
        studio.manager.create_sandbox.remote(
            "alice", studio.repository_id, {"timeout_hours": 0.0005}
        )
    )
    assert info.status is SandboxState.RUNNING

    def culled() -> bool:
        shown = get(studio.manager.get_sandbox.remote(info.id, "alice"))
        return bool(shown.status is SandboxState.STOPPED)

    wait_for(culled, 60, "the idle sandbox to be torn down by the reconcile loop")
    assert not (studio.settings.state_dir / "worktrees" / info.id).exists()
    mirror = studio.settings.state_dir / "mirrors" / "ui-kit.git"
    assert git(mirror, "rev-parse", "--verify", "-q", info.branch)


def _idle_workers() -> set[int]:
    """Pids of Ray workers without work (their title says IDLE: never used, or done with a task)."""
    found = set()
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline and cmdline[0].startswith("ray::IDLE"):
            found.add(proc.pid)
    return found


def _sandbox_spares() -> set[int]:
    """Pids of idle Ray workers started for sandbox actors (their environment says so)."""
    found = set()
    for pid in _idle_workers():
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).environ().get(SANDBOX_WORKER_VARIABLE) == "1":
                found.add(pid)
    return found


def _idle_count(node_id: str) -> int:
    count = idle_workers(node_id)
    assert count is not None, "the raylet did not answer GetNodeStats"
    return count


def test_the_raylet_counts_a_prestarted_worker_until_an_actor_takes_it() -> None:
    node_id = ray.get_runtime_context().get_node_id()
    titled_idle = _idle_workers()
    spares_before = _sandbox_spares()
    before = _idle_count(node_id)
    assert before <= len(titled_idle)  # workers that ran tasks are titled IDLE but not counted
    assert prestart_workers(node_id, 1)
    wait_for(lambda: _idle_count(node_id) == before + 1, 60, "the spare to register")
    # On a loaded machine a sandbox-env worker from an earlier test may turn idle in
    # the same window, so the prestarted spare is one of the new ones, not the only one.
    new_spares = _sandbox_spares() - spares_before
    assert new_spares, "the prestarted worker is not among the idle sandbox workers"

    @ray.remote(num_cpus=0)
    class Taker:
        def pid(self) -> int:
            return os.getpid()

    # A plain actor never takes a sandbox actors' spare.
    plain = Taker.remote()  # type: ignore[attr-defined]
    takers: list[Any] = [plain]
    try:
        assert get(plain.pid.remote()) not in new_spares
        # Sandbox-like actors until one lands on the spare (others may take spares
        # an earlier test's warm pool left first).
        while len(takers) <= before + 2:
            takers.append(Taker.options(runtime_env=sandbox_runtime_env()).remote())  # type: ignore[attr-defined]
            spare = get(takers[-1].pid.remote())
            if spare in new_spares:
                break
        else:
            raise AssertionError(f"no actor took a spare of {new_spares}")
        # The taken spare is idle no more. (The raylet's count may not drop: a lease
        # for the sandbox runtime env can make it start another worker of that env.)
        wait_for(lambda: spare not in _idle_workers(), 30, "the taken spare to leave the idle")
    finally:
        for taker in takers:
            ray.kill(taker)


def test_the_warm_pool_fills_the_node_to_its_size_and_refills_after_a_create(
    tmp_path: Any, install_cache: Any
) -> None:
    node_id = ray.get_runtime_context().get_node_id()
    with open_studio(tmp_path, install_cache, warm_workers=3) as studio:
        wait_for(lambda: _idle_count(node_id) >= 3, 90, "three spare workers")
        spares = _sandbox_spares()
        info = get(studio.manager.create_sandbox.remote("alice", studio.repository_id, {}))
        try:
            assert get(sandbox_handle(info.id).ping.remote())["pid"] in spares
            # spare_delay after the create, the pool is full again.
            wait_for(lambda: _idle_count(node_id) >= 3, 90, "the pool refilled")
        finally:
            get(studio.manager.teardown_sandbox.remote(info.id, "alice"))


def test_a_sandbox_actor_starts_on_the_spare_worker_left_by_the_one_before(
    studio: Studio,
) -> None:
    node_id = ray.get_runtime_context().get_node_id()
    first = get(studio.manager.create_sandbox.remote("alice", studio.repository_id, {}))
    # After the setup the manager fills the node's pool (one spare here): it has one.
    wait_for(lambda: _idle_count(node_id) >= 1, 60, "a spare Ray worker")
    spares = _sandbox_spares()
    second = get(studio.manager.create_sandbox.remote("alice", studio.repository_id, {}))
    try:
        pid = get(sandbox_handle(second.id).ping.remote())["pid"]
        # The second actor did not wait for a new process: it took a waiting one.
        assert pid in spares
    finally:
        for info in (first, second):
            get(studio.manager.teardown_sandbox.remote(info.id, "alice"))


def test_a_sandbox_actor_no_spare_waits_for_gets_a_plain_worker(
    tmp_path: Any, install_cache: Any
) -> None:
    # No warm pool: a worker with the spares' runtime env would start through Ray's
    # setup_worker shim, slower than a plain one, and then prepare itself for nothing.
    with open_studio(tmp_path, install_cache, warm_workers=0) as studio:
        info = get(studio.manager.create_sandbox.remote("alice", studio.repository_id, {}))
        try:
            pid = get(sandbox_handle(info.id).ping.remote())["pid"]
            assert SANDBOX_WORKER_VARIABLE not in psutil.Process(pid).environ()
        finally:
            get(studio.manager.teardown_sandbox.remote(info.id, "alice"))
