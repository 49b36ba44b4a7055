"""What a repository's setup command made, kept once per node for the next sandboxes.

``panda`` takes seconds (7 to 14 s measured on the corpus's Panda repository on
a loaded 2-core node), a PostCSS build as much; every sandbox of the same
repository, base commit and command would make the same files. So the first
sandbox on a node that runs the command keeps what it made under
``<state>/setup-outputs/<key>/``, and a later sandbox with the same key copies
those files into its worktree instead of running the command.

The key is the worktree's tree (``HEAD^{tree}``: the base commit's files,
lockfile included, so the same dependencies), the command, the package
directory and whether dependencies' scripts ran. What counts as made: the
paths untracked after the command that were not before, ignored ones included
(generated files usually are), never ``node_modules`` or ``.studio``. A run is
kept only when it was clean: exit 0, no tracked file changed, no
``node_modules`` path among what it made (a command that writes into the
dependencies, which are the install cache's links, cannot be replayed by a
copy). Copies, not hard links: an edit or a tool writing a generated file in
place must not change the kept one or another sandbox's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from studio.git.command import is_protected

__all__ = [
    "KeptOutputs",
    "SetupOutputs",
    "made_paths",
    "outputs_key",
    "tracked_changed",
    "untracked_paths",
]

logger = logging.getLogger(__name__)

_MANIFEST = "manifest.json"
_FILES = "files"


def _git(worktree: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=worktree, capture_output=True, text=True, check=True
    )
    return result.stdout


def untracked_paths(worktree: Path) -> set[str]:
    """Every untracked path of ``worktree``, ignored or not (a new directory as ``dir/``)."""
    listed: set[str] = set()
    for extra in ((), ("--ignored",)):
        out = _git(
            worktree, "ls-files", "--others", "--exclude-standard", "--directory", "-z", *extra
        )
        listed.update(path for path in out.split("\0") if path)
    return listed


def made_paths(before: set[str], after: set[str]) -> list[str]:
    """What appeared between two :func:`untracked_paths`, protected paths left out."""
    return sorted(p for p in after - before if not is_protected(p.rstrip("/")))


def tracked_changed(worktree: Path) -> bool:
    """Whether a tracked file of ``worktree`` differs from HEAD."""
    return bool(_git(worktree, "status", "--porcelain", "--untracked-files=no").strip())


def outputs_key(worktree: Path, command: Sequence[str], package_dir: str, scripts: bool) -> str:
    """The key of what ``command`` makes in ``worktree`` as its HEAD stands."""
    tree = _git(worktree, "rev-parse", "HEAD^{tree}").strip()
    material = json.dumps([tree, list(command), package_dir, scripts])
    return hashlib.sha256(material.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class KeptOutputs:
    """A kept run: its paths (relative to the worktree), its untracked-not-ignored
    ``outputs`` and the tool's output lines."""

    directory: Path
    paths: list[str]
    outputs: list[str]
    output: list[str]

    def restore(self, worktree: Path) -> None:
        """Copy the kept files into ``worktree`` (what is there already is replaced)."""
        files = self.directory / _FILES
        for path in self.paths:
            _copy(files / path.rstrip("/"), worktree / path.rstrip("/"))


def _copy(source: Path, target: Path) -> None:
    """``source`` (a file, a link or a directory) copied to ``target``, links kept as links."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target, follow_symlinks=False)


class SetupOutputs:
    """The node's kept setup-command outputs, one directory per key."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find(self, key: str) -> KeptOutputs | None:
        directory = self.root / key
        try:
            manifest = json.loads((directory / _MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return KeptOutputs(
            directory, list(manifest["paths"]), list(manifest["outputs"]), list(manifest["output"])
        )

    def keep(
        self,
        key: str,
        worktree: Path,
        paths: list[str],
        outputs: list[str],
        output: list[str],
    ) -> None:
        """Copy ``paths`` of ``worktree`` under ``key``; published whole (a rename) or not
        at all, the first one kept wins."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.root))
        try:
            files = staging / _FILES
            for path in paths:
                _copy(worktree / path.rstrip("/"), files / path.rstrip("/"))
            manifest = {"paths": paths, "outputs": outputs, "output": output}
            (staging / _MANIFEST).write_text(json.dumps(manifest))
            try:
                staging.rename(self.root / key)
            except OSError:
                return  # another sandbox kept the same run first
            logger.info("setup command outputs kept", extra={"key": key, "paths": paths})
        finally:
            shutil.rmtree(staging, ignore_errors=True)
