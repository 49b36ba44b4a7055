"""Vite standbys in Ray's workers: a sandbox actor finds Vite already imported.

A sandbox actor's worker is usually a spare (:mod:`actors._prestart`) that
imported the actor's Python modules while it waited (:mod:`actors._preload`).
The preload also has it start a :class:`~studio.vite.standby.ViteStandby` here,
so the actor's Vite start skips Node importing Vite (what that saves:
docs/performance.md, Vite standby).

What to import from is the template's install-cache node_modules on the
node, which a hint file in Ray's session directory names, one per node
(:func:`remember_modules`). The node's preparation writes it when the
service starts on the node (:mod:`actors._node_prep`), before any sandbox:
otherwise the spares of a burst that is the node's first work would all
start their Vites cold. Each sandbox actor writes it again after its setup
(:func:`remember`: the real path of its ``.studio/node_modules``). Workers
started later read it (:func:`prestart`); a spare that booted before it was
written (the warm pool fills right after the service starts) waits for it
and starts its standby then.

Only workers started for sandbox actors start a standby (the preload checks,
:mod:`actors._sandbox_worker`), and Ray gives such a worker nothing but a
sandbox actor. Should one still be given other work (a task with the same
runtime env), its standby is killed unless a sandbox actor claimed it
(:func:`claim`, the actor's first step) within :data:`GRACE_SECONDS` of the
work (:func:`watch_unclaimed`). A standby exits by itself when its worker
dies (its stdin closes).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import ray

from actors import ray_internals
from studio.paths import atomic_write
from studio.vite.standby import STANDBY_SCRIPT, ViteStandby

__all__ = [
    "GRACE_SECONDS",
    "await_hint",
    "claim",
    "hint_file",
    "prestart",
    "remember",
    "remember_modules",
    "watch_unclaimed",
]

logger = logging.getLogger(__name__)

# How long a worker that was given work keeps a standby no sandbox actor claimed.
GRACE_SECONDS = 30.0
_POLL_SECONDS = 0.5
# How often a spare without a hint looks for one (a stat a second).
_HINT_POLL_SECONDS = 1.0
_HINT_DIR = "component-studio"

_lock = threading.Lock()
# This worker's standby until a sandbox actor claims it.
_standby: ViteStandby | None = None
# The hint this process last wrote (an actor writes it once, not after every setup).
_remembered: dict[str, str] | None = None


def hint_file(session_dir: Path, node_id: str) -> Path:
    """Where the node's sandboxes say what its standbys import from."""
    return session_dir / _HINT_DIR / f"vite-standby-{node_id}.json"


def _here() -> tuple[Path, str] | None:
    """This process's Ray session directory and node id; None when it is not connected to Ray."""
    if not ray.is_initialized():
        return None
    context = ray.get_runtime_context()
    # Ray's session directory is the session's name under the node's temp dir.
    return Path(context.get_temp_dir()) / context.get_session_name(), context.get_node_id()


def remember(template_dir: Path, studio_dir: Path) -> None:
    """Have the node's next standbys import from ``studio_dir``'s template and node_modules."""
    remember_modules(template_dir, studio_dir / "node_modules")


def remember_modules(template_dir: Path, modules_dir: Path) -> None:
    """Have the node's next standbys import Vite from ``modules_dir`` (an install cache entry's)."""
    global _remembered
    try:
        modules = modules_dir.resolve(strict=True)
        here = _here()
    except Exception:
        logger.debug("no standby hint written", exc_info=True)
        return
    hint = {"template_dir": str(template_dir.resolve()), "modules_dir": str(modules)}
    if here is None or hint == _remembered:
        return
    try:
        atomic_write(hint_file(*here), json.dumps(hint), fsync=False)
    except OSError:
        logger.warning("cannot write the vite standby hint", exc_info=True)
        return
    _remembered = hint


def _read_hint(path: Path) -> tuple[Path, Path] | None:
    try:
        hint = json.loads(path.read_text())
        return Path(hint["template_dir"]), Path(hint["modules_dir"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("ignoring the unreadable vite standby hint %s", path, exc_info=True)
        return None


def _in_worker() -> bool:
    """Whether this process is a Ray worker (a driver that imports the preload is not)."""
    return ray_internals.is_worker_process()


def prestart() -> ViteStandby | None:
    """Start this worker's standby from its node's hint (called by the preload).

    Without a hint yet, a thread waits for one while the worker has no work.
    """
    here = _here() if _in_worker() else None
    if here is None:
        return None
    path = hint_file(*here)
    hint = _read_hint(path)
    if hint is None:
        threading.Thread(
            target=await_hint, args=(path, _has_work), name="vite-standby-hint", daemon=True
        ).start()
        return None
    return _start(*hint)


def await_hint(path: Path, has_work: Callable[[], bool], poll: float = _HINT_POLL_SECONDS) -> None:
    """Start a standby once ``path`` exists, unless ``has_work()`` turned true first."""
    while not has_work():
        hint = _read_hint(path)
        if hint is not None:
            _start(*hint)
            return
        time.sleep(poll)


def _start(template_dir: Path, modules_dir: Path) -> ViteStandby | None:
    global _standby
    # A hint outlives what it names (a test's temporary state dir, an old template).
    if not (modules_dir / "vite").is_dir() or not (template_dir / STANDBY_SCRIPT).is_file():
        return None
    try:
        standby = ViteStandby.start(template_dir, modules_dir)
    except OSError:
        logger.warning("cannot start a vite standby", exc_info=True)
        return None
    with _lock:
        previous, _standby = _standby, standby
    if previous is not None:
        previous.close()
    threading.Thread(
        target=watch_unclaimed,
        args=(standby, _has_work, GRACE_SECONDS),
        name="vite-standby-watch",
        daemon=True,
    ).start()
    return standby


def claim(*, use: bool = True) -> ViteStandby | None:
    """This worker's standby, now the caller's to use or close; None when there is none alive.

    ``use=False`` (the service's ``vite_standby`` is off) closes it and returns None.
    """
    global _standby
    with _lock:
        standby, _standby = _standby, None
    if standby is not None and (not use or not standby.alive()):
        standby.close()
        return None
    return standby


def _has_work() -> bool:
    """Whether this worker was given an actor, or a job's task."""
    context = ray.get_runtime_context()
    return context.get_actor_id() is not None or context.get_job_id() != ray.JobID.nil().hex()


def _drop(standby: ViteStandby) -> bool:
    """Close ``standby`` if it is still this worker's unclaimed one; whether it was."""
    global _standby
    with _lock:
        if _standby is not standby:
            return False
        _standby = None
    standby.close()
    return True


def watch_unclaimed(
    standby: ViteStandby,
    has_work: Callable[[], bool],
    grace: float,
    poll: float = _POLL_SECONDS,
) -> None:
    """Close ``standby`` unless claimed within ``grace`` s of ``has_work()`` turning true."""
    deadline: float | None = None
    while True:
        with _lock:
            if _standby is not standby:
                return  # claimed, or replaced
        if not standby.alive():
            _drop(standby)
            return
        if deadline is None and has_work():
            deadline = time.monotonic() + grace
        if deadline is not None and time.monotonic() >= deadline:
            if _drop(standby):
                logger.info("closed the vite standby no sandbox claimed (pid %d)", standby.pid)
            return
        time.sleep(poll)
