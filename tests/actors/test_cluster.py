"""Head + 2 nodes: sandboxes spread, and a removed node's sandbox comes back elsewhere.

The scenario (``cluster_scenario.py``) needs a Ray of its own and a process
can connect to one Ray only, while this session holds the local one: so it runs
in a child process, which starts and shuts down its ``Cluster`` itself. The
test checks the child's findings and that none of its processes is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.actors.conftest import ROOT, processes_under

SCENARIO_TIMEOUT = 480


def test_removed_node_sandbox_recovers_on_a_surviving_node(
    tmp_path: Path, install_cache: Path
) -> None:
    workdir = tmp_path / "cluster"
    workdir.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.actors.cluster_scenario", str(workdir), str(install_cache)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "RAY_DEDUP_LOGS": "0"},
    )
    try:
        out, err = child.communicate(timeout=SCENARIO_TIMEOUT)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        pytest.fail(f"the cluster scenario hung; its stderr ends:\n{err[-4000:]}")
    assert child.returncode == 0, f"scenario failed:\n{err[-6000:]}"
    findings = json.loads(out.strip().splitlines()[-1])
    assert len(set(findings["spread"])) == 2
    assert findings["commit_kept"] is True
    # On a worker node the renderer is at the node's address, not the head's public_host.
    assert not findings["renderer_url"].startswith("http://localhost:"), findings
    assert findings["answered_pushed"] == [True] * 10
    # Nothing of the scenario's cluster or sandboxes outlives it.
    deadline = time.monotonic() + 20
    while (left := processes_under(workdir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, [p.pid for p in left]
    descendants = [
        p for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE
    ]
    assert not any(p.pid == child.pid for p in descendants)
