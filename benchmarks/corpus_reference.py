"""The reference side kept apart: results of ``--reference-only`` and merging them later.

The reference (each repository in its own Storybook) does not depend on this
project's code, so it can be measured once and reused: ``--reference-only``
writes ``corpus-reference-<date>.json``, and a studio-only run takes each
repository's reference figures from such a file, provided it measured the same
pinned commit. Without ``--reference-from`` the newest reference file in the
results directory that holds the repository at that commit is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.corpus_report import REFERENCE_PREFIX, RepoResult
from benchmarks.results import load_results

__all__ = [
    "REFERENCE_FIELDS",
    "REFERENCE_PREFIX",
    "Reference",
    "ReferenceFileError",
    "apply_reference",
    "find_reference",
    "load_reference_file",
    "reference_files",
]

# What the reference side measures; a studio-only result takes these from a reference file.
REFERENCE_FIELDS = (
    "own_indexed",
    "own_rendered",
    "own_install_cold_s",
    "own_install_warm_s",
    "own_install_scripts",
    "own_dev_first_story_s",
    "own_failures",
)


class ReferenceFileError(ValueError):
    """A reference file given by name is missing or is not corpus results."""


@dataclass(frozen=True)
class Reference:
    """One repository's reference entry and where it came from."""

    entry: dict[str, Any]
    path: Path

    @property
    def measured_at(self) -> str:
        return str(self.entry.get("measured_at", "?"))


def reference_files(results_dir: Path) -> list[Path]:
    """The reference results files in ``results_dir``, newest first (by the date in the name)."""
    return sorted(results_dir.glob(f"{REFERENCE_PREFIX}-*.json"), reverse=True)


def load_reference_file(path: Path) -> dict[str, Any]:
    """The ``repositories`` of a corpus results file; ReferenceFileError when it is not one."""
    document = load_results(path)
    if document is None:
        raise ReferenceFileError(f"{path}: missing or not JSON")
    repositories = document.get("repositories")
    if not isinstance(repositories, dict):
        raise ReferenceFileError(f"{path}: not corpus results (no 'repositories')")
    return repositories


def _usable(entry: dict[str, Any], commit: str) -> bool:
    """Whether ``entry`` holds a reference measured at ``commit`` (skipped ones do not)."""
    return (
        entry.get("commit") == commit
        and entry.get("status") not in ("skipped", "interrupted")
        and entry.get("reference_source") is None
        and any(entry.get(name) is not None for name in REFERENCE_FIELDS if name != "own_failures")
    )


def find_reference(candidates: list[Path], repo: str, commit: str) -> Reference | None:
    """The first of ``candidates`` with a usable reference of ``repo`` at ``commit``."""
    for path in candidates:
        try:
            repositories = load_reference_file(path)
        except ReferenceFileError:
            continue
        entry = repositories.get(repo)
        if isinstance(entry, dict) and _usable(entry, commit):
            return Reference(entry, path)
    return None


def apply_reference(result: RepoResult, reference: Reference) -> None:
    """Copy the reference figures, errors and notes of ``reference`` into ``result``.

    A reference-only entry holds nothing but the reference side, so its errors
    and notes are all about its own Storybook; they are kept, marked as such.
    """
    for name in REFERENCE_FIELDS:
        setattr(result, name, reference.entry.get(name))
    if result.declared is None:
        result.declared = reference.entry.get("declared")
    result.reference_source = f"{reference.path.name} ({reference.measured_at})"
    result.errors.extend(f"reference: {error}" for error in reference.entry.get("errors", []))
    result.notes.extend(
        f"reference: {note}"
        for note in reference.entry.get("notes", [])
        if not note.startswith("studio side not run")
    )
    result.notes.append(f"reference taken from {result.reference_source}")
