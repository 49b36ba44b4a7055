"""The corpus manifest (benchmarks/corpus.toml) and where each repository's git dir is.

The manifest pins public repositories by commit; their git directories live in
the folder ``STUDIO_CORPUS_DIR`` names, one ``<owner>+<name>.git`` each (a bare
repository or a symlink to one). A repository whose git dir is missing, or
lacks the pinned commit, is skipped with the reason; the others still run.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CORPUS_DIR_ENV",
    "MANIFEST",
    "CorpusRepo",
    "ManifestError",
    "corpus_dir",
    "git_dir",
    "load_manifest",
    "parse_manifest",
    "select",
    "skip_reason",
]

MANIFEST = Path(__file__).resolve().parent / "corpus.toml"
CORPUS_DIR_ENV = "STUDIO_CORPUS_DIR"

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_KIND_FIELDS = ("styling", "storybook", "package_manager", "builder")


class ManifestError(ValueError):
    """The manifest is malformed; the message names the entry and the field."""


@dataclass(frozen=True)
class CorpusRepo:
    """One repository of the corpus, as the manifest pins it."""

    repo: str
    commit: str
    styling: str
    storybook: str
    package_manager: str
    builder: str
    why: str
    package_dir: str = ""
    # The repository's own setup step its stories need (generated CSS, codegen), as its
    # scripts run it; registered as the repository's setup_command.
    setup_command: str = ""

    @property
    def slug(self) -> str:
        """``owner+name``: its git dir's name without ``.git``, and its name in the service."""
        return self.repo.replace("/", "+")

    @property
    def pinned(self) -> str:
        return f"{self.repo}@{self.commit}"

    def kind(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in _KIND_FIELDS}


def _entry(index: int, raw: Any) -> CorpusRepo:
    if not isinstance(raw, dict):
        raise ManifestError(f"repository #{index + 1}: not a table")
    where = f"repository #{index + 1} ({raw.get('repo', '?')})"
    known = {"repo", "commit", "why", "package_dir", "setup_command", *_KIND_FIELDS}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {', '.join(unknown)}")
    for name in ("repo", "commit", "why", *_KIND_FIELDS):
        value = raw.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ManifestError(f"{where}: {name} must be a non-empty string")
    if not _REPO.match(raw["repo"]):
        raise ManifestError(f"{where}: repo must be 'owner/name'")
    if not _COMMIT.match(raw["commit"]):
        raise ManifestError(f"{where}: commit must be 40 lowercase hex digits")
    package_dir = raw.get("package_dir", "")
    if (
        not isinstance(package_dir, str)
        or package_dir.startswith("/")
        or ".." in package_dir.split("/")
    ):
        raise ManifestError(f"{where}: package_dir must be a relative path inside the repository")
    setup_command = raw.get("setup_command", "")
    if not isinstance(setup_command, str):
        raise ManifestError(f"{where}: setup_command must be a string (a command line)")
    return CorpusRepo(
        package_dir=package_dir.strip("/"),
        setup_command=setup_command.strip(),
        **{k: raw[k] for k in known - {"package_dir", "setup_command"}},
    )


def parse_manifest(text: str) -> list[CorpusRepo]:
    """The manifest's repositories, in order; ManifestError on a malformed one."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"not TOML: {exc}") from exc
    entries = document.get("repository")
    if not isinstance(entries, list) or not entries:
        raise ManifestError("no [[repository]] entries")
    repos = [_entry(index, raw) for index, raw in enumerate(entries)]
    seen: set[str] = set()
    for repo in repos:
        if repo.repo in seen:
            raise ManifestError(f"{repo.repo} is listed twice")
        seen.add(repo.repo)
    return repos


def load_manifest(path: Path = MANIFEST) -> list[CorpusRepo]:
    return parse_manifest(path.read_text())


def select(repos: list[CorpusRepo], only: str | None) -> list[CorpusRepo]:
    """The repositories ``--only owner/name,...`` names (all without it); unknown -> error."""
    if not only:
        return repos
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    known = {repo.repo: repo for repo in repos}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ManifestError(f"not in the manifest: {', '.join(unknown)}")
    return [repo for repo in repos if repo.repo in wanted]


def corpus_dir(environ: dict[str, str] | None = None) -> Path | None:
    value = (environ if environ is not None else dict(os.environ)).get(CORPUS_DIR_ENV, "")
    return Path(value) if value else None


def git_dir(folder: Path, repo: CorpusRepo) -> Path:
    return folder / f"{repo.slug}.git"


def skip_reason(folder: Path | None, repo: CorpusRepo) -> str | None:
    """Why ``repo`` cannot run from ``folder`` (None when it can)."""
    if folder is None:
        return f"{CORPUS_DIR_ENV} is not set"
    path = git_dir(folder, repo)
    if not path.exists():
        return f"no git directory at {path}"
    found = subprocess.run(
        ["git", "--git-dir", str(path), "cat-file", "-e", f"{repo.commit}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        return f"{path} does not hold commit {repo.commit}"
    return None
