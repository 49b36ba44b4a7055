"""Which Chromium runs and how: shared by the node's browser (studio.render.browser),
the benchmarks and the tests (benchmarks/_browser.py). No Playwright import here."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["BASE_ARGS", "chromium_path"]

# The machine may have no network: without these Chromium keeps calling home and slows down.
BASE_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> Path:
    """The Chromium to run (``COMPONENT_STUDIO_CHROMIUM``, Debian's by default)."""
    return Path(os.environ.get("COMPONENT_STUDIO_CHROMIUM", "/usr/bin/chromium"))
