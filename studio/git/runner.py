"""git run through GitPython, and the locks around it.

:class:`GitRunner` is the one place git runs as a process. GitPython's
:class:`git.Git` spawns it (``Git.execute``: stdin closed, ``LC_ALL=C``, the
child and its helpers killed after ``kill_after_timeout``); the runner fixes
where and how git runs for one repository and turns a failure into the
project's errors with :func:`~studio.git.command.classify_failure`.

Only ``Git`` objects are used, never a ``Repo``: a ``Repo`` validates the
repository when opened (a damaged mirror must fail in git, with git's message
to classify), its object database keeps ``git cat-file`` processes alive, and
GitPython's objects are not safe to share between threads. A ``Git`` object's
state here (options, environment) is set once in the constructor; each call
is a process of its own, so threads of one sandbox share a runner.

``import git`` runs ``git version`` once (GitPython's refresh): a node without
a git executable fails there, at import, as ``GIT_PYTHON_REFRESH`` unset asks.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import signal
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import psutil
from git import Git
from git.exc import GitCommandNotFound

from studio.errors import (
    BranchExists,
    CorruptRepository,
    GitError,
    GitLocked,
    GitRemoteError,
    StudioError,
)
from studio.git.command import STALE_LOCK_SECONDS, classify_failure, lock_path, redact

__all__ = [
    "NETWORK_TIMEOUT_SECONDS",
    "GitRunner",
    "file_lock",
    "git_status",
    "remove_orphaned_locks",
]

logger = logging.getLogger("studio.git")

NETWORK_TIMEOUT_SECONDS = 600.0
# A user's global config may carry hooks or commit signing; neither may run or prompt here.
_SAFE_CONFIG = ("core.hooksPath=/dev/null", "commit.gpgsign=false")
# What ``Git.execute`` returns for a process its watchdog killed (kill_after_timeout).
_KILLED = -signal.SIGKILL


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


def _readable(text: str) -> str:
    """``text`` as GitPython decoded it (surrogate escapes) made safe to print and serialize."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _call(
    git: Git, args: Sequence[str], env: Mapping[str, str] | None, timeout: float | None
) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``git <args>`` through ``git``; never raises."""
    command, *rest = args
    try:
        # The (status, stdout, stderr) tuple rather than GitCommandError: the
        # error's stderr is reformatted for display, classify_failure reads git's.
        status, out, err = getattr(git, command)(
            *rest,
            env=env,
            kill_after_timeout=timeout,
            with_extended_output=True,
            with_exceptions=False,
            strip_newline_in_stdout=False,
        )
    except GitCommandNotFound as exc:
        return 127, "", f"cannot run git: {exc}"
    if status == _KILLED and timeout is not None:
        # GitPython's watchdog killed git and its helpers; what git printed is gone.
        return status, "", f"git {command} did not finish within {timeout:g}s and was killed"
    return status, out, _readable(err)


def git_status(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of one ``git <args>`` run through GitPython.

    For checks whose failure is an answer (is this a repository? does that
    remote answer?) outside the repositories a :class:`GitRunner` owns. ``cwd``
    is passed as ``git -C``, never as the process's directory (see
    :class:`GitRunner`); ``timeout`` kills git and its helpers.
    """
    git = Git()
    if cwd is not None:
        git.set_persistent_git_options(C=str(cwd))
    git.update_environment(GIT_TERMINAL_PROMPT="0")
    return _call(git, args, env, timeout)


class GitRunner:
    """Runs git for one repository through a GitPython ``Git``; failures become StudioErrors.

    ``where`` is a working directory (``git -C``), or with ``git_dir=True`` the git
    directory itself (``git --git-dir``, for the bare mirror). Either way it is an
    option of git rather than the process's working directory: GitPython runs git
    in the process's own directory when its working directory is missing, and a
    command meant for a vanished worktree must fail, not act on whatever
    repository that directory belongs to. ``scope``: the directories whose git
    processes may hold this repository's locks (see the stale-lock retry of :meth:`run`).
    """

    def __init__(
        self,
        where: Path,
        scope: Sequence[Path],
        env: Mapping[str, str],
        *,
        git_dir: bool = False,
    ) -> None:
        self._where = where
        self._scope = tuple(scope)
        self._git = Git()
        location = {"git_dir": str(where)} if git_dir else {"C": str(where)}
        self._git.set_persistent_git_options(c=list(_SAFE_CONFIG), **location)
        # Never ask for a password on a terminal: a service has no one to answer.
        self._git.update_environment(GIT_TERMINAL_PROMPT="0", **env)
        self.repair_hint = f"delete {where} and let it be recreated"

    def _exec(
        self, args: Sequence[str], env: Mapping[str, str] | None, timeout: float | None
    ) -> tuple[int, str, str]:
        return _call(self._git, args, env, timeout)

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        remote: str | None = None,
    ) -> str:
        """Stdout of ``git <args>``; a stale lock is removed and the command retried once.

        ``remote`` describes a network operation ("pushing X to Y"); its plain failures
        become :class:`GitRemoteError`. ``timeout`` kills git (and its remote helpers)
        after that many seconds.
        """
        status, out, err = self._exec(args, env, timeout)
        if status == 0:
            return out
        lock = lock_path(err)
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
            lock = lock_path(stderr)
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
