"""The studio template on repositories written the way people really write them.

Each fixture under ``tests/fixtures/repos/`` becomes a real git repository with
its own ``npm ci``'d dependencies, served by the real template (Vite 8) from
``.studio/`` with cwd = the repository, and looked at by real Chromium:

- ``tailwind``: Tailwind CSS 3 through the repository's PostCSS + Tailwind
  config, global CSS imported by ``.storybook/preview.ts``;
- ``provider``: styled-components reading a theme that only the preview's
  decorator provides, and a react-router ``Link`` that only renders inside the
  ``MemoryRouter`` of its story's decorator;
- ``mixed``: CSS modules, default + named exports, barrels, stories in a
  separate ``src/stories/`` tree, a ``vite.config.ts`` without the React plugin
  (not loaded), and CommonJS / late-discovered dependencies (dayjs, clsx).

Every page must render with no error panel, no console error, no 504 and no
full reload after the first load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import save_screenshot
from tests.support.template_runner import run_template
from tests.template.pages import (
    RENDER_TIMEOUT_MS,
    Serve,
    by_id,
    canvas,
    css_colour,
    make_fixture_repo,
    open_studio,
    select,
    story_summary,
)

# Fixtures of the browser plugin, used here until tests/conftest.py registers it.

pytestmark = pytest.mark.slow

# -- tailwind --------------------------------------------------------------------------------


def test_tailwind_catalog(serve: Serve) -> None:
    components = by_id(serve("tailwind").components())
    assert set(components) == {"Badge", "Button"}
    button = components["Button"]
    assert button["module"] == "src/components/ui/button.tsx"
    assert button["exports"] == ["Button"]
    assert button["storiesModule"] == "src/components/ui/button.stories.tsx"
    assert story_summary(button) == [
        ("Primary", {"children": "Save changes"}),
        ("Outline", {"children": "Cancel", "variant": "outline"}),
    ]
    badge = components["Badge"]
    assert (badge["module"], badge["exports"]) == ("src/components/ui/badge.tsx", ["default"])


@pytest.mark.browser
def test_tailwind_renders_with_the_repository_config(serve: Serve, browser_page: Page) -> None:
    server = serve("tailwind")
    page = browser_page
    watch = open_studio(page, server)

    select(page, "Button", "Primary")
    button = canvas(page).get_by_role("button", name="Save changes")
    # bg-primary is a colour of the repository's tailwind.config.js, fed by a
    # CSS variable of src/index.css that only .storybook/preview.ts imports
    expect(button).to_have_css("background-color", css_colour(page, "hsl(262 83% 58%)"))
    expect(button).to_have_css("color", css_colour(page, "hsl(0 0% 100%)"))
    expect(button).to_have_css("border-radius", "6px")  # rounded-md = calc(var(--radius) - 2px)
    # `@apply bg-background` on body, the class that fails without the repo's config
    body_background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert body_background == css_colour(page, "hsl(48 100% 96%)")
    save_screenshot(page, "real-repo-tailwind")

    select(page, "Button", "Outline")
    outline = canvas(page).get_by_role("button", name="Cancel")
    expect(outline).to_have_css("border-top-color", css_colour(page, "hsl(214 32% 91%)"))
    expect(outline).to_have_css("background-color", body_background)

    select(page, "Badge")
    badge = canvas(page).locator("span.rounded-full")
    expect(badge).to_have_css("background-color", css_colour(page, "hsl(210 40% 96%)"))

    watch.assert_clean(page)


def test_tailwind_fails_when_vite_runs_outside_the_repository(
    tmp_path: Path, deps_cache: Path
) -> None:
    # The control for the test above: Tailwind 3 finds tailwind.config.js from
    # the working directory, so the fixture only renders when Vite is started
    # in the worktree, as the backend does.
    repo = make_fixture_repo("tailwind", tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with run_template(repo, deps_cache, cwd=elsewhere) as server:
        response = httpx.get(f"{server.url}@fs{repo}/src/index.css", timeout=30)
    assert response.status_code == 500
    assert "The `bg-background` class does not exist" in response.text


# -- provider --------------------------------------------------------------------------------


def test_provider_catalog(serve: Serve) -> None:
    catalog = serve("provider").components()
    assert catalog["preview"] == ".storybook/preview.tsx"
    components = by_id(catalog)
    assert set(components) == {"NavLink", "ThemedButton"}
    assert components["ThemedButton"]["exports"] == ["ThemedButton"]
    assert story_summary(components["ThemedButton"]) == [("Default", {"children": "Continue"})]
    nav = components["NavLink"]
    assert nav["storiesModule"] == "src/components/NavLink.stories.tsx"
    assert story_summary(nav) == [("Default", {"to": "/settings", "label": "Settings"})]


@pytest.mark.browser
def test_provider_renders_inside_the_preview_and_story_decorators(
    serve: Serve, browser_page: Page
) -> None:
    server = serve("provider")
    page = browser_page
    watch = open_studio(page, server)

    select(page, "ThemedButton", "Default")
    button = canvas(page).get_by_test_id("themed-button")
    expect(button).to_have_text("Continue")
    # theme.colors.primary, only reachable through the preview's ThemeProvider
    expect(button).to_have_css("background-color", "rgb(13, 110, 253)")
    expect(button).to_have_css("color", "rgb(255, 255, 255)")
    # createGlobalStyle from the same decorator
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(248, 249, 250)"
    save_screenshot(page, "real-repo-provider")

    # preview decorators apply to a bare component too
    select(page, "ThemedButton")
    expect(canvas(page).get_by_test_id("themed-button")).to_have_css(
        "background-color", "rgb(13, 110, 253)"
    )

    # the MemoryRouter comes from the story's own decorators, the theme from the preview's
    select(page, "NavLink", "Default")
    link = canvas(page).get_by_role("link", name="Settings")
    expect(link).to_have_attribute("href", "/settings")
    expect(link).to_have_css("color", "rgb(13, 110, 253)")

    watch.assert_clean(page)
    # No Storybook installed (its preview only imports its types): the studio's
    # own CSF runner rendered everything, and nothing of Storybook was loaded.
    expect(canvas(page)).to_have_attribute("data-runner", "csf")
    storybook_modules = re.compile(r"@storybook|/storybook_|/storybook/|virtual:studio/storybook")
    assert [url for url in watch.urls if storybook_modules.search(url)] == []


@pytest.mark.browser
def test_provider_theme_component_fails_visibly_without_the_preview(
    serve: Serve, browser_page: Page
) -> None:
    # A control for the test above: without the preview's ThemeProvider the
    # component really throws, and the studio shows why instead of a blank canvas.
    server = serve("provider", remove=(".storybook/preview.tsx",))
    assert server.components()["preview"] is None
    page = browser_page
    open_studio(page, server)
    page.locator("[data-testid=story-ThemedButton-Default]").click()
    error = canvas(page).locator("[data-testid=studio-error]")
    expect(error).to_contain_text(
        "Cannot read properties of undefined (reading 'primary')", timeout=RENDER_TIMEOUT_MS
    )
    expect(error).to_contain_text("ThemedButton.tsx")


@pytest.mark.browser
def test_provider_router_component_fails_visibly_without_its_story_decorator(
    serve: Serve, browser_page: Page
) -> None:
    # The other control: the bare component (no story, so no MemoryRouter) throws
    # in react-router's Link even though the preview still provides the theme.
    server = serve("provider")
    page = browser_page
    open_studio(page, server)
    page.locator("[data-testid=component-NavLink]").click()
    # react-router 7's Link reads the router context before any invariant:
    # "Cannot destructure property 'basename' of ... as it is null"
    error = canvas(page).locator("[data-testid=studio-error]")
    expect(error).to_contain_text("'basename'", timeout=RENDER_TIMEOUT_MS)
    expect(error).to_contain_text("NavLink.tsx")


# -- mixed -----------------------------------------------------------------------------------


def test_mixed_catalog(serve: Serve) -> None:
    catalog = serve("mixed").components()
    assert catalog["preview"] is None
    components = by_id(catalog)
    # barrels (index.ts) and stories are not components
    assert set(components) == {"Card", "DateLabel", "Tag"}

    card = components["Card"]
    assert card["module"] == "src/components/Card/Card.tsx"
    assert sorted(card["exports"]) == ["CardTitle", "default"]
    # a separate tree, matched through meta.component's import
    assert card["storiesModule"] == "src/stories/Card.stories.tsx"
    basic = {"title": "Quarterly report", "children": "Revenue is up 12%."}
    assert story_summary(card) == [("Basic", basic), ("Elevated", {**basic, "elevated": True})]

    date_label = components["DateLabel"]
    assert sorted(date_label["exports"]) == ["DEFAULT_DATE_FORMAT", "DateLabel"]
    # meta.component imported through the ../components barrel
    assert date_label["storiesModule"] == "src/stories/DateLabel.stories.tsx"
    assert story_summary(date_label) == [("LaunchDay", {"date": "2024-03-09"})]

    tag = components["Tag"]
    assert (tag["module"], tag["exports"], tag["stories"]) == (
        "src/components/Tag/Tag.jsx",
        ["default"],
        [],
    )


@pytest.mark.browser
def test_mixed_renders_css_modules_and_late_dependencies_without_reload(
    serve: Serve, browser_page: Page
) -> None:
    server = serve("mixed")
    page = browser_page
    watch = open_studio(page, server)

    select(page, "Card", "Basic")
    card = canvas(page).get_by_test_id("card")
    # a CSS-module class (hashed by Vite) applied, and its rules in effect
    expect(card).to_have_class(re.compile(r"_card_\w+"))
    expect(card).to_have_css("border-top-color", "rgb(34, 139, 34)")
    expect(card).to_have_css("background-color", "rgb(240, 255, 240)")
    expect(card).to_have_css("box-shadow", "none")
    # the named export, rendered by the default one
    expect(card.get_by_role("heading", name="Quarterly report")).to_have_css(
        "color", "rgb(0, 100, 0)"
    )
    expect(card).to_contain_text("Revenue is up 12%.")
    save_screenshot(page, "real-repo-mixed")

    select(page, "Card", "Elevated")
    expect(card).to_have_class(re.compile(r"_elevated_\w+"))
    expect(card).not_to_have_css("box-shadow", "none")

    # dayjs is CommonJS: pre-bundled at startup, not discovered on first render
    select(page, "DateLabel", "LaunchDay")
    expect(canvas(page).get_by_test_id("date-label")).to_have_text("9 March 2024")

    select(page, "Tag")
    expect(canvas(page).locator("span")).to_have_css("background-color", "rgb(255, 228, 196)")

    watch.assert_clean(page)
    log = server.log()
    assert "new dependencies optimized" not in log
    assert "reloading" not in log
    # the studio's own Vite 8 served this, not the repository's Vite 7 and its
    # vite.config.ts (which has no React plugin)
    assert (server.repo / "node_modules" / "vite" / "package.json").is_file()
    assert "VITE v8." in log


# A CommonJS package as Babel publishes an ES module: ``__esModule`` and ``default``.
_BABEL_PACKAGE = {
    "package.json": '{"name": "babel-greeting", "version": "1.0.0", "main": "index.js"}\n',
    "index.js": (
        '"use strict";\n'
        'Object.defineProperty(exports, "__esModule", { value: true });\n'
        "exports.default = function greeting(name) { return 'Hello, ' + name; };\n"
    ),
}
_GREETING = (
    'import greeting from "babel-greeting";\n\n'
    "export function Greeting({ name }: { name: string }) {\n"
    '  return <p data-testid="greeting">{greeting(name)}</p>;\n'
    "}\n"
)
_GREETING_STORIES = (
    'import { Greeting } from "../components/Greeting/Greeting";\n\n'
    'export default { title: "Data/Greeting", component: Greeting };\n'
    'export const Ada = { args: { name: "Ada" } };\n'
)


def _with_babel_package(vite_version: str | None = None) -> Callable[[Path], None]:
    """Adds the package (after the install: node_modules are hard links of the
    session's cache, so files are added or replaced, never edited) and a
    component importing its default; ``vite_version`` replaces the version of
    the repository's own Vite."""

    def prepare(repo: Path) -> None:
        package = repo / "node_modules" / "babel-greeting"
        package.mkdir()
        for name, text in _BABEL_PACKAGE.items():
            (package / name).write_text(text)
        (repo / "src" / "components" / "Greeting").mkdir()
        (repo / "src" / "components" / "Greeting" / "Greeting.tsx").write_text(_GREETING)
        (repo / "src" / "stories" / "Greeting.stories.tsx").write_text(_GREETING_STORIES)
        if vite_version is not None:
            manifest = repo / "node_modules" / "vite" / "package.json"
            data = json.loads(manifest.read_text())
            manifest.unlink()  # a hard link of the cache: replaced, not written through
            manifest.write_text(json.dumps({**data, "version": vite_version}))

    return prepare


@pytest.mark.browser
def test_mixed_commonjs_default_import_is_what_the_repositorys_own_vite_gives(
    serve: Serve, browser_page: Page
) -> None:
    # The repository builds with Vite 7, whose optimizer gives `exports.default`
    # for a Babel-compiled package; the studio's Vite 8 would give
    # `module.exports` (its package is "type": "module") and the call would throw.
    server = serve("mixed", prepare=_with_babel_package())
    page = browser_page
    watch = open_studio(page, server)
    select(page, "Greeting", "Ada")
    expect(canvas(page).get_by_test_id("greeting")).to_have_text("Hello, Ada")
    watch.assert_clean(page)


@pytest.mark.browser
def test_mixed_commonjs_default_import_follows_vite_8_in_a_vite_8_repository(
    serve: Serve, browser_page: Page
) -> None:
    # The control: the same code in a repository built with Vite 8 gets Vite 8's
    # rule, as its own Storybook would, and the studio shows the error it throws.
    server = serve("mixed", prepare=_with_babel_package(vite_version="8.0.0"))
    page = browser_page
    open_studio(page, server)
    page.locator("[data-testid=story-Greeting-Ada]").click()
    error = canvas(page).locator("[data-testid=studio-error]")
    expect(error).to_contain_text("is not a function", timeout=RENDER_TIMEOUT_MS)
