"""A sandbox's disk quota: the bytes its worktree's own files hold.

What counts: every regular file of the worktree, except what the service puts
there and the user cannot write (``.git``, the studio app ``.studio/`` and
``node_modules``, which is the node's shared install cache linked in). Git's
objects in the node's mirror are not counted: they are shared by every
sandbox of the repository.

How it stays cheap: the tree is walked once (``os.scandir``, no file is
read) when the worktree is made and again after each rollback, the only
other thing that changes files wholesale. In between, each edit adjusts the
count by its own files' sizes, one ``lstat`` per file, and an edit that would
take the count past the quota is refused before it writes anything. Nothing
else writes into the worktree: Vite's caches are under ``.studio/``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from studio.errors import QuotaExceeded

__all__ = ["NOT_COUNTED", "DiskQuota", "file_bytes", "tree_bytes"]

NOT_COUNTED = frozenset({".git", ".studio", "node_modules"})


def tree_bytes(root: Path) -> int:
    """The bytes of the regular files under ``root``, symlinks and :data:`NOT_COUNTED` aside."""
    total = 0
    pending = [str(root)]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.name in NOT_COUNTED:
                continue
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def file_bytes(path: Path) -> int:
    """The size of the regular file at ``path``; 0 when there is none."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


class DiskQuota:
    """The worktree's byte count against ``quota`` (0: no quota, nothing measured)."""

    def __init__(self, quota: int) -> None:
        self.quota = quota
        self.used: int | None = None

    def measure(self, root: Path) -> None:
        """Count the worktree afresh (after it was made or rolled back)."""
        if self.quota:
            self.used = tree_bytes(root)

    def plan(self, root: Path, changes: Iterable[tuple[Path, int]]) -> int | None:
        """The count after ``changes`` (each file's path and new size, 0 for a delete).

        :class:`QuotaExceeded` when that passes the quota; None without one.
        Call :meth:`settle` with the answer once the change is made.
        """
        if not self.quota:
            return None
        if self.used is None:
            self.measure(root)
        used = self.used or 0
        after = used + sum(size - file_bytes(path) for path, size in changes)
        if after > self.quota and after > used:
            raise QuotaExceeded(
                f"this edit would make the sandbox's files {after} bytes; its disk quota is "
                f"{self.quota} bytes (sandbox_disk_quota_bytes, now {used} used): delete "
                "files or roll back first",
                quota="sandbox_disk_quota_bytes",
                limit=self.quota,
                size=after,
            )
        return after

    def settle(self, after: int | None) -> None:
        """Take the count :meth:`plan` gave, now that the change is on disk."""
        if after is not None:
            self.used = after
