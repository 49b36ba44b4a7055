"""The run's Chromium (Debian's, driven by Playwright's sync API), started once.

:func:`launch_chromium` is also how the test suite's browser starts
(``tests/support/browser.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from benchmarks.context import RunContext
from studio.render.chromium import BASE_ARGS, chromium_path

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

__all__ = ["CHROMIUM_ARGS", "CHROMIUM_PATH", "browser", "chromium", "launch_chromium"]

CHROMIUM_PATH = chromium_path()
CHROMIUM_ARGS = list(BASE_ARGS)


def launch_chromium(playwright: Playwright) -> Browser:
    """Start Debian Chromium headless (each launch gets a fresh temporary user-data-dir)."""
    if not CHROMIUM_PATH.is_file():
        raise RuntimeError(f"no Chromium at {CHROMIUM_PATH} (COMPONENT_STUDIO_CHROMIUM)")
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM_PATH), headless=True, args=CHROMIUM_ARGS
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
