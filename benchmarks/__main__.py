"""``python -m benchmarks run [--quick] [--only NAME,...] [--speedups on|off] [--without A,B]``.

``python -m benchmarks corpus [--only owner/name] [--reference-only | --no-reference
[--reference-from FILE]]``: the corpus of real repositories (benchmarks/corpus.py).

Runs the scenarios in order (floors first, so ratios come from the same run),
writes ``<results-dir>/<YYYY-MM-DD>.json`` and ``.md`` and prints the table.
``--speedups off`` runs the service with every speed-up of the create path
switched off, ``--without standby,shell`` with those (``list`` names them;
benchmarks/speedups.py); the results record which were on, and a run with
some off writes rows of its own beside those of the full service.
A scenario that raises is recorded with its error and the others still run;
the exit code is 2 when any scenario errored, 0 otherwise (a missed target is
a finding, not a harness failure).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from pathlib import Path

from benchmarks.context import RunContext, Scenario
from benchmarks.corpus import Sides, run_corpus
from benchmarks.corpus import add_arguments as add_corpus_arguments
from benchmarks.machine import describe_machine
from benchmarks.results import ScenarioResult, apply_floor, write_results
from benchmarks.scenarios import SCENARIOS
from benchmarks.speedups import available, parse_off, switched_off, switches

__all__ = ["main", "run_scenarios"]

DEFAULT_RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _select(only: str | None) -> list[Scenario]:
    if not only:
        return list(SCENARIOS)
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    known = {scenario.name: scenario for scenario in SCENARIOS}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return [scenario for scenario in SCENARIOS if scenario.name in wanted]


def run_scenarios(scenarios: list[Scenario], ctx: RunContext) -> list[ScenarioResult]:
    """Run each scenario, turning an exception into an error result."""
    results = []
    for scenario in scenarios:
        print(f"== {scenario.name}: {scenario.title}", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            result = scenario.run(ctx)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            result = ScenarioResult(scenario.name, scenario.title)
            result.error = f"{type(exc).__name__}: {exc}"
        result.speedups = dict(ctx.speedups)
        stats = result.stats
        print(
            f"   n={stats.get('n', 0)} median={stats.get('median')} p95={stats.get('p95')} "
            f"figures={result.figures} error={result.error} "
            f"({time.monotonic() - started:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    apply_floor(results)
    return results


def main(argv: list[str] | None = None) -> int:
    """The command line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the scenarios and write the results")
    run.add_argument("--quick", action="store_true", help="tiny sample counts (smoke test)")
    run.add_argument("--only", help="comma-separated scenario names")
    run.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    run.add_argument(
        "--speedups",
        default="on",
        choices=("on", "off"),
        help="off: every speed-up of the create path switched off",
    )
    run.add_argument("--without", help="comma-separated speed-ups to switch off (see list)")
    sub.add_parser("list", help="list the scenarios and the speed-ups")
    corpus = sub.add_parser(
        "corpus", help="the corpus of real repositories (benchmarks/corpus.toml)"
    )
    add_corpus_arguments(corpus)
    corpus.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.command == "corpus":
        try:
            sides = Sides.from_arguments(
                no_reference=args.no_reference,
                reference_only=args.reference_only,
                reference_from=args.reference_from,
                results_dir=args.results_dir,
            )
        except ValueError as exc:
            parser.error(str(exc))
        return run_corpus(
            only=args.only,
            sides=sides,
            timeout=args.timeout,
            results_dir=args.results_dir,
            folder=args.corpus_dir,
            manifest=args.manifest,
        )
    if args.command == "list":
        for scenario in SCENARIOS:
            print(f"{scenario.name:24} {scenario.title}")
        print("\nspeed-ups (--without): " + ", ".join(s.name for s in available()))
        return 0
    logging.basicConfig(level=logging.WARNING)
    scenarios = _select(args.only)
    off = parse_off(args.speedups, args.without)
    machine = describe_machine()
    # Before anything starts: Ray's workers inherit the environment.
    with switched_off(off), RunContext(quick=args.quick, speedups=switches(off)) as ctx:
        results = run_scenarios(scenarios, ctx)
    json_path, md_path = write_results(args.results_dir, results, machine=machine, quick=args.quick)
    print(md_path.read_text())
    print(f"results: {json_path}", file=sys.stderr)
    return 2 if any(result.error for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
