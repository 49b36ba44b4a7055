"""``python -m benchmarks corpus [--only owner/name,...] [--timeout S]
[--reference-only | --no-reference [--reference-from FILE|none]]``.

Per repository of benchmarks/corpus.toml whose git dir is in STUDIO_CORPUS_DIR
(a missing one is reported as skipped): a clone at the pinned commit under the
service's repository root, then the studio side (benchmarks/corpus_studio.py)
and the same repository in its own Storybook (benchmarks/corpus_own.py) from
a second clone with its own installs. Each repository has ``--timeout``
seconds for all of it; what it did not finish is reported as such and the
next one runs. Writes ``<results-dir>/corpus-<date>.json`` and ``.md`` and
prints the table.

The reference does not depend on this project, so it can run on its own:
``--reference-only`` runs only it (no service, no Ray) and writes
``corpus-reference-<date>.*``; ``--no-reference`` runs only the studio side
and takes each repository's reference from ``--reference-from FILE``, by
default the newest ``corpus-reference-*.json`` in the results directory that
measured the same commit (``none``: no reference at all).

SIGINT and SIGTERM stop the run cleanly (benchmarks/_signals.py): the
repository in progress is written as ``interrupted`` with what it measured,
and everything the run started (storybook dev, installs, the service, Ray,
Chromium, the work dir) is stopped and removed on the way out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from benchmarks._browser import browser
from benchmarks._signals import Stopped, stop_on_signals
from benchmarks.context import RunContext
from benchmarks.corpus_install import clean_install, detect_manager
from benchmarks.corpus_manifest import (
    MANIFEST,
    CorpusRepo,
    corpus_dir,
    git_dir,
    load_manifest,
    select,
    skip_reason,
)
from benchmarks.corpus_own import OwnStorybook, StoryVisit, run_own_storybook
from benchmarks.corpus_reference import (
    apply_reference,
    find_reference,
    load_reference_file,
    reference_files,
)
from benchmarks.corpus_report import REFERENCE_PREFIX, RepoResult, write_corpus_results
from benchmarks.corpus_stories import declared_stories
from benchmarks.corpus_studio import run_in_studio
from benchmarks.machine import describe_machine
from benchmarks.service import BenchService, running_service

__all__ = ["Sides", "add_arguments", "clone_at", "failed", "run_corpus", "run_repository"]

DEFAULT_TIMEOUT_S = 1500.0


def add_arguments(parser: object) -> None:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    parser.add_argument("--only", help="comma-separated owner/name of the manifest")
    sides = parser.add_mutually_exclusive_group()
    sides.add_argument(
        "--no-reference",
        action="store_true",
        help="studio side only; the reference comes from --reference-from",
    )
    sides.add_argument(
        "--reference-only",
        action="store_true",
        help="own-Storybook reference only, written to corpus-reference-<date>.*",
    )
    parser.add_argument(
        "--reference-from",
        help="with --no-reference: a corpus results JSON to take the reference from "
        "(default: the newest corpus-reference-*.json of the results dir at the same "
        "commit; 'none': no reference)",
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per repository"
    )
    parser.add_argument("--corpus-dir", type=Path, help="overrides STUDIO_CORPUS_DIR")
    parser.add_argument(
        "--manifest", type=Path, default=MANIFEST, help="a manifest other than corpus.toml"
    )


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


def _corpus_service(ctx: RunContext) -> contextlib.AbstractContextManager[BenchService]:
    """The service as users get it: one ready sandbox per repository (actors._ready)."""
    return running_service(ctx, ready_sandboxes=1)


def _studio(
    ctx: RunContext, repo: CorpusRepo, source: Path, result: RepoResult, deadline: float
) -> None:
    clone = clone_at(source, repo.commit, ctx.path("repos") / repo.slug / repo.slug)
    result.declared = sum(len(v) for v in declared_stories(clone / repo.package_dir).values())
    bench = ctx.resource("service", _corpus_service)
    run = run_in_studio(
        bench,
        browser(ctx),
        repo.slug,
        clone,
        repo.package_dir,
        deadline,
        setup_command=repo.setup_command,
    )
    result.prepare_s, result.prepare_state = run.prepare_s, run.prepare_state
    for which, setup in (("first", run.setup), ("second", run.second_setup)):
        if setup is not None:
            how = "copied from an earlier sandbox" if setup.get("reused") else "ran"
            result.notes.append(
                f"setup command `{repo.setup_command}` in the {which} sandbox: {how}, "
                f"{setup.get('status')} in {setup.get('seconds')} s"
                + ("" if setup.get("status") == "ok" else f": {setup.get('output')}")
            )
    result.first_create_s, result.second_create_s = run.first_create_s, run.second_create_s
    result.later_creates_s = list(run.later_creates_s)
    result.setup_create_s = run.setup_create_s
    result.notes.extend(run.phases)
    if run.verdicts is not None:
        result.verdict_p50_s, result.verdict_p99_s = run.verdicts.p50_s, run.verdicts.p99_s
        result.verdict_answers = dict(run.verdicts.answers)
        if run.verdicts.error:
            result.notes.append(f"verdicts: {run.verdicts.error}")
        else:
            result.notes.append(
                f"verdicts: edits of {run.verdicts.module}, baseline {run.verdicts.baseline}"
            )
    if run.repository_id is not None and run.first_create_s is not None:
        result.listed = len(run.listed)
        result.rendered = sum(1 for v in run.visits if v.ok)
    result.studio_failures = _failures(run.visits)
    if run.prepare_source:
        result.notes.append(f"prepare measured by the {run.prepare_source}")
    if run.error:
        result.errors.append(f"studio: {run.error}")


def _command_text(argv: list[str]) -> str:
    """An install's argv up to ``install`` (``npm ci``), paths shortened to their name."""
    head = argv[: argv.index("install") + 1] if "install" in argv else argv[:2]
    return " ".join(Path(part).name if part.startswith("/") else part for part in head)


def _own_setup(clone: Path, repo: CorpusRepo, deadline: float) -> str:
    """The repository's setup command run as its developers run it, before its Storybook."""
    package = clone / repo.package_dir
    path = os.pathsep.join(
        [
            str(package / "node_modules" / ".bin"),
            str(clone / "node_modules" / ".bin"),
            os.environ.get("PATH", ""),
        ]
    )
    started = time.monotonic()
    try:
        done = subprocess.run(
            shlex.split(repo.setup_command),
            cwd=package,
            env={**os.environ, "PATH": path},
            capture_output=True,
            text=True,
            timeout=max(1.0, deadline - time.monotonic()),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"own setup command `{repo.setup_command}` did not run: {exc}"
    seconds = round(time.monotonic() - started, 3)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip()[-300:]
        return f"own setup command `{repo.setup_command}` exited {done.returncode}: {tail}"
    return f"own setup command `{repo.setup_command}`: {seconds} s"


def _reference(
    ctx: RunContext, repo: CorpusRepo, source: Path, result: RepoResult, deadline: float
) -> None:
    work = ctx.path(f"own/{repo.slug}")
    clone = clone_at(source, repo.commit, work / "repo")
    if result.declared is None:
        result.declared = sum(len(v) for v in declared_stories(clone / repo.package_dir).values())
    try:
        manager = detect_manager(clone)
        cache = work / "cache"
        cold = clean_install(clone, manager, cache, max(1.0, deadline - time.monotonic()))
        if not cold.ok:
            result.errors.append(f"own install ({_command_text(cold.command)}): {cold.output_tail}")
            return
        result.own_install_cold_s = round(cold.seconds, 3)
        result.own_install_scripts = cold.scripts
        if not cold.frozen:
            result.notes.append(
                "own install not frozen: the committed lockfile is out of date with package.json"
            )
        if not cold.scripts:
            result.notes.append(f"own install with scripts off: {cold.output_tail[-300:]}")
        warm = clean_install(
            clone,
            manager,
            cache,
            max(1.0, deadline - time.monotonic()),
            scripts=cold.scripts,
            frozen=cold.frozen,
        )
        if warm.ok:
            result.own_install_warm_s = round(warm.seconds, 3)
        else:
            result.errors.append(f"own warm install: {warm.output_tail}")
            return
        result.notes.append(f"own install: {_command_text(warm.command)} ({manager})")
        if repo.setup_command:
            result.notes.append(_own_setup(clone, repo, deadline))
        own = OwnStorybook()
        try:
            run_own_storybook(
                browser(ctx),
                clone / repo.package_dir,
                clone,
                work / "storybook.log",
                deadline,
                result=own,
            )
        finally:
            # also on an interruption: the stories visited so far are the result's
            result.own_dev_first_story_s = own.start_to_first_story_s
            result.own_indexed = len(own.indexed) if own.indexed else None
            if own.tests:
                result.notes.append(
                    f"own Storybook: {len(own.tests)} tests of stories in its index "
                    "(Storybook 10's Story.test) not counted as stories"
                )
            if own.visits:
                result.own_rendered = sum(1 for v in own.visits if v.ok)
                result.notes.append(f"own Storybook: {len(own.visits)} stories visited")
            result.own_failures = _failures(own.visits)
            if own.error:
                result.errors.append(f"own storybook: {own.error[:1500]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class Sides:
    """Which sides a run measures, and where the reference comes from when not measured.

    ``reference_from``: the files to take a reference from, tried in order
    (empty: none); used only when ``reference`` is off.
    """

    studio: bool = True
    reference: bool = True
    reference_from: tuple[Path, ...] = ()

    @classmethod
    def from_arguments(
        cls,
        *,
        no_reference: bool,
        reference_only: bool,
        reference_from: str | None,
        results_dir: Path,
    ) -> Sides:
        """The sides the command line asks for; ValueError on a contradiction or a bad file."""
        if reference_from is not None and not no_reference:
            raise ValueError("--reference-from goes with --no-reference (the studio side only)")
        if reference_only:
            return cls(studio=False, reference=True)
        if not no_reference:
            return cls()
        if reference_from == "none":
            return cls(reference=False)
        if reference_from is not None:
            path = Path(reference_from)
            load_reference_file(path)  # refuses a missing or malformed file now, not later
            return cls(reference=False, reference_from=(path,))
        return cls(reference=False, reference_from=tuple(reference_files(results_dir)))


def run_repository(
    ctx: RunContext,
    repo: CorpusRepo,
    folder: Path | None,
    *,
    sides: Sides,
    timeout: float,
    result: RepoResult | None = None,
) -> RepoResult:
    """One repository's result, filled into ``result`` as it is measured.

    Never raises an Exception (an error is the result's); Stopped (a signal)
    goes through, leaving in ``result`` what was measured until then.
    """
    result = result or RepoResult(repo.repo, repo.commit, repo.kind(), repo.package_dir)
    reason = skip_reason(folder, repo)
    if reason is not None:
        result.status, result.reason = "skipped", reason
        return result
    assert folder is not None
    source = git_dir(folder, repo)
    deadline = time.monotonic() + timeout
    chosen = [*((_studio,) if sides.studio else ()), *((_reference,) if sides.reference else ())]
    for side in chosen:
        try:
            side(ctx, repo, source, result, deadline)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            result.errors.append(f"{side.__name__.strip('_')}: {type(exc).__name__}: {exc}")
    if not sides.studio:
        result.notes.append("studio side not run (--reference-only)")
    if not sides.reference:
        found = find_reference(list(sides.reference_from), repo.repo, repo.commit)
        if found is not None:
            apply_reference(result, found)
        else:
            result.notes.append(
                "own-Storybook reference not run (--no-reference) and none found at this commit"
            )
    if failed(result.errors, studio_ran=sides.studio):
        result.status = "failed"
    return result


def failed(errors: list[str], *, studio_ran: bool) -> bool:
    """Whether a row with ``errors`` failed. A reference that failed (its own Storybook)
    leaves the studio's row standing, its error listed as ``reference: …``; only a
    reference-only run fails on it."""
    if not studio_ran:
        return bool(errors)
    return any(not error.startswith("reference:") for error in errors)


def run_corpus(
    *,
    only: str | None,
    sides: Sides,
    timeout: float,
    results_dir: Path,
    folder: Path | None = None,
    manifest: Path = MANIFEST,
) -> int:
    """Run the selected repositories; 0, or 130/143 when a signal stopped the run."""
    logging.basicConfig(level=logging.WARNING)
    repos = select(load_manifest(manifest), only)
    folder = folder or corpus_dir()
    machine = describe_machine()
    prefix = REFERENCE_PREFIX if not sides.studio else "corpus"
    results: list[RepoResult] = []
    stopped: Stopped | None = None
    # stop_on_signals outside the RunContext: a signal unwinds through the context's
    # close (service, Ray, Chromium, work dir), and a second one cannot cut that short.
    with stop_on_signals():
        try:
            # quick=True: the service's warm pool at its small size; the corpus creates
            # two sandboxes at a time, not a burst (benchmarks/service.py, WARM_WORKERS).
            with RunContext(quick=True) as ctx:
                for repo in repos:
                    print(f"== {repo.pinned}", file=sys.stderr, flush=True)
                    started = time.monotonic()
                    result = RepoResult(repo.repo, repo.commit, repo.kind(), repo.package_dir)
                    try:
                        run_repository(
                            ctx, repo, folder, sides=sides, timeout=timeout, result=result
                        )
                    except Stopped as exc:
                        result.status = "interrupted"
                        result.reason = f"{exc} after {time.monotonic() - started:.0f} s"
                        raise
                    finally:
                        # each result as it comes: a run stopped half-way keeps what it measured
                        write_corpus_results(results_dir, [result], machine=machine, prefix=prefix)
                    print(
                        f"   {result.status} in {time.monotonic() - started:.0f} s: "
                        f"{result.reason or '; '.join(result.errors)[:400]}",
                        file=sys.stderr,
                        flush=True,
                    )
                    results.append(result)
        except Stopped as exc:
            stopped = exc
    json_path, md_path = write_corpus_results(results_dir, [], machine=machine, prefix=prefix)
    if stopped is not None:
        print(f"{stopped}: partial results in {json_path}", file=sys.stderr, flush=True)
        return 128 + stopped.signum
    print(md_path.read_text())
    print(f"results: {json_path}", file=sys.stderr)
    return 0
