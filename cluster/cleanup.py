"""The cleanup job: idle and failed sandboxes torn down, orphans removed on every node.

Run it on a cluster with::

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m cluster.cleanup [--idle-hours N] [--dry-run]

(with Ray's token auth on, export ``RAY_AUTH_MODE=token`` first, as for any
``ray`` command). It

1. asks the manager for every sandbox, the held ones (``ready_sandboxes``)
   included; tears down, through the manager, the FAILED ones and users'
   sandboxes inactive for longer than ``--idle-hours`` (default: the
   service's ``timeout_hours``). A held sandbox waits for a create by design:
   it stays (the manager replaces one whose branch moved);
2. kills named ``sandbox:*`` actors the registry has no live sandbox for;
3. runs :func:`cluster.sweep.sweep_node` on every alive node (one task pinned
   to each): Vite processes, worktrees and ``.studio/`` dirs of sandboxes that
   are gone, stale ``git worktree`` entries.

Branches and commits are never deleted. It prints a JSON summary and exits 1
when something could not be cleaned (2 when it cannot reach the service).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cluster.sweep import sweep_node
from studio.config import load_settings
from studio.errors import StudioError
from studio.models import SandboxInfo
from studio.naming import ACTOR_NAMESPACE, MANAGER_ACTOR_NAME, READY_OWNER, SANDBOX_ID_PATTERN
from studio.state import TERMINAL_STATES, SandboxState

__all__ = ["CleanupPlan", "main", "plan_teardowns", "run_cleanup"]

_SANDBOX_PREFIX = "sandbox:"
CALL_TIMEOUT = 120.0
# Starting ones may be in a long first install; the manager fails those that hang.
_CULLABLE = frozenset({SandboxState.RUNNING, SandboxState.RESTARTING})
NODE_TIMEOUT = 300.0


class CleanupPlan:
    """Which sandboxes to tear down and which still count as live, decided purely."""

    def __init__(self, teardown: dict[str, str], live: set[str], known: set[str]) -> None:
        self.teardown = teardown
        self.live = live
        self.known = known


def plan_teardowns(
    sandboxes: Sequence[SandboxInfo], *, idle_seconds: float, now: datetime
) -> CleanupPlan:
    """FAILED and idle sandboxes go (id -> reason); the other non-ended ones are live.

    A held sandbox (nobody's yet, :mod:`actors._ready`) is never idle: its last
    activity is its setup, and waiting is what it is for.
    """
    teardown: dict[str, str] = {}
    live: set[str] = set()
    for sandbox in sandboxes:
        if sandbox.status in TERMINAL_STATES:
            continue
        idle = (now - sandbox.last_activity).total_seconds()
        held = sandbox.owner == READY_OWNER
        if sandbox.status is SandboxState.FAILED:
            teardown[sandbox.id] = "failed"
        elif sandbox.status in _CULLABLE and idle > idle_seconds and not held:
            teardown[sandbox.id] = f"idle for {idle / 3600:.2f} h"
        else:
            live.add(sandbox.id)
    return CleanupPlan(teardown, live, {s.id for s in sandboxes})


@ray.remote(num_cpus=0, max_retries=0)
def _sweep_task(
    state_dir: str | None,
    live: list[str],
    known: list[str],
    dry_run: bool,
    grace_seconds: float,
    node_id: str,
) -> dict[str, Any]:
    directory = Path(state_dir) if state_dir else load_settings().state_dir
    report = sweep_node(
        directory, live, known=known, dry_run=dry_run, grace_seconds=grace_seconds, node=node_id
    )
    return report.as_dict()


def _manager() -> Any:
    try:
        return ray.get_actor(MANAGER_ACTOR_NAME, namespace=ACTOR_NAMESPACE)
    except ValueError as exc:
        raise StudioError(
            f"no {MANAGER_ACTOR_NAME!r} actor in namespace {ACTOR_NAMESPACE!r}: is Component "
            "Studio deployed on this cluster (`studio up` or `serve deploy`)?"
        ) from exc


def _cause(exc: BaseException) -> BaseException:
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _sandbox_actors() -> list[str]:
    ids = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = str(entry["name"])
        if entry["namespace"] == ACTOR_NAMESPACE and name.startswith(_SANDBOX_PREFIX):
            sandbox_id = name.removeprefix(_SANDBOX_PREFIX)
            if SANDBOX_ID_PATTERN.fullmatch(sandbox_id):
                ids.append(sandbox_id)
    return sorted(ids)


def _state_dir(manager: Any, explicit: str | None) -> str | None:
    """--state-dir, else the manager's (the registry lives at its root), else each node's env."""
    if explicit:
        return explicit
    try:
        health = ray.get(manager.health.remote(), timeout=CALL_TIMEOUT)
        return str(Path(health["registry"]).parent)
    except Exception:
        return None


def run_cleanup(
    *,
    idle_hours: float | None = None,
    dry_run: bool = False,
    state_dir: str | None = None,
    grace_seconds: float = 600.0,
) -> dict[str, Any]:
    """One cleanup pass on the connected cluster; the JSON summary (``errors`` lists failures)."""
    manager = _manager()
    hours = idle_hours if idle_hours is not None else load_settings().timeout_hours
    # The held ones too: their actors, worktrees and Vites are not orphans.
    sandboxes: list[SandboxInfo] = ray.get(
        manager.list_sandboxes.remote(None, True, True), timeout=CALL_TIMEOUT
    )
    plan = plan_teardowns(sandboxes, idle_seconds=hours * 3600, now=datetime.now(UTC))
    summary: dict[str, Any] = {
        "dry_run": dry_run,
        "idle_hours": hours,
        "sandboxes": len(sandboxes),
        "torn_down": [],
        "actors_killed": [],
        "nodes": [],
        "errors": [],
    }
    errors: list[str] = summary["errors"]
    for sandbox_id, reason in sorted(plan.teardown.items()):
        entry = {"id": sandbox_id, "reason": reason}
        if not dry_run:
            try:
                ray.get(manager.teardown_sandbox.remote(sandbox_id, None), timeout=CALL_TIMEOUT)
            except Exception as exc:
                errors.append(f"teardown of {sandbox_id} failed: {_cause(exc)}")
                # Its leftovers stay untouched until a teardown succeeds.
                plan.live.add(sandbox_id)
                continue
        summary["torn_down"].append(entry)
    for sandbox_id in _sandbox_actors():
        if sandbox_id in plan.live:
            continue
        if not dry_run:
            try:
                handle = ray.get_actor(_SANDBOX_PREFIX + sandbox_id, namespace=ACTOR_NAMESPACE)
                ray.kill(handle, no_restart=True)
            except ValueError:
                continue  # it ended on its own meanwhile
            except Exception as exc:
                errors.append(f"could not kill the actor of {sandbox_id}: {exc}")
                continue
        summary["actors_killed"].append(sandbox_id)
    directory = _state_dir(manager, state_dir)
    nodes = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
    refs = {
        str(node["NodeID"]): _sweep_task.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(str(node["NodeID"]), soft=False)
        ).remote(
            directory,
            sorted(plan.live),
            sorted(plan.known),
            dry_run,
            grace_seconds,
            str(node["NodeID"]),
        )
        for node in nodes
    }
    for node_id, ref in refs.items():
        try:
            report = ray.get(ref, timeout=NODE_TIMEOUT)
        except Exception as exc:
            errors.append(f"sweep of node {node_id} failed: {_cause(exc)}")
            continue
        summary["nodes"].append(report)
        errors += [f"node {node_id}: {error}" for error in report["errors"]]
    return summary


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cluster.cleanup",
        description="Tear down idle and failed sandboxes; remove orphans on every node.",
    )
    parser.add_argument(
        "--idle-hours",
        type=float,
        default=None,
        help="idle past this -> torn down (default: COMPONENT_STUDIO_TIMEOUT_HOURS)",
    )
    parser.add_argument("--dry-run", action="store_true", help="report, change nothing")
    parser.add_argument("--address", default="auto", help="Ray address (default: auto)")
    parser.add_argument("--state-dir", default=None, help="state dir on every node")
    parser.add_argument(
        "--grace-seconds",
        type=float,
        default=600.0,
        help="leftovers of sandboxes the registry never heard of are kept this long",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m cluster.cleanup``; the exit code."""
    args = _parser().parse_args(argv)
    started = time.monotonic()
    connected_here = not ray.is_initialized()
    try:
        if connected_here:
            ray.init(address=args.address, namespace=ACTOR_NAMESPACE, log_to_driver=False)
        summary = run_cleanup(
            idle_hours=args.idle_hours,
            dry_run=args.dry_run,
            state_dir=args.state_dir,
            grace_seconds=args.grace_seconds,
        )
    except (StudioError, ConnectionError) as exc:
        print(json.dumps({"errors": [str(exc)]}, indent=2))
        return 2
    finally:
        if connected_here and ray.is_initialized():
            ray.shutdown()
    summary["seconds"] = round(time.monotonic() - started, 3)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
