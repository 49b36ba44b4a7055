"""Names derived from ids: sandbox ids, branch names, actor names, refs.

Pure functions, so every part of the service derives a name the same way.
"""

from __future__ import annotations

import re
import secrets
import string

from studio.errors import InvalidRequest

__all__ = [
    "ACTOR_NAMESPACE",
    "MANAGER_ACTOR_NAME",
    "READY_OWNER",
    "SANDBOX_BRANCH_PREFIX",
    "SANDBOX_ID_PATTERN",
    "branch_name",
    "is_sandbox_branch",
    "new_sandbox_id",
    "sandbox_actor_name",
    "undo_ref_prefix",
    "validate_sandbox_id",
]

ACTOR_NAMESPACE = "component-studio"
MANAGER_ACTOR_NAME = "studio-manager"
SANDBOX_BRANCH_PREFIX = "design/studio-"
SANDBOX_ID_PATTERN = re.compile(r"^sb_[a-z0-9]{6,32}$")
# Holder of the sandboxes started ahead of need (actors._ready): a name no user can
# have (user names allow no colon), so no user lists, counts or reaches them.
READY_OWNER = "studio:ready"
_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_sandbox_id() -> str:
    """A fresh random sandbox id such as ``sb_k3v9q2m1xa``."""
    return "sb_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


def validate_sandbox_id(sandbox_id: str) -> str:
    """``sandbox_id`` unchanged if well-formed; :class:`InvalidRequest` otherwise."""
    # fullmatch: with match, "$" also accepts a trailing newline ("sb_abc123\n").
    if not isinstance(sandbox_id, str) or not SANDBOX_ID_PATTERN.fullmatch(sandbox_id):
        raise InvalidRequest(
            f"sandbox id {sandbox_id!r} is malformed: expected 'sb_' and 6-32 lowercase "
            "letters or digits"
        )
    return sandbox_id


def branch_name(sandbox_id: str) -> str:
    """The sandbox's branch: ``sb_abc123`` -> ``design/studio-abc123``."""
    return SANDBOX_BRANCH_PREFIX + validate_sandbox_id(sandbox_id).removeprefix("sb_")


def is_sandbox_branch(name: str) -> bool:
    """Whether ``name`` is, or passes for, some sandbox's ``design/studio-*`` branch."""
    # Case-folded: on a case-insensitive disk "Design/Studio-x" is the same ref file.
    return name.strip().removeprefix("refs/heads/").casefold().startswith(SANDBOX_BRANCH_PREFIX)


def sandbox_actor_name(sandbox_id: str) -> str:
    """The detached Ray actor's name, as the dashboard lists it."""
    return "sandbox:" + validate_sandbox_id(sandbox_id)


def undo_ref_prefix(sandbox_id: str) -> str:
    """Where a sandbox's pre-rollback heads are kept: ``refs/studio/<id>/undo/``."""
    return f"refs/studio/{validate_sandbox_id(sandbox_id)}/undo/"
