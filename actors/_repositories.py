"""Checks a repository must pass before the manager registers it.

A local path must lie under one of the configured roots (after resolving
symlinks), be a git repository and have the base branch; a clone URL must
answer ``git ls-remote`` and have the base branch. Each failure is the
StudioError an API client can act on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from studio.errors import (
    GitRemoteError,
    InvalidRequest,
    MissingBaseBranch,
    PermissionDenied,
    RepositoryNotFound,
)
from studio.git import git_status

__all__ = [
    "CheckedSource",
    "check_local_repository",
    "check_package_dir",
    "check_remote_repository",
    "is_remote_url",
]

# ls-remote of an unreachable host must not hold a registration for minutes.
_REMOTE_TIMEOUT = 30.0
# Never wait for a password or a host-key prompt: the manager has no terminal.
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_SSH_COMMAND": "ssh -o BatchMode=yes"}


@dataclass(frozen=True)
class CheckedSource:
    """A repository source that passed its checks, with its resolved base branch."""

    source: str
    default_branch: str


def _git(args: Sequence[str], cwd: Path | None = None, timeout: float = 10.0) -> tuple[int, str]:
    code, out, err = git_status(args, cwd=cwd, env=_GIT_ENV, timeout=timeout)
    return code, (out if code == 0 else err).strip()


def _within(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def check_local_repository(
    path: str, roots: Sequence[Path], default_branch: str | None
) -> CheckedSource:
    """Check a local repository path; the base branch defaults to its checked-out branch."""
    resolved_roots = [Path(root).expanduser().resolve() for root in roots]
    if not resolved_roots:
        raise PermissionDenied(
            "no repository roots are configured, so no local path may be registered: set "
            "COMPONENT_STUDIO_REPO_ROOTS to the directories that hold your repositories"
        )
    resolved = Path(path).expanduser().resolve()
    if not _within(resolved, resolved_roots):
        names = ", ".join(str(root) for root in resolved_roots)
        raise PermissionDenied(
            f"{path} is outside the allowed repository roots ({names}); move it under one "
            "of them or add its directory to COMPONENT_STUDIO_REPO_ROOTS",
            path=str(resolved),
            roots=[str(root) for root in resolved_roots],
        )
    if not resolved.is_dir():
        raise RepositoryNotFound(f"{path} does not exist or is not a directory", path=path)
    code, top = _git(["rev-parse", "--show-toplevel"], cwd=resolved)
    if code != 0:
        code, bare = _git(["rev-parse", "--is-bare-repository"], cwd=resolved)
        if code != 0 or bare != "true":
            raise InvalidRequest(f"{path} is not a git repository: {top}", path=path)
    if default_branch is None:
        code, head = _git(["symbolic-ref", "--short", "HEAD"], cwd=resolved)
        if code != 0:
            raise MissingBaseBranch(
                f"{path} has no checked-out branch (detached HEAD): give default_branch",
                path=path,
            )
        default_branch = head
    code, _ = _git(
        ["rev-parse", "--verify", "--quiet", f"refs/heads/{default_branch}^{{commit}}"],
        cwd=resolved,
    )
    if code != 0:
        raise MissingBaseBranch(
            f"{path} has no branch {default_branch!r}: create it or name another default_branch",
            path=path,
            branch=default_branch,
        )
    return CheckedSource(source=str(resolved), default_branch=default_branch)


# Transports that reach another machine; anything else git would read from this
# node's disk (a plain path, file://) or run as a command (ext::).
_REMOTE_SCHEMES = ("https://", "http://", "ssh://", "git://")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!//)")


def is_remote_url(clone_url: str) -> bool:
    """Whether ``clone_url`` names a network remote (https, ssh, git, user@host:path)."""
    return clone_url.lower().startswith(_REMOTE_SCHEMES) or bool(_SCP_LIKE.match(clone_url))


def check_remote_repository(clone_url: str, default_branch: str | None) -> CheckedSource:
    """Check a clone URL answers and has the base branch (its HEAD branch by default).

    Only network remotes: a local path or ``file://`` URL must go through
    :func:`check_local_repository` and its allowed roots, and other transports
    (``ext::`` runs a command) are refused.
    """
    if not is_remote_url(clone_url):
        raise PermissionDenied(
            f"clone_url {clone_url!r} is not a network URL (https://, ssh://, git:// or "
            "user@host:path); register a repository on the service's own disk with 'path' instead, "
            "under an allowed root",
            url=clone_url,
        )
    code, out = _git(["ls-remote", "--symref", clone_url], timeout=_REMOTE_TIMEOUT)
    if code != 0:
        raise GitRemoteError(
            f"cannot reach {clone_url}: {out}; check the URL and the network",
            url=clone_url,
        )
    heads: set[str] = set()
    head_branch: str | None = None
    for line in out.splitlines():
        if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
            head_branch = line.removeprefix("ref: refs/heads/").removesuffix("\tHEAD")
        elif "\trefs/heads/" in line:
            heads.add(line.split("\trefs/heads/", 1)[1])
    branch = default_branch or head_branch or "main"
    if branch not in heads:
        raise MissingBaseBranch(
            f"{clone_url} has no branch {branch!r}: name an existing default_branch",
            url=clone_url,
            branch=branch,
        )
    return CheckedSource(source=clone_url, default_branch=branch)


def check_package_dir(source: str, branch: str, package_dir: str) -> None:
    """Refuse a ``package_dir`` (already normalised) that is no directory on ``branch``.

    ``source`` is a local repository's checked path: the branch's tree is
    read there. A remote repository is not fetched at registration; its
    sandboxes meet a missing directory as a clear setup error instead.
    """
    if not package_dir or is_remote_url(source):
        return
    code, kind = _git(["cat-file", "-t", f"refs/heads/{branch}:{package_dir}"], cwd=Path(source))
    if code != 0 or kind != "tree":
        raise InvalidRequest(
            f"package_dir {package_dir!r} is not a directory on branch {branch!r} of {source}: "
            "name the package's directory relative to the repository root (like 'packages/ui')",
            package_dir=package_dir,
            branch=branch,
        )
