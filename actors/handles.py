"""How other processes (Serve, the CLI, the cleanup job) reach the actors.

- :func:`start_manager` creates the manager, or returns the one already running.
- :func:`get_manager` / :func:`sandbox_handle` look actors up by name; sandbox
  handles are cached (a lookup is a round trip to the GCS), and
  :func:`forget_sandbox_handle` drops one that went stale (the manager may
  recreate a sandbox's actor under the same name).

What a failed call on these handles raised is translated by
:mod:`actors.ray_errors`.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from actors.manager_actor import ManagerActor, manager_actor_options
from studio.config import StudioSettings
from studio.errors import SandboxNotFound, ServiceUnavailable
from studio.naming import (
    ACTOR_NAMESPACE,
    MANAGER_ACTOR_NAME,
    sandbox_actor_name,
    validate_sandbox_id,
)

__all__ = [
    "forget_sandbox_handle",
    "get_manager",
    "kill_manager",
    "sandbox_handle",
    "start_manager",
]

# Handles are typed Any: Ray's ActorHandle[T] makes every ``handle.method`` Never
# to mypy, so ``handle.method.remote()`` would be unreachable code to it.
ActorHandle = Any

_cache_lock = threading.Lock()
_sandbox_handles: dict[str, ActorHandle] = {}


def start_manager(
    settings: StudioSettings,
    *,
    node_state_dirs: dict[str, str] | None = None,
    ping_timeout: float = 5.0,
    wait: bool = True,
) -> ActorHandle:
    """The manager actor: created with ``settings`` unless one is already running.

    ``node_state_dirs`` maps a node id to its own state dir (a test cluster's
    nodes share one disk; a real cluster's nodes each use ``settings.state_dir``).
    With ``wait`` the call returns once the manager answers.
    """
    handle: ActorHandle = ManagerActor.options(**manager_actor_options()).remote(  # type: ignore[attr-defined]
        settings.model_dump(mode="json"), node_state_dirs, ping_timeout
    )
    if wait:
        ray.get(handle.health.remote())
    return handle


def get_manager() -> ActorHandle:
    """The running manager; :class:`ServiceUnavailable` when there is none."""
    try:
        return ray.get_actor(MANAGER_ACTOR_NAME, namespace=ACTOR_NAMESPACE)
    except ValueError:
        raise ServiceUnavailable(
            "the Component Studio manager is not running: start it with `studio up`"
        ) from None


def kill_manager() -> None:
    """Stop the manager's loop, close its registry and kill it; nothing if none runs."""
    try:
        handle = ray.get_actor(MANAGER_ACTOR_NAME, namespace=ACTOR_NAMESPACE)
    except ValueError:
        return
    with contextlib.suppress(RayActorError, GetTimeoutError):
        ray.get(handle.shutdown.remote(), timeout=30)
    ray.kill(handle, no_restart=True)


def sandbox_handle(sandbox_id: str) -> ActorHandle:
    """The sandbox's actor (cached); :class:`SandboxNotFound` when there is none."""
    validate_sandbox_id(sandbox_id)
    with _cache_lock:
        cached = _sandbox_handles.get(sandbox_id)
    if cached is not None:
        return cached
    try:
        handle = ray.get_actor(sandbox_actor_name(sandbox_id), namespace=ACTOR_NAMESPACE)
    except ValueError:
        raise SandboxNotFound(f"no running sandbox {sandbox_id!r}", sandbox_id=sandbox_id) from None
    with _cache_lock:
        _sandbox_handles[sandbox_id] = handle
    return handle


def forget_sandbox_handle(sandbox_id: str) -> None:
    """Drop a cached handle (its actor died or was replaced)."""
    with _cache_lock:
        _sandbox_handles.pop(sandbox_id, None)
