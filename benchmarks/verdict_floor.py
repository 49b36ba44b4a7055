"""The floor of an edit's render verdict: bare Vite and bare Playwright, no service.

``verdict_floor``: the studio app on examples/ui-kit served by Vite alone (as
``vite_floor`` starts it), one Chromium page on the Button's first story with
Vite's HMR connected, as any developer's browser. A sample: Button.tsx written
with a new label -> the page's canvas shows it (Vite's watcher, its hot
update, React Fast Refresh), then the two other Button stories shown by the
page's hash route until each shows it too: the work of a verdict of a
Button.tsx edit (three stories), without the commit, the actors, the
question to Vite and the settle frames. ``first_story_p50_ms``: the hot update
alone.
"""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING

from benchmarks._browser import browser
from benchmarks._proc import (
    TEMPLATE_DIR,
    free_port,
    kill_group,
    sample_repo,
    spawn_group,
    wait_http_ok,
)
from benchmarks.context import RunContext
from benchmarks.floors import READY_TIMEOUT, install_cache_dir
from benchmarks.results import ScenarioResult

if TYPE_CHECKING:
    from playwright.sync_api import Page

__all__ = ["verdict_floor"]

BUTTON = "src/components/Button/Button.tsx"
LABEL = "{children ?? label}"
# (export name in the hash route, story id on the canvas)
STORIES = (
    ("Primary", "button--primary"),
    ("Secondary", "button--secondary"),
    ("LargeDanger", "button--large-danger"),
)
# The canvas shows ``story`` (its id) of the Button and the text ``marker`` in it.
_SHOWS = """
({ story, marker }) => {
  const canvas = document.querySelector('[data-testid=studio-canvas]');
  return !!canvas && canvas.dataset.story === story && canvas.dataset.state === 'ready'
    && canvas.textContent.includes(marker);
}
"""
_GO = "(hash) => { window.location.hash = hash; }"
_SHOWN = """
() => {
  const canvas = document.querySelector('[data-testid=studio-canvas]');
  if (!canvas) return location.href;
  return `${location.hash} ${JSON.stringify(canvas.dataset)} ${canvas.textContent}`;
}
"""
_TIMEOUT_MS = 30_000


def _wait_shows(page: Page, story: str, marker: str) -> None:
    """Until the canvas shows ``story`` with ``marker``; what it shows instead if it never does."""
    try:
        page.wait_for_function(
            _SHOWS, arg={"story": story, "marker": marker}, timeout=_TIMEOUT_MS, polling="raf"
        )
    except Exception as exc:  # Playwright's TimeoutError, imported lazily
        shown = page.evaluate(_SHOWN)
        raise RuntimeError(f"{story} with {marker!r} never shown; the page: {shown}") from exc


def verdict_floor(ctx: RunContext) -> ScenarioResult:
    """Edit -> the Button's three stories rendered, by Vite's HMR in a plain page."""
    from studio.paths import atomic_write
    from studio.vite import (
        VITE_ENV,
        generate_studio_app,
        read_studio_config,
        vite_argv,
        write_studio_config,
    )

    result = ScenarioResult("verdict_floor", "floor: edit -> 3 stories re-rendered, bare Vite HMR")
    repo = sample_repo(ctx.work_dir / "verdict-floor")
    studio = generate_studio_app(
        repo, template_dir=TEMPLATE_DIR, cache_root=install_cache_dir(ctx), port=free_port()
    )
    shutil.rmtree(studio / ".vite-cache", ignore_errors=True)
    config = read_studio_config(studio)
    port = int(config["port"])
    write_studio_config(studio, config)
    button = repo / BUTTON
    original = button.read_text()
    process = spawn_group(vite_argv(studio), repo, studio / "vite.log", dict(VITE_ENV))
    context = None
    first: list[float] = []
    try:
        wait_http_ok("127.0.0.1", port, READY_TIMEOUT, process=process)
        context = browser(ctx).new_context(viewport={"width": 800, "height": 600})
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/?full#/Button/{STORIES[0][0]}")
        page.wait_for_function(
            _SHOWS, arg={"story": STORIES[0][1], "marker": ""}, timeout=120_000, polling="raf"
        )
        for index in range(ctx.count(40, 5)):
            marker = f"floor{index}x"
            start = time.monotonic()
            # as the sandbox writes a file: readers (Vite) see the old content or the new one
            atomic_write(button, original.replace(LABEL, f"{LABEL}{{'{marker}'}}"))
            for position, (export, story) in enumerate(STORIES):
                if position > 0:
                    page.evaluate(_GO, f"#/Button/{export}")
                _wait_shows(page, story, marker)
                if position == 0:
                    first.append(time.monotonic() - start)
            result.samples.append(time.monotonic() - start)
            # back on the first story for the next edit
            page.evaluate(_GO, f"#/Button/{STORIES[0][0]}")
            _wait_shows(page, STORIES[0][1], marker)
    finally:
        if context is not None:
            context.close()
        kill_group(process)
        atomic_write(button, original)
    first.sort()
    result.figures["first_story_p50_ms"] = round(first[len(first) // 2] * 1000, 1)
    result.notes.append(
        "Bare Vite on the studio app, a Chromium page with Vite's HMR: Button.tsx written -> "
        "its first story shows the edit (hot update), then the other two by the hash route. "
        "No commit, no actors, no question to Vite, no settle frames."
    )
    return result
