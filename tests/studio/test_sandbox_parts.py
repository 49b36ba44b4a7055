"""The sandbox's parts without Vite: pushes, all-or-nothing edits, messages, early failures."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from studio.config import ComponentStudioConfig, StudioSettings
from studio.errors import GitError, InvalidState, MissingBaseBranch, PathNotAllowed, StudioError
from studio.models import RepositorySource
from studio.sandbox import ComponentStudioSandbox
from studio.sandbox.files import FileChange, commit_message
from studio.sandbox.push import BranchPusher
from studio.state import SandboxState
from tests.support.gitrepo import make_repo

S = SandboxState


# --- BranchPusher -------------------------------------------------------------------


def test_pushes_are_coalesced_one_in_flight_one_pending():
    release = threading.Event()
    started = threading.Event()
    calls: list[int] = []

    def push() -> None:
        calls.append(len(calls))
        started.set()
        release.wait(30)

    pusher = BranchPusher(push)
    pusher.request()
    assert started.wait(30)
    for _ in range(10):
        pusher.request()  # all of these are served by one more push
    assert not pusher.flush(0.05) and not pusher.idle
    release.set()
    assert pusher.flush(30) and pusher.idle
    assert calls == [0, 1] and pusher.pushes == 2 and pusher.last_error is None


def test_a_burst_of_requests_is_one_push_and_a_flush_does_not_wait_out_the_delay():
    calls: list[None] = []
    pusher = BranchPusher(lambda: calls.append(None), delay=600)
    for _ in range(20):
        pusher.request()  # a burst of commits
    assert not pusher.idle and calls == []  # waiting for more of the burst
    assert pusher.flush(60) and pusher.idle
    assert calls == [None] and pusher.pushes == 1
    pusher.request()
    assert pusher.close(60) and pusher.pushes == 2


def test_a_request_whose_caller_will_wait_starts_its_push_at_once():
    pushed = threading.Event()
    pusher = BranchPusher(pushed.set, delay=600)
    ticket = pusher.request(hurry=True)
    # Not held back for the 600 s batching delay, though nobody waits yet.
    assert pushed.wait(30)
    assert pusher.wait(ticket, 30)
    assert pusher.close(30)


def test_the_push_thread_stays_for_the_next_request_and_ends_on_close():
    threads: list[threading.Thread] = []
    pusher = BranchPusher(lambda: threads.append(threading.current_thread()), delay=0)
    for _ in range(3):
        assert pusher.wait(pusher.request(hurry=True), 30)
        assert pusher.idle
    # One thread served the three pushes: no thread start per edit.
    assert len({id(t) for t in threads}) == 1
    assert pusher.close(30)
    threads[0].join(30)
    assert not threads[0].is_alive()


def test_wait_answers_once_a_push_made_after_the_request_landed():
    state = {"branch": 0}
    pushed: list[int] = []
    pusher = BranchPusher(lambda: pushed.append(state["branch"]), delay=600)
    state["branch"] = 1
    ticket = pusher.request()
    # The waiter does not wait out the 600 s batching delay.
    assert pusher.wait(ticket, 30)
    assert pushed == [1]
    assert pusher.wait(ticket, 0)  # already landed: at once
    assert pusher.close(30)


def test_edits_made_during_a_push_ride_on_the_next_one():
    release = threading.Event()
    started = threading.Event()
    state = {"branch": 0}
    pushed: list[int] = []

    def push() -> None:
        pushed.append(state["branch"])
        started.set()
        release.wait(30)

    pusher = BranchPusher(push, delay=0)
    first = pusher.request()
    assert started.wait(30)
    tickets = []
    for n in range(1, 11):
        state["branch"] = n
        tickets.append(pusher.request())
    assert not pusher.wait(first, 0.05)  # still in flight
    release.set()
    assert all(pusher.wait(t, 30) for t in [first, *tickets])
    # One push for the ten edits made meanwhile, carrying the last of them.
    assert pushed == [0, 10]


def test_a_failed_push_is_said_to_the_waiter_and_retried_until_it_lands():
    outcomes: list[StudioError | None] = [StudioError("remote unreachable")] * 2 + [None]

    def push() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    pusher = BranchPusher(push, delay=0, retry_first=0.05)
    ticket = pusher.request()
    assert not pusher.wait(ticket, 30)
    assert pusher.last_error is not None and "unreachable" in str(pusher.last_error)
    deadline = time.monotonic() + 30
    while pusher.pushes == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # retried in the background, no new request needed
    assert pusher.pushes == 1 and pusher.last_error is None and outcomes == []
    assert pusher.wait(ticket, 0)
    assert pusher.close(30) and pusher.idle


def test_a_flush_retries_at_once_instead_of_waiting_for_the_backoff():
    outcomes: list[StudioError | None] = [StudioError("remote unreachable"), None]

    def push() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    pusher = BranchPusher(push, delay=0, retry_first=600)
    assert not pusher.wait(pusher.request(), 30)
    assert pusher.flush(30) and pusher.last_error is None and pusher.pushes == 1


def test_a_waiter_that_pushes_here_makes_the_push_in_its_own_thread():
    threads: list[threading.Thread] = []
    pusher = BranchPusher(lambda: threads.append(threading.current_thread()), delay=600)
    for _ in range(3):
        ticket = pusher.request(caller_pushes=True)
        assert threads == [] or len(threads) < ticket  # nothing pushed before the wait
        assert pusher.wait(ticket, 30, push_here=True) and pusher.idle
    # Neither held back for the 600 s delay nor handed to a push thread.
    assert threads == [threading.current_thread()] * 3
    assert pusher.close(30) and pusher.pushes == 3


def test_a_waiter_that_pushes_here_waits_for_the_push_in_flight_then_for_the_next():
    release = threading.Event()
    started = threading.Event()
    state = {"branch": 0}
    pushed: list[tuple[int, str]] = []

    def push() -> None:
        pushed.append((state["branch"], threading.current_thread().name))
        started.set()
        if len(pushed) == 1:
            release.wait(30)

    pusher = BranchPusher(push, delay=0, name="pusher")
    first = pusher.request()
    assert started.wait(30)
    state["branch"] = 1
    second = pusher.request(caller_pushes=True)
    answers: list[bool] = []
    waiter = threading.Thread(
        target=lambda: answers.append(pusher.wait(second, 30, push_here=True)), name="waiter"
    )
    waiter.start()
    assert not pusher.wait(first, 0.05)  # the first push is still in flight
    release.set()
    waiter.join(30)
    # The edit made during the first push went out once that one was done (by the
    # push thread, which may find it first, or by the waiter), not beside it.
    assert answers == [True] and [branch for branch, _ in pushed] == [0, 1]
    assert pusher.close(30) and pusher.idle


def test_a_failed_push_made_here_is_said_and_retried_by_the_push_thread():
    outcomes: list[StudioError | None] = [StudioError("remote unreachable"), None]

    def push() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    pusher = BranchPusher(push, delay=0, retry_first=0.05)
    ticket = pusher.request(caller_pushes=True)
    assert not pusher.wait(ticket, 30, push_here=True)
    assert pusher.last_error is not None
    deadline = time.monotonic() + 30
    while pusher.pushes == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # no new edit needed
    assert pusher.pushes == 1 and outcomes == [] and pusher.wait(ticket, 0)
    assert pusher.close(30) and pusher.idle


def test_a_request_left_for_its_caller_is_still_pushed_by_a_plain_wait_or_flush():
    calls: list[None] = []
    pusher = BranchPusher(lambda: calls.append(None), delay=600)
    ticket = pusher.request(caller_pushes=True)
    assert pusher.wait(ticket, 30)  # no push_here: the push thread is started for it
    pusher.request(caller_pushes=True)
    assert pusher.flush(30) and calls == [None, None]
    assert pusher.close(30)


def test_a_closed_pusher_ignores_requests_and_nobody_waits_on_it():
    calls: list[None] = []
    pusher = BranchPusher(lambda: calls.append(None))
    assert pusher.close(30)
    ticket = pusher.request()
    assert pusher.wait(ticket, 30) and pusher.flush(30)
    assert calls == [] and pusher.idle


# --- FileChange -----------------------------------------------------------------------


def test_undo_restores_written_created_and_deleted_files(tmp_path: Path):
    (tmp_path / "keep.txt").write_text("old\n")
    (tmp_path / "keep.txt").chmod(0o640)
    (tmp_path / "gone.txt").write_text("bye\n")
    change = FileChange(tmp_path, max_bytes=1000)
    assert change.write("keep.txt", "new\n") == "keep.txt"
    assert change.write("a/b/new.txt", "n\n") == "a/b/new.txt"
    assert change.delete("gone.txt") == "gone.txt"
    assert (tmp_path / "keep.txt").read_text() == "new\n"
    change.undo()
    assert (tmp_path / "keep.txt").read_text() == "old\n"
    assert (tmp_path / "keep.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "gone.txt").read_text() == "bye\n"
    assert not (tmp_path / "a").exists()


def test_check_write_refuses_without_touching_the_disk(tmp_path: Path):
    change = FileChange(tmp_path, max_bytes=4)
    with pytest.raises(PathNotAllowed):
        change.check_write("../x", "a")
    with pytest.raises(StudioError, match="limit is 4"):
        change.check_write("x.txt", "too long")
    (tmp_path / "dir").mkdir()
    with pytest.raises(StudioError, match="directory"):
        change.check_write("dir", "a")
    assert sorted(os.listdir(tmp_path)) == ["dir"]


def test_commit_message_fills_the_pattern():
    now = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)
    message = commit_message(
        "AI: {description} - {timestamp} ({action} {file} in {sandbox})",
        action="write_file",
        files=["src/a.tsx"],
        description="",
        sandbox_id="sb_abc123",
        now=now,
    )
    assert message == (
        "AI: write_file src/a.tsx - 2026-11-25 14:30 (write_file src/a.tsx in sb_abc123)"
    )
    two = commit_message(
        "{description}",
        action="write_files",
        files=["a", "b"],
        description=" two ",
        sandbox_id="sb_abc123",
        now=now,
    )
    assert two == "two"


# --- setups that fail before Vite -------------------------------------------------------


def _sandbox(tmp_path: Path, source: str, **config: object) -> ComponentStudioSandbox:
    settings = StudioSettings(state_dir=tmp_path / "state")
    return ComponentStudioSandbox(
        "sb_early0001",
        RepositorySource(name="repo", source=source),
        ComponentStudioConfig(**config),  # type: ignore[arg-type]
        settings,
    )


def test_setup_from_a_missing_source_fails_and_tears_down(tmp_path: Path):
    sandbox = _sandbox(tmp_path, str(tmp_path / "nowhere"))
    with pytest.raises(GitError):
        sandbox.on_setup()
    assert sandbox.state is S.FAILED and sandbox.error
    assert sandbox.on_teardown().status is S.STOPPED
    with pytest.raises(InvalidState):
        sandbox.on_setup()


def test_setup_on_a_missing_base_branch_names_it_and_lists_no_others(tmp_path: Path):
    origin = make_repo(tmp_path / "origin", {"a.txt": "a\n"}, branch="trunk")
    sandbox = _sandbox(tmp_path, str(origin), branch="develop")
    with pytest.raises(MissingBaseBranch, match="develop") as info:
        sandbox.on_setup()
    assert "trunk" not in info.value.message
    error = [m for m in sandbox.events.since(0) if m.type == "error"]
    assert error and error[0].payload.code == "missing_base_branch"  # type: ignore[union-attr]
    sandbox.on_teardown()
    assert not sandbox.worktree_path.exists()


def test_the_repository_default_branch_is_used_unless_the_config_names_one(tmp_path: Path):
    origin = make_repo(tmp_path / "origin", {"a.txt": "a\n"}, branch="trunk")
    settings = StudioSettings(state_dir=tmp_path / "state")
    source = RepositorySource(name="repo", source=str(origin), default_branch="trunk")
    sandbox = ComponentStudioSandbox("sb_early0002", source, ComponentStudioConfig(), settings)
    assert sandbox.base_branch == "trunk"
    named = ComponentStudioSandbox(
        "sb_early0003", source, ComponentStudioConfig(branch="release"), settings
    )
    assert named.base_branch == "release"


def test_teardown_requires_a_terminal_state():
    settings = StudioSettings()
    sandbox = ComponentStudioSandbox(
        "sb_early0004", RepositorySource(name="r", source="/x"), ComponentStudioConfig(), settings
    )
    with pytest.raises(InvalidState):
        sandbox.on_teardown(final_state=S.RUNNING)
