"""Screenshots and visual diffs on examples/ui-kit: current commit, past commits, diffs.

``screenshot_current``: ``GET .../screenshot`` of Button's primary story at
the current commit, never cached (an edit before each sample makes a new
commit); the cached answer's time is a figure.

``screenshot_past_cold``: the first picture of a past commit of a sandbox
(its past renderer's worktree, studio app and Vite start, then the picture),
one fresh sandbox per sample.

``screenshot_past_warm``: pictures of past commits with the past renderer
running: each sample moves it to another commit (``git checkout`` and Vite's
watcher) and renders a viewport not yet cached.

``screenshot_diff``: ``GET .../diff`` from the base commit to a new current
one, neither picture cached: the past picture, the live one, pixelmatch.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks._proc import EXAMPLE_REPO
from benchmarks.context import RunContext, Scenario
from benchmarks.results import ScenarioResult
from benchmarks.service import BenchService, Created, owned_sandbox, service

__all__ = ["PICTURE_SCENARIOS"]

BUTTON = "src/components/Button/Button.tsx"
STORY = "button--primary"
LABEL = "{children ?? label}"
# Commits of the warm scenario's sandbox that its samples move between.
_PAST_COMMITS = 6


def _button(mark: str) -> str:
    """Button.tsx with ``mark`` drawn after its label (a visible change)."""
    return (EXAMPLE_REPO / BUTTON).read_text().replace(LABEL, f"{LABEL}{{'{mark}'}}")


def _commit(bench: BenchService, sandbox_id: str, mark: str) -> str:
    command = {"command": "write_file", "file_path": BUTTON, "content": _button(mark)}
    return str(bench.execute(sandbox_id, command)["commit_hash"])


def _get(bench: BenchService, sandbox_id: str, what: str, **params: str) -> tuple[Any, float]:
    """GET .../<what> with ``params``: the response and the seconds it took."""
    start = time.monotonic()
    reply = bench.api("GET", f"/sandboxes/{sandbox_id}/{what}", params={"story": STORY, **params})
    return reply, time.monotonic() - start


def _sandbox(ctx: RunContext) -> Created:
    return ctx.resource("pictures-sandbox", owned_sandbox)


def _ms(values: list[float]) -> float | None:
    return round(statistics.median(values) * 1000, 1) if values else None


def screenshot_current(ctx: RunContext) -> ScenarioResult:
    """A picture of the current commit, not cached: the browser's load and capture."""
    result = ScenarioResult("screenshot_current", "screenshot, current commit (cache miss)")
    bench = service(ctx)
    sandbox_id = _sandbox(ctx).sandbox_id
    _commit(bench, sandbox_id, "first")
    _, first = _get(bench, sandbox_id, "screenshot")
    result.figures["first_picture_s"] = round(first, 3)
    hits = []
    for index in range(ctx.count(20, 3)):
        _commit(bench, sandbox_id, f"current {index}")
        reply, elapsed = _get(bench, sandbox_id, "screenshot")
        if reply.headers.get("x-studio-cache") != "miss":
            result.failures += 1
            continue
        result.samples.append(elapsed)
        _, hit = _get(bench, sandbox_id, "screenshot")
        hits.append(hit)
    result.figures["cached_p50_ms"] = _ms(hits)
    result.notes.append(
        "Each sample follows an edit (a new commit): Chromium loads the story's full-canvas "
        "route from the live Vite and captures 1024x768. cached: the same request again."
    )
    return result


def screenshot_past_cold(ctx: RunContext) -> ScenarioResult:
    """The first picture of a past commit: the past renderer starts, then the picture."""
    result = ScenarioResult("screenshot_past_cold", "screenshot, past commit, cold renderer")
    bench = service(ctx)
    for index in range(ctx.count(5, 1)):
        created = bench.create()
        try:
            commits = bench.api("GET", f"/sandboxes/{created.sandbox_id}/commits").json()
            base = str(commits[-1]["hash"])
            _commit(bench, created.sandbox_id, f"cold {index}")
            reply, elapsed = _get(bench, created.sandbox_id, "screenshot", commit=base)
            if reply.headers.get("x-studio-commit") != base:
                result.failures += 1
                continue
            result.samples.append(elapsed)
        finally:
            bench.delete(created.sandbox_id)
    result.notes.append(
        "A fresh sandbox per sample, one edit, then a picture of its base commit: a detached "
        "worktree, the studio app (node_modules hard-linked from the install cache), Vite in "
        "the same boundary, then Chromium's load of the story from it."
    )
    return result


def screenshot_past_warm(ctx: RunContext) -> ScenarioResult:
    """Pictures of past commits with the past renderer running: a move, then the picture."""
    result = ScenarioResult("screenshot_past_warm", "screenshot, past commit, warm renderer")
    bench = service(ctx)
    sandbox_id = _sandbox(ctx).sandbox_id
    commits = [_commit(bench, sandbox_id, f"past {i}") for i in range(_PAST_COMMITS)]
    # The newest is the current commit: the past ones are the others.
    past = commits[:-1]
    _get(bench, sandbox_id, "screenshot", commit=past[0])  # the renderer starts
    for index in range(ctx.count(20, 3)):
        commit = past[(index + 1) % len(past)]
        # A viewport of its own: never a cached picture.
        reply, elapsed = _get(
            bench, sandbox_id, "screenshot", commit=commit, viewport=f"{640 + index}x480"
        )
        if reply.headers.get("x-studio-cache") != "miss":
            result.failures += 1
            continue
        result.samples.append(elapsed)
    result.notes.append(
        "Each sample asks for another past commit than the one before (the renderer's "
        "worktree checked out there, Vite's watcher waited for) in a viewport not cached."
    )
    return result


def screenshot_diff(ctx: RunContext) -> ScenarioResult:
    """A diff from the base to a new current commit, neither picture cached."""
    result = ScenarioResult("screenshot_diff", "visual diff, base -> current (uncached)")
    bench = service(ctx)
    sandbox_id = _sandbox(ctx).sandbox_id
    changed = []
    for index in range(ctx.count(20, 3)):
        _commit(bench, sandbox_id, f"diff {index}")
        reply, elapsed = _get(bench, sandbox_id, "diff", viewport=f"{800 + index}x600")
        found = reply.json()
        if found["changed_pixels"] <= 0:
            result.failures += 1
            continue
        result.samples.append(elapsed)
        changed.append(found["changed_pixels"])
    result.figures["changed_pixels_p50"] = statistics.median(changed) if changed else None
    result.notes.append(
        "Each sample: a new commit, then GET .../diff in a viewport not cached: the base "
        "commit's picture from the past renderer (no move: it stays at the base), the current "
        "one from the live Vite, pixelmatch on the box where they differ."
    )
    return result


PICTURE_SCENARIOS: list[Scenario] = [
    Scenario(
        "screenshot_current",
        "screenshot, current commit",
        screenshot_current,
        ("service", "browser"),
    ),
    Scenario(
        "screenshot_past_cold",
        "screenshot, past commit, cold",
        screenshot_past_cold,
        ("service", "browser"),
    ),
    Scenario(
        "screenshot_past_warm",
        "screenshot, past commit, warm",
        screenshot_past_warm,
        ("service", "browser"),
    ),
    Scenario("screenshot_diff", "visual diff", screenshot_diff, ("service", "browser")),
]
