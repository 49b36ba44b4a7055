"""The node browser's --disable-features: merged into the launcher's, never a second switch;
the benchmarks' and the suite's Chromium starts as lean."""

from __future__ import annotations

from playwright.sync_api import Browser

from studio.render.chromium import (
    disable_features_switch,
    lean_launch_arguments,
    merged_disable_features,
)


def test_the_last_disable_features_switch_is_found() -> None:
    line = "/usr/lib/chromium --disable-features=A,B --headless --disable-features=C --no-sandbox"
    assert disable_features_switch(line) == "--disable-features=C"
    assert disable_features_switch("/usr/lib/chromium --headless") is None


def test_ours_are_added_to_the_launchers_once() -> None:
    merged = merged_disable_features("--disable-features=A,B", ("B", "C"))
    assert merged == "--disable-features=A,B,C"
    assert merged_disable_features(None, ("C",)) == "--disable-features=C"


def test_a_lean_launch_replaces_the_launchers_switch_with_the_merged_one() -> None:
    args, ignored = lean_launch_arguments(["--headless"], "--disable-features=A")
    assert args == ["--headless", "--disable-features=A,WebUIOmniboxPopup,WebUIOmniboxAimPopup"]
    assert ignored == ["--disable-features=A"]
    args, ignored = lean_launch_arguments(["--headless"], "")
    assert args[-1] == "--disable-features=WebUIOmniboxPopup,WebUIOmniboxAimPopup"
    assert ignored is None


def test_the_benchmarks_browser_opens_no_omnibox_popup_per_context(chromium: Browser) -> None:
    # A measured create opens a context: its window's popup renderer would take the
    # service's CPU (benchmarks/_browser.py).
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto("chrome://version")
        command_line = page.inner_text("#command_line")
        cdp = chromium.new_browser_cdp_session()
        types = [str(t["type"]) for t in cdp.send("Target.getTargets")["targetInfos"]]
        cdp.detach()
    finally:
        context.close()
    assert "page" in types and "browser_ui" not in types, types
    [switch] = [part for part in command_line.split() if part.startswith("--disable-features=")]
    features = set(switch.split("=")[1].split(","))
    # Playwright's own list is kept (one switch: Chromium reads only the last)
    assert {"WebUIOmniboxPopup", "WebUIOmniboxAimPopup", "PaintHolding"} <= features
