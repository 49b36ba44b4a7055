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
import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin

import httpx
from playwright.async_api import (
    Browser,
    BrowserContext,
    CDPSession,
    Page,
    Playwright,
    ViewportSize,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeout

from studio.render.budget import DEFAULT_TIMEOUT, IDLE_SECONDS, MAX_STORIES
from studio.render.chromium import (
    BASE_ARGS,
    chromium_path,
    disable_features_switch,
    is_headless_shell,
    lean_launch_arguments,
    render_chromium_path,
)
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
    screenshot_url,
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
# Frames as fast as the page draws them, not at 60 Hz: a story settles in two
# frames (_LOOK), 14 ms instead of 28 (measured). An animation then draws
# without pause: a page left drawing when no verdict looks goes blank (_IDLE_BLANK).
CHROMIUM_ARGS = [*BASE_ARGS, "--disable-dev-shm-usage", "--disable-frame-rate-limit"]
# Query parameter that makes each load a new navigation (a URL differing only
# by its hash would not reload the page).
_NONCE = "studio_verdict"
# Loads tried per story when one is cut short by the page's own reload.
_LOAD_TRIES = 3
# How long the warm path waits for the page to apply Vite's hot update of an
# edit (it has usually done so while Vite answered) before loading it afresh.
# (The page's own clock: a page that stalls is not caught up.)
_CATCH_UP_SECONDS = 1.0
# How often a loading page is asked whether its canvas shows the story (_SHOWN).
_SHOWN_POLL_MS = 8
# Warm verdicts of a page before it is loaded afresh (see _SandboxPage.warm).
_WARM_MAX = 100

# What the canvas shows of the story expected: 'missing' when the story or
# component is not in the catalog, 'loading' while another (or none) is shown,
# 'error' when it failed to load or its error boundary caught, else its
# data-state ('ready' once rendered).
_CANVAS_STATE = """
(expected) => {
  if (window.__studioIdle) window.__studioIdle.looked = performance.now();
  if (document.querySelector('[data-testid=studio-not-found]')) return 'missing';
  const canvas = document.querySelector('[data-testid=studio-canvas]');
  const shown = canvas && canvas.dataset.component === expected.component
    && canvas.dataset.story === expected.story;
  if (!shown) return 'loading';
  return canvas.querySelector('[data-testid=studio-error]') ? 'error' : canvas.dataset.state;
}
"""
# The canvas' state once it shows the story expected, 'ready' or 'error', or
# 'missing'. Polled every _SHOWN_POLL_MS while the page loads; whether the
# state holds is _LOOK's to say.
_SHOWN = f"""
(expected) => {{
  const state = ({_CANVAS_STATE})(expected);
  return state === 'missing' || state === 'ready' || state === 'error' ? state : false;
}}
"""
# The page's WebSockets. The API's event stream stays shut: it would announce
# each story this page shows to the people watching the sandbox, and follow
# what they select. Vite's HMR socket is real, so that an edit reaches the page
# as Vite's hot update (React Fast Refresh) and the next verdict need not load
# the page again (the warm path, _LOOK). The page never
# reloads on its own, which would race a verdict's own load or story switch:
# a `full-reload` is noted (the next verdict loads afresh) and not passed on,
# nor is an `error` (its overlay would reload the page at the next update).
# window.__studioHmr tells the verdict how far the page is: `first` and `seq`
# the first and the last message received (numbered by
# studio-template/plugin/hmr-sequence.mjs), `applied` the last one whose
# update ran, React's refresh included (plugin-react's runtime performs it 16
# ms after the update, a timer set before ours), `ready` once that is known;
# `wake()` resolves the promises in `waiters` at each change (a verdict waiting
# for its edit's update sleeps on one instead of polling every frame).
_PAGE_SCRIPT = """
(() => {
  const nothing = () => {};
  const inert = (url) => ({ url: String(url), readyState: 0, send: nothing, close: nothing,
                            addEventListener: nothing, removeEventListener: nothing });
  const RealWebSocket = window.WebSocket;
  const hmr = { first: 0, seq: 0, applied: 0, ready: false, reload: false, invalidated: false,
                closed: false, waiters: [] };
  hmr.wake = () => { for (const resolve of hmr.waiters.splice(0)) resolve(); };
  window.__studioHmr = hmr;
  const APPLIED = 'studio:hmr-applied';
  const REFRESH_MS = 16;
  const listen = () => {
    const client = document.querySelector('script[type="module"][src*="/@vite/client"]');
    if (!client) return;
    import(client.src).then((vite) => {
      vite.createHotContext('/@studio/verdict').on(APPLIED, ({ seq }) => {
        setTimeout(() => { if (seq > hmr.applied) hmr.applied = seq; hmr.wake(); }, REFRESH_MS);
      });
      hmr.ready = true;
      hmr.wake();
    }, nothing);
  };
  window.WebSocket = function StudioWebSocket(url, protocols) {
    if (protocols !== 'vite-hmr') return inert(url);
    const socket = new RealWebSocket(url, protocols);
    const send = socket.send.bind(socket);
    socket.send = (data) => {
      if (String(data).includes('"vite:invalidate"')) { hmr.invalidated = true; hmr.wake(); }
      send(data);
    };
    socket.addEventListener('close', () => { hmr.closed = true; hmr.wake(); });
    const add = socket.addEventListener.bind(socket);
    socket.addEventListener = (type, listener, options) => {
      if (type !== 'message') return add(type, listener, options);
      return add('message', (event) => {
        let payload = null;
        try { payload = JSON.parse(event.data); } catch { return listener(event); }
        const seq = payload.studioSeq;
        if (typeof seq === 'number') {
          if (!hmr.first) hmr.first = seq;
          hmr.seq = Math.max(hmr.seq, seq);
          hmr.wake();
        }
        if (payload.type === 'full-reload') { hmr.reload = true; hmr.wake(); return; }
        if (payload.type !== 'error') listener(event);
        // handled by Vite's client in order: after the message's own update
        if (typeof seq === 'number') {
          listener({ data: JSON.stringify({ type: 'custom', event: APPLIED, data: { seq } }) });
        }
      }, options);
    };
    listen();
    return socket;
  };
})();
"""
# A page that no verdict has looked at for IDLE_MS while its story keeps
# drawing (a CSS or Web animation running, or the page asking for animation
# frames) goes to the studio's route that shows nothing
# (studio-template/src/route.ts, BLANK_COMPONENT): frames are unthrottled
# (CHROMIUM_ARGS), and a spinner left on screen would draw as fast as a core
# allows until the next verdict, which shows its story again by the hash route
# (_LOOK). A still story stays on screen, for the next verdict to look at
# again without mounting it. `looked`: when the canvas was last probed
# (_CANVAS_STATE); `raf`: the real requestAnimationFrame, for the verdict's own
# frames, which are not the page's.
_IDLE_BLANK = """
(() => {
  if (window !== window.top) return;  // a story's own iframe keeps its hash
  const IDLE_MS = 500;
  const BLANK = '#/~blank';
  const raf = window.requestAnimationFrame.bind(window);
  const idle = { looked: performance.now(), asked: 0, raf };
  window.__studioIdle = idle;
  window.requestAnimationFrame = function requestAnimationFrame(callback) {
    idle.asked += 1;
    return raf(callback);
  };
  let seen = 0;
  setInterval(() => {
    const asked = idle.asked !== seen;
    seen = idle.asked;
    if (performance.now() - idle.looked < IDLE_MS || window.location.hash === BLANK) return;
    if (asked || document.getAnimations().some((a) => a.playState === 'running')) {
      window.location.hash = BLANK;
    }
  }, IDLE_MS / 2);
})();
"""
# A focused field's caret is left out of every picture (as Playwright's own
# screenshots hide it): a constructed style sheet adopted by the document, no
# element added to the page the story sees.
_HIDE_CARET = """
(() => {
  const sheet = new CSSStyleSheet();
  sheet.replaceSync('*, *::before, *::after { caret-color: transparent !important; }');
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
})();
"""
# PNG settings of a picture: zlib at its fastest (Chromium's optimizeForSpeed):
# a third larger than the default's file, the same pixels, in a third less time.
_CAPTURE = {"format": "png", "optimizeForSpeed": True, "captureBeyondViewport": False}
# A story of the page already loaded, in one round trip: optionally first the
# page caught up with the HMR messages up to ``seq`` (it was loaded when the
# last was ``base``; 'stale' when it can no longer be brought up to date by
# them: a message missed while it loaded, a full reload asked for, a module
# that refused its hot update, the socket gone, or not within ``catchUpMs``),
# the story shown by the hash route when the page shows another or none (the
# app follows it; the page may have gone blank, _IDLE_BLANK), then the
# canvas' state once it settled ('unsettled' after ``ms``). Settled: the same
# state seen in two animation frames and again in a task queued after the
# second. React paints a commit, then runs its effects (a task the scheduler
# queued at the commit, or at once for a discrete update); an effect's throw
# reaches the error boundary as a sync update in a microtask, and what an
# effect's setState renders is a task queued before ours: by then the canvas
# shows the story's error.
_LOOK = """
async ({ expected, hash, seq, base, catchUpMs, ms }) => {
  const start = performance.now();
  const raf = window.__studioIdle ? window.__studioIdle.raf : requestAnimationFrame;
  const frame = () => new Promise((resolve) => raf(resolve));
  const task = () => new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
  const look = () => (__CANVAS_STATE__)(expected);
  if (seq !== null) {
    for (;;) {
      const hmr = window.__studioHmr;
      if (!hmr || !hmr.ready || hmr.reload || hmr.invalidated || hmr.closed) return 'stale';
      if (hmr.first > base + 1) return 'stale';
      if (Math.max(hmr.applied, base) >= seq) break;
      const left = catchUpMs - (performance.now() - start);
      if (left <= 0) return 'stale';
      // until the page's HMR state changes (a frame polling here would run
      // unthrottled while Vite compiles the edit)
      await new Promise((resolve) => { hmr.waiters.push(resolve); setTimeout(resolve, left); });
    }
  }
  if (hash !== null && window.location.hash !== hash) window.location.hash = hash;
  let held = 0;
  let last = null;
  for (;;) {
    const state = look();
    if (state === 'missing') return state;
    held = (state === 'ready' || state === 'error') && state === last ? held + 1 : 1;
    last = state;
    if (held >= 2 && (state === 'ready' || state === 'error')) {
      await task();
      if (look() === state) return state;
      held = 0;
    }
    if (performance.now() - start > ms) return 'unsettled';
    await frame();
  }
}
""".replace("__CANVAS_STATE__", _CANVAS_STATE)
_ERROR_PANEL = """
() => {
  const text = (id) => document.querySelector(`[data-testid=${id}]`)?.textContent ?? null;
  return { title: text('studio-error-title'), message: text('studio-error-message'),
           componentStack: text('studio-error-component-stack') };
}
"""


# Playwright's own --disable-features switch, read from the first browser it
# launched in this process (see _launch_lean); "" when it has none.
_launcher_features: str | None = None


async def _launch_lean(playwright: Playwright) -> Browser:
    """The node's Chromium, without the features it does without
    (LEAN_DISABLED_FEATURES). Playwright passes a --disable-features of its
    own and Chromium reads only the last one: the first launch in a process
    reads Playwright's from chrome://version, and every launch then passes
    both lists as one switch in place of Playwright's."""
    global _launcher_features
    executable = render_chromium_path()
    if not executable.is_file():
        raise RuntimeError(f"no Chromium at {executable} (COMPONENT_STUDIO_RENDER_CHROMIUM)")
    launch = playwright.chromium.launch
    if is_headless_shell(executable):
        # no omnibox, no chrome://version: Playwright's own switches as they are
        return await launch(executable_path=str(executable), headless=True, args=CHROMIUM_ARGS)
    if _launcher_features is None:
        probe = await launch(executable_path=str(executable), headless=True, args=CHROMIUM_ARGS)
        try:
            page = await probe.new_page()
            await page.goto("chrome://version")
            _launcher_features = disable_features_switch(await page.inner_text("#command_line"))
            _launcher_features = _launcher_features or ""
        finally:
            await probe.close()
    args, ignored = lean_launch_arguments(CHROMIUM_ARGS, _launcher_features)
    return await launch(
        executable_path=str(executable), headless=True, args=args, ignore_default_args=ignored
    )


class _Stale(Exception):
    """The page's hot updates cannot bring it to the edit: it must load afresh."""


@dataclass
class _SandboxPage:
    context: BrowserContext
    page: Page
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    used: float = field(default_factory=time.monotonic)
    loads: int = 0
    console: list[str] = field(default_factory=list)
    # The page as a verdict's load left it, for HMR to keep current (the warm
    # path): its URL without the hash, the last HMR message before the load,
    # the catalog's fingerprint. None: the next verdict loads the page afresh.
    synced: tuple[str, int, str] | None = None
    # Verdicts made warm since the last load: each hot update leaves its module
    # versions in the page's module map for good, so the page is loaded afresh
    # after _WARM_MAX of them.
    warm: int = 0
    # The page's DevTools session for pictures (see RenderBrowser._capture), opened on
    # the first.
    cdp: CDPSession | None = None


def _size(viewport: Viewport) -> ViewportSize:
    return {"width": viewport.width, "height": viewport.height}


def _look(
    expected: dict[str, str],
    *,
    ms: float,
    hash_route: str | None = None,
    seq: int | None = None,
    base: int = 0,
) -> dict[str, Any]:
    """_LOOK's argument: settle ``expected`` within ``ms``, after the page shows
    ``hash_route`` and caught up with HMR message ``seq`` (see _LOOK)."""
    return {
        "expected": expected,
        "hash": hash_route,
        "seq": seq,
        "base": base,
        "catchUpMs": _CATCH_UP_SECONDS * 1000,
        "ms": ms,
    }


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
                self._browser = await _launch_lean(self._playwright)
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
        # No live stream; Vite's HMR, without reloads of its own (see _PAGE_SCRIPT).
        await context.add_init_script(_PAGE_SCRIPT)
        await context.add_init_script(_HIDE_CARET)
        await context.add_init_script(_IDLE_BLANK)
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

    def page_loads(self, sandbox_id: str) -> int:
        """How many times the sandbox's page was loaded (0 without a page): a verdict
        that Vite's hot update brought the page to loads nothing."""
        held = self._pages.get(sandbox_id)
        return 0 if held is None else held.loads

    def page_route(self, sandbox_id: str) -> str | None:
        """The hash route the sandbox's page is on (``#/~blank`` once it went blank,
        _IDLE_BLANK), or None without a page."""
        held = self._pages.get(sandbox_id)
        return None if held is None or held.page.is_closed() else held.page.url.partition("#")[2]

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
                picture = await self._capture(held)
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
        pictures: bool = False,
    ) -> RenderVerdict:
        """What ``commit`` (which changed ``files``, repo-relative) rendered in the sandbox.

        ``since`` (seconds since the epoch, taken before the files were
        written): Vite is asked to wait until its watcher saw them change.
        ``pictures``: each story it rendered is also pictured on the same page,
        kept in the screenshot cache and linked (``screenshot_url``).
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
            # Every affected story fails to load on the same error: no need to look. The
            # page's hot update of the edit failed: the next verdict loads it afresh.
            held_page = self._pages.get(sandbox_id)
            if held_page is not None:
                held_page.synced = None
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
        async with held.lock:
            held.used = time.monotonic()
            picture = None
            if pictures:

                async def picture(story: StoryVerdict) -> StoryVerdict:
                    return await self._picture(held, sandbox_id, commit, story, deadline)

            stories = await self._stories(held, base_url, shown, facts, deadline, picture)
            held.used = time.monotonic()
        return done(
            status=overall_status([s.status for s in stories]), stories=stories, skipped=skipped
        )

    async def _stories(
        self,
        held: _SandboxPage,
        base_url: str,
        targets: list[dict[str, str]],
        facts: dict[str, Any],
        deadline: float,
        picture: Callable[[StoryVerdict], Awaitable[StoryVerdict]] | None = None,
    ) -> list[StoryVerdict]:
        """Each of ``targets`` as the page renders it (in the order given), and
        ``picture``'s answer for each while it is on screen.

        Warm, when the page still holds what the last verdict loaded and Vite's
        hot updates of the edit reached it: the story it shows is looked at
        again and the others shown by its hash route. Otherwise the first is
        loaded afresh (the page then runs the commit's modules) and the others
        shown by the route: no second load of the app.
        """
        seq = (facts.get("hmr") or {}).get("seq")
        base = self._warm_base(held, seq, facts.get("catalog"))
        current = held.page.url.partition("#")[2]
        # the story on screen first: no switch
        order = sorted(targets, key=lambda t: t["path"].partition("#")[2] != current)
        found: dict[str, StoryVerdict] = {}
        for index, target in enumerate(order):
            left = deadline - time.monotonic()
            if left <= 0:
                found[target["id"]] = StoryVerdict(
                    id=target["id"], component=target["component"], status="timeout"
                )
                continue
            verdict: StoryVerdict | None = None
            if index > 0:
                verdict = await self._render(held, base_url, target, left, mode="show")
            elif base is not None and isinstance(seq, int):
                try:
                    verdict = await self._render(
                        held, base_url, target, left, mode="show", catch_up=(seq, base)
                    )
                    held.warm += 1
                except _Stale:
                    logger.info("the page did not catch up with the edit; loading it afresh")
            if verdict is None:
                verdict = await self._render(held, base_url, target, left, mode="load")
                loaded = held.page.url.partition("#")[0]
                fingerprint = facts.get("catalog")
                held.synced = None if seq is None else (loaded, int(seq), str(fingerprint))
                held.warm = 0
            found[target["id"]] = verdict if picture is None else await picture(verdict)
        stories = [found[t["id"]] for t in targets]
        if any(s.status != "ok" for s in stories):
            # an error boundary that caught, a story that never settled: loaded afresh next time
            held.synced = None
        return stories

    async def _picture(
        self,
        held: _SandboxPage,
        sandbox_id: str,
        commit: str,
        story: StoryVerdict,
        deadline: float,
    ) -> StoryVerdict:
        """``story`` with a link to its picture when it rendered (ok, or its error shown),
        taken as the verdict's page shows it now. Kept in the cache under the screenshot
        route's key, so the link costs no second rendering. A story that timed out, or
        left no time, gets no picture."""
        page = held.page
        if story.status not in ("ok", "runtime_error") or page.is_closed():
            return story
        key = ScreenshotKey(sandbox_id, commit, story.id, DEFAULT_VIEWPORT, "")
        if self.screenshots.get(key) is None:
            if time.monotonic() >= deadline:
                return story
            try:
                self.screenshots.put(key, await self._capture(held))
            except PlaywrightError as exc:
                logger.info("no picture of %s: %s", story.id, exc.message)
                return story
        link = screenshot_url(sandbox_id, story.id, commit)
        return story.model_copy(update={"screenshot_url": link})

    @staticmethod
    async def _capture(held: _SandboxPage) -> bytes:
        """A PNG of the page's viewport, once its web fonts loaded (as Playwright's
        screenshot waits for them). Chromium's own capture over the page's DevTools
        session: Playwright's ``page.screenshot`` cannot ask for the fast PNG encoding
        (_CAPTURE), and also adds and removes a caret style per picture (_HIDE_CARET does
        that once): 31-46 ms a picture against 50-75 ms, the same pixels (measured)."""
        if held.cdp is None:
            held.cdp = await held.context.new_cdp_session(held.page)
        await held.page.evaluate("document.fonts.ready.then(() => null)")
        shot = await held.cdp.send("Page.captureScreenshot", _CAPTURE)
        return base64.b64decode(shot["data"])

    @staticmethod
    def _warm_base(held: _SandboxPage, seq: Any, catalog: Any) -> int | None:
        """The last HMR message before the page's load when its hot updates may bring it
        to the edit (the warm path), else None."""
        synced = held.synced
        if synced is None or not isinstance(seq, int) or held.page.is_closed():
            return None
        if held.warm >= _WARM_MAX:
            return None
        url, base, fingerprint = synced
        if held.page.url.partition("#")[0] != url or catalog != fingerprint:
            return None  # another load since (a screenshot), or a story added or renamed
        return base

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
        mode: str,
        catch_up: tuple[int, int] | None = None,
    ) -> StoryVerdict:
        """One story: ``mode`` 'load' (the page afresh) or 'show' (by the hash route, a
        no-op for the story on screen). ``catch_up`` (seq, base): first the page's hot
        updates up to seq (see _LOOK); _Stale when they cannot bring it there."""
        held.console.clear()
        page = held.page
        ident = {"id": target["id"], "component": target["component"]}
        # the canvas names the story it shows (none for a bare component)
        expected = {
            "component": target["component"],
            "story": "" if target["id"] == target["component"] else target["id"],
        }
        try:
            if mode == "load":
                held.loads += 1
                url = _with_nonce(base_url, target["path"], held.loads)
                state = await self._load(page, url, expected, seconds)
            else:
                seq, base = catch_up if catch_up is not None else (None, 0)
                hash_route = "#" + target["path"].partition("#")[2]
                look = _look(expected, ms=seconds * 1000, hash_route=hash_route, seq=seq, base=base)
                state = str(await page.evaluate(_LOOK, look))
                if state == "stale":
                    raise _Stale(target["id"])
                if state == "unsettled":
                    raise PlaywrightTimeout(f"{target['id']} did not settle")
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
        """The loaded page's state once its canvas shows the story and settled."""
        started = time.monotonic()
        # a timer, not every frame: frames are unthrottled (CHROMIUM_ARGS), and polling
        # each one would take the renderer's time from the page it waits for
        handle = await page.wait_for_function(
            _SHOWN, arg=expected, polling=_SHOWN_POLL_MS, timeout=ms
        )
        shown = str(await handle.json_value())
        if shown == "missing":
            return shown
        left = max(0.0, ms - (time.monotonic() - started) * 1000)
        state = str(await page.evaluate(_LOOK, _look(expected, ms=left)))
        if state == "unsettled":
            raise PlaywrightTimeout(f"{expected} did not settle")
        return state

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
