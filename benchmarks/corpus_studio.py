"""A corpus repository in the studio: registered, prepared, two sandboxes, every story visited.

Drives the run's real service (benchmarks/service.py) through its HTTP API and
the studio page in Chromium. Registration sends ``package_dir`` only when the
manifest names one; a refusal is the repository's result (the API's message),
not something to work around.
"""

from __future__ import annotations

import contextlib
import itertools
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.corpus_own import StoryVisit, watch_errors
from benchmarks.corpus_verdict import VerdictRun, measure_verdicts
from benchmarks.service import BenchService

__all__ = ["StudioRun", "first_story", "listed_stories", "run_in_studio"]

STORY_TIMEOUT_MS = 30_000
# Creates after the first, each taking the held sandbox set up after the one before:
# the row's "later creates" is their median (a single page load moved a row by
# 0.2-0.5 s between runs on a shared machine).
LATER_CREATES = 3
_SETTLE_MS = 300
_CANVAS_DONE = """([component, story]) => {
  const canvas = document.querySelector('[data-testid=studio-canvas]');
  return !!canvas && canvas.dataset.component === component && canvas.dataset.story === story
    && (canvas.dataset.state === 'ready' || canvas.dataset.state === 'error');
}"""
# A page opened on renderer_url itself lands on the first story (the studio's landingRoute).
_LANDED = """() => {
  const canvas = document.querySelector('[data-testid=studio-canvas]');
  return !!canvas && !!canvas.dataset.component
    && (canvas.dataset.state === 'ready' || canvas.dataset.state === 'error');
}"""


@dataclass
class StudioRun:
    """What the studio did with one repository."""

    repository_id: int | None = None
    prepare_s: float | None = None
    prepare_state: str | None = None
    prepare_source: str = ""
    first_create_s: float | None = None
    # the median of later_creates_s
    second_create_s: float | None = None
    later_creates_s: list[float] = field(default_factory=list)
    # a create with overrides: set up on the request, no ready sandbox (actors._ready)
    setup_create_s: float | None = None
    # The first and second sandboxes' setup command reports (the API's ``setup``).
    setup: dict[str, Any] | None = None
    second_setup: dict[str, Any] | None = None
    listed: list[tuple[str, str]] = field(default_factory=list)
    visits: list[StoryVisit] = field(default_factory=list)
    verdicts: VerdictRun | None = None
    # Where each timed create's seconds went (``_create_rendered``), for the row's notes.
    phases: list[str] = field(default_factory=list)
    error: str | None = None


def listed_stories(catalog: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(component id, story id, export name)`` of every story the studio page lists."""
    return [
        (str(c["id"]), str(s["id"]), str(s["exportName"]))
        for c in catalog.get("components", [])
        for s in c.get("stories", [])
    ]


def first_story(catalog: dict[str, Any]) -> tuple[str, str, str] | None:
    stories = listed_stories(catalog)
    return stories[0] if stories else None


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the repository's time ran out")
    return left


def _register(
    bench: BenchService,
    name: str,
    clone: Path,
    package_dir: str,
    deadline: float,
    setup_command: str = "",
) -> int:
    body: dict[str, Any] = {"name": name, "path": str(clone), "default_branch": "main"}
    if package_dir:
        body["package_dir"] = package_dir
    if setup_command:
        body["setup_command"] = setup_command
    response = bench.client.post("/api/v1/repositories", json=body, timeout=_remaining(deadline))
    if response.status_code != 201:
        raise RuntimeError(f"registration refused: {response.status_code} {response.text[:800]}")
    return int(response.json()["id"])


def _record(bench: BenchService, repository_id: int) -> dict[str, Any]:
    records = bench.api("GET", "/repositories").json()
    for record in records:
        if int(record["id"]) == repository_id:
            found: dict[str, Any] = record
            return found
    raise RuntimeError(f"repository {repository_id} is not listed after registration")


def _wait_prepared(bench: BenchService, run: StudioRun, registered: float, deadline: float) -> None:
    """Registration -> ready, by the record's ``preparation`` (docs/preparation.md)."""
    assert run.repository_id is not None
    run.prepare_source = "repository record's preparation"
    # When each step was first seen under way (polled, so to ~0.1 s): where prepare's time went.
    seen: list[tuple[str, float]] = []
    while True:
        preparation = _record(bench, run.repository_id).get("preparation") or {}
        state = str(preparation.get("state"))
        step = str(preparation.get("step") or state)
        if not seen or seen[-1][0] != step:
            seen.append((step, time.monotonic()))
        if state not in ("preparing", "pending"):
            error = preparation.get("error") or ""
            run.prepare_state = state if state != "failed" else f"failed: {error}"
            break
        _remaining(deadline)
        time.sleep(0.1)
    run.prepare_s = round(time.monotonic() - registered, 3)
    steps = [(step, later - at) for (step, at), (_, later) in itertools.pairwise(seen)]
    run.phases.append(
        "prepare: " + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in steps if step)
    )


def _wait_ready_sandbox(bench: BenchService, repository_id: int, deadline: float) -> None:
    """Until the repository's held sandbox is up (the manager's health says so)."""
    import ray

    from actors.handles import get_manager

    manager = get_manager()
    while True:
        health = ray.get(manager.health.remote(), timeout=60)
        if (health.get("ready_sandboxes") or {}).get(repository_id, {}).get("running"):
            return
        _remaining(deadline)
        time.sleep(0.25)


def _create(
    bench: BenchService,
    repository_id: int,
    deadline: float,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    # Config overrides sit beside the type and repository (serve/schemas.py).
    body: dict[str, Any] = {
        "type": "component-studio",
        "repository_id": repository_id,
        **(overrides or {}),
    }
    response = bench.client.post("/api/v1/sandboxes", json=body, timeout=_remaining(deadline))
    if response.status_code >= 400:
        raise RuntimeError(f"create -> {response.status_code}: {response.text[:1500]}")
    answer: dict[str, Any] = response.json()
    bench.created.append(str(answer["sandbox_id"]))
    return answer


def _catalog(renderer_url: str, deadline: float) -> dict[str, Any]:
    """The sandbox's catalog through the API's renderer proxy (its ticket buys the cookie)."""
    url = renderer_url.split("?", 1)[0] + "__studio/components.json"
    renderer = httpx.Client(follow_redirects=True)
    try:
        return _catalog_from(renderer, renderer_url, url, deadline)
    finally:
        renderer.close()


def _catalog_from(
    renderer: httpx.Client, renderer_url: str, url: str, deadline: float
) -> dict[str, Any]:
    renderer.get(renderer_url, timeout=min(30.0, _remaining(deadline)))
    while True:
        try:
            response = renderer.get(url, timeout=min(30.0, _remaining(deadline)))
            if response.status_code == 200:
                catalog: dict[str, Any] = response.json()
                return catalog
        except httpx.HTTPError:
            pass
        _remaining(deadline)
        time.sleep(0.1)


def visit_studio_story(
    page: Any, renderer_url: str, story: tuple[str, str, str] | None, *, navigate: bool
) -> StoryVisit:
    """Show one story in the studio page (by its hash; ``navigate`` loads the page first).

    ``story`` None: ``renderer_url`` as it is, the story the page lands on (its first).
    """
    component, story_id, export_name = story or ("", "", "")
    visit = StoryVisit(f"{component}/{export_name}" if story else "(landing)")
    hash_ = f"#/{_quote(component)}/{_quote(export_name)}" if story else ""
    with watch_errors(page) as seen:
        try:
            if navigate:
                # The proxy's URL with its ticket: the hash survives the ticket's redirect.
                page.goto(renderer_url + hash_, timeout=STORY_TIMEOUT_MS)
            else:
                page.evaluate("(h) => { location.hash = h; }", hash_)
            if story is None:
                page.wait_for_function(_LANDED, timeout=STORY_TIMEOUT_MS)
            else:
                page.wait_for_function(
                    _CANVAS_DONE, arg=[component, story_id], timeout=STORY_TIMEOUT_MS
                )
            visit.drawn_at = time.monotonic()
            page.wait_for_timeout(_SETTLE_MS)
            panel = page.locator("[data-testid=studio-canvas] [data-testid=studio-error]")
            if panel.count():
                visit.errors.append(
                    f"error boundary: {panel.first.inner_text(timeout=2000).strip()[:500]}"
                )
        except Exception as exc:
            visit.errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    visit.errors.extend(seen)
    return visit


def _quote(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="")


_PAGE_REQUESTS = """() => {
  const entries = performance.getEntriesByType('resource');
  const slowest = [...entries].sort((a, b) => b.duration - a.duration).slice(0, 3)
    .map((e) => `${new URL(e.name).pathname.slice(-60)} ${Math.round(e.duration)} ms`);
  const nav = performance.getEntriesByType('navigation')[0];
  const loaded = nav ? Math.round(nav.domContentLoadedEventEnd) : null;
  return {count: entries.length, slowest, loaded};
}"""


def _create_rendered(
    bench: BenchService,
    browser: Any,
    repository_id: int,
    deadline: float,
    overrides: dict[str, Any] | None = None,
) -> tuple[float, dict[str, Any], dict[str, Any], str]:
    """Create -> the first story rendered (or its error shown) in a fresh context's tab.

    The page is ``renderer_url`` as the API gives it, which lands on the first
    story as a user finds it; the catalog is fetched after, untimed. Also says
    where the time went: the create request and the page (its request count, its
    slowest requests, its DOMContentLoaded).
    """
    # A context of its own (a cold HTTP cache, no cookie), and the tab open before the
    # create, as a designer's is and as scenario 2 on ui-kit has it (benchmarks/lifecycle.py):
    # its renderer process starts on its own time, not the create's.
    context = browser.new_context()
    try:
        page = context.new_page()
        requested = time.monotonic()
        answer = _create(bench, repository_id, deadline, overrides)
        created = time.monotonic()
        visit = visit_studio_story(page, answer["renderer_url"], None, navigate=True)
        requests: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            requests = page.evaluate(_PAGE_REQUESTS)
    finally:
        context.close()
    drawn = visit.drawn_at or time.monotonic()
    if any(error.startswith("TimeoutError") for error in visit.errors):
        raise RuntimeError(f"first story never rendered: {visit.errors[0]}")
    catalog = _catalog(answer["renderer_url"], deadline)
    if first_story(catalog) is None:
        raise RuntimeError("the studio lists no story")
    phases = (
        f"create {created - requested:.2f} s, "
        f"page {drawn - created:.2f} s ({requests.get('count')} requests, "
        f"DOMContentLoaded at {requests.get('loaded')} ms, slowest: "
        f"{'; '.join(requests.get('slowest') or [])})"
    )
    return drawn - requested, answer, catalog, phases


def run_in_studio(
    bench: BenchService,
    browser: Any,
    name: str,
    clone: Path,
    package_dir: str,
    deadline: float,
    *,
    visit_all: bool = True,
    setup_command: str = "",
) -> StudioRun:
    """Register, wait for preparation, 1 + LATER_CREATES creates timed to a rendered story,
    one with overrides, every story visited."""
    run = StudioRun()
    sandboxes: list[str] = []
    try:
        registered = time.monotonic()
        run.repository_id = _register(bench, name, clone, package_dir, deadline, setup_command)
        _wait_prepared(bench, run, registered, deadline)
        # A prepared repository has its ready sandbox; each create finds it back. A failed
        # preparation has none: the create then says why (the row's error).
        prepared = run.prepare_state == "ready"
        if prepared:
            _wait_ready_sandbox(bench, run.repository_id, deadline)
        first_s, first, _, phases = _create_rendered(bench, browser, run.repository_id, deadline)
        run.phases.append(f"first create: {phases}")
        sandboxes.append(str(first["sandbox_id"]))
        if setup_command:
            run.setup = bench.api("GET", f"/sandboxes/{first['sandbox_id']}").json().get("setup")
        second: dict[str, Any] = {}
        catalog: dict[str, Any] = {}
        for index in range(LATER_CREATES):
            if prepared:
                _wait_ready_sandbox(bench, run.repository_id, deadline)
            later_s, later, later_catalog, phases = _create_rendered(
                bench, browser, run.repository_id, deadline
            )
            run.later_creates_s.append(round(later_s, 3))
            run.phases.append(f"create {index + 2}: {phases}")
            if index == 0:
                # the one whose stories are visited and whose edits are judged
                second, catalog = later, later_catalog
                sandboxes.append(str(later["sandbox_id"]))
                if setup_command:
                    run.second_setup = (
                        bench.api("GET", f"/sandboxes/{later['sandbox_id']}").json().get("setup")
                    )
            else:
                # deleted at once: each later create finds the same two sandboxes running
                with contextlib.suppress(RuntimeError, httpx.HTTPError):
                    bench.delete(str(later["sandbox_id"]))
        # Overrides are never answered by a held sandbox: this one is set up on the request.
        setup_s, setup, _, _phases = _create_rendered(
            bench, browser, run.repository_id, deadline, {"timeout_hours": 2}
        )
        sandboxes.append(str(setup["sandbox_id"]))
        run.first_create_s = round(first_s, 3)
        run.second_create_s = round(statistics.median(run.later_creates_s), 3)
        run.setup_create_s = round(setup_s, 3)
        stories = listed_stories(catalog)
        run.listed = [(component, export) for component, _sid, export in stories]
        if visit_all:
            context = browser.new_context()
            try:
                page = context.new_page()
                for index, story in enumerate(stories):
                    if time.monotonic() > deadline:
                        run.error = f"out of time after {len(run.visits)} stories"
                        break
                    run.visits.append(
                        visit_studio_story(page, second["renderer_url"], story, navigate=index == 0)
                    )
            finally:
                context.close()
        run.verdicts = measure_verdicts(bench, str(second["sandbox_id"]), catalog)
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        for sandbox_id in sandboxes:
            with contextlib.suppress(RuntimeError, httpx.HTTPError):
                bench.delete(sandbox_id)
    return run
