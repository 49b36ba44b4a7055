"""What a Storybook user expects on the studio page: controls, a globals toolbar, a full canvas.

On the real Storybook 8 and 10 fixtures (tests/fixtures/repos/), each given a
``Showcase`` story with one arg per kind of control and a preview with a
``locale`` toolbar and backgrounds (page_fixture/, written into the copy before
Vite starts), and on examples/ui-kit, whose stories the studio's own CSF runner
composes. Real Chromium looks at what is drawn after each edit, and at the URL.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.support.gitrepo import repo_from_dir
from tests.support.template_runner import TemplateServer, run_template
from tests.template.harness import UI_KIT, StudioServer, run_studio
from tests.template.pages import RENDER_TIMEOUT_MS, PageWatch, canvas, css_colour, make_fixture_repo

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PAGE_FIXTURE = Path(__file__).resolve().parent / "page_fixture"
KINDS = ("storybook10", "storybook8")
# the background options each fixture's preview gets, in its Storybook's shape
BACKGROUNDS = {
    "storybook10": (
        '{ options: { paper: { name: "Paper", value: "#fafafa" },'
        ' ink: { name: "Ink", value: "#222222" } } }'
    ),
    "storybook8": (
        '{ values: [{ name: "Paper", value: "#fafafa" }, { name: "Ink", value: "#222222" }] }'
    ),
}
LOCALE_TOOLBAR = (
    'globalTypes: { locale: { description: "Locale", toolbar: { title: "Locale", '
    'items: [{ value: "en", title: "English" }, { value: "fr", title: "Français" }] } } },'
)


def add_page_fixture(kind: str) -> Any:
    def prepare(repo: Path) -> None:
        for name in ("Showcase.tsx", "Showcase.stories.tsx"):
            shutil.copy(PAGE_FIXTURE / name, repo / "src" / "components" / name)
        preview = repo / ".storybook" / "preview.tsx"
        text = preview.read_text()
        before = 'parameters: { layout: "padded" },'
        assert before in text
        backgrounds = BACKGROUNDS[kind]
        after = (
            f'{LOCALE_TOOLBAR}\n  parameters: {{ layout: "padded", backgrounds: {backgrounds} }},'
        )
        preview.write_text(text.replace(before, after))

    return prepare


@pytest.fixture(scope="module", params=KINDS)
def storybook(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, deps_cache: Path
) -> Iterator[TemplateServer]:
    kind: str = request.param
    repo = make_fixture_repo(kind, tmp_path_factory.mktemp(kind))
    with run_template(repo, deps_cache, before_start=add_page_fixture(kind)) as server:
        yield server


@pytest.fixture(scope="module")
def ui_kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioServer]:
    repo = repo_from_dir(UI_KIT, tmp_path_factory.mktemp("ui-kit") / "ui-kit")
    with run_studio(repo) as server:
        yield server


def open_story(page: Page, base_url: str, route: str, query: str = "") -> Locator:
    page.goto(f"{base_url}{query}#/{route}")
    shown = canvas(page)
    expect(shown).to_have_attribute("data-state", "ready", timeout=RENDER_TIMEOUT_MS)
    expect(shown.locator("[data-testid=studio-error]")).to_have_count(0)
    return shown


def query_param(page: Page, name: str) -> str | None:
    """A flag of the page's query string as written (Storybook's format is not percent-encoded)."""
    search = unquote(page.evaluate("window.location.search").lstrip("?"))
    for part in search.split("&"):
        if part == name or part.startswith(f"{name}="):
            return part[len(name) + 1 :]
    return None


def drawn_props(page: Page) -> dict[str, Any]:
    props: dict[str, Any] = json.loads(page.get_by_test_id("showcase-props").inner_text())
    return props


def watch(page: Page) -> PageWatch:
    watcher = PageWatch()
    watcher.attach(page)
    return watcher


def assert_clean(watcher: PageWatch) -> None:
    assert watcher.console_errors == []
    assert watcher.page_errors == []
    assert watcher.bad_responses == []


# -- controls ----------------------------------------------------------------------------------


def click_to(control: Locator, *, checked: bool) -> None:
    """Click a checkbox or radio and wait until it shows ``checked``.

    The panel's inputs are controlled by the story's args, which come back
    over Storybook's channel after the click: Playwright's ``check()`` asserts
    the state at once and fails while the round trip is under way.
    """
    control.click()
    if checked:
        expect(control).to_be_checked()
    else:
        expect(control).not_to_be_checked()


def test_the_panel_has_a_control_per_arg_type(
    storybook: TemplateServer, browser_page: Page
) -> None:
    page = browser_page
    watcher = watch(page)
    open_story(page, storybook.url, "Showcase/Default")
    panel = page.get_by_test_id("studio-controls")
    rows = panel.locator("[data-testid^=control-row-]")
    expect(rows).to_have_count(10)
    ids = rows.evaluate_all("rs => rs.map(r => r.dataset.testid)")
    names = [name.removeprefix("control-row-") for name in ids]
    # control: false and table.disable are hidden; hint only shows once `active` is on
    shown = [
        "label",
        "count",
        "level",
        "active",
        "size",
        "tone",
        "tags",
        "colour",
        "config",
        "when",
    ]
    assert sorted(names) == sorted(shown)
    # Storybook's argTypes say which input: inferred from the args, or declared
    assert panel.get_by_test_id("control-label").get_attribute("type") == "text"
    assert panel.get_by_test_id("control-count").get_attribute("type") == "number"
    level = panel.get_by_test_id("control-level")
    bounds = (level.get_attribute("type"), level.get_attribute("min"), level.get_attribute("max"))
    assert bounds == ("range", "0", "10")
    assert panel.get_by_test_id("control-active").get_attribute("type") == "checkbox"
    # an argType without an arg still gets its control
    assert panel.get_by_test_id("control-when").get_attribute("type") == "datetime-local"
    size_labels = panel.get_by_test_id("control-size").locator("label")
    expect(size_labels).to_have_text(["Small", "Medium", "Large"])
    tone_options = panel.get_by_test_id("control-tone").locator("option")
    expect(tone_options).to_have_text(["Choose option…", "plain", "loud"])
    expect(panel.get_by_test_id("control-config")).to_have_value('{\n  "gap": 4\n}')
    assert_clean(watcher)


def test_edits_rerender_the_story_and_go_to_the_url(
    storybook: TemplateServer, browser_page: Page
) -> None:
    page = browser_page
    watcher = watch(page)
    open_story(page, storybook.url, "Showcase/Default")
    label = page.get_by_test_id("showcase-label")
    expect(label).to_have_text("Hello")

    page.get_by_test_id("control-label").fill("Hi there")
    expect(label).to_have_text("Hi there")
    page.get_by_test_id("control-tone").select_option(label="loud")
    # the mapping: the control holds "loud", the component gets "700"
    expect(label).to_have_css("font-weight", "700")
    page.get_by_test_id("control-colour").fill("#00ff00")
    expect(label).to_have_css("color", css_colour(page, "#00ff00"))
    page.get_by_test_id("control-count").fill("7")
    click_to(page.get_by_test_id("control-size").get_by_label("Large"), checked=True)
    click_to(page.get_by_test_id("control-tags").get_by_label("c"), checked=True)
    # the conditional arg appears with the arg it depends on
    expect(page.get_by_test_id("control-row-hint")).to_have_count(0)
    assert "hint" not in drawn_props(page)
    click_to(page.get_by_test_id("control-active"), checked=True)
    expect(page.get_by_test_id("control-row-hint")).to_have_count(1)

    props = drawn_props(page)
    edited = ("label", "tone", "colour", "count", "size", "tags", "active", "hint")
    assert {k: props[k] for k in edited} == {
        "label": "Hi there",
        "tone": "700",
        "colour": "#00ff00",
        "count": 7,
        "size": "lg",
        "tags": ["a", "c"],
        "active": True,
        "hint": "shown when active",
    }
    # the changed args, in Storybook's URL format
    args = query_param(page, "args")
    assert args is not None
    assert set(args.split(";")) == {
        "label:Hi+there",
        "tone:loud",
        "colour:!hex(00ff00)",
        "count:7",
        "size:lg",
        "tags[0]:a",
        "tags[1]:c",
        "active:!true",
    }

    # a reload (or the link shared) shows the same story
    page.reload()
    expect(canvas(page)).to_have_attribute("data-state", "ready", timeout=RENDER_TIMEOUT_MS)
    expect(label).to_have_text("Hi there")
    expect(label).to_have_css("font-weight", "700")
    expect(page.get_by_test_id("control-label")).to_have_value("Hi there")
    expect(page.get_by_test_id("control-active")).to_be_checked()
    assert drawn_props(page)["tags"] == ["a", "c"]

    page.get_by_test_id("controls-reset").click()
    expect(label).to_have_text("Hello")
    expect(page.get_by_test_id("control-label")).to_have_value("Hello")
    expect(page.get_by_test_id("control-row-hint")).to_have_count(0)
    assert query_param(page, "args") is None
    assert_clean(watcher)


def test_invalid_json_is_shown_and_not_applied(
    storybook: TemplateServer, browser_page: Page
) -> None:
    page = browser_page
    open_story(page, storybook.url, "Showcase/Default")
    config = page.get_by_test_id("control-config")
    config.fill('{"gap": ')
    expect(page.get_by_test_id("control-error-config")).to_contain_text("Invalid JSON")
    assert drawn_props(page)["config"] == {"gap": 4}
    config.fill('{"gap": 8}')
    expect(page.get_by_test_id("control-error-config")).to_have_count(0)
    expect(page.get_by_test_id("showcase-props")).to_contain_text('"config":{"gap":8}')
    assert query_param(page, "args") == "config.gap:8"


def test_use_args_updates_show_in_the_panel(storybook: TemplateServer, browser_page: Page) -> None:
    page = browser_page
    open_story(page, storybook.url, "Toggle/Controlled")
    checked = page.get_by_test_id("control-checked")
    expect(checked).not_to_be_checked()
    page.get_by_role("switch").click()
    expect(page.get_by_role("switch")).to_have_text("Notifications: on")
    expect(checked).to_be_checked()
    assert query_param(page, "args") == "checked:!true"
    # and the panel drives the story the same way
    click_to(checked, checked=False)
    expect(page.get_by_role("switch")).to_have_text("Notifications: off")


def test_url_args_belong_to_the_story_they_were_written_for(
    storybook: TemplateServer, browser_page: Page
) -> None:
    page = browser_page
    watcher = watch(page)
    query = "?args=label:From+link&globals=locale:en"
    open_story(page, storybook.url, "Showcase/Default", query=query)
    label = page.get_by_test_id("showcase-label")
    expect(label).to_have_text("From link")

    # another story starts from its own args, as in Storybook; the globals stay
    page.locator("[data-testid='story-Showcase-Other']").click()
    expect(canvas(page)).to_have_attribute("data-story", "showcase--other")
    expect(canvas(page)).to_have_attribute("data-state", "ready", timeout=RENDER_TIMEOUT_MS)
    expect(label).to_have_text("Other")
    expect(page.get_by_test_id("control-label")).to_have_value("Other")
    expect(page.get_by_test_id("toolbar-locale")).to_have_value("0")
    assert query_param(page, "args") is None
    assert query_param(page, "globals") == "locale:en"
    # nothing wrote them back: the link of this story shows it as it is
    page.reload()
    expect(canvas(page)).to_have_attribute("data-state", "ready", timeout=RENDER_TIMEOUT_MS)
    expect(label).to_have_text("Other")

    # an edit here belongs to this story, and back in history is the link's story with its args
    page.get_by_test_id("control-label").fill("Edited")
    expect(label).to_have_text("Edited")
    assert query_param(page, "args") == "label:Edited"
    page.go_back()
    expect(canvas(page)).to_have_attribute("data-story", "showcase--default")
    expect(label).to_have_text("From link")
    assert query_param(page, "args") == "label:From+link"
    assert_clean(watcher)


def test_url_args_belong_to_their_story_without_storybook(
    ui_kit: StudioServer, browser_page: Page
) -> None:
    page = browser_page
    shown = open_story(page, ui_kit.url, "Button/Primary", query="?args=label:From+link")
    button = shown.locator("button")
    expect(button).to_have_text("From link")
    page.locator("[data-testid='story-Button-Secondary']").click()
    expect(canvas(page)).to_have_attribute("data-story", "button--secondary")
    expect(button).to_have_text("Cancel")
    expect(page.get_by_test_id("control-label")).to_have_value("Cancel")
    assert query_param(page, "args") is None


# -- toolbar -----------------------------------------------------------------------------------


def html_classes(page: Page) -> list[str]:
    classes: list[str] = page.evaluate("[...document.documentElement.classList]")
    return classes


def test_the_toolbar_sets_globals(storybook: TemplateServer, browser_page: Page) -> None:
    page = browser_page
    watcher = watch(page)
    open_story(page, storybook.url, "Greeting/Default")
    greeting = page.get_by_test_id("greeting")
    expect(greeting).to_have_text("Bonjour, Ada")
    toolbar = page.get_by_test_id("studio-toolbar")
    # the themes withThemeByClassName registered, the default one selected
    theme = toolbar.get_by_test_id("toolbar-theme")
    expect(theme.locator("option")).to_have_text(["light", "dark"])
    expect(theme).to_have_value("1")
    assert "dark" in html_classes(page)
    theme.select_option(label="light")
    expect(page.locator("html")).to_have_class(re.compile(r"\blight\b"))
    assert "dark" not in html_classes(page)

    # a globalTypes toolbar item, read by the preview's locale decorator
    toolbar.get_by_test_id("toolbar-locale").select_option(label="English")
    expect(greeting).to_have_text("Hello, Ada")
    assert set((query_param(page, "globals") or "").split(";")) == {"theme:light", "locale:en"}

    # backgrounds paint the canvas
    toolbar.get_by_test_id("toolbar-backgrounds").select_option(label="Ink")
    expect(canvas(page)).to_have_css("background-color", css_colour(page, "#222222"))

    # a viewport sizes it
    toolbar.get_by_test_id("toolbar-viewport").select_option(label="Mobile")
    expect(canvas(page)).to_have_attribute("data-viewport", "sized")
    assert canvas(page).evaluate("c => c.getBoundingClientRect().width") == 375

    # the globals survive a reload and another story
    page.reload()
    expect(canvas(page)).to_have_attribute("data-state", "ready", timeout=RENDER_TIMEOUT_MS)
    expect(greeting).to_have_text("Hello, Ada")
    assert "light" in html_classes(page)
    assert canvas(page).evaluate("c => c.getBoundingClientRect().width") == 375
    page.locator("[data-testid='story-Panel-Default']").click()
    expect(page.get_by_test_id("panel")).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    assert "light" in html_classes(page)
    expect(page.get_by_test_id("toolbar-theme")).to_have_value("0")
    assert_clean(watcher)


def test_a_story_s_globals_lock_their_toolbar_item(
    storybook: TemplateServer, browser_page: Page
) -> None:
    # Storybook 9+: `globals` of a story (Greeting/English: locale "en") win
    # over the URL's and lock their toolbar item; the other items stay free
    if storybook.repo.name == "storybook8":
        pytest.skip("a story's own globals are Storybook 9's; the Storybook 8 fixture has none")
    page = browser_page
    watcher = watch(page)
    open_story(page, storybook.url, "Greeting/English", query="?globals=locale:fr;theme:light")
    greeting = page.get_by_test_id("greeting")
    expect(greeting).to_have_text("Hello, Ada")
    locale = page.get_by_test_id("toolbar-locale")
    expect(locale).to_be_disabled()
    expect(locale).to_have_attribute("title", re.compile("set by the story"))
    expect(locale.locator("option:checked")).to_have_text("English")
    theme = page.get_by_test_id("toolbar-theme")
    expect(theme).to_be_enabled()
    assert "light" in html_classes(page)
    theme.select_option(label="dark")
    expect(page.locator("html")).to_have_class(re.compile(r"\bdark\b"))
    # a change of another global keeps the story's
    expect(greeting).to_have_text("Hello, Ada")
    # the URL keeps the user's choice, which the next story uses
    assert set((query_param(page, "globals") or "").split(";")) == {"locale:fr", "theme:dark"}
    page.locator("[data-testid='story-Greeting-Default']").click()
    expect(greeting).to_have_text("Bonjour, Ada")
    expect(page.get_by_test_id("toolbar-locale")).to_be_enabled()
    expect(page.get_by_test_id("toolbar-locale").locator("option:checked")).to_have_text("Français")
    assert_clean(watcher)


# -- the full canvas ---------------------------------------------------------------------------


def test_the_full_canvas_shows_the_story_alone(
    storybook: TemplateServer, browser_page: Page
) -> None:
    page = browser_page
    watcher = watch(page)
    shown = open_story(page, storybook.url, "Panel/Default", query="?full&globals=theme:light")
    expect(shown.get_by_test_id("panel")).to_be_visible()
    for chrome in ("studio-sidebar", "studio-toolbar", "studio-controls", "studio-title"):
        expect(page.get_by_test_id(chrome)).to_have_count(0)
    assert "light" in html_classes(page)
    # parameters.layout of the story
    expect(shown).to_have_css("justify-content", "center")
    # the canvas is the page
    width = shown.evaluate("c => c.getBoundingClientRect().width")
    assert width == page.evaluate("window.innerWidth")

    open_story(page, storybook.url, "Showcase/Default", query="?full&args=label:Alone;tone:loud")
    expect(page.get_by_test_id("showcase-label")).to_have_text("Alone")
    expect(page.get_by_test_id("showcase-label")).to_have_css("font-weight", "700")
    expect(page.get_by_test_id("studio-controls")).to_have_count(0)
    assert_clean(watcher)


def test_iframe_html_shows_a_story_by_its_storybook_id(
    storybook: TemplateServer, browser_page: Page
) -> None:
    page = browser_page
    watcher = watch(page)
    # Storybook's own id (title "Page/Showcase"), not the studio's, with its args and globals
    url = f"{storybook.url}iframe.html?id=page-showcase--other&viewMode=story&args=tone:loud"
    page.goto(url + "&globals=theme:light")
    shown = canvas(page)
    expect(shown).to_have_attribute("data-state", "ready", timeout=RENDER_TIMEOUT_MS)
    expect(shown).to_have_attribute("data-story", "showcase--other")
    expect(page.get_by_test_id("studio-full")).to_have_count(1)
    label = page.get_by_test_id("showcase-label")
    expect(label).to_have_text("Other")
    expect(label).to_have_css("font-weight", "700")
    assert "light" in html_classes(page)
    for chrome in ("studio-sidebar", "studio-toolbar", "studio-controls", "studio-title"):
        expect(page.get_by_test_id(chrome)).to_have_count(0)
    # the story's own globals win there too
    page.goto(f"{storybook.url}iframe.html?id=text-greeting--default&globals=locale:en")
    expect(page.get_by_test_id("greeting")).to_have_text("Hello, Ada", timeout=RENDER_TIMEOUT_MS)
    assert_clean(watcher)

    page.goto(f"{storybook.url}iframe.html?id=page-showcase--missing")
    missing = page.get_by_test_id("studio-not-found")
    expect(missing).to_contain_text("page-showcase--missing", timeout=RENDER_TIMEOUT_MS)
    page.goto(f"{storybook.url}iframe.html")
    expect(missing).to_contain_text("iframe.html needs ?id=", timeout=RENDER_TIMEOUT_MS)


def test_iframe_html_without_storybook(ui_kit: StudioServer, browser_page: Page) -> None:
    page = browser_page
    page.goto(f"{ui_kit.url}iframe.html?id=components-button--large-danger&args=label:Gone")
    shown = canvas(page)
    expect(shown).to_have_attribute("data-state", "ready", timeout=RENDER_TIMEOUT_MS)
    expect(shown).to_have_attribute("data-runner", "csf")
    expect(shown.locator("button")).to_have_text("Gone")
    expect(shown.locator("button")).to_have_class(re.compile(r"uk-button--danger"))
    expect(page.get_by_test_id("studio-sidebar")).to_have_count(0)


def test_the_blank_route_shows_nothing_and_a_story_after_it(
    ui_kit: StudioServer, browser_page: Page
) -> None:
    # where the render browser's idle pages wait (studio/render/browser.py, _IDLE_BLANK)
    page = browser_page
    page.goto(f"{ui_kit.url}?full#/~blank")
    expect(page.get_by_test_id("studio-blank")).to_have_count(1, timeout=RENDER_TIMEOUT_MS)
    expect(page.get_by_test_id("studio-canvas")).to_have_count(0)
    assert page.url.endswith("#/~blank")  # not sent on to the first story
    page.evaluate("() => { window.location.hash = '#/Button/Primary'; }")
    shown = canvas(page)
    expect(shown).to_have_attribute("data-state", "ready", timeout=RENDER_TIMEOUT_MS)
    expect(shown.locator("button")).to_have_text("Save changes")
    expect(page.get_by_test_id("studio-blank")).to_have_count(0)


# -- without Storybook: the studio's CSF runner --------------------------------------------------


def test_controls_and_full_canvas_without_storybook(
    ui_kit: StudioServer, browser_page: Page
) -> None:
    page = browser_page
    watcher = watch(page)
    shown = open_story(page, ui_kit.url, "Button/Primary")
    expect(shown).to_have_attribute("data-runner", "csf")
    button = shown.locator("button")
    expect(button).to_have_text("Save changes")
    rows = page.locator("[data-testid^=control-row-]")
    expect(rows).to_have_count(3)
    page.get_by_test_id("control-label").fill("Ship it")
    expect(button).to_have_text("Ship it")
    page.get_by_test_id("control-variant").fill("danger")
    expect(button).to_have_class(re.compile(r"uk-button--danger"))
    assert set((query_param(page, "args") or "").split(";")) == {"label:Ship+it", "variant:danger"}

    page.reload()
    expect(canvas(page)).to_have_attribute("data-state", "ready", timeout=RENDER_TIMEOUT_MS)
    expect(button).to_have_text("Ship it")
    page.get_by_test_id("toolbar-viewport").select_option(label="Tablet")
    assert canvas(page).evaluate("c => c.getBoundingClientRect().width") == 768
    page.get_by_test_id("controls-reset").click()
    expect(button).to_have_text("Save changes")
    assert query_param(page, "args") is None

    full = open_story(page, ui_kit.url, "Button/Primary", query="?full&args=label:Embedded")
    expect(full.locator("button")).to_have_text("Embedded")
    expect(page.get_by_test_id("studio-sidebar")).to_have_count(0)
    expect(page.get_by_test_id("studio-controls")).to_have_count(0)
    assert_clean(watcher)
