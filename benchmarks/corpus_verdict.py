"""Edit -> render verdict on a corpus repository (issue 18: "report the same on the corpus").

On a running sandbox of the repository, the module of the first listed story
(its component, or its stories file when the studio found no component) is
edited through the API with ``"wait": "render"``:

- a first comment-only edit, not sampled (it opens the sandbox's page in the
  node's browser): its verdict is the baseline, what the repository's stories
  do unedited (``ok``, or ``runtime_error`` for a story that logs a console
  error on this offline machine, as it does in the repository's own Storybook);
- ``count`` valid edits, one after the other (a comment line appended, each
  different, so Vite sees a changed module every time), expected the
  baseline: each a sample of the whole request, like ``edit_to_verdict`` on
  examples/ui-kit;
- one edit that breaks the module's syntax, expected ``compile_error``;
- the original content written back, expected the baseline.

The answers are kept as ``expected -> answered`` counts, the confusion table
of these three kinds on a repository no one here wrote.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from benchmarks.service import BenchService
from benchmarks.stats import percentile

__all__ = ["VerdictRun", "measure_verdicts"]

# Appended to break the module's syntax wherever it ends (any JS/TS module).
_BROKEN = "\nexport const __studioVerdictProbe = (;\n"


@dataclass
class VerdictRun:
    """Verdict times and answers on one repository's sandbox."""

    module: str | None = None
    baseline: str | None = None
    samples: list[float] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    @property
    def p50_s(self) -> float | None:
        return round(percentile(self.samples, 50), 3) if self.samples else None

    @property
    def p99_s(self) -> float | None:
        return round(percentile(self.samples, 99), 3) if self.samples else None

    @property
    def wrong(self) -> int:
        """Answers that were not the expected verdict."""
        return sum(n for key, n in self.answers.items() if not _right(key))


def _right(key: str) -> bool:
    expected, _, answered = key.partition(" -> ")
    return expected == answered


def _module_of_first_story(catalog: dict[str, Any]) -> str | None:
    for component in catalog.get("components", []):
        if component.get("stories"):
            return str(component["module"])
    return None


def _write(bench: BenchService, sandbox_id: str, path: str, content: str) -> dict[str, Any]:
    return bench.execute(
        sandbox_id,
        {"command": "write_file", "file_path": path, "content": content, "wait": "render"},
    )


def _status(answer: dict[str, Any]) -> str:
    render = answer.get("render") or {}
    if render.get("commit") != answer.get("commit_hash"):
        return "wrong commit"
    return str(render.get("status"))


def measure_verdicts(
    bench: BenchService, sandbox_id: str, catalog: dict[str, Any], count: int = 10
) -> VerdictRun:
    """``count`` timed valid edits, a syntax error and the restore, on the first story's module."""
    run = VerdictRun(module=_module_of_first_story(catalog))
    if run.module is None:
        run.error = "the studio lists no story"
        return run
    try:
        original = bench.execute(sandbox_id, {"command": "read_file", "file_path": run.module})
        text = str(original["content"])
        # The first verdict opens the sandbox's page in the node's browser: not sampled.
        run.baseline = _status(_write(bench, sandbox_id, run.module, text + "\n// probe\n"))
        for index in range(count):
            content = text + f"\n// studio verdict probe {index}\n"
            started = time.monotonic()
            answer = _write(bench, sandbox_id, run.module, content)
            elapsed = time.monotonic() - started
            status = _status(answer)
            run.answers[f"{run.baseline} -> {status}"] += 1
            if status == run.baseline:
                run.samples.append(elapsed)
        run.answers[
            f"compile_error -> {_status(_write(bench, sandbox_id, run.module, text + _BROKEN))}"
        ] += 1
        restored = _status(_write(bench, sandbox_id, run.module, text))
        run.answers[f"{run.baseline} -> {restored}"] += 1
    except Exception as exc:  # the row says why; the other figures stand
        run.error = f"{type(exc).__name__}: {str(exc)[:300]}"
    return run
