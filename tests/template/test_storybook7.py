"""Stories composed by Storybook 7's own portable stories, in real Chromium.

Storybook 7's ``composeStory`` gives a story function and no ``load()``: the
studio takes the context Storybook 7 prepared through a decorator of its own,
sets the preview's ``globals`` on it and runs its loaders
(``studio-template/src/storybook7.ts``). The ``storybook7`` fixture installs
real Storybook 7.6 packages with React 18; its stories need what only
Storybook's composition gives: ``withThemeByClassName`` (a decorator using
Storybook 7's ``useEffect``), ``useArgs`` and ``useState`` from
``@storybook/preview-api``, a loader, an argTypes ``mapping``, the preview's
globals, ``parameters.layout``, a play function run only on request, and the
``viteFinal`` of a CommonJS ``.storybook/main.js``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import save_screenshot
from tests.support.template_runner import TemplateServer, run_template
from tests.template.pages import make_fixture_repo
from tests.template.test_storybook import (
    DARK_PANEL,
    LIGHT_PANEL,
    assert_no_errors,
    html_classes,
    show,
    virtual_module,
    watch,
)

pytestmark = pytest.mark.slow

VERSION = "7.6.24"


@pytest.fixture(scope="module")
def storybook7(
    tmp_path_factory: pytest.TempPathFactory, deps_cache: Path
) -> Iterator[TemplateServer]:
    repo = make_fixture_repo("storybook7", tmp_path_factory.mktemp("storybook7"))
    with run_template(repo, deps_cache) as server:
        yield server


def test_the_page_composes_with_storybook_7(storybook7: TemplateServer) -> None:
    assert f'"storybook":{{"version":"{VERSION}"}}' in virtual_module(storybook7, "config")
    assert "addon-themes" in virtual_module(storybook7, "storybook")
    assert "addon-interactions" in virtual_module(storybook7, "storybook")
    # Storybook 7's iframe sets `global` and its feature flags before its
    # modules run, and so does the studio page: without storyStoreV7 importing
    # @storybook/react would start Storybook 7's whole legacy preview, without
    # `global` addon-interactions' preview (jest-mock) throws on import
    html = httpx.get(storybook7.url, timeout=60).text
    assert '<script>window.global = window;window.FEATURES = {"storyStoreV7":true' in html


@pytest.mark.browser
def test_a_hook_decorator_themes_the_page(storybook7: TemplateServer, browser_page: Page) -> None:
    page = browser_page
    watcher = watch(page)
    shown = show(page, storybook7, "Panel", "Default")
    panel = shown.get_by_test_id("panel")
    expect(panel).to_have_text("Quarterly numbersRevenue is up 12%.")
    # withThemeByClassName's useEffect (Storybook 7's hooks) put the default theme's class on <html>
    assert "dark" in html_classes(page)
    expect(panel).to_have_css("background-color", DARK_PANEL[0])
    expect(panel).to_have_css("color", DARK_PANEL[1])
    expect(shown).to_have_attribute("data-layout", "centered")
    save_screenshot(page, "storybook-storybook7-theme")

    # the toolbar offers the themes addon-themes 7 registered (its event name has
    # a stray brace), and choosing one re-renders the story through the decorator
    theme = page.get_by_test_id("studio-toolbar").get_by_test_id("toolbar-theme")
    expect(theme.locator("option")).to_have_text(["light", "dark"])
    expect(theme).to_have_value("1")
    theme.select_option(label="light")
    expect(page.locator("html")).to_have_class(re.compile(r"\blight\b"))
    assert "dark" not in html_classes(page)
    expect(panel).to_have_css("background-color", LIGHT_PANEL[0])

    # the theme global from the URL, as Storybook's own URL sets it
    shown = show(page, storybook7, "Panel", "Default", query="?globals=theme:dark")
    assert "dark" in html_classes(page)
    assert "light" not in html_classes(page)
    expect(shown.get_by_test_id("panel")).to_have_css("background-color", DARK_PANEL[0])
    assert_no_errors(watcher, storybook7)


@pytest.mark.browser
def test_preview_globals_reach_the_decorators(
    storybook7: TemplateServer, browser_page: Page
) -> None:
    page = browser_page
    watcher = watch(page)
    # the preview's `globals` (Storybook 7's initial globals), read by its locale decorator
    greeting = show(page, storybook7, "Greeting", "Default").get_by_test_id("greeting")
    expect(greeting).to_have_text("Bonjour, Ada")
    shown = show(page, storybook7, "Greeting", "Default", query="?globals=locale:en")
    expect(shown.get_by_test_id("greeting")).to_have_text("Hello, Ada")
    assert_no_errors(watcher, storybook7)


@pytest.mark.browser
def test_use_args_and_storybook_state(storybook7: TemplateServer, browser_page: Page) -> None:
    page = browser_page
    watcher = watch(page)
    shown = show(page, storybook7, "Toggle", "Controlled")
    toggle = shown.get_by_role("switch")
    hint = shown.get_by_test_id("hint")
    expect(toggle).to_have_text("Notifications: off")
    expect(hint).to_have_count(0)
    # useArgs' update is drawn; the conditional arg comes with it
    toggle.click()
    expect(toggle).to_have_text("Notifications: on")
    expect(toggle).to_have_attribute("aria-checked", "true")
    expect(hint).to_have_text("We will email you.")
    toggle.click()
    expect(toggle).to_have_text("Notifications: off")
    expect(hint).to_have_count(0)

    button = show(page, storybook7, "Counter", "StorybookState").get_by_role("button")
    expect(button).to_have_text("Clicks: 0")
    button.click()
    expect(button).to_have_text("Clicks: 1")
    assert_no_errors(watcher, storybook7)


@pytest.mark.browser
def test_loaders_mapping_and_custom_renders(storybook7: TemplateServer, browser_page: Page) -> None:
    page = browser_page
    watcher = watch(page)
    # the loader's data, drawn by the story's render function
    profile = show(page, storybook7, "Profile", "Loaded").get_by_test_id("profile")
    expect(profile).to_have_text("Grace Hopper — Rear Admiral")
    badge = show(page, storybook7, "Badge", "WithIcon").get_by_test_id("badge")
    expect(badge.locator("[data-icon=check]")).to_have_text("✓")
    pair = show(page, storybook7, "Badge", "Pair").get_by_test_id("badge-pair")
    expect(pair.get_by_test_id("badge")).to_have_count(2)
    expect(pair.locator("[data-icon]")).to_have_count(0)
    assert_no_errors(watcher, storybook7)


@pytest.mark.browser
def test_play_on_request_and_main_vite_final(
    storybook7: TemplateServer, browser_page: Page
) -> None:
    page = browser_page
    watcher = watch(page)
    shown = show(page, storybook7, "Counter", "ClickedOnce")
    expect(shown.get_by_role("button")).to_have_text("Clicks: 0")
    expect(shown).to_have_attribute("data-play", "")
    shown = show(page, storybook7, "Counter", "ClickedOnce", query="?play")
    expect(shown).to_have_attribute("data-play", "passed")
    expect(shown.get_by_role("button")).to_have_text("Clicks: 1")
    # main.js (CommonJS): its viteFinal's `define`
    brand = show(page, storybook7, "Brand", "Default").get_by_test_id("brand")
    expect(brand).to_have_text("Acme UI 7")
    assert_no_errors(watcher, storybook7)
