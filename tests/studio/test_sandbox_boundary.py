"""A sandbox's Vite inside the OS boundary, started through a standby made for its worktree.

Real git, real bwrap, real Vite on examples/ui-kit, through the sandbox's own
setup (no Ray): the standby is spawned inside the boundary on the empty
worktree directory before git checks the worktree out.
"""

# The fixtures are imported from test_sandbox_fixtures, then requested by name.
# ruff: noqa: F811

from __future__ import annotations

import httpx
import psutil
import pytest

from studio.config import StudioSettings
from studio.process.boundary import SANDBOX_UID, bwrap_problem
from studio.state import SandboxState
from tests.studio.test_sandbox_fixtures import (  # noqa: F401 (fixtures)
    SandboxFactory,
    install_cache,
    make_sandbox,
    origin,
    settings,
)
from tests.studio.test_sandbox_recovery import kill_vite, vite_pid, wait_for

pytestmark = pytest.mark.skipif(bwrap_problem() is not None, reason="bwrap cannot run here")


def _vite_tree(pid: int) -> list[psutil.Process]:
    leader = psutil.Process(pid)
    return [leader, *leader.children(recursive=True)]


def test_the_first_vite_comes_from_a_standby_inside_the_boundary(
    make_sandbox: SandboxFactory, settings: StudioSettings
) -> None:
    assert settings.boundary().enforced and settings.vite_standby
    sandbox = make_sandbox()
    sandbox.on_setup()
    server = sandbox.vite.server
    assert server is not None and server.pid is not None
    tree = _vite_tree(server.pid)
    leader = tree[0].cmdline()
    # bwrap leads; the node inside is the standby that imported Vite ahead of the worktree.
    assert leader[0] == "bwrap" and leader[-1].endswith("standby.mjs"), leader
    node = next(proc for proc in tree if proc.name() == "node")
    assert "--import" in node.cmdline()
    assert node.uids().real != SANDBOX_UID  # outside, the service's own uid (mapped)
    assert str(sandbox.worktree_path) in leader  # its worktree is what it binds
    assert httpx.get(f"{server.url}/@vite/client", timeout=30).status_code == 200
    # A restart (the supervisor's, after a kill) spawns Vite cold, in a boundary of its own.
    killed = kill_vite(sandbox)
    wait_for(lambda: sandbox.state is SandboxState.RUNNING and vite_pid(sandbox) != killed)
    restarted = psutil.Process(vite_pid(sandbox)).cmdline()
    assert restarted[0] == "bwrap" and restarted[-1].endswith("serve.mjs"), restarted


def test_with_standbys_off_the_boundary_spawns_vite_cold(
    make_sandbox: SandboxFactory, settings: StudioSettings
) -> None:
    sandbox = make_sandbox(node_settings=settings.model_copy(update={"vite_standby": False}))
    sandbox.on_setup()
    server = sandbox.vite.server
    assert server is not None and server.pid is not None
    leader = psutil.Process(server.pid).cmdline()
    assert leader[0] == "bwrap" and leader[-1].endswith("serve.mjs"), leader
