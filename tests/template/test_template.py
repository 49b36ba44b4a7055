"""The studio template: real Vite on a real copy of examples/ui-kit, seen by real Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import save_screenshot
from tests.support.gitrepo import repo_from_dir
from tests.template.fake_stream import FakeEventStream
from tests.template.harness import TEMPLATE_DIR, UI_KIT, StudioServer, atomic_write, run_studio

# Fixtures of the browser plugin, used here until tests/conftest.py registers it.

UI_KIT_COMPONENTS = {"Button", "Card", "Input", "Modal"}


@pytest.fixture
def ui_kit(tmp_path: Path) -> Path:
    """examples/ui-kit as a fresh git repository."""
    return repo_from_dir(UI_KIT, tmp_path / "ui-kit")


@pytest.fixture
def studio(ui_kit: Path) -> Iterator[StudioServer]:
    with run_studio(ui_kit) as server:
        yield server


def by_name(catalog: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in catalog["components"]}


def open_component(page: Page, server: StudioServer, route: str) -> None:
    page.goto(f"{server.url}#/{route}")
    expect(page.locator("[data-testid=studio-canvas]")).to_have_attribute("data-state", "ready")


# -- the catalog ---------------------------------------------------------------------------


def test_catalog_lists_the_ui_kit_components_with_their_stories(studio: StudioServer) -> None:
    catalog = studio.catalog()
    components = by_name(catalog)
    assert set(components) == UI_KIT_COMPONENTS
    button = components["Button"]
    assert button["id"] == "Button"
    assert button["module"] == "src/components/Button/Button.tsx"
    assert button["exports"] == ["Button"]
    assert button["storiesModule"] == "src/components/Button/Button.stories.tsx"
    assert button["stories"] == [
        {
            "id": "button--primary",
            "name": "Primary",
            "exportName": "Primary",
            "args": {"size": "md", "variant": "primary", "label": "Save changes"},
        },
        {
            "id": "button--secondary",
            "name": "Secondary",
            "exportName": "Secondary",
            # spread from Primary.args, then overridden
            "args": {"size": "md", "variant": "secondary", "label": "Cancel"},
        },
        {
            "id": "button--large-danger",
            "name": "Large danger",
            "exportName": "LargeDanger",
            "args": {"size": "lg", "variant": "danger", "label": "Delete project"},
        },
    ]
    assert [s["exportName"] for s in components["Modal"]["stories"]] == ["Open", "WithTrigger"]
    assert [s["name"] for s in components["Input"]["stories"]] == ["Empty", "Filled", "With error"]
    assert catalog["preview"] == ".storybook/preview.tsx"
    assert re.match(r"\d{4}-\d\d-\d\dT", str(catalog["generatedAt"]))


def test_catalog_skips_non_components_and_matches_stories_kept_elsewhere(ui_kit: Path) -> None:
    files = {
        # not components: tests, specs, declarations, hooks-only modules
        "src/components/Button/Button.test.tsx": "export function ButtonTest() { return null; }\n",
        "src/components/Card/Card.spec.jsx": "export const CardSpec = () => null;\n",
        "src/__tests__/Fixture.tsx": "export function Fixture() { return null; }\n",
        "src/lib/useToggle.tsx": "export function useToggle() { return [false, () => {}]; }\n",
        # a separate stories tree, matched through meta.component's import
        "src/widgets/badge.tsx": (
            "export function Badge({ text }: { text: string }) { return <b>{text}</b>; }\n"
        ),
        "src/stories/widgets/Badge.stories.tsx": (
            "import { Badge } from '../../widgets/badge';\n"
            "export default { component: Badge, args: { text: 'new' } };\n"
            "export const Default = {};\n"
        ),
        # matched through the title's last segment (component imported from a barrel)
        "src/widgets/Avatar.tsx": "export default function Avatar() { return <i>A</i>; }\n",
        "src/widgets/index.ts": "export { default as Avatar } from './Avatar';\n",
        "src/stories/Avatar.stories.jsx": (
            "import * as widgets from '../widgets';\n"
            "export default { title: 'Widgets/Avatar', component: widgets.Avatar };\n"
            "export const Round = { args: { round: true } };\n"
        ),
        # stories with no component module in the glob still get an entry
        "src/stories/Palette.stories.tsx": (
            "export default { title: 'Design/Palette' };\n"
            "export const Colors = { render: () => <div>colors</div> };\n"
        ),
    }
    for name, text in files.items():
        path = ui_kit / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (ui_kit / "src" / "types.d.ts").write_text("export declare const Version: string;\n")

    with run_studio(ui_kit) as server:
        components = by_name(server.catalog())

    assert set(components) == UI_KIT_COMPONENTS | {"Badge", "Avatar", "Palette"}
    badge = components["Badge"]
    assert badge["module"] == "src/widgets/badge.tsx"
    assert badge["storiesModule"] == "src/stories/widgets/Badge.stories.tsx"
    assert badge["stories"][0]["args"] == {"text": "new"}
    avatar = components["Avatar"]
    assert avatar["exports"] == ["default"]
    assert avatar["storiesModule"] == "src/stories/Avatar.stories.jsx"
    palette = components["Palette"]
    assert palette["module"] == "src/stories/Palette.stories.tsx"
    assert palette["exports"] == []
    assert [s["id"] for s in palette["stories"]] == ["palette--colors"]


def test_the_preview_is_the_one_storybook_picks_js_first(ui_kit: Path) -> None:
    # Storybook resolves .storybook/preview by its extensions, .js first: a repository
    # that left an empty preview.js beside its preview.tsx gets nothing from the .tsx there.
    assert (ui_kit / ".storybook" / "preview.tsx").is_file()
    (ui_kit / ".storybook" / "preview.js").write_text("")
    with run_studio(ui_kit) as server:
        assert server.catalog()["preview"] == ".storybook/preview.js"


def test_catalog_reads_csf2_filters_and_qualifies_shared_names(ui_kit: Path) -> None:
    legacy = ui_kit / "src" / "legacy"
    legacy.mkdir()
    (legacy / "Button.jsx").write_text("export const Button = () => <button>old</button>;\n")
    # a second file of the same directory whose default export is named Button too
    (legacy / "OldButton.jsx").write_text("export default function Button() { return null; }\n")
    (legacy / "Button.stories.jsx").write_text(
        "import { Button } from './Button';\n"
        "export default { component: Button, excludeStories: /.*Data$/ };\n"
        "export const tableData = [1, 2];\n"
        "export const Plain = (args) => <Button {...args} />;\n"
        "Plain.args = { label: 'plain' };\n"
        "Plain.storyName = 'Plain old';\n"
    )
    with run_studio(ui_kit) as server:
        components = server.catalog()["components"]

    buttons = [c for c in components if c["name"] == "Button"]
    assert [c["id"] for c in buttons] == [
        "Button@src/components/Button",
        "Button@src/legacy/Button",
        "Button@src/legacy/OldButton",
    ]
    assert buttons[1]["stories"] == [
        {
            "id": "button-src-legacy-button--plain",
            "name": "Plain old",
            "exportName": "Plain",
            "args": {"label": "plain"},
        }
    ]


def test_catalog_lists_the_static_arg_types_a_stories_file_declares(ui_kit: Path) -> None:
    stories = ui_kit / "src" / "components" / "Button" / "Button.stories.tsx"
    stories.write_text(
        "import { Button } from './Button';\n"
        "export default {\n"
        "  component: Button,\n"
        "  argTypes: {\n"
        "    variant: { control: 'select', options: ['primary', 'danger'] },\n"
        "    label: { control: 'text', description: 'What it says' },\n"
        "    // a mapping to JSX is not static: its arg keeps the rest\n"
        "    icon: { options: ['none', 'star'], mapping: { star: <b>*</b> } },\n"
        "  },\n"
        "};\n"
        "export const Primary = { args: { label: 'Go' } };\n"
        "export const Danger = {\n"
        "  args: { variant: 'danger' },\n"
        "  argTypes: { variant: { control: 'radio' }, size: { table: { disable: true } } },\n"
        "};\n"
    )
    with run_studio(ui_kit) as server:
        components = by_name(server.catalog())

    primary, danger = components["Button"]["stories"]
    assert primary["argTypes"] == {
        "variant": {"control": "select", "options": ["primary", "danger"]},
        "label": {"control": "text", "description": "What it says"},
        "icon": {"options": ["none", "star"], "mapping": {}},
    }
    # the story's own over its meta's, field by field
    assert danger["argTypes"]["variant"] == {"control": "radio", "options": ["primary", "danger"]}
    assert danger["argTypes"]["size"] == {"table": {"disable": True}}
    # a stories file without argTypes lists none (test_catalog_lists_the_ui_kit_components...)
    assert all("argTypes" not in s for s in components["Card"]["stories"])


def test_template_sources_typecheck() -> None:
    tsc = TEMPLATE_DIR / "node_modules" / ".bin" / "tsc"
    result = subprocess.run(
        [str(tsc), "--noEmit", "-p", "tsconfig.json"],
        cwd=TEMPLATE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_invalid_config_stops_vite_with_a_clear_error(ui_kit: Path) -> None:
    with (
        pytest.raises(RuntimeError, match=r"componentGlob.*must be relative"),
        run_studio(ui_kit, component_glob="/etc/**/*.tsx"),
    ):
        pass


# -- rendering in the browser ----------------------------------------------------------------


def test_sidebar_lists_components_and_the_canvas_renders_them(
    studio: StudioServer, browser_page: Page
) -> None:
    page = browser_page
    page.goto(studio.url)
    for name in sorted(UI_KIT_COMPONENTS):
        expect(page.locator(f"[data-testid=component-{name}]")).to_have_text(name)
    # no component in the link: the first story shows, as in Storybook, and the URL names it
    expect(page.locator("[data-testid=studio-canvas]")).to_have_attribute("data-state", "ready")
    expect(page.locator("[data-testid=studio-canvas]")).to_have_attribute(
        "data-component", "Button"
    )
    assert re.search(r"#/Button/\w+$", page.url), page.url

    open_component(page, studio, "Button")
    canvas = page.locator("[data-testid=studio-canvas]")
    button = canvas.get_by_role("button")
    expect(button).to_have_text("Click me")
    # .storybook/preview.tsx: its decorator wraps the component and its global CSS applies
    expect(canvas.locator(".uk-theme")).to_have_count(1)
    expect(button).to_have_css("background-color", "rgb(79, 70, 229)")

    page.locator("[data-testid=story-Button-LargeDanger]").click()
    expect(button).to_have_text("Delete project")
    expect(button).to_have_class(re.compile(r"\buk-button--danger\b.*\buk-button--lg\b"))
    assert page.url.endswith("#/Button/LargeDanger")
    save_screenshot(page, "template-button-large-danger")


def test_story_render_functions_and_decorators_run_with_hooks(
    studio: StudioServer, browser_page: Page
) -> None:
    page = browser_page
    open_component(page, studio, "Modal/WithTrigger")
    canvas = page.locator("[data-testid=studio-canvas]")
    expect(canvas.get_by_role("dialog")).to_have_count(0)
    canvas.get_by_role("button", name="Open dialog").click()
    expect(canvas.get_by_role("dialog", name="Invite people")).to_contain_text("email with a link")

    open_component(page, studio, "Input/WithError")
    field = canvas.get_by_role("textbox", name="Email")
    expect(field).to_have_value("ada@")
    expect(canvas).to_contain_text("Enter a complete email address.")
    field.fill("ada@example.com")
    expect(field).to_have_value("ada@example.com")


def test_a_component_without_stories_renders_with_no_props_inside_the_wrapper(
    ui_kit: Path, browser_page: Page
) -> None:
    # The wrapper provides a context that the component reads from the same
    # module: both must get one module instance, or the provider is not seen.
    (ui_kit / "src" / "Providers.tsx").write_text(
        "import { createContext, type ReactNode } from 'react';\n"
        "export const Theme = createContext('no provider');\n"
        "export default function Providers({ children }: { children: ReactNode }) {\n"
        "  return <div data-testid='frame'><Theme.Provider value='studio theme'>\n"
        "    {children}</Theme.Provider></div>;\n}\n"
    )
    (ui_kit / "src" / "Themed.jsx").write_text(
        "import { useContext } from 'react';\n"
        "import { Theme } from './Providers';\n"
        "export const Themed = () => <p>theme: {useContext(Theme)}</p>;\n"
    )
    with run_studio(ui_kit, wrapper="src/Providers.tsx") as server:
        open_component(browser_page, server, "Themed")
        frame = browser_page.locator("[data-testid=studio-canvas] [data-testid=frame]")
        expect(frame).to_have_text("theme: studio theme")


def test_a_component_that_throws_shows_the_error_instead_of_a_blank_page(
    ui_kit: Path, browser_page: Page
) -> None:
    broken = ui_kit / "src" / "components" / "Broken" / "Broken.tsx"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "export function Broken(): never {\n  throw new Error('kaboom from Broken');\n}\n"
    )
    with run_studio(ui_kit) as server:
        page = browser_page
        page.goto(f"{server.url}#/Broken")
        error = page.locator("[data-testid=studio-canvas] [data-testid=studio-error]")
        expect(error).to_contain_text("Error: kaboom from Broken")
        expect(error).to_contain_text("Broken.tsx")  # the stack says where
        # the rest of the studio keeps working
        page.locator("[data-testid=component-Card]").click()
        expect(page.locator("[data-testid=studio-canvas] .uk-card")).to_have_count(1)


def test_an_atomic_edit_updates_the_dom_through_hmr_without_a_reload(
    studio: StudioServer, browser_page: Page
) -> None:
    page = browser_page
    open_component(page, studio, "Button")
    button = page.locator("[data-testid=studio-canvas] button")
    expect(button).to_have_text("Click me")
    page.evaluate("window.__studioMarker = 'still here'")

    source = studio.repo / "src" / "components" / "Button" / "Button.tsx"
    atomic_write(source, source.read_text().replace("'Click me'", "'Edited by HMR'"))
    expect(button).to_have_text("Edited by HMR")

    # a story renders the component its stories module imports: that one updates too
    page.locator("[data-testid=story-Button-Primary]").click()
    expect(button).to_have_text("Save changes")
    atomic_write(source, source.read_text().replace("{children ?? label}", "{children ?? label}!"))
    expect(button).to_have_text("Save changes!")

    assert page.evaluate("window.__studioMarker") == "still here"
    save_screenshot(page, "template-button-after-hmr")


def test_the_last_of_two_quick_edits_is_what_the_page_shows(
    studio: StudioServer, browser_page: Page
) -> None:
    """Vite's watcher passes on one change of a file per 50 ms: the second edit still lands."""
    page = browser_page
    open_component(page, studio, "Button")
    button = page.locator("[data-testid=studio-canvas] button")
    source = studio.repo / "src" / "components" / "Button" / "Button.tsx"
    original = source.read_text()
    # the second write lands inside the window the first one opened, wherever in it
    for pause_ms in (10, 20, 30, 40):
        atomic_write(source, original.replace("'Click me'", f"'first {pause_ms}'"))
        time.sleep(pause_ms / 1000)
        atomic_write(source, original.replace("'Click me'", f"'second {pause_ms}'"))
        expect(button).to_have_text(f"second {pause_ms}")


def test_a_new_component_file_appears_in_the_sidebar(
    studio: StudioServer, browser_page: Page
) -> None:
    page = browser_page
    page.goto(studio.url)
    expect(page.locator("[data-testid=component-Button]")).to_be_visible()
    page.evaluate("window.__studioMarker = 'still here'")

    badge = studio.repo / "src" / "components" / "Badge" / "Badge.tsx"
    badge.parent.mkdir()
    atomic_write(badge, "export function Badge() { return <span>fresh badge</span>; }\n")

    page.locator("[data-testid=component-Badge]").click()
    expect(page.locator("[data-testid=studio-canvas]")).to_have_text("fresh badge")
    assert page.evaluate("window.__studioMarker") == "still here"


def test_two_reacts_are_deduplicated(ui_kit: Path, browser_page: Page) -> None:
    # The repository installed React itself: hooks break with two copies.
    own = ui_kit / "node_modules"
    own.mkdir()
    for package in ("react", "react-dom", "scheduler"):
        source = TEMPLATE_DIR / "node_modules" / package
        shutil.copytree(source, own / package)
    with run_studio(ui_kit) as server:
        open_component(browser_page, server, "Input/Filled")
        expect(browser_page.get_by_role("textbox", name="Email")).to_have_value("ada@example.com")
        expect(browser_page.locator("[data-testid=studio-error]")).to_have_count(0)


# -- the live connection ---------------------------------------------------------------------


@pytest.fixture
def stream() -> Iterator[FakeEventStream]:
    with FakeEventStream() as fake:
        yield fake


@pytest.fixture
def live_studio(ui_kit: Path, stream: FakeEventStream) -> Iterator[StudioServer]:
    with run_studio(ui_kit, ws_url=stream.url, sandbox_id=stream.sandbox_id) as server:
        yield server


def test_banner_shows_the_sandbox_status(
    live_studio: StudioServer, stream: FakeEventStream, browser_page: Page
) -> None:
    page = browser_page
    open_component(page, live_studio, "Button")
    stream.wait_until(lambda: stream.clients() == 1, what="the page to connect")
    banner = page.locator("[data-testid=studio-status]")
    expect(banner).to_contain_text(stream.sandbox_id)

    stream.send("status", {"status": "running"})
    expect(banner).to_have_attribute("data-status", "running")
    expect(banner).to_contain_text("running")

    stream.send("status", {"status": "failed", "error": "vite exited with code 1"})
    expect(banner).to_have_attribute("data-status", "failed")
    expect(banner).to_contain_text("vite exited with code 1")


def test_selection_is_shared_both_ways(
    live_studio: StudioServer, stream: FakeEventStream, browser_page: Page
) -> None:
    page = browser_page
    open_component(page, live_studio, "Button")
    stream.wait_until(lambda: stream.clients() == 1, what="the page to connect")

    stream.send("component-selected", {"component": "Card", "story": "card--with-actions"})
    canvas = page.locator("[data-testid=studio-canvas]")
    expect(canvas).to_have_attribute("data-component", "Card")
    expect(canvas.get_by_role("button", name="Open")).to_be_visible()
    assert page.url.endswith("#/Card/WithActions")

    page.locator("[data-testid=component-Input]").click()
    page.locator("[data-testid=story-Button-Secondary]").click()

    def selections() -> list[dict[str, Any]]:
        return [m for m in stream.received if m["type"] == "component-selected"]

    stream.wait_until(lambda: len(selections()) >= 2, what="two component-selected messages")
    selected = selections()
    # the page does not echo the selection it was told about
    assert [m["payload"] for m in selected] == [
        {"component": "Input", "story": None},
        {"component": "Button", "story": "button--secondary"},
    ]


def test_reconnects_with_since_and_answers_pings(
    live_studio: StudioServer, stream: FakeEventStream, browser_page: Page
) -> None:
    page = browser_page
    open_component(page, live_studio, "Button")
    stream.wait_until(lambda: stream.clients() == 1, what="the page to connect")
    assert "since=" not in stream.paths[0]
    stream.send("status", {"status": "running"})
    ping_seq = stream.send("ping", {"nonce": 7})
    stream.wait_until(lambda: any(m["type"] == "pong" for m in stream.received), what="pong")
    assert [m["payload"] for m in stream.received if m["type"] == "pong"] == [{"nonce": 7}]

    stream.drop()
    stream.wait_until(lambda: len(stream.paths) == 2 and stream.clients() == 1, what="a reconnect")
    assert stream.paths[1] == f"/api/v1/sandboxes/{stream.sandbox_id}/ws?since={ping_seq}"
    expect(page.locator("[data-testid=studio-status]")).to_have_attribute("data-connection", "open")

    # still live after the reconnect: a reload message reloads the page
    page.evaluate("window.__studioMarker = 'before reload'")
    stream.send("reload", {})
    page.wait_for_function("window.__studioMarker === undefined")
    expect(page.locator("[data-testid=studio-canvas]")).to_have_attribute("data-state", "ready")
