"""What a scenario returns, how it is judged against its target, and the results files.

A run writes ``<results_dir>/<YYYY-MM-DD>.json`` and ``.md``. Later runs of the
same day merge into that file scenario by scenario (a ``--only`` run replaces
just the scenarios it ran), so one file per date holds the day's latest figure
of every scenario, each with the machine and time it was measured at, and
which speed-ups of the create path were on. A run with some of them off
keeps its rows apart (``<name> [without a,b]``): it never replaces the full
service's figure.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.stats import summarize

__all__ = [
    "SCHEMA_VERSION",
    "ScenarioResult",
    "Target",
    "apply_floor",
    "load_results",
    "markdown_table",
    "merge_results",
    "write_results",
]

SCHEMA_VERSION = 1

Figure = float | int | str | bool | None


@dataclass(frozen=True)
class Target:
    """A limit on one figure of a scenario: ``metric <= limit`` (or ``>=`` when ``at_least``).

    ``metric`` names a key of the scenario's stats (``median``, ``p95``, ``p99``)
    or of its figures (``ratio_to_floor``, ``pss_mib``...).
    """

    metric: str
    limit: float
    label: str
    at_least: bool = False

    def check(self, values: dict[str, Figure]) -> bool | None:
        """Whether the figure meets the limit; None when it was not measured."""
        value = values.get(self.metric)
        if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
            return None
        return value >= self.limit if self.at_least else value <= self.limit

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "limit": self.limit,
            "label": self.label,
            "at_least": self.at_least,
        }


@dataclass
class ScenarioResult:
    """The outcome of one scenario: raw samples, derived figures and targets.

    ``floor`` names the floor scenario its median is divided by
    (``ratio_to_floor``); ``error`` says why it could not run (the other
    scenarios still do).
    """

    name: str
    title: str
    unit: str = "s"
    samples: list[float] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    floor: str | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    failures: int = 0
    # Each speed-up of the create path and whether it was on (empty: not recorded, all on).
    speedups: dict[str, bool] = field(default_factory=dict)

    @property
    def stats(self) -> dict[str, float | int]:
        return summarize(self.samples)

    @property
    def switched_off(self) -> list[str]:
        """The speed-ups that were off, in the order the create path meets them."""
        return [name for name, on in self.speedups.items() if not on]

    @property
    def key(self) -> str:
        """The row it fills in the results: its name, and the speed-ups that were off."""
        off = self.switched_off
        return f"{self.name} [without {','.join(off)}]" if off else self.name

    def values(self) -> dict[str, Figure]:
        """Stats and figures in one namespace, as targets see them."""
        return {**self.stats, **self.figures}

    def verdict(self) -> bool | None:
        """True when every target is met, False when one is missed, None when none applies.

        A run with failures (an edit never shown, a create that failed) misses:
        its latencies only cover what succeeded.
        """
        if self.error is not None and not self.samples and not self.figures:
            return False if self.targets else None
        if self.failures and self.targets:
            return False
        checks = [target.check(self.values()) for target in self.targets]
        if any(check is False for check in checks):
            return False
        if not checks or any(check is None for check in checks):
            return None
        return True

    def to_json(self, measured_at: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "unit": self.unit,
            "samples": [round(s, 6) for s in self.samples],
            "stats": self.stats,
            "figures": self.figures,
            "failures": self.failures,
            "targets": [{**t.to_json(), "met": t.check(self.values())} for t in self.targets],
            "passed": self.verdict(),
            "floor": self.floor,
            "notes": self.notes,
            "error": self.error,
            "speedups": self.speedups,
            "measured_at": measured_at,
        }


def apply_floor(results: list[ScenarioResult]) -> None:
    """Set ``ratio_to_floor`` on each result whose floor ran in the same run."""
    medians = {r.name: r.stats.get("median") for r in results if r.samples}
    for result in results:
        if result.floor is None or not result.samples:
            continue
        floor = medians.get(result.floor)
        if isinstance(floor, int | float) and floor > 0:
            result.figures["ratio_to_floor"] = round(result.stats["median"] / floor, 3)


def load_results(path: Path) -> dict[str, Any] | None:
    """The results document at ``path``; None when absent or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def merge_results(
    existing: dict[str, Any] | None,
    results: list[ScenarioResult],
    *,
    machine: dict[str, Any],
    quick: bool,
    now: dt.datetime,
) -> dict[str, Any]:
    """A results document: ``existing``'s scenarios with this run's replacing theirs."""
    stamp = now.isoformat(timespec="seconds")
    scenarios: dict[str, Any] = dict(existing.get("scenarios", {})) if existing else {}
    for result in results:
        entry = result.to_json(stamp)
        entry["quick"] = quick
        entry["machine"] = machine
        scenarios[result.key] = entry
    return {
        "schema": SCHEMA_VERSION,
        "date": now.date().isoformat(),
        "updated_at": stamp,
        "machine": machine,
        "scenarios": scenarios,
    }


def _fmt(value: Any, unit: str) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    return f"{value:.1f} {unit}".strip()


def _row_title(entry: dict[str, Any]) -> str:
    """The entry's title, with the speed-ups that were off when it was measured."""
    title = str(entry.get("title", entry.get("name")))
    off = [name for name, on in entry.get("speedups", {}).items() if not on]
    return f"{title} (without {', '.join(off)})" if off else title


def markdown_table(document: dict[str, Any]) -> str:
    """The document as a markdown table: median / p95 / p99, target, ratio to floor, verdict."""
    machine = document.get("machine", {})
    lines = [
        f"# Benchmarks {document.get('date', '')}",
        "",
        f"Machine: {machine.get('cpu_model')} x{machine.get('cpu_count')}, "
        f"{machine.get('memory_total_mib')} MiB, kernel {machine.get('kernel')}; "
        f"Python {machine.get('python')}, Node {machine.get('node')}, Ray {machine.get('ray')}, "
        f"Vite {machine.get('vite')}. Ratios divide by the floor measured in the same run; "
        "a run of some scenarios replaces only theirs (time and 1-min load average per row).",
        "",
        "| scenario | n | median | p95 | p99 | target | ratio to floor | met | measured (load) |",
        "|---|---:|---:|---:|---:|---|---:|---|---|",
    ]
    verdicts = {True: "yes", False: "**no**", None: "-"}
    for entry in document.get("scenarios", {}).values():
        stats = entry.get("stats", {})
        unit = entry.get("unit", "s")
        target = "; ".join(t["label"] for t in entry.get("targets", [])) or "-"
        ratio = entry.get("figures", {}).get("ratio_to_floor")
        ratio_text = f"{ratio:.2f}x" if isinstance(ratio, int | float) else "-"
        title = _row_title(entry)
        if entry.get("quick"):
            title += " (quick)"
        load = entry.get("machine", {}).get("load_average") or ["-"]
        when = str(entry.get("measured_at", ""))[11:16]
        lines.append(
            f"| {title} | {stats.get('n', 0)} | {_fmt(stats.get('median'), unit)} | "
            f"{_fmt(stats.get('p95'), unit)} | {_fmt(stats.get('p99'), unit)} | {target} | "
            f"{ratio_text} | {verdicts[entry.get('passed')]} | {when} ({load[0]}) |"
        )
    details = []
    for entry in document.get("scenarios", {}).values():
        extra = {k: v for k, v in entry.get("figures", {}).items() if k != "ratio_to_floor"}
        notes = entry.get("notes", [])
        if not extra and not notes and not entry.get("error") and not entry.get("failures"):
            continue
        details.append(f"- **{_row_title(entry)}**:")
        if extra:
            details.append("  " + ", ".join(f"{k} = {v}" for k, v in extra.items()))
        if entry.get("failures"):
            details.append(f"  failures: {entry['failures']}")
        details.extend(f"  {note}" for note in notes)
        if entry.get("error"):
            error = " / ".join(line.strip() for line in entry["error"].splitlines())
            details.append(f"  error: {error}")
    if details:
        lines += ["", "## Figures and notes", "", *details]
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    Path(tmp).replace(path)


def write_results(
    results_dir: Path,
    results: list[ScenarioResult],
    *,
    machine: dict[str, Any],
    quick: bool,
    now: dt.datetime | None = None,
) -> tuple[Path, Path]:
    """Merge ``results`` into the day's JSON file and rewrite its markdown; return both paths."""
    now = now or dt.datetime.now(dt.UTC)
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = results_dir / f"{now.date().isoformat()}.json"
    document = merge_results(
        load_results(json_path), results, machine=machine, quick=quick, now=now
    )
    _atomic_write(json_path, json.dumps(document, indent=2, default=str) + "\n")
    md_path = json_path.with_suffix(".md")
    _atomic_write(md_path, markdown_table(document))
    return json_path, md_path
