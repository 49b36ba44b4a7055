"""Which Chromium runs and how: shared by the node's browser (studio.render.browser),
the benchmarks and the tests (benchmarks/_browser.py). No Playwright import here."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "BASE_ARGS",
    "LEAN_DISABLED_FEATURES",
    "chromium_path",
    "disable_features_switch",
    "is_headless_shell",
    "lean_launch_arguments",
    "merged_disable_features",
    "render_chromium_path",
]

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


# Features a long-lived headless browser of many pages does without. Headless
# Chromium opens a window per browser context, and each window preloads the
# omnibox's popup, a WebUI page in a renderer process of its own: about 40 MiB
# per sandbox page for a popup no one opens (measured, docs/performance.md).
LEAN_DISABLED_FEATURES = ("WebUIOmniboxPopup", "WebUIOmniboxAimPopup")
_DISABLE_FEATURES = "--disable-features="


def disable_features_switch(command_line: str) -> str | None:
    """The ``--disable-features=...`` switch in a browser's ``command_line`` (as
    chrome://version shows it), or None. Chromium honours only the last of
    several such switches, so ours is merged into the launcher's, not added."""
    found = [part for part in command_line.split() if part.startswith(_DISABLE_FEATURES)]
    return found[-1] if found else None


def merged_disable_features(default: str | None, extra: tuple[str, ...]) -> str:
    """One ``--disable-features`` switch: the launcher's ``default`` and ``extra``."""
    names = [] if default is None else default.removeprefix(_DISABLE_FEATURES).split(",")
    names += [name for name in extra if name not in names]
    return _DISABLE_FEATURES + ",".join(name for name in names if name)


def lean_launch_arguments(
    args: list[str], launcher_features: str
) -> tuple[list[str], list[str] | None]:
    """``args`` and the launcher's default arguments to ignore, for a launch without
    LEAN_DISABLED_FEATURES. ``launcher_features``: the launcher's own --disable-features
    switch, as chrome://version of a browser it launched shows it ("" when none)."""
    merged = merged_disable_features(launcher_features or None, LEAN_DISABLED_FEATURES)
    return [*args, merged], [launcher_features] if launcher_features else None


def chromium_path() -> Path:
    """The Chromium to run (``COMPONENT_STUDIO_CHROMIUM``, Debian's by default)."""
    return Path(os.environ.get("COMPONENT_STUDIO_CHROMIUM", "/usr/bin/chromium"))


# Chromium's headless shell (Debian's chromium-headless-shell, Playwright's default
# for headless): the same Blink and V8 without the browser's windows, views and
# WebUI, so its browser process holds less per browser context. The binary, not
# Debian's /usr/bin wrapper: that script runs it as a child of its own shell.
HEADLESS_SHELL = Path("/usr/lib/chromium/chromium-headless-shell")


def render_chromium_path() -> Path:
    """The Chromium of the node's render browser (studio.render.browser):
    ``COMPONENT_STUDIO_RENDER_CHROMIUM``, else the headless shell when it is
    installed, else :func:`chromium_path`."""
    chosen = os.environ.get("COMPONENT_STUDIO_RENDER_CHROMIUM")
    if chosen:
        return Path(chosen)
    return HEADLESS_SHELL if HEADLESS_SHELL.is_file() else chromium_path()


def is_headless_shell(executable: Path) -> bool:
    """Whether ``executable`` is a headless shell (it has no chrome:// pages, no omnibox)."""
    return "headless-shell" in executable.name or "headless_shell" in executable.name
