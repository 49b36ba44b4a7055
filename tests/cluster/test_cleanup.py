"""The cleanup job on a real local Ray with the real manager and a real sandbox.

The node's state dir holds a running sandbox made through the manager, and
what dead sandboxes left (``tests.cluster.planting``) plus a named
``sandbox:*`` actor the registry never heard of. A dry run changes nothing; a
pass removes the orphans and keeps the live sandbox; a pass with a tiny idle
limit tears the sandbox down through the manager. Every branch stays. A held
sandbox (``ready_sandboxes``: set up ahead of a create) is none of those.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import ray

from actors.handles import kill_manager, sandbox_handle, start_manager
from cli.up import ensure_example_repository
from cluster.cleanup import run_cleanup
from studio.config import StudioSettings
from studio.naming import ACTOR_NAMESPACE
from studio.state import SandboxState
from tests.actors.conftest import open_studio
from tests.actors.test_ready import held, one_held
from tests.cluster.planting import Planted, plant
from tests.studio.test_sandbox_fixtures import (  # noqa: F401 (fixture)
    PORTS,
    TEMPLATE,
    free_base,
    install_cache,
)
from tests.support.gitrepo import git

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@ray.remote(num_cpus=0)
class Stray:
    """Stands in for a sandbox actor nobody tracks any more."""

    def ping(self) -> str:
        return "pong"


@pytest.fixture
def service(ray_session: None, tmp_path: Path, install_cache: Path) -> Iterator[dict[str, Any]]:  # noqa: F811
    state = tmp_path / "state"
    state.mkdir()
    (state / "install-cache").symlink_to(install_cache, target_is_directory=True)
    repos = tmp_path / "repos"
    settings = StudioSettings(
        state_dir=state,
        template_dir=TEMPLATE,
        vite_port=free_base(),
        vite_port_count=PORTS,
        repo_roots=[repos],
        health_check_interval=3600,
    )
    kill_manager()
    manager = start_manager(settings)
    repo = ensure_example_repository(repos)
    record = ray.get(manager.register_repository.remote("ui-kit", path=str(repo)))
    planted = plant(state, tmp_path / "origin")
    try:
        yield {"manager": manager, "settings": settings, "repo": record, "planted": planted}
    finally:
        for info in ray.get(manager.list_sandboxes.remote(None)):
            ray.get(manager.teardown_sandbox.remote(info.id, None))
        kill_manager()
        planted.close()


def vite_alive(pid_file: Path) -> bool:
    import json

    record = json.loads(pid_file.read_text())
    try:
        return psutil.Process(record["pid"]).is_running()
    except psutil.NoSuchProcess:
        return False


def test_cleanup_dry_run_then_orphans_then_idle(service: dict[str, Any]) -> None:
    manager, settings = service["manager"], service["settings"]
    planted: Planted = service["planted"]
    info = ray.get(manager.create_sandbox.remote("admin", service["repo"].id, {}))
    assert info.status is SandboxState.RUNNING
    live_worktree = settings.state_dir / "worktrees" / info.id
    live_pid_file = settings.state_dir / "run" / f"vite-{info.id}.json"
    assert live_worktree.is_dir() and vite_alive(live_pid_file)
    stray = Stray.options(  # type: ignore[attr-defined]
        name="sandbox:sb_stray00001", namespace=ACTOR_NAMESPACE, lifetime="detached"
    ).remote()
    assert ray.get(stray.ping.remote()) == "pong"

    dry = run_cleanup(idle_hours=1000, dry_run=True, grace_seconds=600)
    assert dry["errors"] == []
    assert dry["actors_killed"] == ["sb_stray00001"]
    assert dry["torn_down"] == []
    (node,) = dry["nodes"]
    assert {Path(p).name for p in node["worktrees"]} == {"sb_unknown001"}
    assert planted.worktrees["sb_unknown001"].is_dir() and planted.alive("sb_unknown001")
    assert ray.get(stray.ping.remote()) == "pong"

    swept = run_cleanup(idle_hours=1000, grace_seconds=600)
    assert swept["errors"] == []
    assert swept["actors_killed"] == ["sb_stray00001"]
    (node,) = swept["nodes"]
    assert {Path(p).name for p in node["worktrees"]} == {"sb_unknown001"}
    assert node["stale_entries"] == [str(planted.stale)]
    assert not planted.worktrees["sb_unknown001"].exists()
    assert not planted.alive("sb_unknown001")
    with pytest.raises(ValueError):
        ray.get_actor("sandbox:sb_stray00001", namespace=ACTOR_NAMESPACE)
    # The live sandbox and the young unknown leftovers are untouched.
    assert live_worktree.is_dir() and vite_alive(live_pid_file)
    assert planted.alive("sb_fresh00001")
    assert ray.get(manager.get_sandbox.remote(info.id)).status is SandboxState.RUNNING

    idle = run_cleanup(idle_hours=1e-9, grace_seconds=600)
    assert idle["errors"] == []
    assert [t["id"] for t in idle["torn_down"]] == [info.id]
    assert ray.get(manager.get_sandbox.remote(info.id)).status is SandboxState.STOPPED
    assert not live_worktree.exists()
    assert not live_pid_file.exists()
    # Every branch is still there, the sandbox's and the planted ones.
    mirrors = settings.state_dir / "mirrors"
    assert info.branch in git(mirrors / "ui-kit.git", "branch", "--list", info.branch)
    for sandbox_id in planted.worktrees:
        assert planted.branch_exists(sandbox_id)


def test_a_held_sandbox_is_neither_idle_nor_an_orphan(
    ray_session: None,
    tmp_path: Path,
    install_cache: Path,  # noqa: F811
) -> None:
    # The session turns ready sandboxes off (tests/conftest.py); the default keeps one.
    with open_studio(tmp_path, install_cache, ready_sandboxes=1) as studio:
        ready = one_held(studio)
        worktree = studio.settings.state_dir / "worktrees" / ready.id
        pid_file = studio.settings.state_dir / "run" / f"vite-{ready.id}.json"
        # The harshest pass: every sandbox past its idle limit, no grace for leftovers.
        for dry_run in (True, False):
            summary = run_cleanup(idle_hours=1e-9, dry_run=dry_run, grace_seconds=0)
            assert summary["errors"] == [], summary
            assert summary["torn_down"] == [] and summary["actors_killed"] == [], summary
            (node,) = summary["nodes"]
            assert node["processes"] == [] and node["worktrees"] == [], node
        assert [s.id for s in held(studio)] == [ready.id]
        assert worktree.is_dir() and vite_alive(pid_file)
        assert ray.get(sandbox_handle(ready.id).ping.remote(), timeout=60)["pid"]
