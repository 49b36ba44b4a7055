"""A sandbox's worktree: auto-commit, history, rollback with undo, push.

Imported through :mod:`studio.git.mirror`; the mirror that makes these is there.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from studio.errors import (
    CommitNotFound,
    GitError,
    InvalidRequest,
    InvalidState,
    RollbackOutOfRange,
)
from studio.git.command import (
    DEFAULT_IDENTITY,
    LOG_FORMAT,
    Commit,
    CommitResult,
    GitIdentity,
    identity_env,
    next_ref_index,
    parse_log,
    parse_status,
    redact,
    select_paths,
    wip_ref_prefix,
)
from studio.git.inprocess import InProcessCommitter, push_to_local_origin
from studio.git.orphan import orphan_commit
from studio.git.runner import GitRunner, remove_orphaned_locks
from studio.naming import branch_name, undo_ref_prefix, validate_sandbox_id

if TYPE_CHECKING:
    from studio.git.mirror import Mirror

__all__ = ["Worktree"]

logger = logging.getLogger("studio.git")

_HEX = re.compile(r"^[0-9a-fA-F]{4,64}$")


class Worktree:
    """One sandbox's checkout: commits, history, rollback and push on its branch.

    Commits and rollbacks of one object are serialized, so concurrent callers each get
    their own commit or a clean "nothing to commit".

    ``inprocess_commits``: named files are committed in this process with libgit2
    (:class:`InProcessCommitter`); False commits everything with the git CLI, the
    slower path that handles every case (see ``inprocess_commits`` in
    :class:`studio.config.StudioSettings`).
    """

    def __init__(
        self,
        mirror: Mirror,
        path: Path,
        sandbox_id: str,
        base_commit: str,
        identity: GitIdentity | None = None,
        *,
        inprocess_commits: bool = True,
    ) -> None:
        self.mirror = mirror
        self.path = Path(path).absolute()
        self.sandbox_id = validate_sandbox_id(sandbox_id)
        self.branch = branch_name(sandbox_id)
        self.base_commit = base_commit
        self.identity = identity or DEFAULT_IDENTITY
        env = identity_env(self.identity)
        # Without a ceiling, a worktree missing its .git would resolve to a repository above.
        env["GIT_CEILING_DIRECTORIES"] = str(self.path.parent)
        self._git = GitRunner(self.path, (self.path, mirror.path), env)
        self._git.repair_hint = (
            f"remove the worktree and attach it again; if that fails too, delete the mirror "
            f"{mirror.path} (Mirror.ensure clones it again)"
        )
        self._committer = (
            InProcessCommitter(self.path, self.branch, self.identity) if inprocess_commits else None
        )
        self._lock = threading.Lock()
        self._push_lock = threading.Lock()

    def release_orphaned_locks(self) -> list[Path]:
        """Remove the index and branch locks a dead previous owner left; the ones removed.

        For recovery only: the sandbox's previous incarnation may have died inside
        an in-process commit, and its locks would block every commit until they
        count as stale.
        """
        admin = Path(self._git.run("rev-parse", "--absolute-git-dir").strip())
        locks = [
            admin / "index.lock",
            admin / "HEAD.lock",
            self.mirror.path / "refs" / "heads" / f"{self.branch}.lock",
        ]
        return remove_orphaned_locks(locks, (self.path, self.mirror.path))

    def current_branch(self) -> str:
        """The checked-out branch; :class:`GitError` on a detached HEAD."""
        status, ref = self._git.probe("symbolic-ref", "--quiet", "--short", "HEAD")
        if status != 0:
            raise self._off_branch(None)
        return ref

    def _require_branch(self, branch: str | None) -> None:
        if branch != self.branch:
            raise self._off_branch(branch)

    def _off_branch(self, branch: str | None) -> GitError:
        state = f"on branch {branch}" if branch else "on a detached HEAD"
        return GitError(
            f"worktree {self.path} is {state}; check out {self.branch} there "
            f"(git -C {self.path} checkout {self.branch}) and retry",
            branch=self.branch,
        )

    def head(self) -> str:
        """The hash HEAD points at."""
        return self._git.run("rev-parse", "HEAD").strip()

    def _status(self) -> tuple[str | None, list[str]]:
        return parse_status(
            self._git.run(
                "status",
                "--porcelain=v2",
                "-z",
                "--branch",
                "--untracked-files=all",
                "--no-renames",
            )
        )

    def auto_commit(self, message: str, paths: Sequence[str] | None = None) -> CommitResult:
        """Commit what changed (new, modified, deleted; only under ``paths`` if given).

        ``.studio/`` and ``node_modules/`` are never committed. No change gives
        ``CommitResult(committed=False, hash=None)``, never an empty commit.
        Named files are committed in-process (:mod:`studio.git.inprocess`) unless
        ``inprocess_commits`` is off; anything else (no ``paths``, directories, and
        whatever that path declines) through the git CLI.
        """
        if not message.strip():
            raise InvalidRequest("a commit message must not be empty")
        with self._lock:
            committer = self._committer
            result = committer.commit(message, paths) if committer and paths else None
            if result is None:
                result = self._commit_with_git(message, paths)
        if result.committed:
            logger.info(
                "committed",
                extra={
                    "sandbox_id": self.sandbox_id,
                    "commit": result.hash,
                    "files": len(result.files),
                },
            )
        return result

    def _commit_with_git(self, message: str, paths: Sequence[str] | None) -> CommitResult:
        literal = {"GIT_LITERAL_PATHSPECS": "1"}
        branch, changed = self._status()
        self._require_branch(branch)
        selected = select_paths(changed, paths)
        files: tuple[str, ...] = ()
        if selected:
            self._git.run("add", "--all", "--", *selected, env=literal)
            staged = self._git.run(
                "diff",
                "--cached",
                "--name-only",
                "-z",
                "--no-renames",
                "--",
                *selected,
                env=literal,
            )
            files = tuple(sorted(p for p in staged.split("\0") if p))
        if not files:
            return CommitResult(False, None, message, ())
        # Naming the files commits exactly them, whatever else someone staged.
        self._git.run("commit", "--quiet", "--no-verify", "-m", message, "--", *files, env=literal)
        sha = self.head()
        return CommitResult(True, sha, message, files)

    def history(self, count: int = 50) -> list[Commit]:
        """Up to ``count`` commits of the branch since its base, newest first.

        The base commit comes last (``is_base=True``) when ``count`` leaves room for it.
        """
        if count < 1:
            return []
        out = self._git.run(
            "log",
            LOG_FORMAT,
            f"--max-count={count}",
            f"{self.base_commit}..refs/heads/{self.branch}",
            "--",
        )
        commits = parse_log(out)
        if len(commits) < count:
            base = self._git.run("log", LOG_FORMAT, "--max-count=1", self.base_commit, "--")
            commits += [replace(c, is_base=True) for c in parse_log(base)]
        return commits

    def _line(self) -> list[str]:
        """HEAD back to the base, newest first: every commit a rollback may reach."""
        out = self._git.run("rev-list", "--first-parent", f"{self.base_commit}..HEAD", "--")
        return [*out.split(), self.base_commit]

    def changed_files(self, old: str, new: str) -> list[str]:
        """The repo-relative files that differ between two commits (deleted ones too)."""
        out = self._git.run("diff", "--name-only", "--no-renames", "-z", old, new)
        return [name for name in out.split("\0") if name]

    def orphan_commit(self, files: Mapping[str, bytes], message: str) -> str:
        """A parentless commit of ``files`` in the mirror's objects; no ref or checkout moves."""
        return orphan_commit(self.path, files, message, self.identity)

    def own_commit(self, ref: str) -> str:
        """The full hash of ``ref`` (a hash or unique prefix) when it is one of the branch's
        commits from HEAD back to the base, base included; what a picture of a past commit
        may show. :class:`CommitNotFound` (naming ``ref``) otherwise; nothing changes."""
        if not _HEX.match(ref):
            raise CommitNotFound(
                f"{ref[:80]!r} is not a commit hash (4 to 64 hex digits)", commit=ref[:80]
            )
        status, target = self._git.probe("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        if status != 0:
            raise CommitNotFound(
                f"commit {ref} does not exist (or is ambiguous) in sandbox {self.sandbox_id}; "
                "pick a hash from its history",
                commit=ref,
            )
        if target not in self._line():
            raise CommitNotFound(
                f"commit {ref} is not one of sandbox {self.sandbox_id}'s commits (HEAD back to "
                f"its base {self.base_commit[:12]}); pick a hash from its history",
                commit=ref,
            )
        return target

    def rollback_to(self, commit_hash: str) -> str:
        """Reset the branch to ``commit_hash`` (one of its commits since the base, base included).

        The previous head and any uncommitted work are kept (see :meth:`undo_rollback`).
        Raises :class:`CommitNotFound` or :class:`RollbackOutOfRange` and changes nothing
        for any other target. Returns the new head.
        """
        with self._lock:
            self._require_branch(self.current_branch())
            target = self._validate_target(commit_hash)
            return self._move_head(target)

    def rollback_steps(self, steps: int) -> str:
        """Go back ``steps`` commits (at most to the base); returns the new head."""
        with self._lock:
            self._require_branch(self.current_branch())
            line = self._line()
            if not 1 <= steps < len(line):
                raise RollbackOutOfRange(
                    f"cannot roll back {steps} commit(s): {len(line) - 1} commit(s) lie between "
                    f"HEAD and the sandbox's base {self.base_commit[:12]}; use 1 to "
                    f"{len(line) - 1}",
                    steps=steps,
                    available=len(line) - 1,
                )
            return self._move_head(line[steps])

    def _validate_target(self, commit_hash: str) -> str:
        if not _HEX.match(commit_hash):
            raise CommitNotFound(f"{commit_hash!r} is not a commit hash", commit=commit_hash)
        status, target = self._git.probe(
            "rev-parse", "--verify", "--quiet", f"{commit_hash}^{{commit}}"
        )
        if status != 0:
            raise CommitNotFound(
                f"commit {commit_hash} does not exist (or is ambiguous) in sandbox "
                f"{self.sandbox_id}; pick a hash from its history",
                commit=commit_hash,
            )
        if target in self._line():
            return target
        if self._git.is_ancestor(target, self.base_commit):
            raise RollbackOutOfRange(
                f"commit {commit_hash} is older than the sandbox's base "
                f"{self.base_commit[:12]}: rollback reaches back to the base at most",
                commit=commit_hash,
            )
        raise CommitNotFound(
            f"commit {commit_hash} is not on {self.branch} since its base; pick a hash from "
            "the sandbox's history",
            commit=commit_hash,
        )

    def undo_rollback(self) -> str:
        """Return to the head (and uncommitted work) from before the last rollback.

        The undo is itself recorded like a rollback, so undoing twice gets back to where
        the first undo started. :class:`InvalidState` if there was no rollback.
        """
        with self._lock:
            self._require_branch(self.current_branch())
            undo, wip = undo_ref_prefix(self.sandbox_id), wip_ref_prefix(self.sandbox_id)
            last = next_ref_index(self._refnames(undo), undo) - 1
            if last < 1:
                raise InvalidState(
                    f"sandbox {self.sandbox_id} has no rollback to undo", state="no_rollback"
                )
            target = self._resolve(f"{undo}{last}")
            saved = self._git.sha(f"{wip}{last}")
            self._move_head(target)
            if saved is not None:
                # Put the saved files back as uncommitted changes: worktree yes, index no.
                self._git.run("read-tree", "--reset", "-u", saved)
                self._git.run("reset", "--quiet")
            return target

    def _resolve(self, ref: str) -> str:
        sha = self._git.sha(ref)
        if sha is None:
            raise CommitNotFound(f"{ref} names no commit in {self.path}", ref=ref)
        return sha

    def _refnames(self, prefix: str) -> list[str]:
        return self._git.run("for-each-ref", "--format=%(refname)", prefix).split()

    def _move_head(self, target: str) -> str:
        """Keep the head and uncommitted work under the next undo number, then reset."""
        head = self.head()
        undo, wip = undo_ref_prefix(self.sandbox_id), wip_ref_prefix(self.sandbox_id)
        number = next_ref_index(self._refnames(undo), undo)
        saved = self._snapshot(head)
        self._git.run("update-ref", f"{undo}{number}", head)
        if saved is not None:
            self._git.run("update-ref", f"{wip}{number}", saved)
        self._git.run("reset", "--hard", "--quiet", target)
        # Untracked files are in the snapshot; ignored ones (.studio/, node_modules/) stay.
        self._git.run("clean", "-d", "--force", "--quiet")
        logger.info(
            "head moved",
            extra={"sandbox_id": self.sandbox_id, "from": head, "to": target, "undo": number},
        )
        return target

    def _snapshot(self, head: str) -> str | None:
        """A commit on ``head`` holding all uncommitted work (untracked files too), or None."""
        changed = select_paths(self._status()[1], None)
        if not changed:
            return None
        index = self.path / self._git.run("rev-parse", "--git-path", "index").strip()
        with tempfile.TemporaryDirectory(dir=index.parent) as scratch:
            temp_index = Path(scratch) / "index"
            if index.exists():
                # Starting from the real index spares re-hashing every unchanged file.
                shutil.copyfile(index, temp_index)
            env = {"GIT_INDEX_FILE": str(temp_index), "GIT_LITERAL_PATHSPECS": "1"}
            self._git.run("add", "--all", "--", *changed, env=env)
            tree = self._git.run("write-tree", env=env).strip()
        if tree == self._git.run("rev-parse", f"{head}^{{tree}}").strip():
            return None
        message = f"studio: uncommitted work of {self.sandbox_id} before moving its head"
        return self._git.run("commit-tree", tree, "-p", head, "-m", message).strip()

    def push(
        self,
        remote: str = "origin",
        branch: str | None = None,
        force: bool = False,
        *,
        env: Mapping[str, str] | None = None,
        also: Sequence[str] = (),
    ) -> None:
        """Push ``branch`` (default: the sandbox's) to ``remote``, a remote name or URL.

        ``also``: more refspecs sent in the same push (finalize's screenshots ref),
        so that they travel with the same credentials and connection.
        After a rollback the branch is rewritten and only ``force=True`` replaces it.
        Credentials in ``remote`` never reach messages or logs; better, give them in
        ``env`` (``GIT_CONFIG_*`` variables, see ``studio.pr``), where they are on no
        command line and in no config file. A push that takes longer than the
        mirror's ``network_timeout`` is killed (:class:`GitRemoteError`).
        """
        name = branch or self.branch
        if remote.startswith("-"):
            raise InvalidRequest(f"remote {redact(remote)!r} is not a remote name or URL")
        refspec = f"{'+' if force else ''}refs/heads/{name}:refs/heads/{name}"
        if any(not spec or spec.startswith("-") for spec in also):
            raise InvalidRequest(f"refspecs {list(also)!r}: each must be a refspec, not an option")
        with self._push_lock:
            if not also and remote == "origin" and push_to_local_origin(self.mirror.path, refspec):
                logger.debug("pushed in-process", extra={"sandbox_id": self.sandbox_id})
                return
            self._git.run(
                "push",
                "--quiet",
                remote,
                refspec,
                *also,
                env=env,
                timeout=self.mirror.network_timeout,
                remote=f"pushing {name} to {redact(remote)}",
            )
        logger.info(
            "pushed",
            extra={"sandbox_id": self.sandbox_id, "branch": name, "remote": redact(remote)},
        )
