"""The run's Chromium (Debian's, driven by Playwright's sync API), started once.

:func:`launch_chromium` is also how the test suite's browser starts
(``tests/support/browser.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from benchmarks.context import RunContext
from studio.render.chromium import (
    BASE_ARGS,
    chromium_path,
    disable_features_switch,
    lean_launch_arguments,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

__all__ = ["CHROMIUM_ARGS", "CHROMIUM_PATH", "browser", "chromium", "launch_chromium"]

CHROMIUM_PATH = chromium_path()
CHROMIUM_ARGS = list(BASE_ARGS)


# Playwright's own --disable-features switch, read once per process ("" when none).
_launcher_features: str | None = None


def launch_chromium(playwright: Playwright) -> Browser:
    """Start Debian Chromium headless (each launch gets a fresh temporary user-data-dir),
    lean as the node's browser (studio.render.browser._launch_lean).

    A run opens a browser context per measured page, and headless Chromium opens a
    window per context whose omnibox popup is preloaded in a renderer of its own:
    on weDevsOfficial/tail-react that renderer took 0.8 s of CPU per context,
    while the page it measured took 0.9 s, on the 2 cores the service under
    measurement shares with it (create -> story 2.3-2.5 s; 1.4 s without it). A user's
    browser has its window open already.
    """
    global _launcher_features
    if not CHROMIUM_PATH.is_file():
        raise RuntimeError(f"no Chromium at {CHROMIUM_PATH} (COMPONENT_STUDIO_CHROMIUM)")
    executable = str(CHROMIUM_PATH)
    if _launcher_features is None:
        probe = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = probe.new_page()
            page.goto("chrome://version")
            _launcher_features = disable_features_switch(page.inner_text("#command_line")) or ""
        finally:
            probe.close()
    args, ignored = lean_launch_arguments(CHROMIUM_ARGS, _launcher_features)
    return playwright.chromium.launch(
        executable_path=executable, headless=True, args=args, ignore_default_args=ignored
    )


@contextlib.contextmanager
def chromium(ctx: RunContext) -> Iterator[Browser]:
    """Headless Chromium for the run; closed (with its processes) on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = launch_chromium(playwright)
        try:
            yield launched
        finally:
            launched.close()


def browser(ctx: RunContext) -> Browser:
    """The run's Chromium, launched on first use."""
    return ctx.resource("chromium", chromium)
