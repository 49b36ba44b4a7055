"""A node's headless Chromium, a page per sandbox, and the render verdict of an edit.

One Chromium process (Playwright's async API), launched on first use and
again if it dies; a page per sandbox in its own browser context (cookies and
storage of one sandbox's studio never meet another's), opened on a
sandbox's first verdict and closed when it has been idle ``idle_seconds``.

A verdict (:meth:`RenderBrowser.verdict`) asks the sandbox's Vite what the
changed files did (``/__studio/verdict``, studio-template/plugin/verdict.mjs:
compile errors from Vite's own transform, affected stories from its module
graph), then loads each affected story alone (``?full#/<component>/<story>``, the
full-canvas route) and reads what the canvas shows once it settled: the
story, or the error panel of its error boundary (render or effect throws),
plus the page's uncaught errors and console errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin

import httpx
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    ViewportSize,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeout

from studio.render.budget import DEFAULT_TIMEOUT, IDLE_SECONDS, MAX_STORIES
from studio.render.chromium import BASE_ARGS, chromium_path
from studio.render.models import (
    CompileError,
    RenderError,
    RenderVerdict,
    StoryVerdict,
    overall_status,
)
from studio.render.screenshot import (
    DEFAULT_VIEWPORT,
    ScreenshotCache,
    ScreenshotKey,
    Viewport,
    story_route,
)

__all__ = [
    "CHROMIUM_ARGS",
    "DEFAULT_TIMEOUT",
    "MAX_STORIES",
    "RenderBrowser",
    "chromium_path",
]

logger = logging.getLogger(__name__)

# A long-lived browser on a node whose /dev/shm may be small: shared memory in /tmp.
CHROMIUM_ARGS = [*BASE_ARGS, "--disable-dev-shm-usage"]
# Query parameter that makes each load a new navigation (a URL differing only
# by its hash would not reload the page).
_NONCE = "studio_verdict"
# Loads tried per story when one is cut short by the page's own reload.
_LOAD_TRIES = 3

# Resolves to the canvas' state once it has held for three animation frames
# (React runs a story's effects after the frame it painted; an effect that
# throws reaches the error boundary within the next). 'error' when the canvas
# failed to load or its error boundary caught; 'missing' when the story or
# component is not in the catalog.
_SETTLED = """
(expected) => {
  if (document.querySelector('[data-testid=studio-not-found]')) return 'missing';
  const canvas = document.querySelector('[data-testid=studio-canvas]');
  const shown = canvas && canvas.dataset.component === expected.component
    && canvas.dataset.story === expected.story;
  let state = shown ? canvas.dataset.state : 'loading';
  if (shown && canvas.querySelector('[data-testid=studio-error]')) state = 'error';
  if (state !== 'ready' && state !== 'error') { window.__studioSettled = 0; return false; }
  window.__studioSettled = (window.__studioSettled || 0) + 1;
  return window.__studioSettled >= 3 ? state : false;
}
"""
# Every WebSocket of the page stays shut. The API's event stream: it would
# announce each story this page shows to the people watching the sandbox, and
# follow what they select. Vite's HMR socket: each verdict loads the page
# afresh, and an HMR client told of the edit would reload the page at a moment
# of its own, cutting a verdict's load or story switch short.
_NO_SOCKETS = """
(() => {
  const nothing = () => {};
  window.WebSocket = function InertWebSocket(url) {
    return { url: String(url), readyState: 0, send: nothing, close: nothing,
             addEventListener: nothing, removeEventListener: nothing };
  };
})();
"""
# Shows another story of the page already loaded: the app follows its hash.
_SHOW = "(hash) => { window.__studioSettled = 0; window.location.hash = hash; }"
_ERROR_PANEL = """
() => {
  const text = (id) => document.querySelector(`[data-testid=${id}]`)?.textContent ?? null;
  return { title: text('studio-error-title'), message: text('studio-error-message'),
           componentStack: text('studio-error-component-stack') };
}
"""


@dataclass
class _SandboxPage:
    context: BrowserContext
    page: Page
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    used: float = field(default_factory=time.monotonic)
    loads: int = 0
    console: list[str] = field(default_factory=list)


def _size(viewport: Viewport) -> ViewportSize:
    return {"width": viewport.width, "height": viewport.height}


def _with_nonce(base_url: str, target_path: str, nonce: int) -> str:
    url = urljoin(base_url, target_path)
    head, hash_mark, fragment = url.partition("#")
    joined = f"{head}{'&' if '?' in head else '?'}{_NONCE}={nonce}"
    return f"{joined}{hash_mark}{fragment}"


class RenderBrowser:
    """The node's Chromium and its sandbox pages (see the module docstring)."""

    def __init__(
        self,
        *,
        idle_seconds: float = IDLE_SECONDS,
        max_stories: int = MAX_STORIES,
        launch: Callable[[Playwright], Any] | None = None,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_stories = max_stories
        self._launch = launch
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._pages: dict[str, _SandboxPage] = {}
        self._start_lock = asyncio.Lock()
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(DEFAULT_TIMEOUT))
        self.screenshots = ScreenshotCache()
        self.launches = 0

    # -- the browser ------------------------------------------------------

    async def browser(self) -> Browser:
        """The running Chromium, launched (again, after a crash) when there is none."""
        async with self._start_lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            # A crashed browser's pages are gone with it.
            self._pages.clear()
            if self._playwright is None:
                self._playwright = await async_playwright().start()
            if self._launch is not None:
                self._browser = await self._launch(self._playwright)
            else:
                executable = chromium_path()
                if not executable.is_file():
                    raise RuntimeError(f"no Chromium at {executable} (COMPONENT_STUDIO_CHROMIUM)")
                self._browser = await self._playwright.chromium.launch(
                    executable_path=str(executable), headless=True, args=CHROMIUM_ARGS
                )
            self.launches += 1
            return self._browser

    async def _page(self, sandbox_id: str, headers: dict[str, str] | None = None) -> _SandboxPage:
        held = self._pages.get(sandbox_id)
        if held is not None and not held.page.is_closed():
            return held
        browser = await self.browser()
        # ``headers``: the proxy's secret a sandbox's Vite wants on every request
        # (studio-template/plugin/proxy-guard.mjs): the browser stands in for the proxy.
        context = await browser.new_context(
            viewport=_size(DEFAULT_VIEWPORT), extra_http_headers=headers or {}
        )
        # No WebSocket (see _NO_SOCKETS): no live stream, no HMR reloads.
        await context.add_init_script(_NO_SOCKETS)
        page = await context.new_page()
        held = _SandboxPage(context=context, page=page)

        def on_console(message: Any) -> None:
            if message.type == "error":
                held.console.append(str(message.text))

        page.on("console", on_console)
        page.on("pageerror", lambda error: held.console.append(f"uncaught: {error}"))
        self._pages[sandbox_id] = held
        return held

    async def close_page(self, sandbox_id: str) -> bool:
        """Close a sandbox's page (its sandbox ended); whether there was one."""
        self.screenshots.forget(sandbox_id)
        held = self._pages.pop(sandbox_id, None)
        if held is None:
            return False
        with contextlib.suppress(PlaywrightError):
            await held.context.close()
        return True

    async def close_idle(self) -> list[str]:
        """Close the pages idle for ``idle_seconds``; the sandbox ids whose page closed."""
        now = time.monotonic()
        idle = [
            sandbox_id
            for sandbox_id, held in self._pages.items()
            if now - held.used > self.idle_seconds and not held.lock.locked()
        ]
        for sandbox_id in idle:
            await self.close_page(sandbox_id)
        return idle

    def pages(self) -> list[str]:
        """The sandboxes with an open page."""
        return sorted(self._pages)

    async def close(self) -> None:
        """Close every page, Chromium and Playwright."""
        for sandbox_id in list(self._pages):
            await self.close_page(sandbox_id)
        if self._browser is not None:
            with contextlib.suppress(PlaywrightError):
                await self._browser.close()
            self._browser = None
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None
        await self._http.aclose()

    # -- screenshots --------------------------------------------------------

    async def screenshot(
        self,
        sandbox_id: str,
        base_url: str,
        commit: str,
        story: str,
        viewport: Viewport = DEFAULT_VIEWPORT,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - the picture's own budget
        globals_: str = "",
    ) -> tuple[bytes, bool]:
        """A PNG of ``story`` (catalog story or component id) as the sandbox renders it at
        ``commit`` with ``globals_`` (checked by ``parse_globals``), and whether it came from
        the cache. ``base_url`` serves that commit: the sandbox's Vite, or its past renderer."""
        key = ScreenshotKey(sandbox_id, commit, story, viewport, globals_)
        cached = self.screenshots.get(key)
        if cached is not None:
            return cached, True
        response = await self._http.get(
            urljoin(base_url, "__studio/components.json"), headers=headers
        )
        response.raise_for_status()
        component, story_id, path = story_route(response.json(), story, globals_)
        expected = {"component": component, "story": "" if story_id == component else story_id}
        held = await self._page(sandbox_id, headers)
        async with held.lock:
            held.used = time.monotonic()
            page = held.page
            await page.set_viewport_size(_size(viewport))
            try:
                held.loads += 1
                await self._load(page, _with_nonce(base_url, path, held.loads), expected, timeout)
                picture = await page.screenshot(type="png")
            finally:
                with contextlib.suppress(PlaywrightError):
                    await page.set_viewport_size(_size(DEFAULT_VIEWPORT))
        self.screenshots.put(key, picture)
        return picture, False

    def cached_screenshot(
        self, sandbox_id: str, commit: str, story: str, viewport: Viewport, globals_: str = ""
    ) -> bytes | None:
        """The picture taken before of this story at ``commit``, or None."""
        return self.screenshots.get(ScreenshotKey(sandbox_id, commit, story, viewport, globals_))

    # -- the verdict -------------------------------------------------------

    async def verdict(
        self,
        sandbox_id: str,
        base_url: str,
        commit: str,
        files: list[str],
        *,
        since: float = 0.0,
        headers: dict[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - the verdict's own budget
    ) -> RenderVerdict:
        """What ``commit`` (which changed ``files``, repo-relative) rendered in the sandbox.

        ``since`` (seconds since the epoch, taken before the files were
        written): Vite is asked to wait until its watcher saw them change.
        """
        started = time.monotonic()
        deadline = started + timeout

        def done(**fields: Any) -> RenderVerdict:
            return RenderVerdict(commit=commit, seconds=time.monotonic() - started, **fields)

        try:
            facts = await self._facts(base_url, files, since, timeout, headers)
        except (httpx.HTTPError, ValueError) as exc:
            return done(status="timeout", detail=f"the sandbox's Vite did not answer: {exc}")
        compile_errors = [CompileError.model_validate(e) for e in facts.get("compile", [])]
        targets: list[dict[str, str]] = list(facts.get("targets", []))
        shown, skipped = targets[: self.max_stories], max(0, len(targets) - self.max_stories)
        if compile_errors:
            # Every affected story fails to load on the same error: no need to look.
            stories = [
                StoryVerdict(
                    id=t["id"],
                    component=t["component"],
                    status="compile_error",
                    error=compile_errors[0],
                )
                for t in shown
            ]
            return done(
                status="compile_error",
                stories=stories,
                compile_errors=compile_errors,
                skipped=skipped,
            )
        held = await self._page(sandbox_id, headers)
        stories = []
        async with held.lock:
            held.used = time.monotonic()
            for target in shown:
                left = deadline - time.monotonic()
                if left <= 0:
                    stories.append(
                        StoryVerdict(
                            id=target["id"], component=target["component"], status="timeout"
                        )
                    )
                    continue
                # A fresh load for the first (the page then runs the commit's modules), the
                # others shown by the page's own route: no second load of the app.
                fresh = target is shown[0]
                stories.append(await self._render(held, base_url, target, left, fresh=fresh))
            held.used = time.monotonic()
        return done(
            status=overall_status([s.status for s in stories]), stories=stories, skipped=skipped
        )

    async def _facts(
        self,
        base_url: str,
        files: list[str],
        since: float,
        timeout: float,  # noqa: ASYNC109
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        query = "&".join([*(f"file={quote(f)}" for f in files), f"since={int(since * 1000)}"])
        response = await self._http.get(
            urljoin(base_url, f"__studio/verdict?{query}"), timeout=timeout, headers=headers
        )
        if response.status_code != 200:
            raise ValueError(f"{response.status_code} {response.text[:500]}")
        facts: dict[str, Any] = response.json()
        return facts

    async def _render(
        self,
        held: _SandboxPage,
        base_url: str,
        target: dict[str, str],
        seconds: float,
        *,
        fresh: bool,
    ) -> StoryVerdict:
        held.console.clear()
        page = held.page
        ident = {"id": target["id"], "component": target["component"]}
        # the canvas names the story it shows (none for a bare component)
        expected = {
            "component": target["component"],
            "story": "" if target["id"] == target["component"] else target["id"],
        }
        try:
            if fresh:
                held.loads += 1
                url = _with_nonce(base_url, target["path"], held.loads)
                state = await self._load(page, url, expected, seconds)
            else:
                await page.evaluate(_SHOW, "#" + target["path"].partition("#")[2])
                state = await self._settled(page, expected, seconds * 1000)
        except PlaywrightError as exc:
            if not isinstance(exc, PlaywrightTimeout):
                failed = RenderError(message=f"the page could not be loaded: {exc.message}")
                return StoryVerdict(
                    **ident, status="timeout", error=failed, console_errors=list(held.console)
                )
            shown = await self._shown(page)
            unsettled = RenderError(
                message=f"did not settle in {seconds:.1f} s; the page shows: {shown}"
            )
            return StoryVerdict(
                **ident, status="timeout", error=unsettled, console_errors=list(held.console)
            )
        console = list(held.console)
        error = await self._error(page, target, state, console)
        if error is None:
            return StoryVerdict(**ident, status="ok", console_errors=console)
        return StoryVerdict(**ident, status="runtime_error", error=error, console_errors=console)

    @staticmethod
    async def _settled(page: Page, expected: dict[str, str], ms: float) -> str:
        handle = await page.wait_for_function(_SETTLED, arg=expected, polling="raf", timeout=ms)
        return str(await handle.json_value())

    @classmethod
    async def _load(cls, page: Page, url: str, expected: dict[str, str], seconds: float) -> str:
        """Load ``url`` and wait until its canvas settled; its state.

        Tried again when the load was cut short by the page's own reload (its
        HMR client may reload it after the edit, racing this navigation: an
        aborted navigation, a destroyed execution context).
        """
        deadline = time.monotonic() + seconds
        for attempt in range(_LOAD_TRIES):
            left = max(0.5, deadline - time.monotonic()) * 1000
            try:
                # After an interrupted load the page is already on its way to ``url``.
                if page.url != url:
                    await page.goto(url, wait_until="commit", timeout=left)
                return await cls._settled(page, expected, left)
            except PlaywrightTimeout:
                raise
            except PlaywrightError:
                if attempt == _LOAD_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    async def _shown(page: Page) -> str:
        """The start of the page's text (what a story that never settled left on screen)."""
        try:
            text = await page.evaluate("() => document.body ? document.body.innerText : ''")
        except PlaywrightError as exc:
            return f"(unreadable: {exc})"
        return f"{page.url}: " + (" ".join(str(text).split())[:300] or "(nothing)")

    @staticmethod
    async def _error(
        page: Page, target: dict[str, str], state: str, console: list[str]
    ) -> RenderError | None:
        """The story's error: its error panel, else the page's first uncaught error."""
        if state == "missing":
            return RenderError(message=f"{target['id']} is not in the studio's catalog")
        if state == "error":
            panel: dict[str, str | None] = await page.evaluate(_ERROR_PANEL)
            message = panel.get("message") or panel.get("title") or "the story failed"
            return RenderError(message=message, component_stack=panel.get("componentStack"))
        uncaught = [line for line in console if line.startswith("uncaught: ")]
        if uncaught:
            return RenderError(message=uncaught[0].removeprefix("uncaught: "))
        return None
