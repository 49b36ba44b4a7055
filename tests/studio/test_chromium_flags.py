"""The node browser's --disable-features: merged into the launcher's, never a second switch;
the benchmarks' and the suite's Chromium starts as lean; the node's render browser is
the headless shell when it is installed."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from playwright.sync_api import Browser

from studio.render import chromium
from studio.render.chromium import (
    disable_features_switch,
    is_headless_shell,
    lean_launch_arguments,
    merged_disable_features,
    render_chromium_path,
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


def test_the_render_browser_is_the_headless_shell_when_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COMPONENT_STUDIO_RENDER_CHROMIUM", raising=False)
    shell = tmp_path / "chromium-headless-shell"
    shell.write_text("")
    monkeypatch.setattr(chromium, "HEADLESS_SHELL", shell)
    assert render_chromium_path() == shell
    assert is_headless_shell(render_chromium_path())
    # without it, the same Chromium as the tests' and the benchmarks'
    shell.unlink()
    monkeypatch.setenv("COMPONENT_STUDIO_CHROMIUM", str(tmp_path / "chromium"))
    assert render_chromium_path() == tmp_path / "chromium"
    assert not is_headless_shell(render_chromium_path())
    # and a node may name its own
    monkeypatch.setenv("COMPONENT_STUDIO_RENDER_CHROMIUM", str(tmp_path / "headless_shell"))
    assert render_chromium_path() == tmp_path / "headless_shell"
    assert is_headless_shell(render_chromium_path())


def test_the_render_browser_launches_the_headless_shell_without_a_window_per_context() -> None:
    # scripts/setup.sh installs it: a machine set up as the README says has it
    assert chromium.HEADLESS_SHELL.is_file(), "no chromium-headless-shell: run scripts/setup.sh"
    from studio.render.browser import RenderBrowser

    async def targets() -> tuple[str, list[str]]:
        render = RenderBrowser()
        try:
            browser = await render.browser()
            context = await browser.new_context()
            page = await context.new_page()
            await page.set_content("<p>hi</p>")
            cdp = await browser.new_browser_cdp_session()
            found = [str(t["type"]) for t in (await cdp.send("Target.getTargets"))["targetInfos"]]
            await cdp.detach()
            # the browser process Playwright started: the shell, not the full Chromium
            running = []
            for child in psutil.Process().children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    running.append(" ".join(child.cmdline()[:1]))
            return "\n".join(running), found
        finally:
            await render.close()

    # on a thread of its own: the session's sync Playwright holds this thread's loop
    with ThreadPoolExecutor(1) as pool:
        running, found = pool.submit(asyncio.run, targets()).result(120)
    assert "chromium-headless-shell" in running, running
    assert "page" in found and "browser_ui" not in found, found
