"""Data and pure decisions behind :mod:`studio.git.mirror`.

What is decided rather than done (argv pieces, ref names, parsing git's output, which
error a failure is) is a small pure function here, testable without git.
:mod:`studio.git.runner` runs git (through GitPython) and reads its answers with these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from studio.errors import BranchExists, CorruptRepository, GitError, GitLocked, StudioError
from studio.naming import validate_sandbox_id

__all__ = [
    "DEFAULT_IDENTITY",
    "EXCLUDE_PATTERNS",
    "LOG_FORMAT",
    "STALE_LOCK_SECONDS",
    "Commit",
    "CommitResult",
    "GitIdentity",
    "WorktreeEntry",
    "base_config_key",
    "classify_failure",
    "clean_message",
    "exclude_pattern",
    "identity_env",
    "is_protected",
    "lock_path",
    "next_ref_index",
    "parse_log",
    "parse_status",
    "parse_worktree_list",
    "redact",
    "select_paths",
    "wip_ref_prefix",
]

EXCLUDE_PATTERNS = (".studio/", "node_modules/")
# A lock file older than this, held by no git process, is a crash's leftover.
STALE_LOCK_SECONDS = 5.0
LOG_FORMAT = "--format=%H%x1f%aI%x1f%B%x1e"
_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
_LOCK_FILE = re.compile(r"Unable to create '([^']+\.lock)': File exists")
_CORRUPT_MARKERS = (
    "not a git repository",
    "bad object",
    "bad config line",
    "corrupt",
    "invalid sha1 pointer",
    "did not send all necessary objects",
    "unresolved deltas",
    "unable to read sha1 file",
    "unable to read tree",
)


@dataclass(frozen=True)
class GitIdentity:
    """Author and committer of the commits a sandbox makes (no global git config needed)."""

    name: str
    email: str


DEFAULT_IDENTITY = GitIdentity("Component Studio", "studio@localhost")


@dataclass(frozen=True)
class Commit:
    """One commit of a sandbox's history; ``is_base`` marks the commit it started from."""

    hash: str
    message: str
    timestamp: datetime
    is_base: bool = False


@dataclass(frozen=True)
class CommitResult:
    """What :meth:`Worktree.auto_commit` did: a commit, or nothing to commit (``hash=None``)."""

    committed: bool
    hash: str | None
    message: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class WorktreeEntry:
    """One record of ``git worktree list --porcelain``."""

    path: Path
    head: str | None = None
    branch: str | None = None
    bare: bool = False
    detached: bool = False
    locked: bool = False


# ---------------------------------------------------------------- pure functions


def redact(text: str) -> str:
    """``text`` with credentials in URLs (``https://user:TOKEN@``, ``https://TOKEN@``) masked."""
    return _CREDENTIALS.sub(r"\1***@", text)


def wip_ref_prefix(sandbox_id: str) -> str:
    """Where uncommitted work saved by a rollback is kept: ``refs/studio/<id>/wip/``."""
    return f"refs/studio/{validate_sandbox_id(sandbox_id)}/wip/"


def base_config_key(branch: str) -> str:
    """The mirror config key recording a sandbox branch's base commit."""
    return f"branch.{branch}.studioBase"


def exclude_pattern(path: str) -> str:
    """An ignore pattern matching exactly ``path`` (relative to the worktree's root,
    posix; a trailing ``/`` for a directory): anchored, its glob characters escaped."""
    body = re.sub(r"([\\*?\[])", r"\\\1", path.strip("/"))
    if body.endswith(" "):
        body = body[:-1] + "\\ "  # a trailing space is dropped unless escaped
    return "/" + body + ("/" if path.endswith("/") else "")


def is_protected(path: str) -> bool:
    """Whether ``path`` (relative, posix) lies in ``.studio/`` or any ``node_modules/``."""
    parts = PurePosixPath(path).parts
    return bool(parts) and (parts[0] in (".studio", ".git") or "node_modules" in parts)


def select_paths(changed: Iterable[str], paths: Sequence[str] | None) -> list[str]:
    """The changed paths to commit: never protected ones; with ``paths``, only those/under them."""
    candidates = [p for p in changed if not is_protected(p)]
    if paths is None:
        return candidates
    wanted = {PurePosixPath(p.replace("\\", "/")).as_posix() for p in paths}
    if "." in wanted:
        return candidates
    return [c for c in candidates if any(c == w or c.startswith(w + "/") for w in wanted)]


def parse_status(output: str) -> tuple[str | None, list[str]]:
    """(branch, changed paths) from ``status --porcelain=v2 -z --branch --no-renames``.

    The branch is None on a detached HEAD.
    """
    branch: str | None = None
    paths: list[str] = []
    for record in output.split("\0"):
        if record.startswith("# branch.head "):
            head = record.removeprefix("# branch.head ")
            branch = None if head == "(detached)" else head
        elif record.startswith("1 "):
            paths.append(record.split(" ", 8)[8])
        elif record.startswith("u "):
            paths.append(record.split(" ", 10)[10])
        elif record.startswith("? "):
            paths.append(record[2:])
    return branch, paths


def parse_log(output: str) -> list[Commit]:
    """Commits from ``git log`` run with this module's record-separated format."""
    commits = []
    for record in output.split("\x1e"):
        record = record.strip("\n")
        if record:
            sha, stamp, message = record.split("\x1f", 2)
            commits.append(Commit(sha, message.strip(), datetime.fromisoformat(stamp)))
    return commits


def parse_worktree_list(output: str) -> list[WorktreeEntry]:
    """Entries of ``git worktree list --porcelain -z``."""
    entries: list[WorktreeEntry] = []
    fields: dict[str, str] = {}
    for line in [*output.split("\0"), ""]:
        if line:
            key, _, value = line.partition(" ")
            fields[key] = value
        elif "worktree" in fields:
            entries.append(
                WorktreeEntry(
                    path=Path(fields["worktree"]),
                    head=fields.get("HEAD"),
                    branch=fields.get("branch"),
                    bare="bare" in fields,
                    detached="detached" in fields,
                    locked="locked" in fields,
                )
            )
            fields = {}
    return entries


def next_ref_index(refnames: Iterable[str], prefix: str) -> int:
    """One more than the largest ``<prefix><n>`` among ``refnames`` (1 when there is none)."""
    suffixes = [r[len(prefix) :] for r in refnames if r.startswith(prefix)]
    return max((int(s) for s in suffixes if s.isdigit()), default=0) + 1


def clean_message(message: str) -> str:
    """``message`` as ``git commit -m`` stores it (its "whitespace" cleanup).

    Trailing whitespace of each line goes, runs of blank lines become one, leading
    and trailing blank lines go; the result ends with one newline.
    """
    lines = [line.rstrip() for line in message.splitlines()]
    kept: list[str] = []
    for line in lines:
        if line or (kept and kept[-1]):
            kept.append(line)
    while kept and not kept[-1]:
        kept.pop()
    return "\n".join(kept) + "\n" if kept else ""


def classify_failure(stderr: str) -> type[StudioError]:
    """The error class a failed git command's stderr stands for."""
    lowered = stderr.lower()
    if _LOCK_FILE.search(stderr) or "locked working tree" in lowered or "but locked" in lowered:
        return GitLocked
    if any(marker in lowered for marker in _CORRUPT_MARKERS):
        return CorruptRepository
    if re.search(r"a branch named '[^']*' already exists", stderr):
        return BranchExists
    return GitError


def identity_env(identity: GitIdentity) -> dict[str, str]:
    """Environment that makes ``identity`` author and committer, whatever git config says."""
    return {
        "GIT_AUTHOR_NAME": identity.name,
        "GIT_AUTHOR_EMAIL": identity.email,
        "GIT_COMMITTER_NAME": identity.name,
        "GIT_COMMITTER_EMAIL": identity.email,
    }


def lock_path(stderr: str) -> Path | None:
    """The lock file a failed git command's stderr says it could not create, if any."""
    match = _LOCK_FILE.search(stderr)
    return Path(match.group(1)) if match else None
