"""Pid records of supervised processes, and killing what an earlier incarnation left.

A record names the leader by pid AND create time, so a pid that was reused by
an unrelated process after a reboot or a long time is never killed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

__all__ = ["reap_orphans", "write_pid_record"]

logger = logging.getLogger(__name__)

# psutil create times of one process agree exactly; this absorbs float noise.
_CREATE_TIME_SLACK = 0.01
_POLL = 0.01


def write_pid_record(
    path: Path,
    *,
    pid: int,
    create_time: float | None,
    argv: Sequence[str],
    cwd: Path,
    name: str,
) -> None:
    """Record a session leader (pid = pgid) so :func:`reap_orphans` can find its group."""
    record = {
        "pid": pid,
        "pgid": pid,
        "create_time": create_time,
        "argv": list(argv),
        "cwd": str(cwd),
        "name": name,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed, so a reader never sees half a record.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _orphans(pid: int, pgid: int, created: float) -> tuple[bool, list[psutil.Process]] | None:
    """(leader alive, live members of the group), or ``None`` if the pid was reused."""
    leader_alive = False
    with contextlib.suppress(psutil.NoSuchProcess):
        if abs(psutil.Process(pid).create_time() - created) > _CREATE_TIME_SLACK:
            return None
        leader_alive = True
    members = []
    for proc in psutil.process_iter():
        # Members of that group were all created after its leader.
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.create_time() >= created - _CREATE_TIME_SLACK:
                members.append(proc)
    return leader_alive, [proc for proc in members if _alive(proc)]


def _signal_orphans(pgid: int | None, members: list[psutil.Process], sig: int) -> None:
    if pgid is not None:
        # Only with the leader verified alive: it pins the group id, and the group
        # signal also reaches what it forked since the scan.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        return
    for proc in members:
        # psutil re-checks each process's identity before signalling it.
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def _wait_gone(members: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    alive = [proc for proc in members if _alive(proc)]
    while alive and time.monotonic() < deadline:
        time.sleep(_POLL)
        alive = [proc for proc in alive if _alive(proc)]
    return alive


def reap_orphans(pid_file: Path, timeout: float = 3.0) -> bool:
    """Kill the process group an earlier incarnation recorded in ``pid_file``.

    Only if the recorded leader still exists with the recorded create time (a
    reused pid is left alone), or, if the leader is gone, the processes of its
    group created after it. SIGTERM, up to ``timeout`` s, then SIGKILL. The file
    is removed in every case. Returns whether anything was killed.
    """
    try:
        text = pid_file.read_text()
    except FileNotFoundError:
        return False
    try:
        record = json.loads(text)
        pid, pgid = int(record["pid"]), int(record["pgid"])
        created = float(record["create_time"])
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring malformed pid file %s: %s", pid_file, exc)
        pid_file.unlink(missing_ok=True)
        return False
    found = _orphans(pid, pgid, created)
    if found is None:
        logger.warning("pid %d of %s now belongs to another process; not killing", pid, pid_file)
        pid_file.unlink(missing_ok=True)
        return False
    leader_alive, members = found
    if members:
        logger.warning(
            "killing %d orphaned process(es) of group %d from %s", len(members), pgid, pid_file
        )
        _signal_orphans(pgid if leader_alive else None, members, signal.SIGTERM)
        survivors = _wait_gone(members, timeout)
        if survivors:
            _signal_orphans(None, survivors, signal.SIGKILL)
            _wait_gone(survivors, timeout)
    pid_file.unlink(missing_ok=True)
    return bool(members)
