"""Durable commits: an execute answers once its commit is on the origin, not before.

The origin is where another node recovers a sandbox from after losing the
one it ran on; a commit only on the lost node's disk is lost with it. Real
git repositories, a real Vite; the origin made unreachable by moving it away.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from studio.commands import ExecuteResult, command_adapter
from studio.config import StudioSettings
from studio.sandbox import ComponentStudioSandbox
from tests.studio.test_sandbox_fixtures import SandboxFactory, fast_config
from tests.support.gitrepo import git

BRANCH = "refs/heads/design/studio-test0001"


def write(sandbox: ComponentStudioSandbox, name: str, content: str) -> ExecuteResult:
    command = {"command": "write_file", "file_path": name, "content": content}
    return sandbox.on_execute(command_adapter.validate_python(command))


def origin_head(origin: Path) -> str | None:
    found = git(origin, "for-each-ref", "--format=%(objectname)", BRANCH)
    return found or None


def test_a_durable_execute_answers_with_its_commit_already_on_the_origin(
    make_sandbox: SandboxFactory, origin: Path
) -> None:
    sandbox = make_sandbox()
    sandbox.on_setup()
    for n in range(5):
        result = write(sandbox, f"src/durable{n}.ts", f"export const n = {n};\n")
        assert result.pushed is True
        # Read at once, no waiting: the origin has exactly this commit.
        assert origin_head(origin) == result.commit_hash
    undone = sandbox.rollback(steps=2)
    assert undone.pushed is True and origin_head(origin) == undone.current_hash


def test_concurrent_durable_executes_all_land_on_the_origin(
    make_sandbox: SandboxFactory, origin: Path
) -> None:
    sandbox = make_sandbox()
    sandbox.on_setup()
    results: list[ExecuteResult] = []
    lock = threading.Lock()

    def edit(n: int) -> None:
        result = write(sandbox, f"src/group/{n}.ts", f"export const g = {n};\n")
        with lock:
            results.append(result)

    threads = [threading.Thread(target=edit, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 12 and all(r.pushed for r in results)
    on_origin = set(git(origin, "rev-list", BRANCH).split())
    assert {r.commit_hash for r in results} <= on_origin
    # Pushes were shared between edits, not one per edit (a group commit).
    assert sandbox.pusher.pushes <= 12


def test_without_durable_commits_the_answer_does_not_wait_for_the_push(
    make_sandbox: SandboxFactory, settings: StudioSettings, origin: Path
) -> None:
    sandbox = make_sandbox(config=fast_config(settings, durable_commits=False))
    sandbox.on_setup()
    result = write(sandbox, "src/fast.ts", "export const fast = 1;\n")
    assert result.pushed is None and result.commit_hash is not None
    # Pushed in the background, within its batching delay.
    assert sandbox.flush(30)
    assert origin_head(origin) == result.commit_hash


def test_an_unreachable_origin_is_said_and_the_commit_lands_once_it_is_back(
    make_sandbox: SandboxFactory, settings: StudioSettings, origin: Path
) -> None:
    sandbox = make_sandbox(config=fast_config(settings, push_timeout=5.0))
    sandbox.on_setup()
    away = origin.with_name("origin-away")
    origin.rename(away)
    try:
        result = write(sandbox, "src/offline.ts", "export const offline = 1;\n")
    finally:
        away.rename(origin)
    # The edit is kept (committed on this node) and the caller told it is not safe yet.
    assert result.pushed is False and result.commit_hash is not None
    assert "not on the origin yet" in result.output
    assert sandbox.history()[0].hash == result.commit_hash
    # The pusher retries by itself (1 s backoff first): no new edit needed.
    deadline = time.monotonic() + 60
    while origin_head(origin) != result.commit_hash and time.monotonic() < deadline:
        time.sleep(0.1)
    assert origin_head(origin) == result.commit_hash
