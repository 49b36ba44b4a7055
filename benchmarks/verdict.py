"""Edit -> render verdict (``"wait": "render"``) on examples/ui-kit, and the node's browser.

``edit_to_verdict``: edits of Button.tsx through the API with ``"wait":
"render"``, one after the other; a sample is the whole request (the commit,
Vite's answer on the changed module, the affected stories loaded in the
node's Chromium). The first verdict of the run (Chromium's launch, the page's
first load) is reported on its own, not sampled.

``verdict_kinds``: a scripted set of edits of every kind (valid, syntax error,
type-only, throw in render, throw in an effect, missing import, CSS-only,
story file edit, deleted file), each put back after its verdict; the figures
are the confusion table (expected -> answered) and the count of wrong answers.

``browser_memory``: the node's browser actor's Chromium (RSS of its process
tree) with no page, then with a page per sandbox for a few sandboxes.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections import Counter
from typing import Any

from benchmarks._proc import EXAMPLE_REPO
from benchmarks.context import RunContext, Scenario
from benchmarks.results import ScenarioResult, Target
from benchmarks.service import BenchService, Created, owned_sandbox, service
from benchmarks.stats import percentile
from benchmarks.verdict_floor import verdict_floor

__all__ = ["VERDICT_SCENARIOS"]

BUTTON = "src/components/Button/Button.tsx"
BUTTON_STORIES = "src/components/Button/Button.stories.tsx"
STYLES = "src/styles.css"
LABEL = "{children ?? label}"
RETURN = "  return (\n    <button"
MIB = 1024 * 1024


def _original(rel: str) -> str:
    return (EXAMPLE_REPO / rel).read_text()


def _write(path: str, content: str, *, wait: str = "render") -> dict[str, Any]:
    return {"command": "write_file", "file_path": path, "content": content, "wait": wait}


def _edit_kinds() -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, expected status, the command) for each kind of edit the verdict knows."""
    button, stories, styles = _original(BUTTON), _original(BUTTON_STORIES), _original(STYLES)
    throw_in_render = button.replace(RETURN, "  throw new Error('render');\n" + RETURN, 1)
    throw_in_effect = "import { useEffect } from 'react';\n" + button.replace(
        RETURN, "  useEffect(() => {\n    throw new Error('effect');\n  }, []);\n" + RETURN, 1
    )
    missing = "import { Nope } from './Nope';\n" + button.replace(LABEL, f"{LABEL}<Nope />")
    type_only = button + "\nexport type V = ButtonProps['variant'];\n"
    css = styles + "\n.uk-button { letter-spacing: 1px; }\n"
    story = stories.replace("'Save changes'", "'Save it'")
    delete = {"command": "delete_file", "file_path": BUTTON, "wait": "render"}
    return [
        ("valid", "ok", _write(BUTTON, button.replace(LABEL, f"{LABEL}!"))),
        ("syntax error", "compile_error", _write(BUTTON, button.replace("</button>", "</buttn>"))),
        ("type only", "ok", _write(BUTTON, type_only)),
        ("throw in render", "runtime_error", _write(BUTTON, throw_in_render)),
        ("throw in effect", "runtime_error", _write(BUTTON, throw_in_effect)),
        ("missing import", "compile_error", _write(BUTTON, missing)),
        ("css only", "ok", _write(STYLES, css)),
        ("story file", "ok", _write(BUTTON_STORIES, story)),
        ("deleted file", "compile_error", delete),
    ]


def _restore(bench: BenchService, sandbox_id: str) -> None:
    files = [
        {"file_path": rel, "content": _original(rel)} for rel in (BUTTON, BUTTON_STORIES, STYLES)
    ]
    bench.execute(sandbox_id, {"command": "write_files", "files": files, "description": "restore"})


def _sandbox(ctx: RunContext) -> Created:
    return ctx.resource("verdict-sandbox", owned_sandbox)


def _timed_verdicts(ctx: RunContext, result: ScenarioResult, wait: str) -> None:
    """Edits of Button.tsx one after the other with ``wait``; each whole request a sample.

    The edits go to the ``execute_url`` the API hands out (the replica's own
    listener, where docs/agents.md sends an agent's edits); some more through
    the API's port (Serve's proxy) are figures (``api_port_*``).
    """
    bench = service(ctx)
    created = _sandbox(ctx)
    direct = str(created.body["execute_url"])
    proxied = f"{bench.base_url}/api/v1/sandboxes/{created.sandbox_id}/execute"
    button = _original(BUTTON)
    start = time.monotonic()
    first = bench.client.post(
        direct, json=_write(BUTTON, button.replace(LABEL, f"{LABEL} "), wait=wait)
    ).json()
    result.figures["first_verdict_s"] = round(time.monotonic() - start, 3)
    inside: list[float] = []
    through_proxy: list[float] = []
    stories = 0
    on_direct_count = ctx.count(40, 5)
    for index in range(on_direct_count + ctx.count(10, 2)):
        command = _write(BUTTON, button.replace(LABEL, f"{LABEL}{{'{index}'}}"), wait=wait)
        on_direct = index < on_direct_count
        start = time.monotonic()
        reply = bench.client.post(direct if on_direct else proxied, json=command)
        elapsed = time.monotonic() - start
        answer: dict[str, Any] = reply.json() if reply.status_code == 200 else {}
        render = answer.get("render") or {}
        pictured = all(s.get("screenshot_url") for s in render.get("stories", []))
        if (
            render.get("status") != "ok"
            or render.get("commit") != answer.get("commit_hash")
            or (wait == "screenshot" and not pictured)
        ):
            result.failures += 1
            continue
        if not on_direct:
            through_proxy.append(elapsed)
            continue
        result.samples.append(elapsed)
        inside.append(float(render["seconds"]))
        stories = len(render["stories"])
    inside.sort()
    if through_proxy:
        result.figures["api_port_p50_ms"] = round(percentile(through_proxy, 50) * 1000, 1)
    result.figures["stories_per_verdict"] = stories
    result.figures["in_browser_actor_p50_ms"] = (
        round(inside[len(inside) // 2] * 1000, 1) if inside else None
    )
    result.figures["wrong_or_missing"] = result.failures
    result.figures["first_status"] = str((first.get("render") or {}).get("status"))


def edit_to_verdict(ctx: RunContext) -> ScenarioResult:
    """Edits answered with their render verdict: the request's time, end to end."""
    result = ScenarioResult(
        "edit_to_verdict",
        "edit -> render verdict (wait=render)",
        targets=[Target("median", 0.15, "p50 <= 150 ms"), Target("p99", 0.4, "p99 <= 400 ms")],
        floor="verdict_floor",
    )
    _timed_verdicts(ctx, result, "render")
    result.notes.append(
        "Each edit changes Button.tsx, whose three stories are rendered by the sandbox's warm "
        "page: Vite's hot update brings it to the edit, the story on screen is looked at again, "
        "the other two shown by its hash route. in_browser_actor is the verdict's own time: "
        "Vite's answer (compile + module graph + its HMR of the edit) and the stories in Chromium."
        " Edits go to the execute_url the API hands out (the replica's own listener); "
        "api_port_p50_ms: some more through the API's port (Serve's proxy)."
    )
    return result


def edit_to_verdict_screenshot(ctx: RunContext) -> ScenarioResult:
    """The same edits with ``"wait": "screenshot"``: the verdict and every story pictured."""
    result = ScenarioResult(
        "edit_to_verdict_screenshot",
        "edit -> render verdict with screenshots (wait=screenshot)",
        targets=[Target("median", 0.3, "p50 <= 300 ms")],
        floor="verdict_floor",
    )
    _timed_verdicts(ctx, result, "screenshot")
    result.notes.append(
        "As edit_to_verdict, and each of the three stories pictured on the verdict's own page "
        "(1024x768 PNG into the node's screenshot cache; the answer links it)."
    )
    return result


def verdict_kinds(ctx: RunContext) -> ScenarioResult:
    """Every kind of edit, again and again: does each get the right verdict?"""
    result = ScenarioResult(
        "verdict_kinds",
        "render verdict correctness, scripted edits",
        targets=[Target("wrong", 0, "every verdict right")],
    )
    bench = service(ctx)
    sandbox_id = _sandbox(ctx).sandbox_id
    kinds = _edit_kinds()
    confusion: Counter[tuple[str, str]] = Counter()
    rounds = ctx.count(4, 1)
    for _ in range(rounds):
        for kind, expected, command in kinds:
            start = time.monotonic()
            answer = bench.execute(sandbox_id, command)
            result.samples.append(time.monotonic() - start)
            got = str((answer.get("render") or {}).get("status"))
            confusion[(kind, got)] += 1
            if got != expected:
                result.failures += 1
            _restore(bench, sandbox_id)
    result.figures["edits"] = rounds * len(kinds)
    result.figures["wrong"] = result.failures
    for (kind, got), count in sorted(confusion.items()):
        result.figures[f"{kind} -> {got}"] = count
    result.notes.append(
        "Expected: valid, type only, css only, story file -> ok; syntax error, missing import, "
        "deleted file -> compile_error; throw in render or in an effect -> runtime_error."
    )
    return result


def _browser_stats() -> dict[str, Any]:
    import ray

    from actors.browser_actor import BROWSER_PREFIX
    from studio.naming import ACTOR_NAMESPACE

    names = [
        str(e["name"])
        for e in ray.util.list_named_actors(all_namespaces=True)
        if e["namespace"] == ACTOR_NAMESPACE and str(e["name"]).startswith(BROWSER_PREFIX)
    ]
    if len(names) != 1:
        raise RuntimeError(f"expected one node browser actor, found {names}")
    handle = ray.get_actor(names[0], namespace=ACTOR_NAMESPACE)
    reference: Any = handle.stats.remote()
    stats: dict[str, Any] = ray.get(reference, timeout=60)
    stats["handle"] = handle
    return stats


def _line(points: list[tuple[int, float]]) -> tuple[float, float]:
    """``(slope, start)`` of the least-squares line through ``points`` (pages, MiB): what
    one more page adds, and the line at no page; NaN when every point has one page count
    (a page closed as the next opened): no line."""
    try:
        slope, start = statistics.linear_regression(*zip(*points, strict=True))
    except statistics.StatisticsError:
        return math.nan, math.nan
    return slope, start


def browser_memory(ctx: RunContext) -> ScenarioResult:
    """The node's Chromium with no page, and what each sandbox's page adds.

    The target reads as a line: at most 300 MB idle plus 40 MB per active page.
    So the browser is measured with 1, 2, ... pages open and the figure held
    to the 40 is the line's slope (what one more page adds); the first page
    also brings the code only renderers use (Blink, the V8 compiler: file pages
    that every later renderer shares), which the line's start holds, and which
    is held to the 300 with the idle browser. The older figure, everything the
    pages added over the idle browser divided by their count, is kept beside it.
    """
    import ray

    result = ScenarioResult(
        "browser_memory",
        "node browser memory (PSS)",
        unit="MiB",
        targets=[
            # the figures are MiB, the targets MB
            Target("idle_mib", round(300e6 / MIB, 1), "<= 300 MB idle"),
            Target("per_page_mib", round(40e6 / MIB, 1), "<= 40 MB per sandbox page"),
            Target("first_page_start_mib", round(300e6 / MIB, 1), "idle + renderer code <= 300 MB"),
        ],
    )
    bench = service(ctx)
    first = _sandbox(ctx).sandbox_id
    # a change (an unchanged file is no commit, and no verdict): the node's browser runs
    bench.execute(first, _write(BUTTON, _original(BUTTON) + "\n// memory: idle\n"))
    stats = _browser_stats()
    handle = stats.pop("handle")
    for page in stats["pages"]:
        ray.get(handle.close_page.remote(page), timeout=60)
    time.sleep(2.0)  # the closed pages' renderer processes exit
    idle_stats = _browser_stats()
    idle = idle_stats["browser_pss"] / MIB
    result.figures["idle_mib"] = round(idle, 1)
    result.figures["idle_rss_mib"] = round(idle_stats["browser_rss"] / MIB, 1)
    extra = [bench.create().sandbox_id for _ in range(ctx.count(4, 2) - 1)]
    points: list[tuple[int, float]] = []
    try:
        for sandbox_id in [first, *extra]:
            content = _original(BUTTON) + f"\n// memory: a page for {sandbox_id}\n"
            bench.execute(sandbox_id, _write(BUTTON, content))
            loaded = _browser_stats()
            points.append((len(loaded["pages"]), loaded["browser_pss"] / MIB))
        pages = len(loaded["pages"])
        slope, start = _line(points)
        result.figures["pages"] = pages
        result.figures["with_pages_mib"] = round(loaded["browser_pss"] / MIB, 1)
        result.figures["with_pages_rss_mib"] = round(loaded["browser_rss"] / MIB, 1)
        result.figures["with_n_pages_mib"] = ", ".join(f"{n}: {v:.1f}" for n, v in points)
        result.figures["per_page_mib"] = round(slope, 1)
        result.figures["first_page_start_mib"] = round(start, 1)
        result.figures["renderer_code_mib"] = round(start - idle, 1)
        average = (loaded["browser_pss"] / MIB - idle) / max(1, pages)
        result.figures["per_page_average_mib"] = round(average, 1)
        result.samples.append(slope)
        # where a page's memory lives: its renderer, or what the browser, GPU and network
        # service processes keep for it
        idle_kinds = idle_stats.get("browser_pss_by_kind", {})
        for kind, value in loaded.get("browser_pss_by_kind", {}).items():
            added = (value - idle_kinds.get(kind, 0)) / MIB / max(1, pages)
            result.figures[f"average_{kind}_mib"] = round(added, 1)
    finally:
        for sandbox_id in extra:
            with contextlib.suppress(Exception):
                bench.delete(sandbox_id)
    result.notes.append(
        "PSS summed over Chromium's processes (pages they share counted once); *_rss_* the "
        "same as RSS, which counts shared pages once per process. A page is a browser "
        "context of its own per sandbox, with the studio app and the stories it rendered. "
        "per_page_mib: the slope of the browser's PSS over 1..n open pages (what one more "
        "page adds); first_page_start_mib: where that line starts (the idle browser plus "
        "the code only renderers use, renderer_code_mib); per_page_average_mib: all the "
        "pages added over the idle browser divided by their count (the first page's "
        "renderer code in it)."
    )
    return result


VERDICT_SCENARIOS: list[Scenario] = [
    Scenario(
        "verdict_floor",
        "floor: edit -> render by bare Vite HMR",
        verdict_floor,
        ("floor", "browser"),
    ),
    Scenario("edit_to_verdict", "edit -> render verdict", edit_to_verdict, ("service", "browser")),
    Scenario(
        "edit_to_verdict_screenshot",
        "edit -> render verdict with screenshots",
        edit_to_verdict_screenshot,
        ("service", "browser"),
    ),
    Scenario("verdict_kinds", "render verdict correctness", verdict_kinds, ("service", "browser")),
    Scenario("browser_memory", "node browser memory", browser_memory, ("service", "browser")),
]
