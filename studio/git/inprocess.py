"""Auto-commits of named files, and pushes to a local origin, with libgit2 (pygit2).

Both in this process: no git spawned.

An execute commits the few files it wrote. Through the git CLI that took five
processes (status, add, diff, commit, rev-parse); here it is a few library calls.
The semantics are those of :meth:`Worktree.auto_commit` on the CLI path:

- each named path is staged in the worktree's index as ``git add --all`` would:
  written or created files with their content and mode, deleted ones removed;
  an untracked ignored path is left alone, as ``git status`` does not list it;
- the commit holds exactly those paths on top of HEAD, whatever else is staged;
- nothing changed gives ``CommitResult(committed=False)``, never an empty commit;
- the branch moves only if it still points at the commit's parent.

Anything unusual (a directory or ``.`` among the paths, a gitlink, a detached
HEAD, a lock, any libgit2 error) makes :meth:`InProcessCommitter.commit` answer
``None`` and the caller takes the CLI path, which knows how to report it. A
failure never leaves a half-made commit: the index is written before the
branch moves, and a retry through the CLI stages the same content again.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from studio.git.command import CommitResult, GitIdentity, clean_message, is_protected

if TYPE_CHECKING:
    import pygit2

__all__ = ["InProcessCommitter", "local_remote_path", "push_to_local_origin"]

logger = logging.getLogger("studio.git")

_GITLINK = 0o160000
_TREE = 0o040000


class _Unusual(Exception):
    """A path the CLI path should handle (it knows how to stage or report it)."""


def _plain_path(path: str) -> str | None:
    """``path`` as a repository-relative posix path, or None when it is not one file name."""
    posix = PurePosixPath(path.replace("\\", "/"))
    if posix.is_absolute() or not posix.parts or ".." in posix.parts:
        return None
    text = posix.as_posix()
    return None if text == "." else text


class InProcessCommitter:
    """Commits named files of one worktree through libgit2; not thread-safe (callers lock)."""

    def __init__(self, path: Path, branch: str, identity: GitIdentity) -> None:
        self.path = path
        self.ref = f"refs/heads/{branch}"
        self.identity = identity
        self._repo: pygit2.Repository | None = None

    def _repository(self) -> pygit2.Repository:
        if self._repo is None:
            # Imported here: libgit2's bindings are only needed once a sandbox commits.
            import pygit2

            # NO_SEARCH: a worktree missing its .git must not resolve to a repository above.
            self._repo = pygit2.Repository(
                str(self.path), pygit2.enums.RepositoryOpenFlag.NO_SEARCH
            )
        return self._repo

    def commit(self, message: str, paths: Sequence[str]) -> CommitResult | None:
        """Commit ``paths`` (files) as they are on disk; None: use the git CLI instead."""
        wanted: list[str] = []
        for raw in paths:
            plain = _plain_path(raw)
            if plain is None:
                return None
            if not is_protected(plain) and plain not in wanted:
                wanted.append(plain)
        try:
            return self._commit(message, wanted)
        except _Unusual:
            return None
        except Exception as exc:  # libgit2 errors are GitError, OSError, KeyError, ValueError
            logger.debug(
                "in-process commit fell back to git: %s", exc, extra={"path": str(self.path)}
            )
            self._repo = None  # reopened next time: no state survives a failure
            return None

    def _commit(self, message: str, wanted: list[str]) -> CommitResult | None:
        import pygit2

        repo = self._repository()
        if repo.head_is_detached or repo.head.name != self.ref:
            return None  # the CLI path says how to get back on the branch
        head = repo.head.peel(pygit2.Commit)
        index = repo.index
        index.read(True)  # the CLI (rollback, undo) may have rewritten it
        staged: dict[str, tuple[str, int] | None] = {}
        for path in wanted:
            entry = self._stage(repo, index, path)
            if entry is not None or _in_tree(head.tree, path):
                staged[path] = entry
        files = [p for p, new in sorted(staged.items()) if new != _tree_entry(head.tree, p)]
        index.write()
        if not files:
            return CommitResult(False, None, message, ())
        tree_index = pygit2.Index()
        tree_index.read_tree(head.tree)
        for path in files:
            new = staged[path]
            if new is None:
                tree_index.remove(path)
            else:
                oid, mode = new
                tree_index.add(
                    pygit2.IndexEntry(path, pygit2.Oid(hex=oid), pygit2.enums.FileMode(mode))
                )
        tree = tree_index.write_tree(repo)
        who = pygit2.Signature(self.identity.name, self.identity.email)
        # With "HEAD", libgit2 moves the branch only if it still points at the parent.
        sha = repo.create_commit("HEAD", who, who, clean_message(message), tree, [head.id])
        return CommitResult(True, str(sha), message, tuple(files))

    def _stage(
        self, repo: pygit2.Repository, index: pygit2.Index, path: str
    ) -> tuple[str, int] | None:
        """Stage ``path``: its (blob, mode) now, None when it is gone (or never staged)."""
        try:
            info = os.lstat(self.path / path)
        except (FileNotFoundError, NotADirectoryError):
            if path in index:
                index.remove(path)
                return None
            # A directory removed whole: its files are entries below it. The CLI does that.
            if any(e.path.startswith(path + "/") for e in index):
                raise _Unusual(path) from None
            return None
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
            raise _Unusual(path)
        if path in index:
            if index[path].mode == _GITLINK:
                raise _Unusual(path)
        elif repo.path_is_ignored(path):
            return None  # `git status` does not list it, so it is never staged
        index.add(path)
        entry = index[path]
        return str(entry.id), int(entry.mode)


def _tree_entry(tree: pygit2.Tree, path: str) -> tuple[str, int] | None:
    try:
        item = tree[path]
    except KeyError:
        return None
    return str(item.id), int(item.filemode)


def _in_tree(tree: pygit2.Tree, path: str) -> bool:
    return _tree_entry(tree, path) is not None


def local_remote_path(url: str) -> str | None:
    """The directory a remote URL names when it is on this node, else None."""
    if url.startswith("file://"):
        return url.removeprefix("file://") or None
    if "://" in url or url.startswith("-"):
        return None
    # scp-like "host:path" is a network remote; a local absolute path has no ":" first.
    if ":" in url.split("/", 1)[0]:
        return None
    return url


def push_to_local_origin(mirror: Path, refspec: str) -> bool:
    """Push ``refspec`` from the bare ``mirror`` to its ``origin`` when that is on this node.

    Done by putting the objects the origin lacks straight into its object
    database (hard links to our loose files where possible), then moving its
    branch: ~1 ms for an edit's few objects, against
    ~10 ms for libgit2's local fetch (which packs and indexes them) and 30-40 ms
    for ``git push`` (a process per push plus its helpers). No fsync, as with
    either of those. The checks ``git push`` makes are kept: no
    non-fast-forward without ``+``, and never the branch a non-bare origin has
    checked out. False when the origin is a network remote, a check refuses,
    or anything goes wrong: the caller then pushes with the git CLI, which
    reports errors properly.
    """
    force = refspec.startswith("+")
    source, _, target = refspec.removeprefix("+").partition(":")
    if not source.startswith("refs/heads/") or not target.startswith("refs/heads/"):
        return False
    try:
        import pygit2

        flags = pygit2.enums.RepositoryOpenFlag.NO_SEARCH
        # One handle on each side for the whole push: this runs on every durable edit.
        ours = pygit2.Repository(str(mirror), flags)
        try:
            where = local_remote_path(ours.remotes["origin"].url or "")
            if where is None or not Path(where).is_dir():
                return False
            new = ours.revparse_single(source).id
            theirs = pygit2.Repository(where, flags)
            try:
                if not theirs.is_bare and not theirs.head_is_unborn and theirs.head.name == target:
                    return False  # receive.denyCurrentBranch: the CLI says so
                if target in theirs.references and not force:
                    current = theirs.revparse_single(target).id
                    if current != new and not _descends(ours, new, current):
                        return False
                _copy_missing(ours, theirs, new)
                theirs.references.create(target, new, force=True)
                landed = new
            finally:
                theirs.free()
            # What `git push` does too: the mirror's view of origin follows.
            tracking = "refs/remotes/origin/" + target.removeprefix("refs/heads/")
            ours.references.create(tracking, landed, force=True)
        finally:
            ours.free()
    except Exception as exc:  # libgit2 errors are GitError, OSError, KeyError, ValueError
        logger.debug("in-process push fell back to git: %s", exc, extra={"path": str(mirror)})
        return False
    return True


def _copy_missing(ours: pygit2.Repository, theirs: pygit2.Repository, tip: pygit2.Oid) -> None:
    """Write into ``theirs`` every object reachable from commit ``tip`` that it lacks.

    Everything below an object is written before the object itself (blobs and
    subtrees before their tree, a commit's tree and parents before it), so an
    object ``theirs`` has always comes with everything it reaches: the walk
    stops at the first one found there, and an interrupted copy leaves nothing
    that points at a missing object.
    """
    have = theirs.odb
    done: set[pygit2.Oid] = set()
    our_objects = Path(ours.path) / "objects"
    their_objects = Path(theirs.path) / "objects"

    def copy(oid: pygit2.Oid) -> None:
        if not _link_loose(our_objects, their_objects, str(oid)):
            kind, data = ours.odb.read(oid)
            have.write(kind, data)
        done.add(oid)

    def copy_tree(oid: pygit2.Oid) -> None:
        if oid in done or have.exists(oid):
            return
        for entry in ours[oid]:  # type: ignore[attr-defined]
            if entry.filemode == _GITLINK:
                continue  # a submodule's commit lives in another repository
            if entry.filemode == _TREE:
                copy_tree(entry.id)
            elif entry.id not in done and not have.exists(entry.id):
                copy(entry.id)
        copy(oid)

    # Commits in post-order (parents first), without recursion: a branch may be long.
    stack: list[tuple[pygit2.Oid, bool]] = [(tip, False)]
    while stack:
        oid, parents_done = stack.pop()
        if parents_done:
            copy_tree(ours[oid].tree_id)  # type: ignore[attr-defined]
            copy(oid)
            continue
        if oid in done or have.exists(oid):
            continue
        done.add(oid)  # expanded once, even when two children share it
        stack.append((oid, True))
        stack.extend((parent, False) for parent in ours[oid].parent_ids)  # type: ignore[attr-defined]


def _link_loose(ours: Path, theirs: Path, sha: str) -> bool:
    """Hard-link the loose object ``sha`` from the objects dir ``ours`` into ``theirs``.

    A loose object file is immutable and named by its content, so both
    repositories may share it (``git clone --local`` does the same). A link is
    one metadata write against the five (temp file, write, rename, ...) of
    writing the object again; an edit's push copies about five objects.
    False when it cannot be linked (packed, another file system): copy it then.
    """
    name = f"{sha[:2]}/{sha[2:]}"
    target = theirs / name
    try:
        try:
            os.link(ours / name, target)
        except FileNotFoundError:
            if not (ours / name).exists():
                return False  # packed on our side
            target.parent.mkdir(exist_ok=True)
            os.link(ours / name, target)
    except FileExistsError:
        return True  # theirs has it already (the odb's negative cache may not know)
    except OSError:
        return False
    return True


def _descends(repo: pygit2.Repository, new: pygit2.Oid, old: pygit2.Oid) -> bool:
    """Whether ``new`` has ``old`` as an ancestor in ``repo``: a fast-forward."""
    import pygit2

    try:
        return bool(repo.descendant_of(new, old))
    except (KeyError, ValueError, pygit2.GitError):
        return False  # ``old`` is not even in our history
