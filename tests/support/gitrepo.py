"""Real git repositories for tests, made in a tmp dir with the git CLI.

``git``, ``commit_all`` and ``repo_from_dir`` are the benchmarks' own
(``benchmarks._proc``): one copy serves both.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from benchmarks._proc import commit_all, git, repo_from_dir

__all__ = ["commit_all", "git", "make_repo", "repo_from_dir"]


def make_repo(path: Path, files: Mapping[str, str], branch: str = "main") -> Path:
    """A non-bare repository at ``path`` with ``files`` committed on ``branch``."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    commit_all(path, "initial commit")
    return path
