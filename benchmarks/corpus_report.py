"""One corpus repository's figures, the issue's targets on them, and the results files.

``benchmarks/results/corpus-<date>.json`` and ``.md``, beside the scenarios'
files (``corpus-reference-<date>.*`` for a ``--reference-only`` run); a later
run of the same day replaces the rows of the repositories it ran (``--only``)
and keeps the others.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.results import load_results

__all__ = [
    "REFERENCE_PREFIX",
    "RepoResult",
    "group_failures",
    "markdown",
    "ratios",
    "write_corpus_results",
]

SCHEMA_VERSION = 1
# The file name prefix of a --reference-only run's results (benchmarks/corpus_reference.py).
REFERENCE_PREFIX = "corpus-reference"


@dataclass
class RepoResult:
    """Everything measured for one repository (None: not measured, and ``notes`` say why)."""

    repo: str
    commit: str
    kind: dict[str, str]
    package_dir: str = ""
    status: str = "ok"  # ok | failed | skipped | interrupted
    reason: str | None = None
    declared: int | None = None
    listed: int | None = None
    rendered: int | None = None
    own_indexed: int | None = None
    own_rendered: int | None = None
    prepare_s: float | None = None
    prepare_state: str | None = None
    first_create_s: float | None = None
    # the median of later_creates_s: creates after the first, each on a held sandbox
    second_create_s: float | None = None
    later_creates_s: list[float] = field(default_factory=list)
    setup_create_s: float | None = None
    # edit -> render verdict on the first story's module (benchmarks/corpus_verdict.py)
    verdict_p50_s: float | None = None
    verdict_p99_s: float | None = None
    verdict_answers: dict[str, int] = field(default_factory=dict)
    own_install_cold_s: float | None = None
    own_install_warm_s: float | None = None
    own_install_scripts: bool | None = None
    own_dev_first_story_s: float | None = None
    studio_failures: dict[str, list[str]] = field(default_factory=dict)
    own_failures: dict[str, list[str]] = field(default_factory=dict)
    # Where the own_* figures come from when not measured in this run (corpus_reference.py).
    reference_source: str | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratios": ratios(self)}


def _div(a: float | int | None, b: float | int | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def ratios(result: RepoResult) -> dict[str, Any]:
    """The issue's targets on this repository: each figure, its limit and whether it is met."""
    figures = {
        "story_ratio": (_div(result.rendered, result.own_rendered), ">=", 1.0),
        "prepared_create_s": (result.first_create_s, "<=", 2.0),
        "second_create_s": (result.second_create_s, "<=", 1.0),
        "dev_over_create": (_div(result.own_dev_first_story_s, result.first_create_s), ">=", 5.0),
        "prepare_over_cold_install": (_div(result.prepare_s, result.own_install_cold_s), "<=", 1.0),
        "prepare_over_warm_install": (_div(result.prepare_s, result.own_install_warm_s), "<=", 0.3),
    }
    out: dict[str, Any] = {}
    for name, (value, op, limit) in figures.items():
        met = None if value is None else (value >= limit if op == ">=" else value <= limit)
        out[name] = {"value": value, "target": f"{op} {limit:g}", "met": met}
    return out


_VOLATILE = re.compile(r"https?://\S+|/tmp/\S+|\b[0-9a-f]{8,}\b|\d+")


def _cause(error: str) -> str:
    """An error message with URLs, paths, hashes and numbers blanked, to group by."""
    return _VOLATILE.sub("…", error.splitlines()[0] if error else "")[:240]


def group_failures(results: list[RepoResult], side: str = "studio") -> dict[str, list[str]]:
    """``{cause: ["owner/repo: story", ...]}`` over every repository's failing stories."""
    groups: dict[str, list[str]] = defaultdict(list)
    for result in results:
        failures = result.studio_failures if side == "studio" else result.own_failures
        for story, errors in failures.items():
            groups[_cause(errors[0] if errors else "")].append(f"{result.repo}: {story}")
    return dict(sorted(groups.items(), key=lambda item: -len(item[1])))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _met(entry: dict[str, Any]) -> str:
    value = _fmt(entry["value"])
    return value if entry["met"] is None else (value if entry["met"] else f"**{value}**")


def _kind_text(entry: dict[str, Any]) -> str:
    kind = entry["kind"]
    text = "; ".join(
        (kind["styling"], f"SB {kind['storybook']}", kind["package_manager"], kind["builder"])
    )
    return text + (f"; package `{entry['package_dir']}`" if entry.get("package_dir") else "")


def _repo_cell(entry: dict[str, Any]) -> str:
    return (
        f"[{entry['repo']}](https://github.com/{entry['repo']}/tree/{entry['commit']}) "
        f"`{entry['commit'][:10]}`"
    )


def _install_cell(entry: dict[str, Any]) -> str:
    scripts = "" if entry.get("own_install_scripts") in (None, True) else " (scripts off)"
    return (
        f"{_fmt(entry.get('own_install_cold_s'))}/{_fmt(entry.get('own_install_warm_s'))}{scripts}"
    )


def _reference_rows(repos: list[dict[str, Any]]) -> list[str]:
    """A --reference-only run's table: only what its own Storybook did."""
    lines = [
        "| repository | kind | status | stories declared | indexed by its Storybook | "
        "rendered there | own install cold/warm | own dev -> story |",
        "|---|---|---|---:|---:|---:|---|---:|",
    ]
    for entry in repos:
        lines.append(
            f"| {_repo_cell(entry)} | {_kind_text(entry)} | {entry['status']} | "
            f"{_fmt(entry.get('declared'))} | {_fmt(entry.get('own_indexed'))} | "
            f"{_fmt(entry.get('own_rendered'))} | {_install_cell(entry)} | "
            f"{_fmt(entry.get('own_dev_first_story_s'))} |"
        )
    return lines


def _verdict_cell(entry: dict[str, Any]) -> str:
    """Verdict p50/p99 in ms and the wrong answers of the scripted edits (corpus_verdict)."""
    if entry.get("verdict_p50_s") is None:
        return "-"
    answers: dict[str, int] = entry.get("verdict_answers") or {}
    wrong = sum(n for key, n in answers.items() if key.split(" -> ")[0] != key.split(" -> ")[-1])
    p50, p99 = entry["verdict_p50_s"] * 1000, (entry.get("verdict_p99_s") or 0) * 1000
    return f"{p50:.0f}/{p99:.0f} ms ({wrong})"


def _studio_rows(repos: list[dict[str, Any]]) -> list[str]:
    """Both sides' table, with the issue's targets judged per repository."""
    lines = [
        "| repository | kind | status | stories decl/listed/studio/own | ratio | prepare | "
        "1st create | later creates | set-up create | verdict p50/p99 (wrong) | "
        "own install cold/warm | own dev -> story | dev/create | prep/cold | prep/warm |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for entry in repos:
        r = entry["ratios"]
        stories = "/".join(
            _fmt(entry.get(k)) for k in ("declared", "listed", "rendered", "own_rendered")
        )
        lines.append(
            f"| {_repo_cell(entry)} | {_kind_text(entry)} | {entry['status']} | {stories} | "
            f"{_met(r['story_ratio'])} | {_fmt(entry.get('prepare_s'))} | "
            f"{_met(r['prepared_create_s'])} | "
            f"{_met(r['second_create_s'])} | {_fmt(entry.get('setup_create_s'))} | "
            f"{_verdict_cell(entry)} | {_install_cell(entry)} | "
            f"{_fmt(entry.get('own_dev_first_story_s'))} | "
            f"{_met(r['dev_over_create'])} | {_met(r['prepare_over_cold_install'])} | "
            f"{_met(r['prepare_over_warm_install'])} |"
        )
    return lines


def _machine_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine.get('cpu_model')} x{machine.get('cpu_count')}, "
        f"{machine.get('memory_total_mib')} MiB; Node {machine.get('node')}"
    )


def _machines_header(document: dict[str, Any], repos: list[dict[str, Any]]) -> str:
    """Which machine measured the rows (rows written before rows kept theirs: the document's)."""
    by_machine: dict[str, list[str]] = {}
    for entry in repos:
        line = _machine_line(entry.get("machine") or document.get("machine", {}))
        by_machine.setdefault(line, []).append(entry["repo"])
    if len(by_machine) <= 1:
        line = next(iter(by_machine), _machine_line(document.get("machine", {})))
        return f"Machine: {line}. Times in seconds. "
    parts = [f"{line} ({', '.join(names)})" for line, names in by_machine.items()]
    return f"Machines: {'; '.join(parts)}. Times in seconds. "


def markdown(document: dict[str, Any]) -> str:
    """The day's corpus results as markdown: one row per repository, then failures by cause."""
    repos = list(document.get("repositories", {}).values())
    header = _machines_header(document, repos)
    if document.get("reference_only"):
        lines = [
            f"# Corpus reference {document.get('date', '')}",
            "",
            header + "Each repository in its own Storybook only (`--reference-only`): stories "
            "declared (CSF exports of main's globs), listed in its `index.json`, rendered "
            "there without the error display, a page error or a console error; its clean "
            "install with a cold and a warm cache; `storybook dev` start -> first story "
            "rendered.",
            "",
            *_reference_rows(repos),
        ]
    else:
        lines = [
            f"# Corpus {document.get('date', '')}",
            "",
            header + "Stories: declared (CSF exports of main's globs) / listed in the studio / "
            "rendered in the studio / rendered in the repository's own Storybook (of its "
            "index.json). Later creates: the median of the creates after the first, each on a "
            "held sandbox (each in the notes). Bold: a target of the issue missed (story "
            "ratio >= 1, create <= 2 s, later creates <= 1 s, dev/create >= 5, prepare <= cold "
            "install, <= 0.3x warm install).",
            "",
            *_studio_rows(repos),
        ]
    details = []
    for entry in repos:
        items = [f"{entry['status']}: {entry['reason']}"] if entry.get("reason") else []
        items += [f"error: {' / '.join(e.splitlines()[:3])[:700]}" for e in entry.get("errors", [])]
        items += entry.get("notes", [])
        if entry.get("later_creates_s"):
            items.append(f"later creates: {', '.join(map(_fmt, entry['later_creates_s']))} s")
        if entry.get("prepare_state"):
            items.append(f"preparation: {entry['prepare_state']}")
        if items:
            details.append(f"- **{entry['repo']}**: " + "; ".join(items))
    if details:
        lines += ["", "## Per repository", "", *details]
    for side, title in (
        ("studio", "Stories failing in the studio"),
        ("own", "Stories failing in their own Storybook"),
    ):
        groups = document.get(f"{side}_failures_by_cause", {})
        if not groups:
            continue
        lines += ["", f"## {title}, by cause", ""]
        for cause, stories in groups.items():
            shown = ", ".join(stories[:8]) + (
                f" and {len(stories) - 8} more" if len(stories) > 8 else ""
            )
            lines.append(f"- {len(stories)} x `{cause}`: {shown}")
    return "\n".join(lines) + "\n"


def write_corpus_results(
    results_dir: Path,
    results: list[RepoResult],
    *,
    machine: dict[str, Any],
    now: dt.datetime | None = None,
    prefix: str = "corpus",
) -> tuple[Path, Path]:
    """Merge ``results`` into the day's ``<prefix>-<date>.json`` by repository; redo the .md."""
    now = now or dt.datetime.now(dt.UTC)
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = results_dir / f"{prefix}-{now.date().isoformat()}.json"
    previous = load_results(json_path) or {}
    repositories: dict[str, Any] = dict(previous.get("repositories", {}))
    stamp = now.isoformat(timespec="seconds")
    for result in results:
        # Each row keeps its own machine: a later run of some repositories may be on another.
        repositories[result.repo] = {**result.to_json(), "measured_at": stamp, "machine": machine}
    every = [_from_json(entry) for entry in repositories.values()]
    document = {
        "schema": SCHEMA_VERSION,
        "date": now.date().isoformat(),
        "updated_at": stamp,
        "machine": machine,
        "reference_only": prefix == REFERENCE_PREFIX,
        "repositories": repositories,
        "studio_failures_by_cause": group_failures(every, "studio"),
        "own_failures_by_cause": group_failures(every, "own"),
    }
    json_path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    md_path = json_path.with_suffix(".md")
    md_path.write_text(markdown(document))
    return json_path, md_path


def _from_json(entry: dict[str, Any]) -> RepoResult:
    fields = set(RepoResult.__dataclass_fields__)
    return RepoResult(**{k: v for k, v in entry.items() if k in fields})
