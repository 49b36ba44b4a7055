"""The repository's own React plugin options: emotion's JSX runtime and Babel plugin.

The ``emotion`` fixture (tests/fixtures/repos/) gives its ``@vitejs/plugin-react``
4 ``jsxImportSource: '@emotion/react'`` and ``babel.plugins:
['@emotion/babel-plugin']`` in its own ``vite.config.js``, as emotion's Vite setup
asks. Its Card styles a Badge and a title through component selectors (which
throw without the Babel plugin) and a paragraph through the ``css`` prop (which
needs emotion's JSX runtime). The studio keeps its own React plugin and applies
those options to the repository's modules (plugin/repo-build/react-options.mjs):
real Chromium checks the computed styles, hover included, and that an edit still
hot-reloads without a full reload. The control serves the same repository with
a bare ``react()`` and shows the component selector's error.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import save_screenshot
from tests.template.harness import atomic_write
from tests.template.pages import RENDER_TIMEOUT_MS, Serve, by_id, canvas, open_studio, select
from tests.template.test_storybook import module_text

pytestmark = pytest.mark.slow

BADGE_IN_CARD = "rgb(254, 215, 170)"  # `${Badge} { ... }` inside Card
BADGE_ALONE = "rgb(226, 232, 240)"  # Badge's own background
TITLE = "rgb(30, 41, 59)"
TITLE_HOVERED = "rgb(190, 18, 60)"  # `${Frame}:hover & { ... }`
NOTE = "rgb(4, 120, 87)"  # the css prop

BARE_REACT_CONFIG = """import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

export default defineConfig({ plugins: [react()] });
"""


def test_the_catalog_lists_the_stories(serve: Serve) -> None:
    components = by_id(serve("emotion").components())
    assert [s["exportName"] for s in components["Card"]["stories"]] == ["Default", "LooseBadge"]


def test_the_served_module_went_through_the_repository_babel_and_jsx_runtime(
    serve: Serve,
) -> None:
    server = serve("emotion")
    response = module_text(server, f"@fs{server.repo}/src/components/Card.jsx")
    response.raise_for_status()
    code = response.text
    # @emotion/babel-plugin: styled from its base entry (pre-bundled), each styled component with a
    # target class (what component selectors resolve to) and a label
    assert "/deps/@emotion_styled_base.js" in code
    assert re.search(r'target: "e\w+"', code)
    assert 'label: "Frame"' in code
    # emotion's JSX runtime for the repository's JSX, and still React Refresh
    assert "/deps/@emotion_react_jsx-dev-runtime.js" in code
    assert "/deps/react_jsx-dev-runtime.js" not in code
    assert '$RefreshReg$(_c, "Card")' in code
    # the studio's own app (Vite's root is .studio/) keeps React's runtime
    app = module_text(server, "src/ErrorPanel.tsx")
    app.raise_for_status()
    assert "/deps/react_jsx-dev-runtime.js" in app.text
    assert "@emotion" not in app.text


@pytest.mark.browser
def test_component_selectors_and_the_css_prop_are_drawn(serve: Serve, browser_page: Page) -> None:
    server = serve("emotion")
    page = browser_page
    watch = open_studio(page, server)

    select(page, "Card", "Default")
    card = canvas(page).get_by_test_id("card")
    title = card.get_by_role("heading", name="Quarterly numbers")
    expect(title).to_have_css("color", TITLE)
    # component selectors, which emotion only resolves with its Babel plugin
    expect(card.get_by_text("New")).to_have_css("background-color", BADGE_IN_CARD)
    card.hover()
    expect(title).to_have_css("color", TITLE_HOVERED)
    # the css prop: a class from emotion's JSX runtime, not a `css` attribute
    note = card.get_by_text("Revenue is up 12%.")
    expect(note).to_have_css("color", NOTE)
    expect(note).to_have_css("letter-spacing", "2px")
    expect(note).not_to_have_attribute("css", "[object Object]")
    save_screenshot(page, "emotion-card")

    # the Badge outside a Card keeps its own background
    select(page, "Card", "LooseBadge")
    expect(canvas(page).get_by_text("Draft")).to_have_css("background-color", BADGE_ALONE)

    watch.assert_clean(page)
    # the Babel plugin's own imports were pre-bundled at startup, not found on first render
    assert "new dependencies optimized" not in server.log()


@pytest.mark.browser
def test_an_edited_emotion_component_hot_reloads(serve: Serve, browser_page: Page) -> None:
    server = serve("emotion")
    page = browser_page
    watch = open_studio(page, server)
    select(page, "Card", "Default")
    card = canvas(page).get_by_test_id("card")
    expect(card.get_by_text("New")).to_have_css("background-color", BADGE_IN_CARD)

    source = server.repo / "src" / "components" / "Card.jsx"
    edited = source.read_text().replace("rgb(4, 120, 87)", "rgb(37, 99, 235)")
    edited = edited.replace("<Title>{title}</Title>", "<Title>{title}!</Title>")
    atomic_write(source, edited)

    # React Fast Refresh through the repository's Babel and JSX runtime, no full reload
    expect(card.get_by_role("heading")).to_have_text("Quarterly numbers!")
    expect(card.get_by_text("Revenue is up 12%.")).to_have_css("color", "rgb(37, 99, 235)")
    expect(card.get_by_text("New")).to_have_css("background-color", BADGE_IN_CARD)
    watch.assert_clean(page)


def _bare_react_plugin(repo: Path) -> None:
    (repo / "vite.config.js").write_text(BARE_REACT_CONFIG)


@pytest.mark.browser
def test_control_without_the_babel_plugin_component_selectors_throw(
    serve: Serve, browser_page: Page
) -> None:
    # The same repository with a bare react(): what its own Vite or Storybook would
    # do too. Emotion refuses the component selector, and the studio shows why.
    server = serve("emotion", prepare=_bare_react_plugin)
    page = browser_page
    open_studio(page, server)
    page.locator("[data-testid=story-Card-Default]").click()
    error = canvas(page).locator("[data-testid=studio-error]")
    expect(error).to_contain_text(
        "Component selectors can only be used in conjunction with @emotion/babel-plugin",
        timeout=RENDER_TIMEOUT_MS,
    )
