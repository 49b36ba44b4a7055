"""Where things live in a node's state directory.

::

    <state_dir>/
      registry.sqlite            the manager's registry (head node only)
      mirrors/<repo>.git         node-local bare mirror of each repository
      worktrees/<sandbox_id>/    each sandbox's git worktree (.studio/ inside it)
      install-cache/<hash>/      node_modules prepared once per lockfile
      prepare/<id>/              a scratch worktree while the node prepares a repository
      setup-outputs/<key>/       what a repository's setup command made, for the next sandboxes
      run/<name>.json            pid/pgid records of supervised processes
      locks/                     file locks (install cache, port allocation)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from studio.naming import validate_sandbox_id

__all__ = ["StateLayout"]

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class StateLayout:
    """Paths under one node's state directory; pure, creates nothing."""

    root: Path

    @property
    def registry(self) -> Path:
        return self.root / "registry.sqlite"

    @property
    def mirrors(self) -> Path:
        return self.root / "mirrors"

    @property
    def worktrees(self) -> Path:
        return self.root / "worktrees"

    @property
    def install_cache(self) -> Path:
        return self.root / "install-cache"

    @property
    def prepare(self) -> Path:
        return self.root / "prepare"

    @property
    def setup_outputs(self) -> Path:
        return self.root / "setup-outputs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    def mirror(self, repository: str) -> Path:
        """The bare mirror of ``repository`` (any name; made filesystem-safe)."""
        safe = _SAFE_NAME.sub("_", repository).strip("._") or "repo"
        return self.mirrors / f"{safe}.git"

    def worktree(self, sandbox_id: str) -> Path:
        return self.worktrees / validate_sandbox_id(sandbox_id)

    def past_worktree(self, sandbox_id: str) -> Path:
        """The detached worktree a sandbox's past commits are rendered from; outside
        ``worktrees/``, where each directory is a sandbox's own."""
        return self.root / "past-worktrees" / validate_sandbox_id(sandbox_id)

    def pid_file(self, name: str) -> Path:
        return self.run / f"{_SAFE_NAME.sub('_', name)}.json"
