"""Where a create's time goes: ``python -m benchmarks.profile [--creates N]``.

Starts the service as the harness does, makes N sandboxes one after the other
(the first is dropped as cold), and splits each create using Ray's own task
timeline (``ray.timeline()``: the manager's ``create_sandbox``, the sandbox
actor's ``__init__`` and ``setup``), the state changes Ray records for the
actor's creation task (submitted, worker leased: ``actor_lease``; from there to
``__init__`` is ``actor_load``, the worker loading the actor class and its
imports) and the sandbox's status events (STARTING and RUNNING, stamped by the
sandbox itself). Prints one line per create and the medians; ``--py-spy`` also
records the manager's worker with py-spy (collapsed stacks, to ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._sandbox_events import creation_states, status_events
from benchmarks.context import RunContext
from benchmarks.service import BenchService, service
from benchmarks.stats import summarize

__all__ = ["main", "split_create"]


def _task_spans(events: list[dict[str, Any]], wall0: float) -> dict[str, tuple[float, float]]:
    """First span per task name (seconds after ``wall0``); timeline ``ts`` is µs since epoch."""
    spans: dict[str, tuple[float, float]] = {}
    for event in events:
        category = str(event.get("cat", ""))
        if event.get("ph") != "X" or "dur" not in event or not category.startswith("task::"):
            continue
        start = float(event["ts"]) / 1e6 - wall0
        if start < -1:
            continue
        key = category.removeprefix("task::")
        if key not in spans:
            spans[key] = (start, start + float(event["dur"]) / 1e6)
    return spans


def _status_times(sandbox_id: str, wall0: float) -> dict[str, float]:
    """When the sandbox first reported each status."""
    found: dict[str, float] = {}
    for payload, stamp in status_events(sandbox_id, wall0):
        found.setdefault(str(payload.get("status")), stamp)
    return found


def split_create(bench: BenchService) -> dict[str, float]:
    """One create, split into the phases the timeline and the status events show."""
    import ray

    wall0 = time.time()
    mono0 = time.monotonic()
    created = bench.create()
    total = created.ready - mono0
    spans = _task_spans(ray.timeline(), wall0)
    status = _status_times(created.sandbox_id, wall0)
    creation = next((v for k, v in creation_states(wall0).items() if created.sandbox_id in k), {})
    bench.delete(created.sandbox_id)
    row = {"total": total, "response": created.responded - mono0}
    manager = spans.get("ManagerActor.create_sandbox")
    init = next((v for k, v in spans.items() if "SandboxActor.__init__" in k), None)
    setup = spans.get("SandboxActor.setup")
    if manager:
        row["to_manager"] = manager[0]
    if manager and init:
        row["manager_to_actor_init"] = init[0] - manager[0]
        row["actor_init"] = init[1] - init[0]
    submitted, leased = creation.get("PENDING_NODE_ASSIGNMENT"), creation.get("RUNNING")
    if manager and submitted is not None:
        row["manager_to_submit"] = submitted - manager[0]
    if submitted is not None and leased is not None:
        row["actor_lease"] = leased - submitted
    if init and leased is not None:
        row["actor_load"] = init[0] - leased
    if init and setup:
        row["init_to_setup"] = setup[0] - init[1]
    if setup:
        row["setup_task"] = setup[1] - setup[0]
    if "starting" in status and "running" in status:
        row["starting_to_running"] = status["running"] - status["starting"]
    if manager:
        row["manager_to_response"] = row["response"] - manager[1]
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the profile and print the split of each warm create."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--creates", type=int, default=6)
    parser.add_argument("--py-spy", action="store_true", help="record the manager with py-spy")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-profile.txt"))
    args = parser.parse_args(argv)
    rows = []
    with RunContext(quick=False) as ctx:
        bench = service(ctx)
        recorder = None
        if args.py_spy:
            import ray

            from actors.handles import get_manager

            pid = ray.get(get_manager().pid.remote())
            recorder = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--format",
                    "raw",
                    "-r",
                    "200",
                    "--idle",
                    "-p",
                    str(pid),
                    "-o",
                    str(args.out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        try:
            for index in range(args.creates):
                row = split_create(bench)
                print(
                    ("cold " if index == 0 else "warm ")
                    + "  ".join(f"{k}={v:.3f}" for k, v in row.items()),
                    flush=True,
                )
                if index:
                    rows.append(row)
        finally:
            if recorder is not None:
                with contextlib.suppress(ProcessLookupError):
                    recorder.send_signal(2)
                recorder.wait(timeout=30)
    keys = sorted({key for row in rows for key in row})
    for key in keys:
        values = [row[key] for row in rows if key in row]
        print(f"median {key:22} {summarize(values)['median']:.3f} s  (n={len(values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
