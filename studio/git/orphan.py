"""A commit with no parent holding given files, written without a checkout (pygit2).

Finalize keeps a pull request's screenshots on a ref of their own
(``refs/heads/studio-screenshots/<id>``): an orphan commit, so that neither the
design branch nor the pull request's diff ever holds an image. The commit is
made from blobs in memory: the worktree, its index and the branch stay as
they are. No ref is moved here either; the push names the commit by its hash.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from studio.errors import InvalidRequest
from studio.git.command import GitIdentity

__all__ = ["orphan_commit"]


def _checked(path: str) -> str:
    posix = PurePosixPath(path)
    if posix.is_absolute() or not posix.parts or {"..", ".", ".git"} & set(posix.parts):
        raise InvalidRequest(f"{path!r} is not a plain repository-relative file path")
    return posix.as_posix()


def orphan_commit(
    repository: Path, files: Mapping[str, bytes], message: str, identity: GitIdentity
) -> str:
    """Write ``files`` (repo-relative path -> content) as a parentless commit; its hash.

    ``repository`` is any checkout or bare repository whose object database
    the commit goes into (a worktree writes into its mirror's).
    """
    if not files:
        raise InvalidRequest("an orphan commit needs at least one file")
    # Imported here: libgit2's bindings are only needed once a sandbox commits.
    import pygit2

    repo = pygit2.Repository(str(repository), pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
    try:
        # An index of its own, in memory: the worktree's index is not touched.
        index = pygit2.Index()
        for path, content in sorted(files.items()):
            blob = repo.create_blob(content)
            index.add(pygit2.IndexEntry(_checked(path), blob, pygit2.enums.FileMode.BLOB))
        tree = index.write_tree(repo)
        signature = pygit2.Signature(identity.name, identity.email, int(time.time()), 0)
        commit = repo.create_commit(None, signature, signature, message, tree, [])
        return str(commit)
    finally:
        repo.free()
