"""Stories composed by the repository's own Storybook, on real Storybook 8 and 10.

The ``storybook8`` and ``storybook10`` fixtures (tests/fixtures/repos/) install
real Storybook packages; the template serves each as a sandbox would, and real
Chromium looks at what is drawn. Their stories need what only Storybook's own
composition gives: a decorator using Storybook's hooks (``withThemeByClassName``
of @storybook/addon-themes), ``useArgs`` and Storybook's ``useState``, loaders
and ``beforeEach``, argTypes ``mapping`` and conditional args, globals,
``parameters.layout``, custom renders, a play function (run only on request),
and the ``viteFinal`` of ``.storybook/main``; an edited component hot-reloads
inside its composed story. The controls at the end show the fixtures failing
without Storybook's composition and without main, and a broken main reported
instead of stopping the studio.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from studio.paths import atomic_write
from tests.support.browser import save_screenshot
from tests.support.template_runner import TemplateServer, run_template
from tests.template.pages import (
    RENDER_TIMEOUT_MS,
    PageWatch,
    Serve,
    by_id,
    canvas,
    css_colour,
    make_fixture_repo,
)

pytestmark = pytest.mark.slow

VERSIONS = {"storybook8": "8.6.19", "storybook10": "10.6.9"}
HOOKS_ERROR = "Storybook preview hooks can only be called inside decorators and story functions"
# The dark theme of the fixtures' src/styles.css, applied through the class on <html>.
DARK_PANEL = ("rgb(17, 24, 39)", "rgb(243, 244, 246)")
LIGHT_PANEL = ("rgb(255, 255, 255)", "rgb(17, 24, 39)")


@pytest.fixture(scope="module", params=sorted(VERSIONS))
def storybook(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, deps_cache: Path
) -> Iterator[TemplateServer]:
    """One template server per Storybook fixture, shared by the tests that only look at it."""
    kind: str = request.param
    repo = make_fixture_repo(kind, tmp_path_factory.mktemp(kind))
    with run_template(repo, deps_cache) as server:
        yield server


def kind_of(server: TemplateServer) -> str:
    return server.repo.name


def module_text(server: TemplateServer, url_path: str) -> httpx.Response:
    """What Vite serves at ``url_path`` (repository files: /@fs, virtual modules: /@id)."""
    return httpx.get(f"{server.url}{url_path.lstrip('/')}", timeout=60)


def virtual_module(server: TemplateServer, name: str) -> str:
    response = module_text(server, f"@id/__x00__virtual:studio/{name}")
    response.raise_for_status()
    return response.text


def story_id(server: TemplateServer, component: str, export_name: str) -> str:
    """The id the catalog gives a story (the canvas shows it as ``data-story``)."""
    for entry in server.components()["components"]:
        if entry["id"] == component:
            for story in entry["stories"]:
                if story["exportName"] == export_name:
                    story_id: str = story["id"]
                    return story_id
    raise AssertionError(f"the catalog has no story {component}/{export_name}")


def show(
    page: Page,
    server: TemplateServer,
    component: str,
    story: str,
    *,
    query: str = "",
    fails: bool = False,
) -> Locator:
    """Open a story by deep link (``query`` before the hash); wait until Storybook composed it.

    The canvas must show no error unless the story ``fails`` (its play function).
    """
    page.goto(f"{server.url}{query}#/{component}/{story}")
    shown = canvas(page)
    expect(shown).to_have_attribute("data-story", story_id(server, component, story))
    expect(shown).to_have_attribute("data-state", "ready", timeout=RENDER_TIMEOUT_MS)
    expect(shown).to_have_attribute("data-runner", "storybook")
    if not fails:
        expect(shown.locator("[data-testid=studio-error]")).to_have_count(0)
    return shown


def watch(page: Page) -> PageWatch:
    watcher = PageWatch()
    watcher.attach(page)
    return watcher


def assert_no_errors(watcher: PageWatch, server: TemplateServer) -> None:
    assert watcher.console_errors == []
    assert watcher.page_errors == []
    assert watcher.bad_responses == []
    # Storybook's modules were pre-bundled at startup: no page found a new one (504 + reload)
    assert "new dependencies optimized" not in server.log()


def html_classes(page: Page) -> list[str]:
    classes: list[str] = page.evaluate("[...document.documentElement.classList]")
    return classes


# -- what the page is told ---------------------------------------------------------------------


def test_the_page_composes_with_the_repositorys_storybook(storybook: TemplateServer) -> None:
    kind = kind_of(storybook)
    config = virtual_module(storybook, "config")
    assert json.dumps({"version": VERSIONS[kind]}, separators=(",", ":")) in config
    # the addon listed in .storybook/main, by the preview annotations it exports
    assert "addon-themes" in virtual_module(storybook, "storybook")


def test_the_catalog_finds_stories_where_main_says_they_are(storybook: TemplateServer) -> None:
    components = by_id(storybook.components())
    shared = {
        "Badge",
        "Counter",
        "DueDate",
        "Greeting",
        "LocaleProvider",
        "Panel",
        "Profile",
        "Toggle",
    }
    if kind_of(storybook) == "storybook10":
        # app/ is outside the places the studio looks by itself: main.ts lists it
        assert set(components) == shared | {"Avatar", "Notice"}
        notice = components["Notice"]
        assert notice["storiesModule"] == "app/components/Notice.stories.tsx"
        assert [s["exportName"] for s in notice["stories"]] == ["Default"]
    else:
        assert set(components) == shared | {"Brand"}


# -- decorators, globals, layout --------------------------------------------------------------


@pytest.mark.browser
def test_a_hook_decorator_themes_the_page(storybook: TemplateServer, browser_page: Page) -> None:
    page = browser_page
    watcher = watch(page)
    shown = show(page, storybook, "Panel", "Default")
    panel = shown.get_by_test_id("panel")
    expect(panel).to_have_text("Quarterly numbersRevenue is up 12%.")
    # withThemeByClassName's useEffect put the default theme's class on <html>
    assert "dark" in html_classes(page)
    expect(panel).to_have_css("background-color", DARK_PANEL[0])
    expect(panel).to_have_css("color", DARK_PANEL[1])
    # the meta's parameters.layout
    expect(shown).to_have_attribute("data-layout", "centered")
    expect(shown).to_have_css("justify-content", "center")
    save_screenshot(page, f"storybook-{kind_of(storybook)}-theme")

    # the theme global from the URL, as Storybook's own URL sets it
    shown = show(page, storybook, "Panel", "Default", query="?globals=theme:light")
    assert "light" in html_classes(page)
    assert "dark" not in html_classes(page)
    expect(shown.get_by_test_id("panel")).to_have_css("background-color", LIGHT_PANEL[0])
    assert_no_errors(watcher, storybook)


@pytest.mark.browser
def test_globals_reach_the_decorators(storybook: TemplateServer, browser_page: Page) -> None:
    page = browser_page
    watcher = watch(page)
    # initialGlobals of the preview, read by its locale decorator
    greeting = show(page, storybook, "Greeting", "Default").get_by_test_id("greeting")
    expect(greeting).to_have_text("Bonjour, Ada")
    greeting = show(page, storybook, "Greeting", "Default", query="?globals=locale:en")
    expect(greeting.get_by_test_id("greeting")).to_have_text("Hello, Ada")
    if kind_of(storybook) == "storybook10":
        # a story's own globals (Storybook 9+)
        english = show(page, storybook, "Greeting", "English")
        expect(english.get_by_test_id("greeting")).to_have_text("Hello, Ada")
    assert_no_errors(watcher, storybook)


# -- args -------------------------------------------------------------------------------------


@pytest.mark.browser
def test_use_args_updates_the_story_in_place(storybook: TemplateServer, browser_page: Page) -> None:
    page = browser_page
    watcher = watch(page)
    shown = show(page, storybook, "Toggle", "Controlled")
    toggle = shown.get_by_role("switch")
    hint = shown.get_by_test_id("hint")
    expect(toggle).to_have_text("Notifications: off")
    expect(toggle).to_have_attribute("aria-checked", "false")
    # argTypes.hint.if = {arg: "checked"}: left out while the switch is off
    expect(hint).to_have_count(0)
    toggle.click()
    expect(toggle).to_have_text("Notifications: on")
    expect(toggle).to_have_attribute("aria-checked", "true")
    expect(hint).to_have_text("We will email you.")
    toggle.click()
    expect(toggle).to_have_text("Notifications: off")
    expect(hint).to_have_count(0)
    assert_no_errors(watcher, storybook)


@pytest.mark.browser
def test_storybook_state_and_before_each(storybook: TemplateServer, browser_page: Page) -> None:
    page = browser_page
    watcher = watch(page)
    # useState of Storybook's preview API, set from a click: the story keeps its state
    button = show(page, storybook, "Counter", "StorybookState").get_by_role("button")
    expect(button).to_have_text("Clicks: 0")
    button.click()
    expect(button).to_have_text("Clicks: 1")
    button.click()
    expect(button).to_have_text("Clicks: 2")
    # the meta's beforeEach froze today's date before the story rendered
    due = show(page, storybook, "DueDate", "Default").get_by_test_id("due-date")
    expect(due).to_have_text("Due: 2024-03-09")
    assert_no_errors(watcher, storybook)


@pytest.mark.browser
def test_mapped_args_loaders_and_custom_renders(
    storybook: TemplateServer, browser_page: Page
) -> None:
    page = browser_page
    watcher = watch(page)
    # argTypes.icon.mapping turns the arg "check" into the element it stands for
    badge = show(page, storybook, "Badge", "WithIcon").get_by_test_id("badge")
    expect(badge.locator("[data-icon=check]")).to_have_text("✓")
    expect(badge).to_have_text("✓Verified")

    # a custom render drawing two badges; the meta's "none" maps to no icon
    pair = show(page, storybook, "Badge", "Pair").get_by_test_id("badge-pair")
    badges = pair.get_by_test_id("badge")
    expect(badges).to_have_count(2)
    expect(badges.nth(0)).to_have_css("background-color", css_colour(page, "rgb(229, 231, 235)"))
    expect(badges.nth(1)).to_have_css("background-color", css_colour(page, "rgb(187, 247, 208)"))
    expect(pair.locator("[data-icon]")).to_have_count(0)
    expect(pair).to_have_text("VerifiedVerified")

    # the loader's data, rendered by the story's render function
    profile = show(page, storybook, "Profile", "Loaded").get_by_test_id("profile")
    expect(profile).to_have_text("Grace Hopper — Rear Admiral")
    assert_no_errors(watcher, storybook)


# -- play functions ---------------------------------------------------------------------------


@pytest.mark.browser
def test_play_functions_run_only_when_asked(storybook: TemplateServer, browser_page: Page) -> None:
    page = browser_page
    watcher = watch(page)
    shown = show(page, storybook, "Counter", "ClickedOnce")
    expect(shown.get_by_role("button")).to_have_text("Clicks: 0")
    expect(shown).to_have_attribute("data-play", "")

    shown = show(page, storybook, "Counter", "ClickedOnce", query="?play")
    expect(shown).to_have_attribute("data-play", "passed")
    expect(shown.get_by_role("button")).to_have_text("Clicks: 1")
    if kind_of(storybook) == "storybook10":
        # Storybook 9+'s play context: canvas queries and userEvent
        shown = show(page, storybook, "Counter", "ClickedTwice", query="?play")
        expect(shown).to_have_attribute("data-play", "passed")
        expect(shown.get_by_role("button")).to_have_text("Clicks: 2")
    assert_no_errors(watcher, storybook)


@pytest.mark.browser
def test_failing_play_functions_and_loaders_are_shown(serve: Serve, browser_page: Page) -> None:
    def add_failing_stories(repo: Path) -> None:
        stories = repo / "src" / "components" / "Counter.stories.tsx"
        stories.write_text(
            stories.read_text()
            + "\nexport const BrokenPlay: Story = {\n"
            + "  play: async () => {\n"
            + '    throw new Error("the counter never reached 3");\n'
            + "  },\n};\n"
            + "\nexport const BrokenLoader: Story = {\n"
            + "  loaders: [async () => {\n"
            + '    throw new Error("the clicks service is down");\n'
            + "  }],\n};\n"
        )

    server = serve("storybook10", prepare=add_failing_stories)
    page = browser_page
    shown = show(page, server, "Counter", "BrokenPlay", query="?play", fails=True)
    expect(shown).to_have_attribute("data-play", "failed")
    error = shown.get_by_test_id("studio-error")
    expect(error).to_contain_text("Play function failed")
    expect(error).to_contain_text("the counter never reached 3")
    # the story itself stays on the canvas
    expect(shown.get_by_role("button")).to_have_text("Clicks: 0")

    page.goto(f"{server.url}#/Counter/BrokenLoader")
    expect(shown).to_have_attribute("data-state", "error", timeout=RENDER_TIMEOUT_MS)
    error = shown.get_by_test_id("studio-error")
    expect(error).to_contain_text("Storybook could not prepare the story")
    expect(error).to_contain_text("the clicks service is down")


# -- .storybook/main --------------------------------------------------------------------------


@pytest.mark.browser
def test_main_applies_vite_final_stories_and_static_dirs(
    storybook: TemplateServer, browser_page: Page
) -> None:
    page = browser_page
    watcher = watch(page)
    if kind_of(storybook) == "storybook10":
        # main.ts: next/image aliased to a mock, and a plugin serving virtual:brand
        module = module_text(storybook, f"@fs{storybook.repo}/src/components/Avatar.tsx")
        assert ".storybook/mocks/next-image.tsx" in module.text
        avatar = show(page, storybook, "Avatar", "Default").get_by_test_id("avatar")
        expect(avatar.locator("img[data-mock=next-image]")).to_have_attribute("alt", "Ada Lovelace")
        expect(avatar.locator("figcaption")).to_have_text("Ada Lovelace · Acme UI")
        # the image comes from public/, main's staticDirs, and only what is inside it is
        page.wait_for_function(
            "document.querySelector('img[data-mock=next-image]')?.naturalWidth === 48"
        )
        image = module_text(storybook, "avatars/ada.svg")
        assert image.headers["content-type"] == "image/svg+xml"
        escaped = module_text(storybook, "avatars/..%2F..%2F.storybook%2Fmain.ts")
        assert "staticDirs" not in escaped.text
        # a story main.ts's stories globs found outside src/
        notice = show(page, storybook, "Notice", "Default").get_by_role("note")
        expect(notice).to_have_text("Maintenance tonight at 22:00.")
    else:
        # main.js (CommonJS): a `define`
        brand = show(page, storybook, "Brand", "Default").get_by_test_id("brand")
        expect(brand).to_have_text("Acme UI 8")
    assert_no_errors(watcher, storybook)


# -- hot reload -------------------------------------------------------------------------------


@pytest.mark.browser
def test_an_edited_component_hot_reloads_in_its_composed_story(
    serve: Serve, browser_page: Page
) -> None:
    server = serve("storybook10")
    page = browser_page
    watcher = watch(page)
    shown = show(page, server, "Panel", "Default")
    page.evaluate("window.__notReloaded = true")
    source = server.repo / "src" / "components" / "Panel.tsx"
    atomic_write(source, source.read_text().replace("<h2>{title}</h2>", "<h2>{title}!</h2>"))
    expect(shown.get_by_role("heading")).to_have_text("Quarterly numbers!")
    # React Fast Refresh, not a full reload; the theme decorator's class stays
    assert page.evaluate("window.__notReloaded") is True
    assert "dark" in html_classes(page)
    assert_no_errors(watcher, server)


# -- controls ---------------------------------------------------------------------------------


def _without_storybook_in_manifest(repo: Path) -> None:
    manifest = json.loads((repo / "package.json").read_text())
    manifest["devDependencies"] = {
        name: version
        for name, version in manifest["devDependencies"].items()
        if "storybook" not in name
    }
    (repo / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")


@pytest.mark.browser
def test_control_the_csf_runner_gives_storybook_hooks_no_context(
    serve: Serve, browser_page: Page
) -> None:
    # The same repository (its Storybook still installed, the lockfile is the
    # same) with Storybook no longer listed: the studio's own CSF runner renders
    # it, and the theme decorator fails the way every story of such a
    # repository failed before.
    server = serve("storybook10", prepare=_without_storybook_in_manifest)
    assert '"storybook":null' in virtual_module(server, "config")
    page = browser_page
    page.goto(f"{server.url}#/Panel/Default")
    shown = canvas(page)
    expect(shown).to_have_attribute("data-runner", "csf")
    expect(shown.get_by_test_id("studio-error")).to_contain_text(
        HOOKS_ERROR, timeout=RENDER_TIMEOUT_MS
    )


def test_control_without_main_avatars_imports_do_not_resolve(serve: Serve) -> None:
    # Avatar imports next/image, which is not installed, and virtual:brand: only
    # main's viteFinal makes them resolve (to the mock and its plugin's module).
    server = serve("storybook10", remove=(".storybook/main.ts",))
    response = module_text(server, f"@fs{server.repo}/src/components/Avatar.tsx")
    assert response.status_code == 500
    # Vite's error page, its message JSON-escaped. Vite resolves a module's
    # imports concurrently (Promise.all), so either failure can be the one
    # reported; CI's run at 935208a got a 500 without next/image's message.
    unresolved = re.search(
        r'Failed to resolve import \\"([^"\\]+)\\" from \\"src/components/Avatar.tsx\\"',
        response.text,
    )
    assert unresolved is not None, response.text[:2000]
    assert unresolved.group(1) in {"next/image", "virtual:brand"}
    # no main, no addons: the page still composes with Storybook, without their annotations
    assert "addon-themes" not in virtual_module(server, "storybook")


def test_a_main_that_throws_is_reported_and_stories_still_compose(serve: Serve) -> None:
    def break_main(repo: Path) -> None:
        (repo / ".storybook" / "main.ts").write_text(
            'throw new Error("main is broken on purpose");\n'
        )

    server = serve("storybook10", prepare=break_main)
    log = server.log()
    assert f"component studio: could not load {server.repo}/.storybook/main.ts" in log
    assert "main is broken on purpose" in log
    assert json.dumps({"version": "10.6.9"}, separators=(",", ":")) in virtual_module(
        server, "config"
    )
    assert "export const annotations = [];" in virtual_module(server, "storybook")
