"""Tailwind CSS 4 in a Storybook 10 repository, through the repository's own build.

The ``tailwind4`` fixture (tests/fixtures/repos/) compiles Tailwind 4 with
``@tailwindcss/vite`` in its own ``vite.config.ts`` (beside its own React
plugin), from ``src/index.css`` (``@import "tailwindcss"`` and a ``@theme`` of
brand colours) imported by ``.storybook/preview.ts``; ``.storybook/main.ts``
mocks ``next/link`` through viteFinal. The same fixture is also served with
``@tailwindcss/postcss`` in a ``postcss.config.mjs`` instead. Real Chromium
checks the computed styles of what the stories draw, including classes that
only a stories file uses; the control shows them missing when the CSS names
no source.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import save_screenshot
from tests.support.template_runner import TemplateServer
from tests.template.pages import Serve, by_id
from tests.template.test_storybook import assert_no_errors, show, watch
from tests.template.test_webpack_app import first_load

pytestmark = pytest.mark.slow

BRAND = "rgb(124, 58, 237)"  # --color-brand: #7c3aed
BRAND_INK = "rgb(250, 245, 255)"  # --color-brand-ink: #faf5ff
SURFACE = "rgb(254, 243, 199)"  # --color-surface: #fef3c7, on <body> through @apply
TRANSPARENT = "rgba(0, 0, 0, 0)"

POSTCSS_CONFIG = 'export default { plugins: { "@tailwindcss/postcss": {} } };\n'
VITE_CONFIG_WITHOUT_TAILWIND = """import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({ plugins: [react()] });
"""


def through_postcss(repo: Path) -> None:
    """The fixture as a repository compiling Tailwind with @tailwindcss/postcss."""
    (repo / "vite.config.ts").write_text(VITE_CONFIG_WITHOUT_TAILWIND)
    (repo / "postcss.config.mjs").write_text(POSTCSS_CONFIG)


VARIANTS: dict[str, Callable[[Path], None] | None] = {
    "vite-plugin": None,
    "postcss": through_postcss,
}


def test_the_catalog_lists_the_stories(serve: Serve) -> None:
    components = by_id(serve("tailwind4").components())
    assert set(components) == {"Button", "NavItem"}
    assert [s["exportName"] for s in components["Button"]["stories"]] == ["Brand", "Ghost", "Pair"]
    assert components["NavItem"]["storiesModule"] == "src/components/NavItem.stories.tsx"


@pytest.mark.browser
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_tailwind4_classes_are_generated(serve: Serve, browser_page: Page, variant: str) -> None:
    server: TemplateServer = serve("tailwind4", prepare=VARIANTS[variant])
    page = browser_page
    watcher = watch(page)
    first_load(page, server)

    button = show(page, server, "Button", "Brand").get_by_role("button", name="Get started")
    # bg-brand / text-brand-ink: colours of the repository's @theme
    expect(button).to_have_css("background-color", BRAND)
    expect(button).to_have_css("color", BRAND_INK)
    expect(button).to_have_css("border-top-left-radius", "9999px")  # rounded-pill
    expect(button).to_have_css("padding-left", "24px")  # px-6
    expect(button).to_have_css("font-weight", "600")  # font-semibold
    # `@apply bg-surface` in @layer base
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == SURFACE
    save_screenshot(page, f"tailwind4-{variant}")

    ghost = show(page, server, "Button", "Ghost").get_by_role("button", name="Learn more")
    expect(ghost).to_have_css("background-color", TRANSPARENT)
    expect(ghost).to_have_css("border-top-color", BRAND)
    expect(ghost).to_have_css("border-top-width", "2px")

    # grid, grid-cols-2 and gap-8 appear only in the stories file
    pair = show(page, server, "Button", "Pair").get_by_test_id("pair")
    expect(pair).to_have_css("display", "grid")
    expect(pair).to_have_css("column-gap", "32px")
    expect(pair.get_by_role("button")).to_have_count(2)

    # next/link, mocked through main's viteFinal, styled by the repository's classes
    link = show(page, server, "NavItem", "Default").get_by_role("link", name="Pricing")
    expect(link).to_have_attribute("data-mock", "next-link")
    expect(link).to_have_attribute("href", "/pricing")
    expect(link).to_have_css("color", BRAND)
    expect(link).to_have_css("text-decoration-line", "underline")
    assert_no_errors(watcher, server)


@pytest.mark.browser
def test_a_source_the_css_names_is_kept(serve: Serve, browser_page: Page) -> None:
    # The control: `source(none)` tells Tailwind to scan nothing. The studio
    # keeps what the CSS says, so the component classes are not generated
    # (while the @theme and @apply still apply).
    def scan_nothing(repo: Path) -> None:
        css = repo / "src" / "index.css"
        css.write_text(
            css.read_text().replace('@import "tailwindcss";', '@import "tailwindcss" source(none);')
        )

    server = serve("tailwind4", prepare=scan_nothing)
    page = browser_page
    first_load(page, server)
    button = show(page, server, "Button", "Brand").get_by_role("button", name="Get started")
    expect(button).to_have_css("background-color", TRANSPARENT)
    expect(button).to_have_css("padding-left", "0px")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == SURFACE
