"""A sandbox's file edits as one all-or-nothing change, and their commit messages.

:class:`FileChange` checks every path and size of an edit before it touches
the disk, then writes (atomically, file by file) or deletes, remembering what
each file held; :meth:`FileChange.undo` puts every file back. The sandbox
undoes the change when a later step (another file of the batch, the commit)
fails, so an execute that fails leaves the worktree as it found it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from studio.commands import ExecuteResult, ListFiles, ReadFile
from studio.config import COMMIT_TIMESTAMP_FORMAT, format_commit_message
from studio.errors import InvalidRequest, NotFound, PayloadTooLarge
from studio.paths import (
    atomic_write,
    list_files,
    normalize_user_path,
    read_text_file,
    resolve_inside,
    safe_delete,
    write_file,
)
from studio.toolchain_files import check_editable

__all__ = ["FSYNC_EDITS", "FileChange", "commit_message", "read_command"]

# An edit's files are not fsynced: what keeps an edit is its commit, and libgit2
# does not fsync the commit's objects and refs either, so a synced worktree file
# would outlive a crash that its commit does not. Durability across a node's loss
# is the push to the origin (durable_commits). Two fsyncs per edit were ~1.5 ms on
# a quiet disk and 10 ms (p99 130 ms) on a busy one.
FSYNC_EDITS = False


def commit_message(
    pattern: str,
    *,
    action: str,
    files: list[str],
    description: str,
    sandbox_id: str,
    now: datetime,
) -> str:
    """The commit message of an edit, from the sandbox's ``commit_pattern``.

    Without a description the edit describes itself ("write_file src/a.tsx").
    """
    shown = files[0] if len(files) == 1 else f"{len(files)} files"
    return format_commit_message(
        pattern,
        description=description.strip() or f"{action} {shown}",
        action=action,
        timestamp=now.strftime(COMMIT_TIMESTAMP_FORMAT),
        file=", ".join(files),
        sandbox=sandbox_id,
    )


def read_command(root: Path, command: ReadFile | ListFiles, max_bytes: int) -> ExecuteResult:
    """Run a command that only reads the worktree at ``root``."""
    if isinstance(command, ReadFile):
        content = read_text_file(root, command.file_path, max_bytes)
        return ExecuteResult(output=f"read {command.file_path}", content=content)
    listing = list_files(root, command.file_path)
    note = " (truncated)" if listing.truncated else ""
    return ExecuteResult(output=f"{len(listing.files)} files{note}", files=listing.files)


@dataclass(frozen=True)
class _Saved:
    path: Path
    content: bytes | None  # None: the file did not exist
    mode: int | None
    created_dirs: tuple[Path, ...]


class FileChange:
    """Writes and deletes inside ``root`` that can be undone together.

    Files the toolchain runs or installs from (``studio.toolchain_files``) are
    refused, by the path named and by the path it resolves to, unless listed
    in ``editable_config_paths`` (the repository's configuration).
    """

    def __init__(
        self, root: Path, max_bytes: int, editable_config_paths: Collection[str] = ()
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.editable_config_paths = tuple(editable_config_paths)
        self._saved: list[_Saved] = []

    def _resolve_editable(self, user_path: str) -> Path:
        """``user_path`` resolved inside the root, refused if it is a toolchain file."""
        target = resolve_inside(self.root, user_path)
        resolved = target.relative_to(self.root.resolve()).as_posix()
        named = normalize_user_path(user_path)
        check_editable(user_path, named, resolved, self.editable_config_paths)
        return target

    def check_write(self, user_path: str, content: str) -> Path:
        """Refuse a path or content :meth:`write` would refuse, touching nothing."""
        size = len(content.encode("utf-8"))
        if size > self.max_bytes:
            raise PayloadTooLarge(
                f"content of {user_path!r} is {size} bytes; the limit is {self.max_bytes}",
                size=size,
                limit=self.max_bytes,
            )
        target = self._resolve_editable(user_path)
        if target.is_dir():
            raise InvalidRequest(f"cannot write {user_path!r}: it is a directory", path=user_path)
        return target

    def write(self, user_path: str, content: str) -> str:
        """Write ``content`` to ``user_path``; returns its path relative to the root."""
        target = self.check_write(user_path, content)
        self._remember(target)
        write_file(self.root, user_path, content, self.max_bytes, fsync=FSYNC_EDITS)
        return target.relative_to(self.root.resolve()).as_posix()

    def delete(self, user_path: str) -> str:
        """Delete the file ``user_path``; returns its path relative to the root."""
        target = self._resolve_editable(user_path)
        try:
            mode = os.lstat(target).st_mode
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no file {user_path!r} in the repository", path=user_path) from None
        if stat.S_ISREG(mode):
            self._remember(target)
        safe_delete(self.root, user_path)
        return target.relative_to(self.root.resolve()).as_posix()

    def _remember(self, target: Path) -> None:
        created: list[Path] = []
        parent = target.parent
        root = self.root.resolve()
        while parent != root and not parent.exists():
            created.append(parent)
            parent = parent.parent
        try:
            info = os.lstat(target)
        except FileNotFoundError:
            self._saved.append(_Saved(target, None, None, tuple(created)))
            return
        content = target.read_bytes() if stat.S_ISREG(info.st_mode) else None
        self._saved.append(_Saved(target, content, stat.S_IMODE(info.st_mode), tuple(created)))

    def undo(self) -> None:
        """Put every file this change touched back as it was (newest change first)."""
        for saved in reversed(self._saved):
            if saved.content is None:
                saved.path.unlink(missing_ok=True)
            else:
                atomic_write(saved.path, saved.content, fsync=FSYNC_EDITS)
                if saved.mode is not None:
                    saved.path.chmod(saved.mode)
            for directory in saved.created_dirs:
                # Only directories this change made, and only while empty.
                with contextlib.suppress(OSError):
                    directory.rmdir()
        self._saved.clear()
