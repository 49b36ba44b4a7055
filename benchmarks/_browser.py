"""The run's Chromium (Debian's, driven by Playwright's sync API), started once."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.context import RunContext

if TYPE_CHECKING:
    from playwright.sync_api import Browser

__all__ = ["CHROMIUM_ARGS", "browser", "chromium"]

CHROMIUM_PATH = Path(os.environ.get("COMPONENT_STUDIO_CHROMIUM", "/usr/bin/chromium"))
# The machine has no network: without these Chromium keeps calling home and slows down.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def chromium(ctx: RunContext) -> Iterator[Browser]:
    """Headless Chromium for the run; closed (with its processes) on exit."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM_PATH.is_file():
        raise RuntimeError(f"no Chromium at {CHROMIUM_PATH} (COMPONENT_STUDIO_CHROMIUM)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM_PATH), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


def browser(ctx: RunContext) -> Browser:
    """The run's Chromium, launched on first use."""
    return ctx.resource("chromium", chromium)
