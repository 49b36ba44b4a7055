"""The cleanup job through real ``ray job submit`` on a ``ray start --head`` cluster.

(The docs' cleanup commands run against ``studio up``'s own Ray in
tests/cli/test_up.py, in its demo's run.) The test starts
its own head (own temp dir, own ports, every process tagged
with an environment marker), runs ``studio up --address`` on it, creates a
sandbox through the CLI, plants what dead sandboxes leave, submits the job
through the dashboard's job API with Ray's token auth on, and checks: the idle
sandbox is torn down through the manager, the orphan worktrees and processes
are gone, the stale entry is pruned, every branch is kept. Then it stops
``studio up`` with SIGTERM and its own Ray by the pids carrying its marker
(never ``ray stop``, which would stop every cluster on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.cli.test_up import ROOT, UpProcess, cli, free_port, low_free_port
from tests.cluster.planting import plant
from tests.studio.test_sandbox_fixtures import (  # noqa: F401 (fixture)
    PORTS,
    free_base,
    install_cache,
)
from tests.support.gitrepo import git
from tests.support.user_shell import RAY, summary_of

pytestmark = [pytest.mark.slow]

MARKER = "COMPONENT_STUDIO_TEST_RAY_CLUSTER"


def marked(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(MARKER) == marker and proc.pid != os.getpid():
                found.append(proc)
    return found


def stop_marked(marker: str) -> None:
    """SIGTERM, then SIGKILL, every process of this test's own Ray cluster."""
    procs = marked(marker)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    # The Python ones end within 2 s; gcs_server, the raylet and the autoscaler's monitor
    # outlived SIGTERM by 20 s when measured, so a longer wait only delays their SIGKILL.
    _gone, alive = psutil.wait_procs(procs, timeout=3)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=15)
    deadline = time.monotonic() + 30
    while marked(marker) and time.monotonic() < deadline:
        for proc in marked(marker):
            with contextlib.suppress(psutil.Error):
                proc.kill()
        time.sleep(0.5)


@pytest.fixture
def head(tmp_path: Path, install_cache: Path) -> Iterator[dict[str, object]]:  # noqa: F811
    state = tmp_path / "state"
    state.mkdir()
    (state / "install-cache").symlink_to(install_cache, target_is_directory=True)
    temp_dir = tempfile.mkdtemp(prefix="rs-", dir="/tmp")
    marker = uuid.uuid4().hex
    env = {
        **os.environ,
        MARKER: marker,
        "RAY_AUTH_MODE": "token",
        "COMPONENT_STUDIO_STATE_DIR": str(state),
        "COMPONENT_STUDIO_VITE_PORT": str(free_base()),
        "COMPONENT_STUDIO_VITE_PORT_COUNT": str(PORTS),
    }
    env.pop("RAY_ADDRESS", None)
    try:
        # A loaded machine can miss `ray start`'s 30 s wait for its GCS: a
        # second try on fresh ports, after stopping what the first left.
        for attempt in range(2):
            gcs, dashboard = free_port(), free_port()
            start = [
                RAY, "start", "--head", f"--port={gcs}", f"--temp-dir={temp_dir}",
                "--include-dashboard=true", f"--dashboard-port={dashboard}",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--ray-client-server-port={free_port()}", "--num-cpus=2",
                '--resources={"sandbox_slot": 4}', "--disable-usage-stats",
            ]  # fmt: skip
            result = subprocess.run(start, env=env, capture_output=True, text=True, timeout=120)
            if result.returncode == 0:
                break
            stop_marked(marker)
            assert attempt == 0, result.stdout + result.stderr
        yield {"env": env, "gcs": gcs, "dashboard": dashboard, "state": state}
    finally:
        stop_marked(marker)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_cleanup_job_submitted_to_a_ray_start_cluster(head: dict, tmp_path: Path) -> None:
    env: dict[str, str] = head["env"]  # type: ignore[assignment]
    state: Path = head["state"]  # type: ignore[assignment]
    port = low_free_port()
    argv = [sys.executable, "-m", "cli.main", "up", "--address", f"127.0.0.1:{head['gcs']}"]
    up = UpProcess([*argv, "--port", str(port)], env, tmp_path / "up.stderr")
    planted = None
    try:
        up.wait_for("Press Ctrl-C", timeout=240)
        api, token = f"http://127.0.0.1:{port}", up.value("Admin token:")
        code, out = cli(api, token, "create", "--json")
        assert code == 0, out
        sandbox_id = json.loads(out)["sandbox_id"]
        worktree = state / "worktrees" / sandbox_id
        assert worktree.is_dir()
        planted = plant(state, tmp_path / "origin")

        job = subprocess.run(
            [RAY, "job", "submit", "--address", f"http://127.0.0.1:{head['dashboard']}", "--",
             sys.executable, "-m", "cluster.cleanup", "--idle-hours", "1e-9",
             "--grace-seconds", "0"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert job.returncode == 0, job.stdout + job.stderr
        summary = summary_of(job.stdout)
        assert summary["errors"] == []
        assert [t["id"] for t in summary["torn_down"]] == [sandbox_id]
        (node,) = summary["nodes"]
        planted_ids = {"sb_live000001", "sb_ended00001", "sb_unknown001", "sb_fresh00001"}
        assert {p["sandbox_id"] for p in node["processes"]} == planted_ids
        assert {Path(p).name for p in node["worktrees"]} == planted_ids
        assert node["stale_entries"] == [str(planted.stale)]

        code, out = cli(api, token, "show", sandbox_id, "--json")
        assert json.loads(out)["status"] == "stopped"
        assert not worktree.exists()
        for sandbox_id_ in planted_ids:
            assert not planted.worktrees[sandbox_id_].exists()
            assert not planted.alive(sandbox_id_)
        branch = f"design/studio-{sandbox_id[3:]}"
        assert git(state / "mirrors" / "ui-kit.git", "branch", "--list", branch).strip()
        for sandbox_id_ in planted.worktrees:
            assert planted.branch_exists(sandbox_id_)

        assert up.stop() == 0, up.log.read_text()[-4000:]
    finally:
        up.kill()
        if planted is not None:
            planted.close()
