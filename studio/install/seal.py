"""Files shared between sandboxes by hard links, owned so that no sandbox can write them.

A sandbox's node_modules is a hard-link copy of the node's install-cache
entry (and an npm entry's files are the npm store's), and the page's
prebuilt shell is a hard link too: the same inode in every worktree that
links it. Inside the boundary (:mod:`studio.process.boundary`) the worktree
is writable and its uid is the service's, so a write into such a file in
place would reach every other sandbox on the node. Owned by an uid the
boundary does not map (``nobody``) and mode 0644, the file reads as before
and refuses a write (EACCES; no capability applies to an unmapped owner),
while the sandbox's own directories still take new files (a tool's
``.cache``) and links it replaces.

Changing a file's owner needs root. A service that runs as another user
cannot seal: :func:`can_seal` says so, and docs/security.md names that gap.
Outside the boundary the service and its installers are root and unaffected.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

__all__ = ["SEALED_OWNER", "can_seal", "seal_files", "seal_tree"]

# nobody:nogroup, the owner no boundary maps (it maps only the service's own uid).
SEALED_OWNER = (65534, 65534)


def can_seal() -> bool:
    """Whether this process may give files away (root)."""
    return os.geteuid() == 0


def seal_files(paths: Iterable[Path | str]) -> None:
    """Give each of ``paths`` (files or links, not followed) to :data:`SEALED_OWNER`.

    What the owner could read or run, anyone can afterwards: the sandbox
    reads and runs them as a stranger now (a 0600 file, a 0744 binary).
    """
    if not can_seal():
        return
    uid, gid = SEALED_OWNER
    for path in paths:
        mode = os.lstat(path).st_mode
        if stat.S_ISREG(mode):
            opened = mode | 0o444 | (0o111 if mode & stat.S_IXUSR else 0)
            if opened != mode:
                Path(path).chmod(stat.S_IMODE(opened))
        os.lchown(path, uid, gid)


def seal_tree(root: Path) -> None:
    """Seal every file and link under ``root``; its directories stay the service's."""
    seal_files(
        f"{directory}/{name}" for directory, _subdirs, files in os.walk(root) for name in files
    )
