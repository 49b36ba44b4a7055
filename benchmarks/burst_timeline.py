"""When each create of a burst reached each step, in seconds after the burst began.

Per sandbox: the manager submitted its actor to Ray (``submitted``), its
actor's worker process was started (``worker_started``; a
spare started before the burst shows a negative time), Ray leased it to the
actor (``leased``: the creation task's RUNNING state, from Ray's task events),
the actor's ``__init__`` ended (``init_done``), the setup reached each step
(the sandbox's own ``status`` events: ``mirror``, ``worktree``, ``install``,
``vite``), Vite's process was started (``vite_started``), the API answered
(``responded``) and the renderer served ``/@vite/client`` (``ready``).

:func:`timeline_figures` turns them into medians and maxima, and into how
many worker processes were booting at the same time at most (a process
counts from its start to its lease), which is what Ray's startup concurrency
limit bounds.
"""

from __future__ import annotations

from benchmarks._sandbox_events import creation_states, status_events
from benchmarks.cpu_account import start_time_skew
from benchmarks.service import BenchService, Created, is_vite
from benchmarks.stats import summarize

__all__ = ["PHASES", "booting_at_once", "sandbox_timeline", "timeline_figures"]

PHASES = (
    "submitted",
    "worker_started",
    "leased",
    "init_done",
    "mirror",
    "worktree",
    "install",
    "vite",
    "vite_started",
    "responded",
    "ready",
)


# The creation task's first states: the manager asked Ray for the actor.
_SUBMITTED_STATES = ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT")


def _status_steps(sandbox_id: str, wall0: float) -> dict[str, float]:
    """When the sandbox said it began each setup step (its first word of it)."""
    found: dict[str, float] = {}
    for payload, stamp in status_events(sandbox_id, wall0):
        if payload.get("step"):
            found.setdefault(str(payload["step"]), stamp)
    return found


def sandbox_timeline(
    bench: BenchService, created: list[Created], wall0: float, mono0: float
) -> list[dict[str, float]]:
    """One row of :data:`PHASES` (seconds after the burst began) per created sandbox."""
    creation = creation_states(wall0)
    # Process start times, on the clock of the other phases.
    proc_wall0 = wall0 + start_time_skew()
    rows = []
    for sandbox in created:
        row = {
            "responded": sandbox.responded - mono0,
            "ready": sandbox.ready - mono0,
        }
        worker, children = bench.processes(sandbox.sandbox_id)
        row["worker_started"] = worker.create_time() - proc_wall0
        vites = [c for c in children if is_vite(c)]
        if vites:
            row["vite_started"] = min(v.create_time() for v in vites) - proc_wall0
        states = next((v for k, v in creation.items() if sandbox.sandbox_id in k), {})
        submitted = [states[k] for k in _SUBMITTED_STATES if k in states]
        if submitted:
            row["submitted"] = min(submitted)
        if "RUNNING" in states:
            row["leased"] = states["RUNNING"]
        if "FINISHED" in states:
            row["init_done"] = states["FINISHED"]
        row.update(_status_steps(sandbox.sandbox_id, wall0))
        rows.append(row)
    return rows


def booting_at_once(rows: list[dict[str, float]]) -> int:
    """The most worker processes started during the burst and not yet leased, at any instant."""
    edges: list[tuple[float, int]] = []
    for row in rows:
        start, lease = row.get("worker_started"), row.get("leased")
        if start is None or lease is None or start < 0:
            continue
        edges += [(start, 1), (lease, -1)]
    most = current = 0
    # At equal times the lease (-1) comes first: a worker leased as another starts is not two.
    for _, step in sorted(edges):
        current += step
        most = max(most, current)
    return most


def timeline_figures(rows: list[dict[str, float]]) -> dict[str, float]:
    """Median and max of every phase, plus spares used and workers booting at once."""
    out: dict[str, float] = {}
    for phase in PHASES:
        values = [row[phase] for row in rows if phase in row]
        if values:
            out[f"t_{phase}_p50_s"] = round(summarize(values)["median"], 2)
            out[f"t_{phase}_max_s"] = round(max(values), 2)
    boots = [
        row["leased"] - row["worker_started"]
        for row in rows
        if "leased" in row and row.get("worker_started", -1.0) >= 0
    ]
    if boots:
        out["worker_boot_p50_s"] = round(summarize(boots)["median"], 2)
    out["spares_used"] = sum(1 for row in rows if row.get("worker_started", 0.0) < 0)
    out["workers_booting_at_once_max"] = booting_at_once(rows)
    return out
