"""One node's orphan sweep: what sandboxes that no longer live left on this node.

Runs where the files are: the cleanup job sends one task per alive node, and
``studio up`` runs it on its own node after shutting down. Given the ids of
the sandboxes that still live (and the ids the registry knows at all), it

1. kills Vite process groups whose pid records (``<state>/run/*.json``) name a
   sandbox that is gone,
2. removes worktree directories (``<state>/worktrees/<id>``, ``.studio/``
   inside) of sandboxes that are gone, through their mirror so git forgets them,
3. prunes stale ``git worktree`` entries in every mirror.

It never deletes a branch, a ref or a commit: the mirrors keep everything the
sandboxes committed. An id the registry has never heard of may belong to a
sandbox being created this instant, so such leftovers are only touched once
older than ``grace_seconds``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import socket
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from studio.errors import StudioError
from studio.git import Mirror
from studio.layout import StateLayout
from studio.process import reap_orphans

__all__ = ["NodeSweep", "sweep_node"]

logger = logging.getLogger(__name__)

_SANDBOX_ID = re.compile(r"sb_[a-z0-9]{6,32}")
_GITDIR = re.compile(r"^gitdir:\s*(.+?)\s*$", re.MULTILINE)


@dataclass
class NodeSweep:
    """What one node's sweep found (dry run) or removed, and what it could not."""

    node: str
    state_dir: str
    dry_run: bool
    processes: list[dict[str, Any]] = field(default_factory=list)
    worktrees: list[str] = field(default_factory=list)
    studio_dirs: list[str] = field(default_factory=list)
    stale_entries: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly summary."""
        return asdict(self)


def _sandbox_of(name: str) -> str | None:
    match = _SANDBOX_ID.search(name)
    return match.group(0) if match else None


def _young(path: Path, grace_seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < grace_seconds
    except FileNotFoundError:
        return False


def _record_alive(record: dict[str, Any]) -> bool:
    """Whether the recorded leader (pid + create time) or any of its group still runs."""
    try:
        pid, created = int(record["pid"]), float(record["create_time"])
    except (KeyError, TypeError, ValueError):
        return False
    with contextlib.suppress(psutil.Error):
        return abs(psutil.Process(pid).create_time() - created) < 0.01
    return False


def _sweep_processes(layout: StateLayout, gone: _Gone, report: NodeSweep, dry_run: bool) -> None:
    if not layout.run.is_dir():
        return
    for pid_file in sorted(layout.run.glob("*.json")):
        try:
            record = json.loads(pid_file.read_text())
        except (OSError, ValueError):
            record = {}
        sandbox_id = _sandbox_of(pid_file.name) or _sandbox_of(str(record.get("cwd", "")))
        if sandbox_id is None or not gone(sandbox_id, pid_file):
            continue
        entry = {"sandbox_id": sandbox_id, "pid": record.get("pid"), "file": str(pid_file)}
        alive = _record_alive(record)
        entry["alive"] = alive
        if dry_run:
            report.processes.append(entry)
            continue
        try:
            reap_orphans(pid_file)
        except OSError as exc:
            report.errors.append(f"could not kill the processes of {pid_file}: {exc}")
            continue
        report.processes.append(entry)


def _mirror_of(worktree: Path, layout: StateLayout) -> Path | None:
    """The bare mirror a worktree belongs to, from its ``.git`` file."""
    try:
        match = _GITDIR.search((worktree / ".git").read_text())
    except OSError:
        return None
    if match is None:
        return None
    # <mirror>/worktrees/<name>: the mirror is two levels up.
    mirror = Path(match.group(1)).parent.parent
    return mirror if mirror.is_dir() else None


def _sweep_worktrees(layout: StateLayout, gone: _Gone, report: NodeSweep, dry_run: bool) -> None:
    if not layout.worktrees.is_dir():
        return
    for directory in sorted(layout.worktrees.iterdir()):
        sandbox_id = _sandbox_of(directory.name)
        if sandbox_id != directory.name:
            report.skipped.append(f"{directory}: not named like a sandbox; left alone")
            continue
        if not gone(sandbox_id, directory):
            continue
        studio_dir = directory / ".studio"
        if studio_dir.exists():
            report.studio_dirs.append(str(studio_dir))
        if dry_run:
            report.worktrees.append(str(directory))
            continue
        try:
            mirror = _mirror_of(directory, layout)
            if mirror is not None:
                Mirror(mirror, "").remove_worktree(directory)
            if directory.exists():
                # Not (or no longer) a worktree of any mirror: plain files, nothing of git's.
                shutil.rmtree(directory)
        except (StudioError, OSError) as exc:
            report.errors.append(f"could not remove {directory}: {exc}")
            continue
        report.worktrees.append(str(directory))


def _stale_entries(layout: StateLayout, report: NodeSweep) -> dict[Path, list[str]]:
    """Per mirror, its worktree entries whose directory is gone."""
    stale: dict[Path, list[str]] = {}
    if not layout.mirrors.is_dir():
        return stale
    for path in sorted(layout.mirrors.glob("*.git")):
        if not path.is_dir():
            continue
        try:
            gone = [str(p) for p in Mirror(path, "").list_worktrees() if not p.exists()]
        except StudioError as exc:
            report.errors.append(f"could not list the worktrees of {path}: {exc}")
            continue
        if gone:
            stale[path] = gone
    return stale


def _prune(stale: dict[Path, list[str]], report: NodeSweep, dry_run: bool) -> None:
    for path, entries in stale.items():
        if not dry_run:
            try:
                Mirror(path, "").prune()
            except StudioError as exc:
                report.errors.append(f"could not prune the worktrees of {path}: {exc}")
                continue
        report.stale_entries += entries


class _Gone:
    """Whether a sandbox's leftovers may go: not live, and known or old enough."""

    def __init__(self, live: Collection[str], known: Collection[str], grace: float, r: NodeSweep):
        self.live, self.known, self.grace, self.report = set(live), set(known), grace, r

    def __call__(self, sandbox_id: str, path: Path) -> bool:
        if sandbox_id in self.live:
            return False
        if sandbox_id not in self.known and _young(path, self.grace):
            self.report.skipped.append(f"{path}: unknown sandbox, younger than the grace period")
            return False
        return True


def sweep_node(
    state_dir: Path,
    live: Collection[str],
    *,
    known: Collection[str] = (),
    dry_run: bool = False,
    grace_seconds: float = 600.0,
    node: str | None = None,
) -> NodeSweep:
    """Sweep this node's ``state_dir`` of what sandboxes not in ``live`` left.

    ``known`` are the ids the registry has records of (live or ended); others
    are only touched once older than ``grace_seconds``. ``dry_run`` reports
    what would go and changes nothing.
    """
    layout = StateLayout(Path(state_dir))
    report = NodeSweep(node=node or socket.gethostname(), state_dir=str(state_dir), dry_run=dry_run)
    gone = _Gone(live, known, grace_seconds, report)
    # Listed before anything is removed: removing a worktree prunes its mirror too.
    stale = _stale_entries(layout, report)
    # Processes first: a Vite runs inside the worktree it would otherwise hold open.
    _sweep_processes(layout, gone, report, dry_run)
    _sweep_worktrees(layout, gone, report, dry_run)
    _prune(stale, report, dry_run)
    logger.info(
        "node swept",
        extra={
            "node": report.node,
            "dry_run": dry_run,
            "processes": len(report.processes),
            "worktrees": len(report.worktrees),
            "stale_entries": len(report.stale_entries),
            "errors": len(report.errors),
        },
    )
    return report
