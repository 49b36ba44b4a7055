"""Real git repositories for tests, made in a tmp dir with the git CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

__all__ = ["GIT_ENV", "commit_all", "git", "make_repo", "repo_from_dir"]

# A fixed identity so commits work on machines with no global git config.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Studio Test",
    "GIT_AUTHOR_EMAIL": "test@studio.invalid",
    "GIT_COMMITTER_NAME": "Studio Test",
    "GIT_COMMITTER_EMAIL": "test@studio.invalid",
}


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` and return its stdout; raises on failure."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


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


def repo_from_dir(source: Path, path: Path, branch: str = "main") -> Path:
    """A repository at ``path`` holding a copy of ``source`` (without node_modules)."""
    shutil.copytree(source, path, ignore=shutil.ignore_patterns("node_modules", ".git"))
    git(path, "init", "-q", "-b", branch)
    commit_all(path, "initial commit")
    return path
