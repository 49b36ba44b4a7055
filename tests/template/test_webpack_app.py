"""An app built the Create React App + craco way, with a webpack Storybook, rendered by Vite.

The ``cra-webpack`` fixture (tests/fixtures/repos/) is written the way such
apps are: JSX in ``.js`` files, absolute imports from jsconfig's ``baseUrl``
(``import Brand from 'components/Brand'``), a ``~`` alias in
``craco.config.js``, an ``@assets`` alias added by ``.storybook/main.js``'s
``webpackFinal``, ``process.env.REACT_APP_*`` from ``.env``,
``import { ReactComponent as Logo } from '@assets/logo.svg'``, plain CSS
imports, and MUI + emotion themed by a ``ThemeProvider`` decorator in
``.storybook/preview.js``. Its Storybook is ``@storybook/react-webpack5`` 8.6
(installed from the registry, never run): the stories are composed with its
portable stories, with the Vite equivalents of its webpack build. Neither
react-scripts nor craco is installed (react-scripts alone is ~1300 packages):
the fixture models their conventions.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import save_screenshot
from tests.support.template_runner import TemplateServer
from tests.template.pages import Serve, by_id, expect_landed, story_summary
from tests.template.test_storybook import assert_no_errors, show, watch

# The first load waits for Vite to pre-bundle the dependencies (MUI, Storybook) on a
# shared machine: a ceiling against hanging, not a speed check.
FIRST_LOAD_TIMEOUT_MS = 180_000


def first_load(page: Page, server: TemplateServer) -> None:
    page.goto(server.url, timeout=FIRST_LOAD_TIMEOUT_MS)
    expect_landed(page, FIRST_LOAD_TIMEOUT_MS)


pytestmark = pytest.mark.slow

PRIMARY = "rgb(46, 125, 50)"  # the theme's palette.primary.main, #2e7d32
BACKGROUND = "rgb(241, 248, 233)"  # palette.background.default, applied by CssBaseline


def test_the_catalog_lists_the_js_stories(serve: Serve) -> None:
    catalog = serve("cra-webpack").components()
    assert catalog["preview"] == ".storybook/preview.js"
    components = by_id(catalog)
    assert set(components) == {"Brand", "PayButton"}
    pay = components["PayButton"]
    # .js files are outside the default component glob (src/**/*.{tsx,jsx}): the
    # stories, found where main says they are, stand for their component
    assert pay["module"] == "src/components/PayButton/PayButton.stories.js"
    assert pay["storiesModule"] == "src/components/PayButton/PayButton.stories.js"
    assert story_summary(pay) == [
        ("Default", {"amount": 4200}),
        ("Disabled", {"amount": 4200, "disabled": True}),
    ]


@pytest.mark.browser
def test_stories_render_with_webpack_conventions(serve: Serve, browser_page: Page) -> None:
    server = serve("cra-webpack")
    page = browser_page
    watcher = watch(page)
    first_load(page, server)

    shown = show(page, server, "PayButton", "Default")
    # composed by the repository's Storybook 8 (webpack framework), not the CSF runner
    expect(shown).to_have_attribute("data-runner", "storybook")
    button = shown.get_by_test_id("pay-button")
    # `~/utils/format` (craco's alias) formatted the amount
    expect(button).to_have_text("Pay $42.00")
    # the MUI theme of the preview's ThemeProvider decorator (JSX in preview.js)
    expect(button).to_have_css("background-color", PRIMARY)
    expect(button).to_have_css("color", "rgb(255, 255, 255)")
    expect(button).to_have_css("border-top-left-radius", "12px")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == BACKGROUND
    save_screenshot(page, "webpack-app-pay-button")

    # `components/Brand` through jsconfig's baseUrl, inside PayButton and in its own stories
    brand = shown.get_by_test_id("brand")
    expect(brand).to_have_text("Acme Pay")  # REACT_APP_BRAND_NAME from .env
    expect(brand).to_have_attribute("data-env", "development")  # process.env.NODE_ENV
    expect(brand).to_have_attribute("data-public-url", "")  # process.env.PUBLIC_URL
    expect(brand).to_have_css("letter-spacing", re.compile(r"^1\.\d+px$"))  # Brand.css, 0.08em
    expect(brand.get_by_text("Acme Pay")).to_have_css("color", PRIMARY)  # emotion styled() + theme

    # the SVG file as a React component (`@assets` comes from main's webpackFinal)
    logo = brand.get_by_test_id("brand-logo")
    expect(logo).to_have_attribute("viewBox", "0 0 24 24")
    expect(logo).to_have_attribute("class", "brand-logo")
    expect(logo).to_have_attribute("width", "20")  # the prop wins over the file's attributes
    expect(logo).to_have_attribute("stroke-width", "2")
    expect(logo.locator("circle")).to_have_count(1)

    disabled = show(page, server, "PayButton", "Disabled").get_by_test_id("pay-button")
    expect(disabled).to_be_disabled()
    expect(disabled).to_have_css("background-color", "rgba(0, 0, 0, 0.12)")

    expect(show(page, server, "Brand", "Default").get_by_test_id("brand")).to_have_text("Acme Pay")
    assert_no_errors(watcher, server)


def test_each_alias_source_counts(serve: Serve) -> None:
    # The control: without main's webpackFinal, `~` still comes from
    # craco.config.js, and `@assets` (only webpackFinal has it) does not resolve.
    def drop_webpack_final(repo: Path) -> None:
        main = repo / ".storybook" / "main.js"
        text = main.read_text()
        main.write_text(text[: text.index("  // craco's alias again")] + "};\n")

    server = serve("cra-webpack", prepare=drop_webpack_final)
    source = f"{server.url}@fs{server.repo}/src/components"
    pay = httpx.get(f"{source}/PayButton/PayButton.js", timeout=60)
    assert pay.status_code == 200
    brand = httpx.get(f"{source}/Brand/Brand.js", timeout=60)
    assert brand.status_code == 500
    # Vite's error page, the message JSON-escaped in it
    assert "Failed to resolve import" in brand.text
    assert "@assets/logo.svg" in brand.text
