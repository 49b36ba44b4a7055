"""The burst accounting of the concurrent-creates scenario: process kinds, timeline, CPU.

Real processes only: the CPU account is checked on a child that burns CPU,
the classification and the timeline arithmetic are pure.
"""

from __future__ import annotations

import subprocess
import sys

from benchmarks.burst_timeline import booting_at_once, timeline_figures
from benchmarks.cpu_account import CpuAccount, classify, start_time_skew


def test_processes_are_classified_by_their_ray_title_or_command() -> None:
    assert classify("python", ["ray::SandboxActor.setup"]) == "sandbox_worker"
    assert classify("python", ["ray::IDLE"]) == "idle_worker"
    assert classify("python", ["ray::ManagerActor.create_sandbox"]) == "manager"
    assert classify("python", ["ray::ServeReplica:default:ComponentStudioAPI"]) == "serve"
    assert classify("python", ["ray::ProxyActor"]) == "serve"
    assert classify("node", ["node", "/x/.studio/node_modules/vite/bin/vite.js"]) == "vite"
    assert classify("esbuild", ["/x/esbuild", "--service=0.25.0"]) == "vite"
    assert classify("raylet", ["/ray/core/src/ray/raylet/raylet", "--node-id=1"]) == "ray_system"
    assert classify("gcs_server", ["/ray/gcs_server"]) == "ray_system"
    assert classify("python", ["python", "-m", "benchmarks"], is_root=True) == "driver"
    assert classify("cat", ["cat"]) == "other"


def test_workers_booting_at_once_counts_overlaps_of_start_to_lease() -> None:
    rows = [
        {"worker_started": 0.0, "leased": 2.0},
        {"worker_started": 1.0, "leased": 3.0},
        {"worker_started": 2.0, "leased": 4.0},  # starts as the first is leased: not three
        {"worker_started": -1.0, "leased": 0.5},  # a spare: it did not boot in the burst
    ]
    assert booting_at_once(rows) == 2
    figures = timeline_figures(rows)
    assert figures["spares_used"] == 1
    assert figures["worker_boot_p50_s"] == 2.0
    assert figures["t_leased_max_s"] == 4.0


def test_cpu_of_a_live_child_is_counted_by_kind() -> None:
    account = CpuAccount(interval=0.05)
    account.start()
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
    child = subprocess.Popen(
        [sys.executable, "-c", burn + "print(flush=True)\ninput()\n"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        child.stdout.readline()  # it burnt its CPU and waits
        report = account.stop()
    finally:
        child.communicate("\n", timeout=10)
    assert report.by_kind["other"] >= 0.25
    assert report.machine_busy_s > 0.0
    figures = report.figures(creates=2)
    assert figures["cpu_lower_bound_s"] == round(report.total_s / report.cores, 2)
    assert figures["cpu_per_create_other_s"] >= 0.12


def test_process_start_times_are_put_on_the_wall_clock() -> None:
    # psutil's start times rest on a boot time in whole seconds: at most a second off.
    assert abs(start_time_skew()) < 1.5
