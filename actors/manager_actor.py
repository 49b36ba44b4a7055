"""ManagerActor: the one detached ``studio-manager`` actor, pinned to the head node.

A Ray shell around :class:`actors.manager.StudioManager` plus its reconcile
loop (one pass every ``settings.health_check_interval``, and one at once when a
node with sandboxes dies, seen by a look at the nodes every
``settings.node_check_interval``; a pass that raises is logged and the loop
goes on). The registry lives in the head node's state dir,
so the actor is pinned there; Ray restarts it (``max_restarts=-1``) after its
worker dies, ``__init__`` reopens the registry and the first pass re-adopts
every live sandbox actor by name.

Read-only methods are retried by Ray through a restart; methods that change
things are not (a retried create would make a second sandbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import ray

from actors._ray_backend import RayBackend
from actors.manager import ManagerTimeouts, StudioManager
from studio.config import StudioSettings
from studio.models import FinalizeResult, SandboxInfo, UserInfo
from studio.naming import ACTOR_NAMESPACE, MANAGER_ACTOR_NAME
from studio.store import RepositoryRecord

__all__ = ["HEAD_NODE_RESOURCE", "ManagerActor", "manager_actor_options"]

logger = logging.getLogger(__name__)

# Every head node declares this resource; a sliver of it pins an actor there.
HEAD_NODE_RESOURCE = "node:__internal_head__"


def manager_actor_options() -> dict[str, Any]:
    """Ray options of the manager: named, detached, on the head node, always restarted."""
    return {
        "name": MANAGER_ACTOR_NAME,
        "namespace": ACTOR_NAMESPACE,
        "lifetime": "detached",
        "get_if_exists": True,
        "num_cpus": 0,
        "resources": {HEAD_NODE_RESOURCE: 0.001},
        "max_restarts": -1,
        "max_task_retries": 0,
        "max_concurrency": 1000,
    }


_RETRIED = ray.method(max_task_retries=-1)


@ray.remote
class ManagerActor:
    """The supervising manager; see the module docstring."""

    def __init__(
        self,
        settings: dict[str, Any],
        node_state_dirs: dict[str, str] | None = None,
        ping_timeout: float = 5.0,
    ) -> None:
        self._settings = StudioSettings.model_validate(settings)
        self._manager = StudioManager(
            self._settings,
            RayBackend(),
            node_state_dirs=node_state_dirs,
            timeouts=ManagerTimeouts(ping=ping_timeout),
        )
        reconstructed = ray.get_runtime_context().was_current_actor_reconstructed
        # Ray runs an async actor's __init__ on its event loop.
        loop = asyncio.get_running_loop()
        self._loop_task = loop.create_task(self._reconcile_loop())
        self._node_task = loop.create_task(self._node_loop())
        logger.info(
            "manager started",
            extra={"registry": str(self._manager.registry.path), "reconstructed": reconstructed},
        )

    async def _reconcile_loop(self) -> None:
        interval = self._settings.health_check_interval
        while True:
            try:
                await self._manager.reconcile()
            except Exception:
                logger.exception("reconcile pass failed")
            await asyncio.sleep(interval)

    async def _node_loop(self) -> None:
        interval = self._settings.node_check_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self._manager.check_nodes()
            except Exception:
                logger.exception("node check failed")

    # -- users --------------------------------------------------------------

    @_RETRIED
    async def viewer_secret(self) -> str:
        """The secret viewer tokens derive from and renderer tickets are signed with
        (Serve replicas: serve.renderer_proxy, serve.renderer_auth)."""
        return self._manager.accounts.viewer_secret

    @_RETRIED
    async def authenticate(self, token: str) -> UserInfo | None:
        """The user a bearer token belongs to, or None."""
        return self._manager.accounts.authenticate(token)

    @_RETRIED
    async def push_credential(self, sandbox_id: str) -> str | None:
        """The GitHub token for one push or pull request of a live sandbox (its actor asks)."""
        return self._manager.push_credential(sandbox_id)

    async def sandbox_busy(self, node_id: str) -> None:
        """A sandbox actor on ``node_id`` is answering edits (it does not wait for this):
        the node's warm pool boots no spare among them (actors._warm_pool)."""
        self._manager.warm_pool.activity(node_id)

    async def create_user(
        self, name: str, is_admin: bool = False, groups: list[str] | None = None
    ) -> tuple[UserInfo, str]:
        """A new user and their token (returned once)."""
        return self._manager.accounts.create_user(name, is_admin, groups or ())

    async def set_user_groups(self, name: str, groups: list[str]) -> UserInfo:
        """Replace a user's groups."""
        return self._manager.accounts.set_user_groups(name, groups)

    @_RETRIED
    async def list_users(self) -> list[UserInfo]:
        """Every user."""
        return self._manager.accounts.list_users()

    async def delete_user(self, name: str) -> None:
        """Remove a user."""
        self._manager.accounts.delete_user(name)

    # -- repositories -------------------------------------------------------

    async def register_repository(
        self,
        name: str,
        *,
        path: str | None = None,
        github: str | None = None,
        clone_url: str | None = None,
        default_branch: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> RepositoryRecord:
        """Check and register a repository; each node starts preparing for it."""
        return await self._manager.register_repository(
            name,
            path=path,
            github=github,
            clone_url=clone_url,
            default_branch=default_branch,
            config=config,
        )

    @_RETRIED
    async def list_repositories(
        self, user: str | None = None, is_admin: bool = True
    ) -> list[RepositoryRecord]:
        """The registered repositories ``user`` may use (all without one), with their
        preparation."""
        if user is None:
            return self._manager.accounts.list_repositories()
        return self._manager.accounts.repositories_for(user, is_admin)

    @_RETRIED
    async def get_repository(
        self, repository_id: int, user: str | None = None, is_admin: bool = True
    ) -> RepositoryRecord:
        """One registered repository, with its preparation; PermissionDenied when
        ``user`` may not use it."""
        if user is None:
            return self._manager.registry.get_repository(repository_id)
        return self._manager.accounts.check_repository_access(repository_id, user, is_admin)

    async def set_repository_access(
        self, repository_id: int, access: dict[str, Any] | None
    ) -> RepositoryRecord:
        """Restrict a repository to some users and groups, or open it (None)."""
        return self._manager.accounts.set_repository_access(repository_id, access)

    async def prepare_repository(self, repository_id: int) -> RepositoryRecord:
        """Prepare a repository again where it failed (or is ready); see the manager."""
        return await self._manager.prepare_repository(repository_id)

    # -- sandboxes ----------------------------------------------------------

    async def create_sandbox(
        self,
        owner: str,
        repository_id: int,
        overrides: dict[str, Any] | None = None,
        wait: bool = True,
        is_admin: bool = False,
    ) -> SandboxInfo:
        """Create a sandbox; returns when it is RUNNING (``wait=False``: once it is starting).

        ``is_admin``: the owner is an admin, as the API authenticated it (no quota, and
        the overrides only an admin may give).
        """
        return await self._manager.create_sandbox(
            owner, repository_id, overrides or {}, wait=wait, is_admin=is_admin
        )

    @_RETRIED
    async def get_sandbox(self, sandbox_id: str, owner: str | None = None) -> SandboxInfo:
        """One sandbox (``owner`` None: anyone's)."""
        return await self._manager.get_sandbox(sandbox_id, owner)

    @_RETRIED
    async def owner_of(self, sandbox_id: str) -> str:
        """Who created the sandbox."""
        return self._manager.owner_of(sandbox_id)

    @_RETRIED
    async def list_sandboxes(
        self, owner: str | None = None, include_ended: bool = False, include_held: bool = False
    ) -> list[SandboxInfo]:
        """Sandboxes of ``owner`` (None: all; the held ready ones with ``include_held``)."""
        return self._manager.list_sandboxes(owner, include_ended, include_held)

    async def teardown_sandbox(self, sandbox_id: str, owner: str | None = None) -> SandboxInfo:
        """Stop a sandbox, keeping its branch."""
        return await self._manager.teardown_sandbox(sandbox_id, owner)

    async def finalize_sandbox(
        self,
        sandbox_id: str,
        owner: str | None,
        title: str,
        description: str,
        images: bool = True,
    ) -> FinalizeResult:
        """Push, open the PR (with before/after pictures unless ``images`` is False), end it."""
        return await self._manager.finalize_sandbox(sandbox_id, owner, title, description, images)

    # -- supervision --------------------------------------------------------

    @_RETRIED
    async def reconcile(self) -> dict[str, Any]:
        """One reconcile pass now."""
        return await self._manager.reconcile()

    @_RETRIED
    async def orphans(self) -> dict[str, Any]:
        """Actors, worktrees and pid records no live sandbox owns."""
        return await self._manager.orphans()

    @_RETRIED
    async def health(self) -> dict[str, Any]:
        """The manager's status."""
        return await self._manager.health()

    @_RETRIED
    async def pid(self) -> int:
        """The worker's pid (tests kill it)."""
        return os.getpid()

    async def shutdown(self) -> None:
        """Stop the loop and close the registry, before the actor is killed."""
        for task in (self._loop_task, self._node_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._manager.cancel_setups()
        await self._manager.stop_preparing()
        self._manager.close()
