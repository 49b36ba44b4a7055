"""Ready sandboxes (actors/_ready.py): set up ahead of need, taken over by a create.

Real Ray, real Vite, examples/ui-kit: the session turns them off for every
other test (tests/conftest.py); these turn them on.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from actors.handles import get_manager, sandbox_handle
from studio.errors import QuotaExceeded
from studio.naming import READY_OWNER, branch_name
from studio.state import SandboxState
from tests.actors.conftest import Studio, get, open_studio, renderer_answers
from tests.actors.test_actors_ray import wait_for, write
from tests.support.gitrepo import git

pytestmark = pytest.mark.usefixtures("ray_session")


def held(studio: Studio, state: SandboxState = SandboxState.RUNNING) -> list[Any]:
    """The repository's held sandboxes in ``state``, as the manager lists them."""
    every = get(studio.manager.list_sandboxes.remote(None, False, True))
    return [s for s in every if s.owner == READY_OWNER and s.status is state]


def warmed(studio: Studio) -> bool:
    """The repository's one held sandbox is up and its warm-up done (health says running)."""
    health = get(studio.manager.health.remote())
    return bool(health["ready_sandboxes"].get(studio.repository_id) == {"running": 1})


def one_held(studio: Studio, timeout: float = 120) -> Any:
    wait_for(lambda: len(held(studio)) == 1 and warmed(studio), timeout, "the ready sandbox")
    (found,) = held(studio)
    return found


def test_a_create_takes_the_ready_sandbox_and_another_takes_its_place(
    tmp_path: Path, install_cache: Path
) -> None:
    # The replacement's quiet period (test_ready_backoff.py) cut short: the test waits for it.
    with open_studio(
        tmp_path, install_cache, ready_sandboxes=1, ready_sandbox_quiet_s=1.0
    ) as studio:
        ready = one_held(studio)
        # Nobody's: no user and no admin listing shows it.
        assert get(studio.manager.list_sandboxes.remote(None)) == []
        health = get(studio.manager.health.remote())
        assert health["ready_sandboxes"] == {studio.repository_id: {"running": 1}}
        # Its Vite has the page's modules transformed (through the proxy's guard, with
        # the secret): a second warm-up finds the same graph, every module served.
        warmed = get(sandbox_handle(ready.id).warm_renderer.remote(), timeout=120)
        assert warmed["loaded"] >= 10 and warmed["failed"] == 0, warmed
        # The repository's record says how many wait (GET /api/v1/repositories/{id}).
        assert get(studio.manager.get_repository.remote(studio.repository_id)).ready_sandboxes == 1

        before = time.time()
        info = get(studio.manager.create_sandbox.remote("alice", studio.repository_id))
        assert info.id == ready.id and info.owner == "alice"
        assert info.status is SandboxState.RUNNING and info.branch == branch_name(info.id)
        assert info.renderer_url and renderer_answers(info.renderer_url)
        record = get(studio.manager.get_sandbox.remote(info.id, "alice"))
        assert record.owner == "alice" and record.last_activity.timestamp() >= before - 1
        assert [s.id for s in get(studio.manager.list_sandboxes.remote("alice"))] == [info.id]
        # It is alice's sandbox like any other: edits commit, bob cannot see it.
        commit = write(info.id, "src/components/Taken.tsx", "export const T = () => 1;\n", "t")
        assert commit in [
            c.hash for c in get(studio.manager.get_sandbox.remote(info.id)).git_commits
        ]
        with pytest.raises(Exception, match="no sandbox"):
            get(studio.manager.get_sandbox.remote(info.id, "bob"))

        replacement = one_held(studio)
        assert replacement.id != info.id

        # The manager dies: its successor finds the held sandbox in the registry and adopts
        # its actor (not a new one), starts no second one, and a create still takes it.
        sandbox_pid = get(sandbox_handle(replacement.id).ping.remote())["pid"]
        os.kill(get(studio.manager.pid.remote()), signal.SIGKILL)
        manager = get_manager()
        for _ in range(2):
            passed = get(manager.reconcile.remote(), timeout=60)
            assert not passed["sandboxes"][replacement.id].startswith("recreate"), passed
        assert get(sandbox_handle(replacement.id).ping.remote())["pid"] == sandbox_pid
        every = get(manager.list_sandboxes.remote(None, False, True))
        assert [s.id for s in every if s.owner == READY_OWNER] == [replacement.id]
        taken = get(manager.create_sandbox.remote("bob", studio.repository_id))
        assert taken.id == replacement.id and taken.owner == "bob"


def test_overrides_and_a_moved_branch_get_a_sandbox_set_up_on_the_request(
    tmp_path: Path, install_cache: Path
) -> None:
    with open_studio(tmp_path, install_cache, ready_sandboxes=1) as studio:
        ready = one_held(studio)
        custom = get(
            studio.manager.create_sandbox.remote(
                "alice", studio.repository_id, {"timeout_hours": 1}
            )
        )
        assert custom.id != ready.id and custom.status is SandboxState.RUNNING
        assert [s.id for s in held(studio)] == [ready.id]

        # The repository's branch moves: the held sandbox is behind it and must not
        # be handed out (its user would start from an old commit).
        (studio.origin / "MOVED.md").write_text("moved\n")
        git(studio.origin, "add", "MOVED.md")
        git(studio.origin, "commit", "-q", "-m", "move main")
        head = git(studio.origin, "rev-parse", "HEAD").strip()
        fresh = get(studio.manager.create_sandbox.remote("bob", studio.repository_id))
        assert fresh.id != ready.id and fresh.base_commit == head
        # The stale one is torn down, and its replacement starts from the new head.
        wait_for(
            lambda: get(studio.manager.get_sandbox.remote(ready.id)).status is SandboxState.STOPPED,
            60,
            "the stale ready sandbox to be torn down",
        )
        replacement = one_held(studio)
        assert replacement.base_commit == head


def test_a_user_at_the_quota_gets_the_quota_error_not_the_ready_sandbox(
    tmp_path: Path, install_cache: Path
) -> None:
    with open_studio(
        tmp_path, install_cache, ready_sandboxes=1, max_sandboxes_per_user=1
    ) as studio:
        ready = one_held(studio)
        mine = get(
            studio.manager.create_sandbox.remote(
                "alice", studio.repository_id, {"timeout_hours": 1}, is_admin=False
            )
        )
        with pytest.raises(Exception) as caught:
            get(studio.manager.create_sandbox.remote("alice", studio.repository_id))
        assert QuotaExceeded.__name__ in repr(caught.value) or "quota" in str(caught.value)
        # Nothing changed hands.
        assert [s.id for s in held(studio)] == [ready.id]
        assert [s.id for s in get(studio.manager.list_sandboxes.remote("alice"))] == [mine.id]
