"""ComponentStudioSandbox when things go wrong: Vite dies, crashes, the node is lost; finalize."""

# The fixtures are imported from test_sandbox_fixtures, then requested by name.
# ruff: noqa: F811

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from studio.config import StudioSettings
from studio.errors import InvalidState, PullRequestError, ViteStartError
from studio.pr import LocalProvider, PullRequestInfo
from studio.sandbox import ComponentStudioSandbox
from studio.state import SandboxState
from studio.vite import read_studio_config
from tests.studio.test_sandbox import event_types, execute, get
from tests.studio.test_sandbox_fixtures import (
    HOST,
    TEMPLATE,
    SandboxFactory,
    fast_config,
    install_cache,  # noqa: F401 (fixture)
    make_sandbox,  # noqa: F401 (fixture)
    node_settings,
    origin,  # noqa: F401 (fixture)
    settings,  # noqa: F401 (fixture)
)
from tests.support.fakevite import install_fake_vite
from tests.support.gitrepo import git
from tests.support.procs import gone

S = SandboxState
BRANCH = "design/studio-test0001"


def die(sandbox: ComponentStudioSandbox) -> None:
    """What an actor's death does to its sandbox object: its Vite watcher ends, Vite runs on.

    A dead process has no threads; here the object lives on in the test's
    process, so its watcher is told it belongs to a past start (the way a new
    start() retires an older watcher).
    """
    sandbox.vite._watch_generation += 1


def vite_pid(sandbox: ComponentStudioSandbox) -> int:
    server = sandbox.vite.server
    assert server is not None and server.pid is not None
    return server.pid


def kill_vite(sandbox: ComponentStudioSandbox) -> int:
    """SIGKILL the sandbox's Vite group and wait until the kernel says it died."""
    pid = vite_pid(sandbox)
    # Inside the OS boundary the leader is bwrap: node, below it, may outlive it briefly.
    below = psutil.Process(pid).children(recursive=True)
    os.killpg(pid, signal.SIGKILL)
    server = sandbox.vite.server
    assert server is not None
    # Not psutil's "zombie": a killed multi-threaded leader shows Z before its
    # threads are gone, and only then does waitid (what the watcher asks) report it.
    assert server.wait_exit(30) is not None
    _, alive = psutil.wait_procs(below, timeout=30)
    assert not alive
    return pid


def statuses(sandbox: ComponentStudioSandbox) -> list[str]:
    # Transitions only: the setup-step announcements are status events too.
    return [str(p["status"]) for t, p in event_types(sandbox) if t == "status" and "step" not in p]


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` s (a guard, not a measure)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached before the timeout"
        time.sleep(0.02)


def test_killed_vite_is_restarted_at_once_without_a_monitor_pass(make_sandbox: SandboxFactory):
    sandbox = make_sandbox()
    sandbox.on_setup()
    assert sandbox.on_monitor().healthy
    old = kill_vite(sandbox)
    # No on_monitor call: the watcher of Vite's process notices the exit by itself.
    wait_for(lambda: statuses(sandbox)[-2:] == ["restarting", "running"])
    assert sandbox.state is S.RUNNING
    assert sandbox.restarts == 1 and sandbox.info().restarts == 1
    assert vite_pid(sandbox) != old
    assert sandbox.port is not None and get(sandbox.port, "/@vite/client")[0] == 200
    restarting = [p for t, p in event_types(sandbox) if p.get("status") == "restarting"]
    assert restarting[-1]["restarts"] == 1
    report = sandbox.on_monitor()  # the backstop finds it healthy and restarts nothing
    assert report.healthy and not report.restarted and sandbox.restarts == 1


def test_hung_vite_is_restarted_by_the_monitor(make_sandbox: SandboxFactory):
    sandbox = make_sandbox()
    sandbox.on_setup()
    old = vite_pid(sandbox)
    # Stopped, not exited: only the monitor's probe can tell (unhealthy_threshold passes).
    os.killpg(old, signal.SIGSTOP)
    try:
        reports = [sandbox.on_monitor() for _ in range(sandbox.config.unhealthy_threshold)]
    finally:
        if not gone(old):
            os.killpg(old, signal.SIGCONT)
    assert reports[-1].restarted and reports[-1].healthy
    assert sandbox.restarts == 1 and vite_pid(sandbox) != old
    assert statuses(sandbox)[-2:] == ["restarting", "running"]


def test_vite_crashing_on_every_restart_fails_the_sandbox_keeping_commits(
    make_sandbox: SandboxFactory,
):
    sandbox = make_sandbox()
    sandbox.on_setup()
    sha = execute(sandbox, command="write_file", file_path="src/k.ts", content="k\n").commit_hash
    install_fake_vite(sandbox.worktree_path / ".studio", "crash")
    kill_vite(sandbox)

    wait_for(lambda: sandbox.state is S.FAILED)
    report = sandbox.on_monitor()
    assert report.state is S.FAILED and not report.healthy
    assert report.error is not None and "max_restarts=2" in report.error
    assert sandbox.restarts == 2
    errors = [p for t, p in event_types(sandbox) if t == "error"]
    assert errors and any("simulated broken config" in line for line in errors[-1]["output"])
    assert statuses(sandbox)[-2:] == ["restarting", "failed"]
    assert sandbox.info().error == report.error
    # Further passes change nothing; the work is intact; teardown still works.
    assert sandbox.on_monitor().state is S.FAILED
    assert sandbox.restarts == 2
    assert sandbox.history()[0].hash == sha
    with pytest.raises(InvalidState):
        execute(sandbox, command="write_file", file_path="src/k.ts", content="again\n")
    worktree = sandbox.worktree_path
    assert sandbox.on_teardown().status is S.STOPPED
    assert not worktree.exists()
    assert git(sandbox.layout.mirror("ui-kit"), "rev-parse", f"refs/heads/{BRANCH}") == sha


def restart_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("restarting Vite")]


def test_a_restart_that_crashes_is_retried_after_a_longer_backoff(
    make_sandbox: SandboxFactory, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="studio.sandbox")
    sandbox = make_sandbox()
    sandbox.on_setup()
    install_fake_vite(sandbox.worktree_path / ".studio", "crash-once")
    kill_vite(sandbox)
    # The first restart crashes; the second, still in the same row, comes up.
    wait_for(lambda: sandbox.state is S.RUNNING and sandbox.restarts == 2)
    assert restart_logs(caplog) == ["restarting Vite (1 in a row)", "restarting Vite (2 in a row)"]
    # One RESTARTING until Vite is back, and no error: the limit (2) was not passed.
    assert statuses(sandbox)[-2:] == ["restarting", "running"]
    assert not [p for t, p in event_types(sandbox) if t == "error"]
    assert sandbox.port is not None and get(sandbox.port, "/@vite/client")[0] == 200


def test_restarts_in_a_row_past_the_limit_fail_though_each_came_up(
    make_sandbox: SandboxFactory, settings: StudioSettings
):
    # Each restart comes up, but none ran stable_start (30 s): one row.
    sandbox = make_sandbox(config=fast_config(settings, max_restarts=1))
    sandbox.on_setup()
    kill_vite(sandbox)
    wait_for(lambda: sandbox.state is S.RUNNING and sandbox.restarts == 1)
    kill_vite(sandbox)
    wait_for(lambda: sandbox.state is S.FAILED)
    assert sandbox.restarts == 1
    # Refused at once: no RESTARTING before FAILED.
    assert statuses(sandbox)[-3:] == ["restarting", "running", "failed"]
    error = [p for t, p in event_types(sandbox) if t == "error"][-1]
    assert "after 1 restart(s) in a row (max_restarts=1)" in str(error["message"])
    # Vite's last words before it was killed.
    assert any("ready in" in line for line in error["output"])  # type: ignore[attr-defined]


def test_restarts_start_a_new_row_after_a_stable_run(
    make_sandbox: SandboxFactory, settings: StudioSettings
):
    stable_start = 0.3
    sandbox = make_sandbox(config=fast_config(settings, max_restarts=1, stable_start=stable_start))
    sandbox.on_setup()
    kill_vite(sandbox)
    wait_for(lambda: sandbox.state is S.RUNNING and sandbox.restarts == 1)
    time.sleep(stable_start * 2)  # healthy for longer than stable_start
    kill_vite(sandbox)
    wait_for(lambda: sandbox.state is S.RUNNING and sandbox.restarts == 2)
    # Without the reset the second crash would have been past max_restarts=1.
    assert statuses(sandbox)[-4:] == ["restarting", "running", "restarting", "running"]
    assert not [p for t, p in event_types(sandbox) if t == "error"]


def test_a_vite_whose_port_was_taken_while_it_was_down_restarts_on_another(
    make_sandbox: SandboxFactory, settings: StudioSettings, caplog: pytest.LogCaptureFixture
):
    # A backoff long enough to take the port before the restart runs.
    sandbox = make_sandbox(config=fast_config(settings, restart_backoff=2, restart_backoff_max=2))
    sandbox.on_setup()
    old_port = sandbox.port
    assert old_port is not None
    kill_vite(sandbox)
    wait_for(lambda: sandbox.state is S.RESTARTING)
    with socket.socket() as squatter:
        squatter.bind((HOST, old_port))
        wait_for(lambda: sandbox.state is S.RUNNING)
    port = sandbox.port
    assert port is not None and port != old_port
    assert read_studio_config(sandbox.worktree_path / ".studio")["port"] == port
    assert get(port, "/@vite/client")[0] == 200
    assert sandbox.info().renderer_url == f"http://localhost:{port}/"
    assert list(sandbox.vite.ports.reservations()) == [port]
    assert f"port {old_port} was taken, moving Vite to {port}" in caplog.messages


def test_stopped_vite_is_not_restarted_after_teardown(make_sandbox: SandboxFactory):
    sandbox = make_sandbox()
    sandbox.on_setup()
    pid = vite_pid(sandbox)
    watcher = sandbox.vite._watcher
    assert watcher is not None and watcher.is_alive()
    sandbox.on_teardown()
    assert gone(pid) and not watcher.is_alive()
    assert sandbox.restarts == 0 and "restarting" not in statuses(sandbox)


@pytest.fixture
def broken_template(tmp_path: Path) -> Path:
    """The studio template with a Vite config that throws: Vite exits on start."""
    copy = tmp_path / "broken-template"
    shutil.copytree(
        TEMPLATE, copy, ignore=shutil.ignore_patterns("node_modules", "dist", ".vite-cache")
    )
    (copy / "vite.config.mjs").write_text("throw new Error('simulated broken config');\n")
    return copy


def test_setup_with_a_vite_that_crashes_on_start_fails_and_tears_down(
    make_sandbox: SandboxFactory, settings: StudioSettings, broken_template: Path
):
    broken = settings.model_copy(update={"template_dir": broken_template})
    sandbox = make_sandbox(node_settings=broken)
    with pytest.raises(ViteStartError) as caught:
        sandbox.on_setup()
    assert any("simulated broken config" in line for line in caught.value.details["output"])
    assert sandbox.state is S.FAILED
    assert statuses(sandbox) == ["starting", "failed"]
    error = next(p for t, p in event_types(sandbox) if t == "error")
    assert error["code"] == "vite_start_error"
    assert any("simulated broken config" in line for line in error["output"])
    sandbox.on_teardown()
    assert sandbox.state is S.STOPPED and not sandbox.worktree_path.exists()


def test_recover_on_the_same_node_reaps_the_old_vite(make_sandbox: SandboxFactory):
    first = make_sandbox()
    first.on_setup()
    sha = execute(first, command="write_file", file_path="src/r.ts", content="r\n").commit_hash
    old_pid, old_port = vite_pid(first), first.port
    # The actor died: its object is gone (its watcher with it), its Vite still runs.
    die(first)
    # A new incarnation:
    second = make_sandbox(start_seq=first.events.last_seq + 1)
    info = second.on_setup(recover=True)
    assert gone(old_pid)
    assert info.status is S.RUNNING and info.port == old_port
    assert info.base_commit == first.base_commit
    assert info.git_commits[0].hash == sha
    assert get(old_port or 0, "/@vite/client")[0] == 200
    recovered = [p for t, p in event_types(second) if t == "status"]
    assert recovered[-1] == {"status": "running", "restarts": 0, "recovered": True}
    assert second.events.oldest_seq == first.events.last_seq + 1
    second.on_teardown()


def test_recover_on_a_new_node_from_origin_with_every_commit(
    make_sandbox: SandboxFactory, origin: Path, tmp_path: Path, install_cache: Path
):
    first = make_sandbox()
    first.on_setup()
    hashes = [
        execute(first, command="write_file", file_path=f"src/n{i}.ts", content=f"{i}\n").commit_hash
        for i in range(3)
    ]
    first.rollback(steps=1)
    assert first.flush(60)
    assert git(origin, "rev-parse", f"refs/heads/{BRANCH}") == hashes[1]

    other_node = node_settings(tmp_path / "node2", install_cache)
    second = make_sandbox(node_settings=other_node, node="node2")
    info = second.on_setup(recover=True)
    assert info.status is S.RUNNING and info.node == "node2"
    assert second.worktree_path.is_relative_to(other_node.state_dir)
    assert [c.hash for c in info.git_commits] == [hashes[1], hashes[0], first.base_commit]
    assert info.base_commit == first.base_commit
    assert (second.worktree_path / "src/n1.ts").read_text() == "1\n"
    # It goes on from there, pushing to the same origin.
    sha = execute(second, command="write_file", file_path="src/m.ts", content="m\n").commit_hash
    assert second.flush(60)
    assert git(origin, "rev-parse", f"refs/heads/{BRANCH}") == sha


def test_recover_without_any_branch_starts_afresh(make_sandbox: SandboxFactory):
    sandbox = make_sandbox()
    info = sandbox.on_setup(recover=True)
    assert info.status is S.RUNNING and len(info.git_commits) == 1


def test_finalize_with_the_local_provider(make_sandbox: SandboxFactory, origin: Path):
    sandbox = make_sandbox()
    sandbox.on_setup()
    for i in range(2):
        execute(sandbox, command="write_file", file_path=f"src/f{i}.ts", content=f"{i}\n")
    head = git(sandbox.worktree_path, "rev-parse", "HEAD")
    result = sandbox.finalize("Two files", "Adds f0 and f1", None)
    assert result.pr_url is None and result.pr_number is None
    assert result.branch == BRANCH and result.commits == 2
    assert result.pushed_to == str(origin)
    assert sandbox.state is S.FINALIZED and sandbox.info().status is S.FINALIZED
    assert git(origin, "rev-parse", f"refs/heads/{BRANCH}") == head
    assert not sandbox.worktree_path.exists()
    assert statuses(sandbox)[-2:] == ["stopping", "finalized"]
    with pytest.raises(InvalidState):
        sandbox.finalize("again", "", None)
    assert sandbox.on_teardown().status is S.FINALIZED


class _ForgeDown(LocalProvider):
    """A forge that refuses every pull request."""

    def open_pull_request(
        self, repository: str, *, head: str, base: str, title: str, body: str
    ) -> PullRequestInfo:
        raise PullRequestError("the forge answered 502")


def test_a_failed_pull_request_leaves_the_sandbox_running(make_sandbox: SandboxFactory):
    sandbox = make_sandbox()
    sandbox.on_setup()
    execute(sandbox, command="write_file", file_path="src/p.ts", content="p\n")
    with pytest.raises(PullRequestError):
        sandbox.finalize("title", "", _ForgeDown())
    assert sandbox.state is S.RUNNING
    assert execute(sandbox, command="read_file", file_path="src/p.ts").content == "p\n"
    assert sandbox.port is not None and get(sandbox.port, "/@vite/client")[0] == 200


def test_teardown_during_a_restart_backoff_leaves_nothing(
    make_sandbox: SandboxFactory, settings: StudioSettings
):
    sandbox = make_sandbox(config=fast_config(settings, restart_backoff=5, restart_backoff_max=5))
    sandbox.on_setup()
    kill_vite(sandbox)
    # The watcher starts the restart; a monitor pass meanwhile returns at once.
    wait_for(lambda: sandbox.state is S.RESTARTING)
    monitor = threading.Thread(target=sandbox.on_monitor)
    monitor.start()
    # Work goes on while Vite restarts; reads do not wait for it either.
    sha = execute(sandbox, command="write_file", file_path="src/w.ts", content="w\n").commit_hash
    assert sha is not None and sandbox.info().git_commits[0].hash == sha
    assert sandbox.info().status is S.RESTARTING
    sandbox.on_teardown()
    monitor.join(30)
    assert not monitor.is_alive()
    assert sandbox.state is S.STOPPED
    assert sandbox.vite.server is not None and sandbox.vite.server.pid is None


def test_a_new_object_tears_down_what_a_dead_incarnation_left(make_sandbox: SandboxFactory):
    first = make_sandbox()
    first.on_setup()
    sha = execute(first, command="write_file", file_path="src/d.ts", content="d\n").commit_hash
    pid = vite_pid(first)
    die(first)  # the actor died, and the watcher with it
    # The manager tears down a sandbox whose actor died, from a fresh object.
    successor = make_sandbox()
    assert successor.on_teardown().status is S.STOPPED
    assert gone(pid)
    assert not first.worktree_path.exists()
    assert not successor.layout.pid_file("vite-sb_test0001").exists()
    assert successor.vite.ports.reservations() == {}
    assert git(successor.layout.mirror("ui-kit"), "rev-parse", f"refs/heads/{BRANCH}") == sha


def test_recover_removes_a_stale_index_lock(make_sandbox: SandboxFactory):
    first = make_sandbox()
    first.on_setup()
    execute(first, command="write_file", file_path="src/l.ts", content="1\n")
    lock = Path(git(first.worktree_path, "rev-parse", "--absolute-git-dir")) / "index.lock"
    lock.write_text("")
    os.utime(lock, (1_000_000_000, 1_000_000_000))  # a git that crashed long ago
    die(first)  # the actor died, and the watcher with it
    second = make_sandbox()
    second.on_setup(recover=True)
    result = execute(second, command="write_file", file_path="src/l.ts", content="2\n")
    assert result.commit_hash is not None and not lock.exists()


def test_on_event_sees_every_event_in_order(make_sandbox: SandboxFactory):
    seen: list[dict[str, object]] = []
    sandbox = make_sandbox(on_event=seen.append)
    sandbox.on_setup()
    execute(sandbox, command="write_file", file_path="src/e.ts", content="e\n")
    sandbox.rollback(steps=1)
    sandbox.on_teardown()
    assert [m["seq"] for m in seen] == list(range(1, sandbox.events.last_seq + 1))
    assert [m["type"] for m in seen] == [
        "status",  # starting
        *["status"] * 4,  # mirror, worktree, install, vite
        "status",  # running
        "commit",
        "rollback",
        "status",
        "status",
    ]
    assert seen[6]["sandbox_id"] == "sb_test0001" and isinstance(seen[6]["ts"], str)
