"""Real Chromium for the suite's browser tests, driven by Playwright's sync API.

Use it as a pytest plugin (``pytest_plugins = ["tests.support.browser"]`` in
``tests/conftest.py``) or import the fixtures into a test module. Fixtures:

- ``chromium`` (module): one Debian Chromium per test module, closed after its last test.
- ``browser_page`` (function): a fresh context (own cookies and storage) and page;
  closed after the test, with a screenshot under ``test-artifacts/`` when the
  test failed.

Chromium starts as the benchmarks start it (``benchmarks/_browser.py``), with
the flags that stop it from calling home where there is no network.
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import psutil
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from benchmarks._browser import CHROMIUM_ARGS, CHROMIUM_PATH
from benchmarks._browser import launch_chromium as benchmark_chromium
from studio.paths import atomic_write

__all__ = [
    "ARTIFACTS_DIR",
    "CHROMIUM_ARGS",
    "CHROMIUM_PATH",
    "browser_page",
    "chromium",
    "hot_reload_button",
    "launch_chromium",
    "pytest_runtest_makereport",
    "require_chromium",
    "save_screenshot",
]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = ROOT / "test-artifacts"
# Renderer processes of a closed context exit shortly after it; wait this long
# for them before a test's own leak check looks.
_SETTLE_TIMEOUT = 10.0


def require_chromium() -> None:
    """Skip the test on a machine without Chromium (scripts/setup.sh installs it)."""
    if not CHROMIUM_PATH.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM_PATH}: run scripts/setup.sh")


def launch_chromium(playwright: Playwright) -> Browser:
    """Start Chromium as the benchmarks do; the test is skipped on a machine without it."""
    require_chromium()
    return benchmark_chromium(playwright)


def _chromium_processes(*, renderers_only: bool = False) -> set[int]:
    """Live Chromium processes among this process's descendants."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE or "chrom" not in child.name():
                continue
            if renderers_only and "--type=renderer" not in child.cmdline():
                continue
            found.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


def _settle(baseline: set[int], timeout: float = _SETTLE_TIMEOUT) -> None:
    """Wait until no Chromium process beyond ``baseline`` is left (renderers winding down)."""
    deadline = time.monotonic() + timeout
    while _chromium_processes() - baseline and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One Chromium per test module.

    Not per session: Playwright's sync API leaves its event loop marked as
    running in the main thread while it is open, and every asyncio test run
    after it (pytest-asyncio's runner) then fails with "Runner.run() cannot be
    called from a running event loop". Closing it with the module keeps the
    modules that use a browser independent of the order they run in.

    Module fixtures are set up before the per-test leak check takes its
    "before" snapshot, so the browser's long-lived processes are not counted
    as a test's leak. Those that Chromium starts lazily with the first page
    (network and storage services) are started here by a throwaway page.
    """
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context()
            context.new_page().goto("data:text/html,<title>warm-up</title>")
            context.close()
            # what stays now is the browser's resident set; renderers come and go per page
            deadline = time.monotonic() + _SETTLE_TIMEOUT
            while _chromium_processes(renderers_only=True) and time.monotonic() < deadline:
                time.sleep(0.05)
            yield browser
        finally:
            browser.close()


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "screenshot"


def save_screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a PNG of ``page`` as ``test-artifacts/<name>.png`` (gitignored) and return its path."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS_DIR / f"{_safe_name(name)}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test item, so ``browser_page`` knows a test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def browser_page(chromium: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A new page in a fresh browser context; closed (and its renderers gone) after the test."""
    before = _chromium_processes()
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed and not page.is_closed():
            try:
                save_screenshot(page, f"FAILED-{request.node.name}")
            except Exception as error:  # a crashed page must not hide the test's own failure
                print(f"browser_page: no failure screenshot: {error}")
        context.close()
        _settle(before)


def hot_reload_button(page: Page, renderer_url: str, repo: Path, new_text: str) -> None:
    """Render ui-kit's Button at ``renderer_url``, edit its text in ``repo``, see it hot-reload.

    Asserts the canvas got ready with "Click me", then shows ``new_text`` after
    an atomic write of Button.tsx, without a full page reload (HMR).
    """
    page.goto(f"{renderer_url}#/Button")
    canvas = page.locator("[data-testid=studio-canvas]")
    expect(canvas).to_have_attribute("data-state", "ready")
    button = canvas.get_by_role("button")
    expect(button).to_have_text("Click me")
    page.evaluate("window.__notReloaded = true")
    source = repo / "src" / "components" / "Button" / "Button.tsx"
    atomic_write(source, source.read_text().replace("'Click me'", f"'{new_text}'"))
    expect(button).to_have_text(new_text)
    # Hot module replacement, not a full reload.
    assert page.evaluate("window.__notReloaded") is True
