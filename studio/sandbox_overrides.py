"""What a create's config overrides may not change: the repository's own rules.

A create request may override fields of the repository's sandbox config; two
kinds of change are the repository's (an admin's) to make, not a caller's:

- ``editable_config_paths`` and ``allowed_branches``, which loosen the rules
  of ``studio.toolchain_files`` and of this module: only the repository's
  config sets them.
- ``branch``, the base branch: a sandbox starts from the repository's default
  branch or one its config lists in ``allowed_branches``, never from a
  ``design/studio-*`` branch (another sandbox's work, maybe another user's).
  The refusal names the branches that are allowed, never the origin's others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from studio.errors import PermissionDenied
from studio.naming import is_sandbox_branch

__all__ = ["REPOSITORY_ONLY_FIELDS", "allowed_base_branches", "check_overrides"]

# install_scripts: dependencies' lifecycle scripts run outside the OS boundary (docs/installs.md).
# setup_command: a program run in every sandbox of the repository, chosen by its admin.
REPOSITORY_ONLY_FIELDS = (
    "editable_config_paths",
    "allowed_branches",
    "install_scripts",
    "setup_command",
    "setup_timeout",
)


def allowed_base_branches(default_branch: str, repository_config: Mapping[str, Any]) -> list[str]:
    """The branches a sandbox of this repository may start from, the default first."""
    branches = [default_branch]
    configured = repository_config.get("branch")
    if isinstance(configured, str):
        branches.append(configured)
    branches.extend(str(b) for b in repository_config.get("allowed_branches") or ())
    return [b for b in dict.fromkeys(branches) if not is_sandbox_branch(b)]


def check_overrides(
    overrides: Mapping[str, Any] | None,
    *,
    repository: str,
    default_branch: str,
    repository_config: Mapping[str, Any],
) -> None:
    """Refuse overrides that only the repository's config may make (:class:`PermissionDenied`)."""
    if not overrides:
        return
    for field in REPOSITORY_ONLY_FIELDS:
        if field in overrides:
            raise PermissionDenied(
                f"{field} cannot be set when creating a sandbox: it is part of repository "
                f"{repository!r}'s configuration, which an admin sets when registering it",
                field=field,
            )
    branch = overrides.get("branch")
    if branch is None:
        return
    allowed = allowed_base_branches(default_branch, repository_config)
    if isinstance(branch, str) and branch in allowed:
        return
    shown = repr(branch)[:120]
    why = (
        "design/studio-* branches are sandboxes' own work, and a sandbox never starts from "
        "another's"
        if isinstance(branch, str) and is_sandbox_branch(branch)
        else "it is not a branch this repository's sandboxes may start from"
    )
    raise PermissionDenied(
        f"base branch {shown} is not allowed: {why}. Sandboxes of {repository!r} start from "
        f"{', '.join(repr(b) for b in allowed)}; an admin may list more in the repository's "
        "allowed_branches",
        field="branch",
    )
