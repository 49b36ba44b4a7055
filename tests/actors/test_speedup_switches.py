"""The actors' speed-ups switched off: the warm pool, the worker preload, the Vite standby.

The preload and the standby run on a Ray started as ``studio up`` starts it:
the session's Ray has no ``actors._preload`` (its workers save coverage
instead), so each such case runs a Ray of its own in a child process, with
the switches in the environment its workers inherit (as a node's are) and
the checkout first on their path (the preload runs before a worker has a
job). Those cases also show the node prepared before its first sandbox: the
manager's preparation writes the standby hint when the service starts on
the node, so the spares hold a standby before any sandbox has run there.

The warm pool runs against the fake cluster: what matters is what the
manager asks the raylet for.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from actors import _standby
from actors.manager import ManagerTimeouts, StudioManager
from studio.config import StudioSettings
from studio.state import SandboxState
from tests.actors.conftest import TEMPLATE, UI_KIT, free_base
from tests.actors.fake_backend import FakeBackend, node
from tests.actors.test_standby import worker
from tests.support.gitrepo import make_repo, repo_from_dir
from tests.support.procs import ends_within

__all__ = ["worker"]  # a fixture of test_standby, used below

ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT = 300

# What every case's script starts with, then the case's own run(), then _MAIN.
_HEADER = textwrap.dedent(
    """
    import json, shutil, sys, tempfile, time
    from pathlib import Path
    import psutil, ray
    from actors._prestart import RAY_SYSTEM_CONFIG
    from studio.naming import ACTOR_NAMESPACE

    def descendants(marker):
        found = []
        for proc in psutil.Process().children(recursive=True):
            try:
                if any(marker in part for part in proc.cmdline()):
                    found.append(proc)
            except psutil.Error:
                pass
        return found
    """
)

# A Ray of its own, started as studio up starts it (workers preload actors._preload).
_MAIN = textwrap.dedent(
    """
    temp_dir = tempfile.mkdtemp(prefix="rw-", dir="/tmp")
    ray.init(address="local", num_cpus=2, resources={"sandbox_slot": 4}, include_dashboard=False,
             log_to_driver=False, namespace=ACTOR_NAMESPACE, _temp_dir=temp_dir,
             _system_config=RAY_SYSTEM_CONFIG)
    try:
        run()
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        # A standby ends with its worker (its stdin closes): wait for every one.
        deadline = time.monotonic() + 30
        while descendants("standby.mjs") and time.monotonic() < deadline:
            time.sleep(0.2)
    """
)

# The service's first sandbox on the node, right after the repository's registration.
_FIRST_SANDBOX = textwrap.dedent(
    """
    import urllib.request
    from actors._sandbox_worker import sandbox_runtime_env
    from actors.handles import kill_manager, sandbox_handle, start_manager
    from studio.config import StudioSettings
    from studio.viewer import viewer_token

    state, origin, base = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])

    # A sandbox worker's runtime env: only such workers run the preload's work.
    @ray.remote(num_cpus=0, runtime_env=sandbox_runtime_env())
    def loaded():
        return "actors.sandbox_actor" in sys.modules

    def wait(what, check, timeout=120):
        deadline = time.monotonic() + timeout
        while not (found := check()):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} after {timeout} s")
            time.sleep(0.2)
        return found

    def run():
        # The switches come from the environment, as every worker of the node reads them.
        settings = StudioSettings(
            state_dir=state, template_dir=Path(sys.argv[4]), vite_port=base, vite_port_count=20,
            host="127.0.0.1", public_host="127.0.0.1", repo_roots=[origin.parent],
            warm_workers=1, health_check_interval=2.0, admin_token="admin-switches")
        manager = start_manager(settings)
        try:
            record = ray.get(manager.register_repository.remote("ui-kit", path=str(origin)))
            node = ray.get_runtime_context().get_node_id()

            def prepared():
                status = ray.get(manager.health.remote())["preparation"].get(node, {})
                return status if status.get("ui-kit") not in (None, "preparing") else None

            print("PREPARED", json.dumps(wait("preparation", prepared)))
            from actors._prestart import idle_workers

            standbys = (settings.worker_preload and settings.vite_standby
                        and not settings.boundary().enforced)
            if standbys:
                # Every spare (a never-used worker no job claimed), booted before any
                # sandbox, holds a standby: the preparation wrote the hint.
                spares = wait("standbys", lambda: 0 < (idle_workers(node) or 0) <= len(
                    descendants("standby.mjs")) and idle_workers(node))
                print("SPARES WITH STANDBYS", spares)
            info = ray.get(manager.create_sandbox.remote("alice", record.id, {}), timeout=300)
            pid = ray.get(sandbox_handle(info.id).ping.remote())["pid"]
            # Vite is node, or the bwrap that runs it inside the OS boundary.
            vites = [p.cmdline() for p in psutil.Process(pid).children()
                     if p.name() in ("node", "bwrap")]
            print("VITE", json.dumps(vites))
            # As the API's renderer proxy asks: under the sandbox's base, with its secret.
            url = f"http://127.0.0.1:{info.port}/r/{info.id}/@vite/client"
            secret = viewer_token(ray.get(manager.viewer_secret.remote()), info.id)
            asked = urllib.request.Request(url, headers={"x-studio-proxy-secret": secret})
            with urllib.request.urlopen(asked, timeout=30) as reply:
                print("RENDERER", reply.status)
            ray.get(manager.teardown_sandbox.remote(info.id, None), timeout=120)
            print("STANDBYS LEFT", "-" if standbys else len(descendants("standby.mjs")))
            # Last, so that its worker changes nothing above: whether a new sandbox worker
            # (a spare the pool booted) has the sandbox modules imported already.
            print("LOADED" if ray.get(loaded.remote(), timeout=120) else "NOT LOADED")
        finally:
            kill_manager()
    """
)


def run_child(script: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def line(output: str, key: str) -> str:
    [found] = [row.removeprefix(key + " ") for row in output.splitlines() if row.startswith(key)]
    return found


@pytest.fixture
def first_sandbox_args(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """State dir (the session's install cache linked in), origin, Vite port base, template."""
    state = tmp_path / "state"
    state.mkdir()
    cache = tmp_path_factory.getbasetemp() / "install-cache"
    cache.mkdir(exist_ok=True)
    (state / "install-cache").symlink_to(cache, target_is_directory=True)
    origin = repo_from_dir(UI_KIT, tmp_path / "repos" / "ui-kit")
    return [str(state), str(origin), str(free_base(20)), str(TEMPLATE)]


@pytest.mark.slow
def test_with_the_standby_on_the_spares_hold_standbys_before_the_nodes_first_sandbox(
    first_sandbox_args: list[str],
) -> None:
    # No OS boundary: a standby runs Vite outside one, so none is used with one in force.
    isolation = {"COMPONENT_STUDIO_ISOLATION": "none"}
    output = run_child(_HEADER + _FIRST_SANDBOX + _MAIN, isolation, *first_sandbox_args)
    assert '"ui-kit": "ready"' in line(output, "PREPARED"), output
    assert int(line(output, "SPARES WITH STANDBYS")) >= 1
    # Which worker the raylet hands the actor is its choice (a worker it started for one
    # of the job's own leases has no standby): the sandbox works either way.
    [vite] = json.loads(line(output, "VITE"))
    assert vite[0] == "node", vite
    assert line(output, "RENDERER") == "200"
    assert "LOADED" in output.splitlines(), output  # the preload is on by default


@pytest.mark.slow
@pytest.mark.parametrize(
    "switches",
    [
        # The preload off starts no standby either: it is what starts one in a worker.
        {"COMPONENT_STUDIO_VITE_STANDBY": "false", "COMPONENT_STUDIO_ISOLATION": "none"},
        {"COMPONENT_STUDIO_WORKER_PRELOAD": "false", "COMPONENT_STUDIO_ISOLATION": "none"},
        # Inside the OS boundary, with standbys off too.
        {"COMPONENT_STUDIO_VITE_STANDBY": "false", "COMPONENT_STUDIO_ISOLATION": "bwrap"},
    ],
    ids=["standby-off", "preload-off", "bwrap-standby-off"],
)
def test_with_the_standby_off_the_sandbox_spawns_a_fresh_vite_and_no_worker_keeps_one(
    switches: dict[str, str], first_sandbox_args: list[str]
) -> None:
    output = run_child(_HEADER + _FIRST_SANDBOX + _MAIN, switches, *first_sandbox_args)
    assert '"ui-kit": "ready"' in line(output, "PREPARED"), output
    [vite] = json.loads(line(output, "VITE"))
    # A fresh `node .studio/serve.mjs` (under bwrap: its last words), not a standby's
    # `node --import vite ... standby.mjs`.
    assert vite[-2] == "node" and vite[-1].endswith("/.studio/serve.mjs"), vite
    assert "--import" not in vite
    assert (vite[0] == "bwrap") == (switches.get("COMPONENT_STUDIO_ISOLATION") == "bwrap")
    assert line(output, "RENDERER") == "200"
    assert line(output, "STANDBYS LEFT") == "0"
    # The preload switch decides whether a new sandbox worker imports the sandbox modules.
    preload = switches.get("COMPONENT_STUDIO_WORKER_PRELOAD", "true") == "true"
    assert ("LOADED" if preload else "NOT LOADED") in output.splitlines(), output


def test_a_standby_the_service_does_not_use_is_closed_at_the_claim(
    worker: Path, studio_dir: Path
) -> None:
    # A worker started one from its environment, the service's own settings say no
    # (vite_standby=false): the sandbox actor closes it instead of running Vite through it.
    _standby.remember(TEMPLATE, studio_dir)
    started = _standby.prestart()
    assert started is not None and started.alive()
    assert _standby.claim(use=False) is None
    assert ends_within(started.pid)
    assert _standby.claim() is None


async def test_warm_workers_zero_asks_the_raylet_for_no_spare_ever(tmp_path: Path) -> None:
    settings = StudioSettings(
        state_dir=tmp_path / "state", repo_roots=[tmp_path / "repos"], warm_workers=0
    )
    origin = make_repo(tmp_path / "repos" / "ui", {"src/Button.tsx": "export {}\n"})
    backend = FakeBackend([node("n1"), node("n2")])
    # Even a raylet that cannot count (which gets one spare per fill when the pool is on).
    backend.idle = None
    manager = StudioManager(settings, backend, timeouts=ManagerTimeouts(spare_delay=0))
    try:
        repository = await manager.register_repository("ui", path=str(origin))
        await manager.reconcile()
        sandbox = await manager.create_sandbox("alice", repository.id, {})
        assert sandbox.status is SandboxState.RUNNING
        await manager.reconcile()
        await manager.teardown_sandbox(sandbox.id)
        await manager.reconcile()
        await asyncio.sleep(0.3)  # past every fill the pool would have scheduled
        assert backend.prestarts == []
    finally:
        await manager.stop_preparing()
        manager.close()


@pytest.mark.slow
def test_inside_the_boundary_no_worker_keeps_a_standby_and_the_sandbox_starts_its_own(
    first_sandbox_args: list[str],
) -> None:
    # A spare's standby would run Vite outside the boundary: the sandbox starts one
    # inside its own, on its worktree (studio.sandbox.sandbox, _start_bounded_standby).
    isolation = {"COMPONENT_STUDIO_ISOLATION": "bwrap"}
    output = run_child(_HEADER + _FIRST_SANDBOX + _MAIN, isolation, *first_sandbox_args)
    assert '"ui-kit": "ready"' in line(output, "PREPARED"), output
    [vite] = json.loads(line(output, "VITE"))
    assert vite[0] == "bwrap" and vite[-1].endswith("/standby.mjs"), vite
    assert "--import" in vite
    assert line(output, "RENDERER") == "200"
    assert line(output, "STANDBYS LEFT") == "0"
