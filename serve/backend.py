"""How a replica reaches the actors: the manager (control plane) and sandboxes (data plane).

Every Ray call of the API goes through :class:`ActorClient`, which lets
through only :class:`studio.errors.StudioError` (translated by
:mod:`actors.ray_errors`):

- the error raised inside an actor comes out as itself;
- a manager that is restarting, or slower than ``manager_timeout``, is
  :class:`ServiceUnavailable` (503 with Retry-After), never a hang or a 500;
- a sandbox whose actor is gone is asked about at the manager: a stopped,
  finalized or failed sandbox is :class:`InvalidState` (409 saying which),
  one being brought back is :class:`ServiceUnavailable`.

Ownership is cached per replica (a sandbox's owner never changes), so a
data-plane request costs one actor call.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray

from actors.handles import ActorHandle, forget_sandbox_handle, get_manager, sandbox_handle
from actors.ray_errors import GONE, classify, to_studio_error
from serve._flight import SingleFlight
from studio.errors import InvalidRequest, InvalidState, SandboxNotFound, ServiceUnavailable
from studio.models import SandboxInfo, UserInfo
from studio.naming import validate_sandbox_id
from studio.state import ACTIVE_STATES

__all__ = ["ActorClient"]

logger = logging.getLogger(__name__)

# Seconds for a call that does real work (create waits for Vite, finalize pushes).
LONG_CALL = 900.0


class ActorClient:
    """The replica's handles to the manager and the sandboxes, and its caches."""

    def __init__(self, *, manager_timeout: float = 10.0, sandbox_timeout: float = 120.0) -> None:
        self.manager_timeout = manager_timeout
        self.sandbox_timeout = sandbox_timeout
        self._manager: ActorHandle | None = None
        self._owners: dict[str, str] = {}
        self._owner_lookup: SingleFlight[str, str] = SingleFlight(self._owner_of)

    # -- control plane ------------------------------------------------------

    async def manager(
        self, method: str, *args: Any, seconds: float | None = None, **kwargs: Any
    ) -> Any:
        """Call the manager's ``method``, waiting ``seconds`` at most (quick calls by default).

        Raises StudioErrors only (see the module docstring).
        """
        handle = self._manager_handle()
        ref = getattr(handle, method).remote(*args, **kwargs)
        try:
            return await asyncio.wait_for(_result(ref), seconds or self.manager_timeout)
        except Exception as exc:
            error = to_studio_error(exc, no_answer=f"the manager did not answer {method} in time")
            if isinstance(error, ServiceUnavailable):
                # A recreated manager is a new actor: look it up again next time.
                self._manager = None
            if error is exc:
                raise
            raise error from None

    def _manager_handle(self) -> ActorHandle:
        if self._manager is None:
            self._manager = get_manager()
        return self._manager

    async def authenticate(self, token: str) -> UserInfo | None:
        """The manager's answer for ``token``."""
        user: UserInfo | None = await self.manager("authenticate", token)
        return user

    async def authorize(self, user: UserInfo, sandbox_id: str) -> str:
        """``sandbox_id`` if ``user`` may use it; :class:`SandboxNotFound` otherwise.

        Another user's sandbox is "not found", worded exactly like an unknown
        one, so ids cannot be probed. Admins may use any sandbox.
        """
        try:
            validate_sandbox_id(sandbox_id)
        except InvalidRequest:
            raise SandboxNotFound(f"no sandbox {sandbox_id[:64]!r}") from None
        owner = self._owners.get(sandbox_id)
        if owner is None:
            owner = await self._owner_lookup.get(sandbox_id)
            self._owners[sandbox_id] = owner
        if owner != user.name and not user.is_admin:
            raise SandboxNotFound(f"no sandbox {sandbox_id!r}")
        return sandbox_id

    async def _owner_of(self, sandbox_id: str) -> str:
        return str(await self.manager("owner_of", sandbox_id))

    def remember_owner(self, sandbox_id: str, owner: str) -> None:
        """Record the owner of a sandbox this replica just created."""
        self._owners[sandbox_id] = owner

    # -- data plane ---------------------------------------------------------

    async def sandbox(self, sandbox_id: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the sandbox actor's ``method`` (after :meth:`authorize`)."""
        try:
            handle: Any = sandbox_handle(sandbox_id)
        except SandboxNotFound:
            raise await self._gone(sandbox_id) from None
        try:
            ref = getattr(handle, method).remote(*args, **kwargs)
            return await asyncio.wait_for(_result(ref), self.sandbox_timeout)
        except Exception as exc:
            if classify(exc) in GONE:
                # Dead, or pinned to a node that is gone: the manager replaces it
                # under the same name, so the cached handle must go.
                forget_sandbox_handle(sandbox_id)
                raise await self._gone(sandbox_id) from None
            error = to_studio_error(
                exc,
                no_answer=f"sandbox {sandbox_id} did not answer {method} in time",
                restarting=f"sandbox {sandbox_id} is restarting",
            )
            if error is exc:
                raise
            raise error from None

    async def _gone(self, sandbox_id: str) -> Exception:
        """Why a sandbox's actor is not there, as the error to answer with."""
        info: SandboxInfo = await self.manager("get_sandbox", sandbox_id, None)
        if info.status in ACTIVE_STATES:
            return ServiceUnavailable(
                f"sandbox {sandbox_id} is {info.status.value} and being brought back; "
                "retry shortly",
                retry_after=2,
            )
        detail = f" ({info.error})" if info.error else ""
        return InvalidState(
            f"sandbox {sandbox_id} is {info.status.value}{detail}: "
            "create a new sandbox to keep working on its branch",
            state=info.status.value,
        )

    async def events(self, sandbox_id: str, after_seq: int, timeout: float) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """The hub's event source: a long-poll on the sandbox actor, cancelled with the caller."""
        handle: Any = sandbox_handle(sandbox_id)
        ref = handle.events.remote(after_seq, timeout)
        try:
            events: list[dict[str, Any]] = await _result(ref)
        except asyncio.CancelledError:
            # The last client left: stop the actor-side wait too.
            ray.cancel(ref)
            raise
        except Exception as exc:
            if classify(exc) in GONE:
                # Dead, or replaced under the same name: look it up again next poll.
                forget_sandbox_handle(sandbox_id)
            raise
        return events

    async def touch(self, sandbox_id: str) -> None:
        """Mark the sandbox active (clients are watching it)."""
        handle: Any = sandbox_handle(sandbox_id)
        await asyncio.wait_for(_result(handle.touch.remote()), self.sandbox_timeout)

    @staticmethod
    def is_permanent(error: BaseException) -> bool:
        """Whether an event-source failure means the sandbox is gone for good."""
        return isinstance(error, SandboxNotFound)

    def forget(self, sandbox_id: str) -> None:
        """Drop the cached handle of a sandbox that was torn down."""
        forget_sandbox_handle(sandbox_id)


async def _result(ref: Any) -> Any:
    return await ref
