"""ComponentStudioSandbox on real git and real Vite: setup, execute, rollback, teardown."""

# The fixtures are imported from test_sandbox_fixtures, then requested by name.
# ruff: noqa: F811

from __future__ import annotations

import http.client
import json
import logging
import os
import threading
from pathlib import Path

import pytest

from studio.commands import command_adapter
from studio.config import StudioSettings
from studio.errors import (
    CommitNotFound,
    GitLocked,
    InvalidRequest,
    InvalidState,
    NotFound,
    PathNotAllowed,
    RollbackOutOfRange,
)
from studio.sandbox import ComponentStudioSandbox
from studio.state import SandboxState
from tests.studio.test_sandbox_fixtures import (  # noqa: F401 (fixtures)
    HOST,
    SandboxFactory,
    fast_config,
    install_cache,
    make_sandbox,
    origin,
    settings,
)
from tests.support.gitrepo import git

S = SandboxState


def execute(sandbox: ComponentStudioSandbox, **command: object):  # type: ignore[no-untyped-def]
    return sandbox.on_execute(command_adapter.validate_python(command))


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def event_types(sandbox: ComponentStudioSandbox) -> list[tuple[str, dict[str, object]]]:
    return [
        (m.type.value, m.payload.model_dump(exclude_none=True)) for m in sandbox.events.since(0)
    ]


@pytest.fixture
def running(make_sandbox: SandboxFactory) -> ComponentStudioSandbox:
    sandbox = make_sandbox()
    sandbox.on_setup()
    return sandbox


def test_setup_runs_vite_on_the_sandbox_branch(running: ComponentStudioSandbox, origin: Path):
    info = running.info()
    assert info.status is S.RUNNING and running.state is S.RUNNING
    assert info.branch == "design/studio-test0001"
    assert info.port is not None
    assert info.renderer_url == f"http://localhost:{info.port}/"
    assert get(info.port, "/@vite/client")[0] == 200
    assert info.base_commit == git(origin, "rev-parse", "main")
    assert [c.is_base for c in info.git_commits] == [True]
    worktree = running.worktree_path
    assert git(worktree, "branch", "--show-current") == "design/studio-test0001"
    assert (worktree / ".studio" / "studio.config.json").is_file()
    statuses = [p for t, p in event_types(running) if t == "status"]
    assert [p["status"] for p in statuses if "step" not in p] == ["starting", "running"]
    # Each setup step said as it began, while starting.
    steps = [(p["status"], p["step"]) for p in statuses if "step" in p]
    assert steps == [("starting", s) for s in ("mirror", "worktree", "install", "vite")]
    catalog = running.components()
    assert catalog and "Button" in json.dumps(catalog)


def test_write_read_list_delete_each_commit_with_the_pattern(running: ComponentStudioSandbox):
    result = execute(
        running,
        command="write_file",
        file_path="src/components/Badge.tsx",
        content="export const Badge = () => <span>new</span>;\n",
        description="add a badge",
    )
    assert result.commit_hash is not None
    worktree = running.worktree_path
    assert git(worktree, "rev-parse", "HEAD") == result.commit_hash
    assert git(worktree, "log", "-1", "--format=%s") == "AI: add a badge [sb_test0001]"
    assert git(worktree, "status", "--porcelain") == ""

    read = execute(running, command="read_file", file_path="src/components/Badge.tsx")
    assert read.content == "export const Badge = () => <span>new</span>;\n"
    listing = execute(running, command="list_files", file_path="src")
    assert "src/components/Badge.tsx" in (listing.files or [])
    assert not any(
        f.startswith(".studio") for f in execute(running, command="list_files").files or []
    )

    deleted = execute(running, command="delete_file", file_path="src/components/Badge.tsx")
    assert deleted.commit_hash is not None
    assert not (worktree / "src/components/Badge.tsx").exists()
    # No description: the commit says what it did.
    assert "delete_file src/components/Badge.tsx" in git(worktree, "log", "-1", "--format=%s")

    history = running.history()
    assert [c.hash for c in history[:2]] == [deleted.commit_hash, result.commit_hash]
    assert history[-1].is_base
    commits = [p for t, p in event_types(running) if t == "commit"]
    assert [c["hash"] for c in commits] == [result.commit_hash, deleted.commit_hash]
    assert commits[0]["files"] == ["src/components/Badge.tsx"]


def test_write_files_is_one_commit(running: ComponentStudioSandbox):
    result = execute(
        running,
        command="write_files",
        files=[
            {"file_path": "src/a.ts", "content": "export const a = 1;\n"},
            {"file_path": "src/b/c.ts", "content": "export const c = 2;\n"},
        ],
        description="two files",
    )
    worktree = running.worktree_path
    shown = git(worktree, "show", "--name-only", "--format=", result.commit_hash or "")
    assert sorted(shown.split()) == ["src/a.ts", "src/b/c.ts"]
    assert len(running.history()) == 2


@pytest.mark.parametrize("inprocess", [True, False], ids=["inprocess", "git-cli"])
def test_execute_commits_alike_on_either_commit_path(
    make_sandbox: SandboxFactory,
    settings: StudioSettings,
    origin: Path,
    inprocess: bool,
    caplog: pytest.LogCaptureFixture,
):
    chosen = settings.model_copy(update={"inprocess_commits": inprocess})
    sandbox = make_sandbox(node_settings=chosen)
    sandbox.on_setup()
    pill = "src/components/Pill.tsx"
    with caplog.at_level(logging.DEBUG, logger="git.cmd"):
        wrote = execute(
            sandbox, command="write_file", file_path=pill, content="1;\n", description="a pill"
        )
        batch = execute(
            sandbox,
            command="write_files",
            files=[
                {"file_path": pill, "content": "2;\n"},
                {"file_path": "README.md", "content": "# kit\n"},
            ],
        )
        same = execute(sandbox, command="write_file", file_path="README.md", content="# kit\n")
        deleted = execute(sandbox, command="delete_file", file_path=pill)
    # GitPython logs each git it runs: `git commit` ran exactly when the setting is off.
    ran = [r for r in caplog.records if r.name == "git.cmd" and "'commit'" in r.getMessage()]
    assert len(ran) == (0 if inprocess else 3)
    assert same.commit_hash is None
    hashes = [deleted.commit_hash, batch.commit_hash, wrote.commit_hash]
    assert [c.hash for c in sandbox.history()] == [*hashes, sandbox.base_commit]
    worktree = sandbox.worktree_path

    def changes(commit: str | None) -> list[str]:
        return git(worktree, "show", "--name-status", "--format=", str(commit)).splitlines()

    assert changes(wrote.commit_hash) == [f"A\t{pill}"]
    assert changes(batch.commit_hash) == ["M\tREADME.md", f"M\t{pill}"]
    assert changes(deleted.commit_hash) == [f"D\t{pill}"]
    assert git(worktree, "log", "-1", "--format=%s", str(wrote.commit_hash)) == (
        "AI: a pill [sb_test0001]"
    )
    assert git(worktree, "status", "--porcelain") == ""
    # Durable either way: the last commit is on the origin.
    assert git(origin, "rev-parse", "design/studio-test0001") == deleted.commit_hash


def test_unchanged_write_commits_nothing(running: ComponentStudioSandbox):
    content = (running.worktree_path / "README.md").read_text()
    result = execute(running, command="write_file", file_path="README.md", content=content)
    assert result.commit_hash is None
    assert len(running.history()) == 1


@pytest.mark.parametrize(
    "path", ["../outside.txt", "/etc/passwd", ".git/config", ".studio/x.js", "node_modules/a.js"]
)
def test_bad_paths_are_refused_with_nothing_written(running: ComponentStudioSandbox, path: str):
    worktree = running.worktree_path
    before = git(worktree, "rev-parse", "HEAD")
    with pytest.raises(PathNotAllowed):
        execute(running, command="write_file", file_path=path, content="x")
    # A batch with one bad path writes none of its files.
    with pytest.raises(PathNotAllowed):
        execute(
            running,
            command="write_files",
            files=[
                {"file_path": "src/fine.ts", "content": "ok"},
                {"file_path": path, "content": "x"},
            ],
        )
    assert not (worktree / "src/fine.ts").exists()
    assert git(worktree, "rev-parse", "HEAD") == before
    assert git(worktree, "status", "--porcelain") == ""
    assert not (worktree.parent / "outside.txt").exists()


def test_a_failing_commit_leaves_no_change(running: ComponentStudioSandbox):
    worktree = running.worktree_path
    readme = worktree / "README.md"
    old = readme.read_text()
    # A fresh lock held by "someone": git refuses, the write is undone.
    lock = Path(git(worktree, "rev-parse", "--absolute-git-dir")) / "index.lock"
    lock.write_text("")
    try:
        with pytest.raises(GitLocked, match=r"index\.lock"):
            execute(running, command="write_file", file_path="README.md", content="changed\n")
        with pytest.raises(GitLocked):
            execute(running, command="write_file", file_path="src/new/deep/x.ts", content="x")
    finally:
        lock.unlink(missing_ok=True)
    assert readme.read_text() == old
    assert not (worktree / "src/new").exists()
    assert git(worktree, "status", "--porcelain") == ""


def test_a_stale_index_lock_is_removed_before_committing(running: ComponentStudioSandbox):
    worktree = running.worktree_path
    lock = Path(git(worktree, "rev-parse", "--absolute-git-dir")) / "index.lock"
    lock.write_text("")
    os.utime(lock, (1_000_000_000, 1_000_000_000))  # left by a crash long ago
    result = execute(running, command="write_file", file_path="src/x.ts", content="x\n")
    assert result.commit_hash is not None
    assert not lock.exists()


def test_missing_file_reads_and_deletes_are_not_found(running: ComponentStudioSandbox):
    with pytest.raises(NotFound):
        execute(running, command="read_file", file_path="src/nope.ts")
    with pytest.raises(NotFound):
        execute(running, command="delete_file", file_path="src/nope.ts")


def test_concurrent_executes_are_serialized_and_none_is_lost(running: ComponentStudioSandbox):
    errors: list[BaseException] = []
    hashes: dict[int, str] = {}

    def write(n: int) -> None:
        try:
            result = execute(
                running,
                command="write_file",
                file_path="src/counter.ts",
                content=f"export const n = {n};\n",
                description=f"n={n}",
            )
            assert result.commit_hash is not None
            hashes[n] = result.commit_hash
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    worktree = running.worktree_path
    log = git(worktree, "log", "--format=%H %s", "--first-parent", "HEAD").splitlines()[:20]
    assert len(set(hashes.values())) == 20 and {line.split()[0] for line in log} == set(
        hashes.values()
    )
    # Each commit holds the content its message names: writes and commits did not interleave.
    for line in log:
        sha, message = line.split(" ", 1)
        n = int(message.split("n=")[1].split()[0])
        assert git(worktree, "show", f"{sha}:src/counter.ts") == f"export const n = {n};"
    newest = int(log[0].split("n=")[1].split()[0])
    assert (worktree / "src/counter.ts").read_text() == f"export const n = {newest};\n"


def test_rollback_by_hash_steps_and_undo(running: ComponentStudioSandbox):
    worktree = running.worktree_path
    base = running.base_commit
    first = execute(running, command="write_file", file_path="src/v.ts", content="1\n").commit_hash
    second = execute(running, command="write_file", file_path="src/v.ts", content="2\n").commit_hash
    assert first and second and base

    result = running.rollback(commit_hash=first)
    assert result.success and result.current_hash == first and result.previous_hash == second
    assert (worktree / "src/v.ts").read_text() == "1\n"

    undone = running.rollback(undo=True)
    assert undone.current_hash == second
    assert (worktree / "src/v.ts").read_text() == "2\n"

    steps = running.rollback(steps=2)
    assert steps.current_hash == base
    assert not (worktree / "src/v.ts").exists()
    assert [c.is_base for c in running.history()] == [True]

    rollbacks = [p for t, p in event_types(running) if t == "rollback"]
    assert [r["current_hash"] for r in rollbacks] == [first, second, base]


def test_rollback_past_the_base_is_refused(running: ComponentStudioSandbox, origin: Path):
    execute(running, command="write_file", file_path="src/v.ts", content="1\n")
    with pytest.raises(RollbackOutOfRange):
        running.rollback(steps=2)
    with pytest.raises(CommitNotFound):
        running.rollback(commit_hash="0" * 40)
    with pytest.raises(InvalidRequest):
        running.rollback()
    with pytest.raises(InvalidRequest):
        running.rollback(steps=1, undo=True)
    assert len(running.history()) == 2


def test_teardown_keeps_branch_and_commits_in_mirror_and_origin(
    running: ComponentStudioSandbox, origin: Path
):
    sha = execute(running, command="write_file", file_path="src/t.ts", content="t\n").commit_hash
    worktree = running.worktree_path
    port = running.port
    assert port is not None
    info = running.on_teardown()
    assert info.status is S.STOPPED and info.port is None and info.renderer_url is None
    assert not worktree.exists()
    mirror = running.layout.mirror("ui-kit")
    assert git(mirror, "rev-parse", "refs/heads/design/studio-test0001") == sha
    assert git(origin, "rev-parse", "refs/heads/design/studio-test0001") == sha
    assert running.history()[0].hash == sha
    assert git(mirror, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert not running.layout.pid_file("vite-sb_test0001").exists()
    # Idempotent, and nothing runs on a stopped sandbox.
    assert running.on_teardown().status is S.STOPPED
    with pytest.raises(InvalidState):
        execute(running, command="write_file", file_path="src/t.ts", content="again\n")
    with pytest.raises(InvalidState):
        execute(running, command="read_file", file_path="src/t.ts")
    with pytest.raises(InvalidState):
        running.rollback(steps=1)
    statuses = [p["status"] for t, p in event_types(running) if t == "status"]
    assert statuses[-2:] == ["stopping", "stopped"]


def test_execute_before_setup_is_invalid_state(make_sandbox: SandboxFactory):
    sandbox = make_sandbox()
    with pytest.raises(InvalidState):
        execute(sandbox, command="write_file", file_path="a.ts", content="a")


def test_idle_expired_with_a_tiny_timeout(make_sandbox: SandboxFactory, settings):  # type: ignore[no-untyped-def]
    sandbox = make_sandbox(config=fast_config(settings, timeout_hours=1e-9))
    sandbox.on_setup()
    sandbox.last_activity -= 1
    report = sandbox.on_monitor()
    assert report.healthy and report.idle_expired and report.state is S.RUNNING
    sandbox.touch()
    sandbox.on_teardown()
    fresh = make_sandbox("sb_test0002")
    fresh.on_setup()
    assert not fresh.on_monitor().idle_expired


def test_client_selection_is_published(running: ComponentStudioSandbox):
    seen: list[dict[str, object]] = []
    running._on_event = seen.append  # the actor passes it at construction
    running.publish_client_message(
        {"type": "component-selected", "payload": {"component": "Button"}}, "client-1"
    )
    running.publish_client_message({"type": "ping"}, "client-1")
    with pytest.raises(InvalidRequest):
        running.publish_client_message({"type": "commit", "payload": {}}, "client-1")
    assert [m["type"] for m in seen] == ["component-selected"]
    assert seen[0]["payload"] == {"component": "Button", "client_id": "client-1"}
    assert seen[0]["seq"] == running.events.last_seq
