"""What a sandbox's creator may set, and the per-user sandbox quota: pure decisions.

Every per-sandbox setting has an upper bound that holds for everyone
(:class:`~studio.config.ComponentStudioConfig`'s fields: 400 naming the field and
the bound). On top of that, a user who is not an admin may not

- set the ports (``vite_port``, ``websocket_port``): they pick what the node
  listens on;
- raise a timeout or a limit above the service's own value (the settings, then
  the repository's configuration): each is a time the manager waits, or a
  sandbox keeps its node's slot, on that user's say;
- lower ``health_check_interval`` below it: each check is work for the node.

Going the cheap way (a shorter idle timeout, fewer restarts) is anyone's choice.
docs/limits.md lists the bounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from studio.config import ComponentStudioConfig
from studio.errors import PermissionDenied, QuotaExceeded
from studio.state import ACTIVE_STATES, SandboxState

__all__ = [
    "ADMIN_ONLY_FIELDS",
    "LOWERED_ONLY_BY_ADMIN",
    "QUOTA_STATES",
    "RAISED_ONLY_BY_ADMIN",
    "check_sandbox_quota",
    "check_user_overrides",
]

ADMIN_ONLY_FIELDS = frozenset({"vite_port", "websocket_port"})
RAISED_ONLY_BY_ADMIN = (
    "timeout_hours",
    "ready_timeout",
    "restart_backoff",
    "restart_backoff_max",
    "max_restarts",
    "stable_start",
    "push_timeout",
    "unhealthy_threshold",
)
LOWERED_ONLY_BY_ADMIN = ("health_check_interval",)
# The sandboxes a user's quota counts: those that hold (or are about to hold, or
# still hold) a node's slot. A FAILED one holds nothing: its Vite and actor are gone.
QUOTA_STATES = frozenset({SandboxState.PENDING, *ACTIVE_STATES, SandboxState.STOPPING})


def check_user_overrides(
    service: ComponentStudioConfig,
    wanted: ComponentStudioConfig,
    overrides: Mapping[str, Any] | None,
) -> None:
    """Refuse (403, naming the field) what a non-admin's ``overrides`` may not change.

    ``service`` is the config without the caller's overrides, ``wanted`` with
    them (both already validated, so values compare as numbers).
    """
    given = set(overrides or ())
    for name in sorted(given & ADMIN_ONLY_FIELDS):
        raise PermissionDenied(
            f"only an admin may set {name}; leave it out to get the service's "
            f"({getattr(service, name)})",
            field=name,
        )
    for name in RAISED_ONLY_BY_ADMIN:
        limit = getattr(service, name)
        if name in given and getattr(wanted, name) > limit:
            raise PermissionDenied(
                f"{name}={getattr(wanted, name)} is above this service's {limit}; "
                "only an admin may raise it",
                field=name,
                limit=limit,
            )
    for name in LOWERED_ONLY_BY_ADMIN:
        limit = getattr(service, name)
        if name in given and getattr(wanted, name) < limit:
            raise PermissionDenied(
                f"{name}={getattr(wanted, name)} is below this service's {limit}; "
                "only an admin may lower it",
                field=name,
                limit=limit,
            )


def check_sandbox_quota(owner: str, live: int, limit: int) -> None:
    """Refuse a new sandbox of ``owner``, who has ``live`` ones, past ``limit`` (0: none).

    :class:`QuotaExceeded` (403) naming the quota and how to free a place.
    """
    if limit and live >= limit:
        raise QuotaExceeded(
            f"user {owner!r} has {live} live sandboxes; the limit is {limit} "
            "(max_sandboxes_per_user): delete or finalize one first",
            quota="max_sandboxes_per_user",
            limit=limit,
        )
