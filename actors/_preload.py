"""Imported by every Ray worker as it starts; prepares only a sandbox actor's worker.

A sandbox actor's worker, even a spare one (:mod:`actors._prestart`), loads
the actor class when the actor arrives: it imports ``actors.sandbox_actor``
(pydantic models, the sandbox, git, Vite) and makes its serialization context
(it imports starlette and registers pydantic's and arrow's serializers). Both
sit between the actor's creation and its setup, on the path of every create
(what they cost: docs/performance.md, worker preload).

Ray's raylet setting ``preload_python_modules`` makes each new Python worker
import the modules it names before it waits for work
(``ray/_private/workers/default_worker.py``, ``--worker-preload-modules``):
naming this module there moves both costs into the spare's idle time. Ray is
started with it by ``studio up`` and the benchmarks
(:data:`actors._prestart.RAY_SYSTEM_CONFIG`); a cluster sets
``RAY_preload_python_modules=actors._preload`` in the environment of
``ray start`` on every node. Nothing else imports this module: importing it
is what it is for.

The preload then starts the worker's Vite standby, once the node has a hint
of what to import (:mod:`actors._standby`): Node imports Vite while the spare
waits too.

The switches ``worker_preload`` and ``vite_standby`` (``StudioSettings``)
are read from the worker's environment, which it inherits from whatever
started Ray on the node: with the first off the preload does nothing, with
the second it starts no standby, and neither with the ``isolation``
boundary in force (a standby would run Vite outside it).

Every worker of the node imports this module (the Serve controller, proxy and
replicas, the manager, job supervisors), but only a worker started for
sandbox actors does anything (:mod:`actors._sandbox_worker`): the others
import no more than this module and ``os``, and start no standby. A failure
is only logged: the actor's own import then raises it where its creator sees
it.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

from actors._sandbox_worker import is_sandbox_worker

if TYPE_CHECKING:
    from studio.config import StudioSettings

__all__ = ["preload"]

logger = logging.getLogger(__name__)

# What a sandbox actor's worker imports when it loads the actor class.
_SANDBOX_MODULES = ("actors.sandbox_actor",)


def _switches() -> StudioSettings | None:
    """The node's settings, from this worker's environment; None when they are invalid."""
    try:
        from studio.config import load_settings

        return load_settings()
    except Exception:
        logger.exception("cannot read the settings: the worker preloads nothing")
        return None


def preload() -> None:
    """Prepare a sandbox actor's worker: its modules, serialization context and Vite standby.

    Any other worker is left as it is. A sandbox worker says when its preload
    is over (:func:`actors.ray_internals.mark_preloaded`): the raylet counts
    the worker as idle before the preload runs, and the warm pool counts a
    spare as booted once its preload's CPU is spent too.
    """
    if not is_sandbox_worker():
        return
    switches = _switches()
    if switches is None or not switches.worker_preload:
        return
    try:
        _prepare(switches)
    finally:
        _mark_preloaded()


def _prepare(switches: StudioSettings) -> None:
    for name in _SANDBOX_MODULES:
        try:
            importlib.import_module(name)
        except Exception:
            logger.exception("preloading %s failed", name)
    try:
        from actors import ray_internals

        ray_internals.make_serialization_context()
    except Exception:
        logger.exception("preloading the serialization context failed")
    if not switches.vite_standby or switches.boundary().enforced:
        # A standby runs outside the OS boundary, so none with one in force
        # (studio.process.boundary): the Vite it would start runs repository code.
        return
    try:
        from actors import _standby

        _standby.prestart()
    except Exception:
        logger.exception("starting a vite standby failed")


def _mark_preloaded() -> None:
    """Say the preload is over, in a worker (a driver calling the preload has no spare to
    count); only logged when the GCS cannot be told."""
    try:
        from actors import ray_internals

        if ray_internals.is_worker_process():
            ray_internals.mark_preloaded()
    except Exception:
        logger.exception("saying the preload is over failed")


preload()
