"""Data, pure decisions and the git runner behind :mod:`studio.git.mirror`.

What is decided rather than done (argv pieces, ref names, parsing git's output, which
error a failure is) is a small pure function here, testable without git. ``GitRunner``
runs the git CLI (a plain ``subprocess.run``) and is the only place that does.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import psutil

from studio.errors import (
    BranchExists,
    CorruptRepository,
    GitError,
    GitLocked,
    GitRemoteError,
    StudioError,
)
from studio.naming import validate_sandbox_id

__all__ = [
    "DEFAULT_IDENTITY",
    "EXCLUDE_PATTERNS",
    "LOG_FORMAT",
    "NETWORK_TIMEOUT_SECONDS",
    "STALE_LOCK_SECONDS",
    "Commit",
    "CommitResult",
    "GitIdentity",
    "GitRunner",
    "WorktreeEntry",
    "base_config_key",
    "classify_failure",
    "clean_message",
    "file_lock",
    "identity_env",
    "is_protected",
    "next_ref_index",
    "parse_log",
    "parse_status",
    "parse_worktree_list",
    "redact",
    "remove_orphaned_locks",
    "select_paths",
    "wip_ref_prefix",
]

logger = logging.getLogger("studio.git")

EXCLUDE_PATTERNS = (".studio/", "node_modules/")
STALE_LOCK_SECONDS = 5.0
NETWORK_TIMEOUT_SECONDS = 600.0
LOG_FORMAT = "--format=%H%x1f%aI%x1f%B%x1e"
# A user's global config may carry hooks or commit signing; neither may run or prompt here.
_GLOBAL_OPTIONS = ("-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false")
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

    def to_dict(self) -> dict[str, str | bool]:
        """JSON-ready form: ``{"hash", "message", "timestamp" (ISO 8601, UTC), "base"}``."""
        stamp = self.timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return {
            "hash": self.hash,
            "message": self.message,
            "timestamp": stamp,
            "base": self.is_base,
        }


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


# ---------------------------------------------------------------- running git


def _git_running_in(scope: Sequence[Path], lock: Path) -> bool:
    """Whether a git process works in ``scope`` or has ``lock`` open."""
    roots = [p.resolve() for p in scope]
    for proc in psutil.process_iter(["name", "cwd"]):
        name = proc.info["name"] or ""
        if name != "git" and not name.startswith("git-"):
            continue
        cwd = proc.info["cwd"]
        if cwd and any(Path(cwd).is_relative_to(root) for root in roots):
            return True
        with contextlib.suppress(psutil.Error):
            if any(f.path == str(lock) for f in proc.open_files()):
                return True
    return False


def remove_orphaned_locks(locks: Iterable[Path], scope: Sequence[Path]) -> list[Path]:
    """Remove those of ``locks`` no git process holds, however young; the ones removed.

    Only for locks whose writer is known to be dead: a sandbox's index and branch
    locks when its previous incarnation died, maybe in the middle of an in-process
    commit (a git process would have finished its write; the dead process cannot).
    """
    removed = []
    for lock in locks:
        if lock.exists() and not _git_running_in(scope, lock):
            lock.unlink(missing_ok=True)
            removed.append(lock)
    if removed:
        logger.warning(
            "removed git locks a dead process left", extra={"locks": [str(p) for p in removed]}
        )
    return removed


def _lock_is_stale(lock: Path, scope: Sequence[Path]) -> bool:
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return True  # released meanwhile: a retry is right
    return age >= STALE_LOCK_SECONDS and not _git_running_in(scope, lock)


class GitRunner:
    """Runs git at one location and turns failures into StudioErrors."""

    def __init__(
        self, location: Sequence[str], where: Path, scope: Sequence[Path], env: Mapping[str, str]
    ) -> None:
        self._location = tuple(location)
        self._where = where
        self._scope = tuple(scope)
        # Never ask for a password on a terminal: a service has no one to answer.
        # C locale: failures are recognised by git's English messages.
        self._env = {"LANGUAGE": "C", "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", **env}
        self.repair_hint = f"delete {where} and let it be recreated"

    def _exec(
        self, args: Sequence[str], env: Mapping[str, str] | None, timeout: float | None
    ) -> tuple[int, str, str]:
        command = ["git", *_GLOBAL_OPTIONS, *self._location, *args]
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                env={**os.environ, **self._env, **(env or {})},
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            # run() killed git already; what it printed says how far it got.
            err = _decode(exc.stderr, "replace")
            return -9, "", f"{err}\ngit {args[0]} was killed after {timeout:g}s".strip()
        except OSError as exc:
            return 127, "", f"cannot run git: {exc}"
        # surrogateescape: a path that is not UTF-8 goes back into argv unchanged.
        return (
            done.returncode,
            _decode(done.stdout, "surrogateescape"),
            _decode(done.stderr, "replace"),
        )

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        remote: str | None = None,
    ) -> str:
        """Stdout of ``git <args>``; a stale lock is removed and the command retried once.

        ``remote`` describes a network operation ("pushing X to Y"); its plain failures
        become :class:`GitRemoteError`.
        """
        status, out, err = self._exec(args, env, timeout)
        if status == 0:
            return out
        lock = _lock_path(err)
        if lock is not None and _lock_is_stale(lock, self._scope):
            logger.warning("removing stale git lock", extra={"lock": str(lock)})
            lock.unlink(missing_ok=True)
            status, out, err = self._exec(args, env, timeout)
            if status == 0:
                return out
        raise self._failure(args, err, remote)

    def probe(self, *args: str) -> tuple[int, str]:
        """(exit status, stdout) for commands whose failure is an answer, not an error.

        Locks and damage still raise: "no" must not stand for "could not tell".
        """
        status, out, err = self._exec(args, None, None)
        if status != 0 and classify_failure(err) in (CorruptRepository, GitLocked):
            raise self._failure(args, err, None)
        return status, out.strip()

    def sha(self, ref: str) -> str | None:
        """The commit hash ``ref`` names, or None."""
        status, out = self.probe("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        return out if status == 0 else None

    def is_ancestor(self, older: str, newer: str) -> bool:
        """Whether ``older`` is ``newer`` or one of its ancestors."""
        return self.probe("merge-base", "--is-ancestor", older, newer)[0] == 0

    def _failure(self, args: Sequence[str], stderr: str, remote: str | None) -> StudioError:
        text = redact(stderr.strip()) or "git printed nothing"
        command = f"git {args[0]}"
        kind = classify_failure(stderr)
        if kind is GitLocked:
            lock = _lock_path(stderr)
            blocker = str(lock) if lock else "a worktree lock"
            return GitLocked(
                f"{command} in {self._where} is blocked by {blocker} ({text}). Another git "
                f"process is using the repository, or one crashed: retry shortly; if no git "
                f"process is running, delete {blocker}.",
                lock=blocker,
            )
        if kind is CorruptRepository:
            return CorruptRepository(
                f"{command} failed because the repository at {self._where} is damaged ({text}). "
                f"To repair: {self.repair_hint}.",
                path=str(self._where),
            )
        if kind is BranchExists:
            return BranchExists(
                f"{text}. A sandbox branch is never overwritten: attach to it or use a new "
                "sandbox id.",
            )
        if remote is not None:
            hint = (
                "Check that the remote exists and is reachable and that the credentials allow it."
            )
            if "non-fast-forward" in stderr or "fetch first" in stderr or "[rejected]" in stderr:
                hint = (
                    "The remote branch has commits this one does not (or this branch was rolled "
                    "back): push with force=True only if overwriting them is intended."
                )
            return GitRemoteError(f"{remote} failed: {text}. {hint}", remote=redact(remote))
        return GitError(f"{command} failed in {self._where}: {text}", path=str(self._where))


def _decode(data: bytes | str | None, errors: str) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", errors)


def _lock_path(stderr: str) -> Path | None:
    match = _LOCK_FILE.search(stderr)
    return Path(match.group(1)) if match else None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path``; excludes other processes and other threads alike."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
