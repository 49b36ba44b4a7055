"""``python -m benchmarks corpus [--only owner/name,...] [--no-reference] [--timeout S]``.

Per repository of benchmarks/corpus.toml whose git dir is in STUDIO_CORPUS_DIR
(a missing one is reported as skipped): a clone at the pinned commit under the
service's repository root, then the studio side (benchmarks/corpus_studio.py)
and, unless ``--no-reference``, the same repository in its own Storybook
(benchmarks/corpus_own.py) from a second clone with its own installs. Each
repository has ``--timeout`` seconds for all of it; what it did not finish is
reported as such and the next one runs. Writes
``<results-dir>/corpus-<date>.json`` and ``.md`` and prints the table.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

from benchmarks._browser import browser
from benchmarks.context import RunContext
from benchmarks.corpus_install import clean_install, detect_manager
from benchmarks.corpus_manifest import (
    CorpusRepo,
    corpus_dir,
    git_dir,
    load_manifest,
    select,
    skip_reason,
)
from benchmarks.corpus_own import StoryVisit, run_own_storybook
from benchmarks.corpus_report import RepoResult, write_corpus_results
from benchmarks.corpus_stories import declared_stories
from benchmarks.corpus_studio import run_in_studio
from benchmarks.machine import describe_machine
from benchmarks.service import running_service

__all__ = ["add_arguments", "clone_at", "run_corpus", "run_repository"]

DEFAULT_TIMEOUT_S = 1500.0


def add_arguments(parser: object) -> None:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    parser.add_argument("--only", help="comma-separated owner/name of the manifest")
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the own-Storybook reference"
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per repository"
    )
    parser.add_argument("--corpus-dir", type=Path, help="overrides STUDIO_CORPUS_DIR")


def clone_at(source: Path, commit: str, dest: Path) -> Path:
    """``dest``: a clone of ``source`` with ``commit`` checked out on a branch ``main``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["git", "clone", "-q", "--no-checkout", str(source), str(dest)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["git", "-C", str(dest), "checkout", "-q", "-B", "main", commit],
        check=True,
        capture_output=True,
    )
    return dest


def _failures(visits: list[StoryVisit]) -> dict[str, list[str]]:
    return {v.story_id: v.errors for v in visits if v.errors}


def _studio(
    ctx: RunContext, repo: CorpusRepo, source: Path, result: RepoResult, deadline: float
) -> None:
    clone = clone_at(source, repo.commit, ctx.path("repos") / repo.slug / repo.slug)
    result.declared = sum(len(v) for v in declared_stories(clone / repo.package_dir).values())
    bench = ctx.resource("service", running_service)
    run = run_in_studio(bench, browser(ctx), repo.slug, clone, repo.package_dir, deadline)
    result.prepare_s, result.prepare_state = run.prepare_s, run.prepare_state
    result.first_create_s, result.second_create_s = run.first_create_s, run.second_create_s
    if run.repository_id is not None and run.first_create_s is not None:
        result.listed = len(run.listed)
        result.rendered = sum(1 for v in run.visits if v.ok)
    result.studio_failures = _failures(run.visits)
    if run.prepare_source:
        result.notes.append(f"prepare measured by the {run.prepare_source}")
    if run.error:
        result.errors.append(f"studio: {run.error}")


def _reference(
    ctx: RunContext, repo: CorpusRepo, source: Path, result: RepoResult, deadline: float
) -> None:
    work = ctx.path(f"own/{repo.slug}")
    clone = clone_at(source, repo.commit, work / "repo")
    try:
        manager = detect_manager(clone)
        cache = work / "cache"
        cold = clean_install(clone, manager, cache, max(1.0, deadline - time.monotonic()))
        if not cold.ok:
            result.errors.append(f"own install ({' '.join(cold.command[:3])}): {cold.output_tail}")
            return
        result.own_install_cold_s = round(cold.seconds, 3)
        result.own_install_scripts = cold.scripts
        if not cold.scripts:
            result.notes.append(f"own install with scripts off: {cold.output_tail[-300:]}")
        warm = clean_install(
            clone, manager, cache, max(1.0, deadline - time.monotonic()), scripts=cold.scripts
        )
        if warm.ok:
            result.own_install_warm_s = round(warm.seconds, 3)
        else:
            result.errors.append(f"own warm install: {warm.output_tail}")
            return
        result.notes.append(f"own install: {' '.join(warm.command[:2])} ({manager})")
        own = run_own_storybook(
            browser(ctx), clone / repo.package_dir, clone, work / "storybook.log", deadline
        )
        result.own_dev_first_story_s = own.start_to_first_story_s
        result.own_indexed = len(own.indexed) if own.indexed else None
        if own.visits:
            result.own_rendered = sum(1 for v in own.visits if v.ok)
        result.own_failures = _failures(own.visits)
        if own.error:
            result.errors.append(f"own storybook: {own.error[:1500]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_repository(
    ctx: RunContext, repo: CorpusRepo, folder: Path | None, *, reference: bool, timeout: float
) -> RepoResult:
    """One repository's result; never raises (an error is the result's)."""
    result = RepoResult(repo.repo, repo.commit, repo.kind(), repo.package_dir)
    reason = skip_reason(folder, repo)
    if reason is not None:
        result.status, result.reason = "skipped", reason
        return result
    assert folder is not None
    source = git_dir(folder, repo)
    deadline = time.monotonic() + timeout
    for side in (_studio, *((_reference,) if reference else ())):
        try:
            side(ctx, repo, source, result, deadline)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            result.errors.append(f"{side.__name__.strip('_')}: {type(exc).__name__}: {exc}")
    if not reference:
        result.notes.append("own-Storybook reference not run (--no-reference)")
    if result.errors:
        result.status = "failed"
    return result


def run_corpus(
    *,
    only: str | None,
    reference: bool,
    timeout: float,
    results_dir: Path,
    folder: Path | None = None,
) -> int:
    logging.basicConfig(level=logging.WARNING)
    repos = select(load_manifest(), only)
    folder = folder or corpus_dir()
    machine = describe_machine()
    results: list[RepoResult] = []
    # quick=True: the service's warm pool at its small size; the corpus creates two
    # sandboxes at a time, not a burst (benchmarks/service.py, WARM_WORKERS).
    with RunContext(quick=True) as ctx:
        for repo in repos:
            print(f"== {repo.pinned}", file=sys.stderr, flush=True)
            started = time.monotonic()
            result = run_repository(ctx, repo, folder, reference=reference, timeout=timeout)
            print(
                f"   {result.status} in {time.monotonic() - started:.0f} s: "
                f"{result.reason or '; '.join(result.errors)[:400]}",
                file=sys.stderr,
                flush=True,
            )
            results.append(result)
            # each result as it comes: a run stopped half-way keeps what it measured
            write_corpus_results(results_dir, [result], machine=machine)
    json_path, md_path = write_corpus_results(results_dir, [], machine=machine)
    print(md_path.read_text())
    print(f"results: {json_path}", file=sys.stderr)
    return 0
