"""The node's bare mirror of a repository (see :mod:`studio.git`)."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from studio.errors import (
    BranchExists,
    CommitNotFound,
    CorruptRepository,
    GitError,
    MissingBaseBranch,
    PermissionDenied,
)
from studio.git.command import (
    DEFAULT_IDENTITY,
    EXCLUDE_PATTERNS,
    STALE_LOCK_SECONDS,
    Commit,
    CommitResult,
    GitIdentity,
    WorktreeEntry,
    base_config_key,
    exclude_pattern,
    identity_env,
    parse_worktree_list,
    redact,
)
from studio.git.inprocess import local_remote_path
from studio.git.runner import NETWORK_TIMEOUT_SECONDS, GitRunner, file_lock, git_status
from studio.git.worktree import Worktree
from studio.naming import branch_name, is_sandbox_branch

__all__ = [
    "DEFAULT_IDENTITY",
    "EXCLUDE_PATTERNS",
    "STALE_LOCK_SECONDS",
    "Commit",
    "CommitResult",
    "GitIdentity",
    "Mirror",
    "Worktree",
    "WorktreeEntry",
    "local_remote_path",
    "redact",
    "source_head",
]

logger = logging.getLogger(__name__)


def source_head(source: str, branch: str, *, timeout: float = 15.0) -> str | None:
    """The commit ``branch`` of ``source`` (a path or URL) is at now; None when unknown.

    ``git ls-remote``: no mirror needed, a local source answers in milliseconds.
    A source that asks for credentials or does not answer is None, not an error.
    """
    status, out, _err = git_status(
        ["ls-remote", "--", source, f"refs/heads/{branch}"], timeout=timeout
    )
    if status != 0:
        return None
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}":
            return sha
    return None


class Mirror:
    """A node-local bare clone of one repository; sandboxes are worktrees of it.

    Structural changes (clone, fetch, worktree add/remove, branch deletion) hold a file
    lock beside the mirror, so threads and processes of one node can share it.
    """

    def __init__(
        self, path: Path, source: str, network_timeout: float = NETWORK_TIMEOUT_SECONDS
    ) -> None:
        self.path = Path(path).absolute()
        self.source = source
        # Seconds a clone or fetch may take before git and its remote helpers are killed.
        self.network_timeout = network_timeout
        # --git-dir, not -C: a damaged mirror must fail, not resolve to a repository above it.
        self._git = GitRunner(self.path, (self.path,), identity_env(DEFAULT_IDENTITY), git_dir=True)
        self._git.repair_hint = f"delete {self.path}; Mirror.ensure clones it again"

    @classmethod
    def ensure(
        cls, path: Path, source: str, network_timeout: float = NETWORK_TIMEOUT_SECONDS
    ) -> Mirror:
        """The mirror at ``path``: cloned from ``source`` on first use, fetched otherwise.

        A damaged mirror is moved aside (``<name>.corrupt-<time>``, so unpushed commits can
        still be rescued by hand) and cloned again.
        """
        mirror = cls(path, source, network_timeout)
        with mirror._locked():
            if mirror.path.exists() and not mirror._healthy():
                mirror._move_aside()
            if not mirror.path.exists():
                mirror._clone()
            mirror._configure()
            try:
                mirror._fetch()
            except CorruptRepository:
                mirror._move_aside()
                mirror._clone()
                mirror._configure()
                mirror._fetch()
        return mirror

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.path.with_name(self.path.name + ".lock"))

    def _healthy(self) -> bool:
        try:
            # --git-dir on a directory that is no repository fails as "not a git repository".
            bare = self._git.run("rev-parse", "--is-bare-repository").strip()
            # Reads every ref tip: catches broken refs and missing tip objects cheaply.
            self._git.run("rev-list", "--max-count=1", "--all")
        except CorruptRepository:
            # Only damage counts: any other failure must not move a good mirror aside.
            return False
        return bare == "true"

    def _move_aside(self) -> None:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.time_ns()}")
        logger.warning(
            "mirror is damaged; moving it aside and cloning again",
            extra={"mirror": str(self.path), "moved_to": str(aside)},
        )
        self.path.rename(aside)

    def _clone(self) -> None:
        """Clone the source into place whole, or leave nothing there.

        A clone killed half-way (its timeout) leaves a repository that passes for
        healthy and has no branches; so the clone is made beside the mirror and
        moved into place once it is complete.
        """
        partial = self.path.with_name(self.path.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)  # a killed attempt's (the mirror lock is held)
        partial.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Not Repo.clone_from: it waits for git without a timeout.
            GitRunner(partial.parent, (), {}).run(
                "clone",
                "--bare",
                "--quiet",
                "--",
                self.source,
                str(partial),
                timeout=self.network_timeout,
                remote=f"cloning {redact(self.source)}",
            )
            fresh = GitRunner(partial, (partial,), {}, git_dir=True)
            # Local heads belong to sandboxes only; the source's branches come back under
            # refs/remotes/origin/ with the first fetch.
            heads = fresh.run("for-each-ref", "--format=%(refname)", "refs/heads/").split()
            for ref in heads:
                fresh.run("update-ref", "-d", ref)
            fresh.run("config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*")
            fresh.run("config", "core.logAllRefUpdates", "true")
            partial.rename(self.path)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        logger.info("mirror cloned", extra={"mirror": str(self.path)})

    def _configure(self) -> None:
        status, url = self._git.probe("config", "--get", "remote.origin.url")
        if status != 0 or url != self.source:
            self._git.run("remote", "set-url", "origin", self.source)
        self._add_excludes(EXCLUDE_PATTERNS)

    def _add_excludes(self, patterns: Iterable[str]) -> list[str]:
        """Append the ``patterns`` not there yet to ``info/exclude``; those added."""
        exclude = self.path / "info" / "exclude"
        exclude.parent.mkdir(exist_ok=True)
        text = exclude.read_text() if exclude.exists() else ""
        present = set(text.splitlines())
        missing = [p for p in dict.fromkeys(patterns) if p not in present]
        if missing:
            separator = "\n" if text and not text.endswith("\n") else ""
            with exclude.open("a") as handle:
                handle.write(separator + "\n".join(missing) + "\n")
        return missing

    def exclude(self, paths: Iterable[str]) -> list[str]:
        """Keep ``paths`` (relative to a worktree's root; ``dir/`` for a directory) out of
        every worktree's status, commits and rollbacks' clean: what a repository's setup
        command generates. Each becomes an anchored literal pattern of ``info/exclude``;
        the patterns added are returned."""
        # A line break would end the pattern early: such a path is left to git's status.
        patterns = [exclude_pattern(path) for path in paths if "\n" not in path]
        with self._locked():
            return self._add_excludes(patterns)

    def fetch(self) -> None:
        """Fetch the source's branches into ``refs/remotes/origin/*`` (pruning deleted ones)."""
        with self._locked():
            self._fetch()

    def _fetch(self) -> None:
        self._git.run(
            "fetch",
            "--prune",
            "--quiet",
            "origin",
            timeout=self.network_timeout,
            remote=f"fetching from {redact(self.source)}",
        )

    def _sha(self, ref: str) -> str | None:
        return self._git.sha(ref)

    def branch_exists(self, name: str) -> bool:
        """Whether ``refs/heads/<name>`` (a sandbox branch) exists in the mirror."""
        return self._sha(f"refs/heads/{name}") is not None

    def resolve(self, ref: str) -> str:
        """The full hash ``ref`` names; :class:`CommitNotFound` if it names no commit."""
        sha = self._sha(ref)
        if sha is None:
            raise CommitNotFound(f"{ref!r} names no commit in {self.path}", ref=ref)
        return sha

    def remote_branches(self) -> list[str]:
        """The source's branch names as of the last fetch."""
        out = self._git.run("for-each-ref", "--format=%(refname:lstrip=3)", "refs/remotes/origin/")
        return [name for name in out.split() if name != "HEAD"]

    def delete_branch(self, name: str) -> None:
        """Delete the local branch ``name`` (and its recorded base); absent is fine."""
        with self._locked():
            if self.branch_exists(name):
                self._git.run("branch", "-D", name)

    def _add_branch_worktree(self, branch: str, directory: Path, start: str) -> None:
        """``directory`` checked out on a new local ``branch`` made at ``start``."""
        self._git.run(
            "worktree", "add", "--quiet", "--no-track", "-b", branch, str(directory), start
        )

    def add_worktree(
        self,
        sandbox_id: str,
        directory: Path,
        base: str,
        identity: GitIdentity | None = None,
        *,
        inprocess_commits: bool = True,
    ) -> Worktree:
        """A new worktree at ``directory`` on a new branch ``design/studio-<id>`` off ``base``.

        ``base`` is a branch of the source. :class:`BranchExists` if the sandbox branch
        exists here or on the source; :class:`MissingBaseBranch` if ``base`` does not.
        ``inprocess_commits``: see :class:`Worktree`.
        """
        branch = branch_name(sandbox_id)
        directory = Path(directory).absolute()
        if is_sandbox_branch(base):
            # Another sandbox's work (maybe another user's): never a base, whoever asks.
            raise PermissionDenied(
                f"base branch {base!r} is a sandbox's branch; a sandbox starts from the "
                "repository's default branch or one its configuration allows",
                base=base,
            )
        with self._locked():
            self._prune()
            if self.branch_exists(branch) or self._sha(f"refs/remotes/origin/{branch}"):
                raise BranchExists(
                    f"branch {branch} already exists in {self.path} or on its origin; it is "
                    "never overwritten. Attach to it (attach_worktree) or use a new sandbox id.",
                    branch=branch,
                )
            base_commit = self._sha(f"refs/remotes/origin/{base}")
            if base_commit is None:
                # Not listing the origin's branches: other users' design/studio-* are there.
                raise MissingBaseBranch(
                    f"base branch {base!r} does not exist in {redact(self.source)}; name "
                    "the repository's default branch or one its configuration allows",
                    base=base,
                )
            self._add_branch_worktree(branch, directory, base_commit)
            self._git.run("config", base_config_key(branch), base_commit)
        logger.info(
            "worktree added",
            extra={"sandbox_id": sandbox_id, "branch": branch, "base_commit": base_commit},
        )
        return Worktree(
            self, directory, sandbox_id, base_commit, identity, inprocess_commits=inprocess_commits
        )

    def attach_worktree(
        self,
        sandbox_id: str,
        directory: Path,
        base_commit: str | None = None,
        identity: GitIdentity | None = None,
        *,
        inprocess_commits: bool = True,
    ) -> Worktree:
        """The worktree of an existing sandbox branch at ``directory`` (recovery after restart).

        Reuses ``directory`` if it already is this branch's worktree; otherwise checks the
        branch out there, taking it from origin when this node has no local copy (or an
        older one). The base commit comes from ``base_commit``, else the one recorded in the
        mirror, else the point where the branch left the source's other branches.
        """
        branch = branch_name(sandbox_id)
        directory = Path(directory).absolute()
        with self._locked():
            self._prune()
            entry = self._entry_for(directory)
            if entry is not None and entry.locked:
                # A crash inside `worktree add` leaves the entry locked and the checkout
                # unfinished: its files cannot be trusted, so check it out afresh.
                self._drop(entry)
                entry = None
            if entry is None:
                self._check_out(branch, directory)
            elif entry.branch != f"refs/heads/{branch}":
                raise GitError(
                    f"{directory} is a worktree on {entry.branch or 'a detached HEAD'}, not on "
                    f"{branch}: check out {branch} there, or remove the worktree and attach again",
                    branch=branch,
                )
            if base_commit:
                base = self.resolve(base_commit)
            else:
                base = self._recorded_base(branch) or self._guess_base(branch)
            self._git.run("config", base_config_key(branch), base)
            worktree = Worktree(
                self, directory, sandbox_id, base, identity, inprocess_commits=inprocess_commits
            )
            # Attaching means its previous owner is gone: what it held is free.
            worktree.release_orphaned_locks()
        logger.info("worktree attached", extra={"sandbox_id": sandbox_id, "branch": branch})
        return worktree

    def _check_out(self, branch: str, directory: Path) -> None:
        local = self._sha(f"refs/heads/{branch}")
        remote = self._sha(f"refs/remotes/origin/{branch}")
        if local is None and remote is None:
            raise GitError(
                f"branch {branch} exists neither in {self.path} nor on origin: nothing to "
                "attach to. If another node pushed it, fetch first.",
                branch=branch,
            )
        if directory.exists() and any(directory.iterdir()):
            raise GitError(
                f"{directory} exists, is not empty and is not a worktree of {self.path}: move "
                "it away (it may hold uncommitted work) and attach again",
                path=str(directory),
            )
        if local is None:
            self._add_branch_worktree(branch, directory, str(remote))
            return
        if remote is not None and remote != local and self._git.is_ancestor(local, remote):
            # The sandbox ran on another node meanwhile: continue from its pushed commits.
            self._git.run("update-ref", f"refs/heads/{branch}", remote, local)
        self._git.run("worktree", "add", "--quiet", str(directory), branch)

    def _recorded_base(self, branch: str) -> str | None:
        status, value = self._git.probe("config", "--get", base_config_key(branch))
        return self._sha(value) if status == 0 and value else None

    def _guess_base(self, branch: str) -> str:
        own = self._git.run(
            "rev-list",
            "--first-parent",
            f"refs/heads/{branch}",
            "--not",
            "--exclude=origin/design/*",
            "--remotes=origin",
        ).split()
        if not own:
            return self.resolve(f"refs/heads/{branch}")
        return self._sha(f"{own[-1]}^") or own[-1]

    def add_detached_worktree(self, directory: Path, commit: str) -> Path:
        """A worktree at ``directory`` on a detached HEAD at ``commit`` (no branch made):
        a past commit's files, read by a renderer and never committed to."""
        directory = Path(directory).absolute()
        with self._locked():
            self._prune()
            self._git.run("worktree", "add", "--quiet", "--detach", str(directory), commit)
        return directory

    def remove_worktree(self, directory: Path) -> None:
        """Remove the worktree at ``directory`` (with any changes in it); the branch stays.

        Also when the directory is already gone or its entry was left locked by a crash.
        """
        directory = Path(directory).absolute()
        with self._locked():
            entry = self._entry_for(directory)
            if entry is not None:
                self._drop(entry)
            elif directory.exists():
                logger.warning(
                    "not a worktree of this mirror; left in place",
                    extra={"path": str(directory), "mirror": str(self.path)},
                )
            self._prune()
        logger.info("worktree removed", extra={"path": str(directory)})

    def _drop(self, entry: WorktreeEntry) -> None:
        if entry.locked:
            self._git.run("worktree", "unlock", str(entry.path))
        if entry.path.exists():
            self._git.run("worktree", "remove", "--force", str(entry.path))

    def prune(self) -> None:
        """Forget worktrees whose directories are gone, locked ones included."""
        with self._locked():
            self._prune()

    def _prune(self) -> None:
        for entry in self._entries():
            if entry.locked and not entry.bare and not entry.path.exists():
                # `worktree prune` keeps locked entries forever; ours are only ever locked
                # by a `worktree add` that crashed.
                self._git.run("worktree", "unlock", str(entry.path))
        self._git.run("worktree", "prune")

    def _entries(self) -> list[WorktreeEntry]:
        return parse_worktree_list(self._git.run("worktree", "list", "--porcelain", "-z"))

    def _entry_for(self, directory: Path) -> WorktreeEntry | None:
        target = directory.resolve()
        for entry in self._entries():
            if not entry.bare and entry.path.resolve() == target:
                return entry
        return None

    def list_worktrees(self) -> list[Path]:
        """Directories of this mirror's worktrees."""
        return [entry.path for entry in self._entries() if not entry.bare]
