"""The render verdict of each kind of edit: a real sandbox on examples/ui-kit, real Vite,
real Chromium.

One sandbox and one browser for the module (a Vite start and a Chromium
launch per test would dominate); every test puts back what it changed, so
the tests do not depend on their order.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
from PIL import Image, ImageChops

from studio.commands import DeleteFile, ExecuteCommand, WriteFile, WriteFiles
from studio.errors import InvalidRequest, NotFound
from studio.models import RepositorySource
from studio.render import RenderVerdict
from studio.render import browser as render_browser
from studio.render.browser import RenderBrowser
from studio.render.screenshot import DEFAULT_VIEWPORT, parse_viewport
from studio.sandbox import ComponentStudioSandbox
from studio.state import TERMINAL_STATES
from tests.studio.test_sandbox_fixtures import UI_KIT, fast_config, node_settings
from tests.support.browser import require_chromium
from tests.support.gitrepo import repo_from_dir

pytestmark = [pytest.mark.browser]

T = TypeVar("T")

BUTTON = "src/components/Button/Button.tsx"
BUTTON_STORIES = "src/components/Button/Button.stories.tsx"
INPUT = "src/components/Input/Input.tsx"
STYLES = "src/styles.css"
BUTTON_IDS = {"button--primary", "button--secondary", "button--large-danger"}


class _Loop:
    """An event loop on a thread of its own: the module's browser outlives each test's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Studio:
    """The module's sandbox and browser, and an edit answered with its verdict."""

    def __init__(self, sandbox: ComponentStudioSandbox, browser: RenderBrowser, loop: _Loop):
        self.sandbox = sandbox
        self.browser = browser
        self.loop = loop
        self.worktree = sandbox.worktree_path

    def original(self, rel: str) -> str:
        return (UI_KIT / rel).read_text()

    def edit(self, command: ExecuteCommand, files: list[str]) -> RenderVerdict:
        written_after = time.time()
        result = self.sandbox.on_execute(command)
        assert result.commit_hash
        url = self.sandbox.renderer_url
        assert url
        return self.loop.run(
            self.browser.verdict(
                self.sandbox.sandbox_id, url, result.commit_hash, files, since=written_after
            )
        )

    def write(self, rel: str, content: str) -> RenderVerdict:
        return self.edit(WriteFile(command="write_file", file_path=rel, content=content), [rel])

    def restore(self) -> None:
        """Every file the tests touch back as in examples/ui-kit (one commit, if any differ)."""
        changed = [
            rel
            for rel in (BUTTON, BUTTON_STORIES, STYLES, INPUT)
            if not (self.worktree / rel).is_file()
            or (self.worktree / rel).read_text() != self.original(rel)
        ]
        if changed:
            files = [{"file_path": rel, "content": self.original(rel)} for rel in changed]
            self.sandbox.on_execute(
                WriteFiles.model_validate({"command": "write_files", "files": files})
            )


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, install_cache: Path) -> Iterator[Studio]:
    require_chromium()
    root = tmp_path_factory.mktemp("verdict")
    origin = repo_from_dir(UI_KIT, root / "origin")
    settings = node_settings(root / "node", install_cache)
    sandbox = ComponentStudioSandbox(
        "sb_verdict01",
        RepositorySource(name="ui-kit", source=str(origin)),
        fast_config(settings),
        settings,
        owner="alice",
    )
    loop = _Loop()
    browser = RenderBrowser()
    try:
        sandbox.on_setup()
        # launched here, not by the first test: the tests' leak checks see a running browser
        loop.run(browser.browser())
        yield Studio(sandbox, browser, loop)
    finally:
        loop.run(browser.close())
        loop.close()
        if sandbox.state not in TERMINAL_STATES:
            sandbox.on_teardown()


@pytest.fixture
def kit(studio: Studio) -> Iterator[Studio]:
    yield studio
    studio.restore()


def _by_id(verdict: RenderVerdict) -> dict[str, Any]:
    return {story.id: story for story in verdict.stories}


def test_a_valid_edit_renders_its_stories_ok(kit: Studio) -> None:
    source = kit.original(BUTTON).replace("{children ?? label}", "{children ?? label}!")
    verdict = kit.write(BUTTON, source)
    assert verdict.status == "ok", verdict.model_dump_json(indent=1)
    assert set(_by_id(verdict)) >= BUTTON_IDS, verdict
    assert all(story.status == "ok" for story in verdict.stories)
    # only the Button's stories: nothing imports Button.tsx but its stories
    assert {story.component for story in verdict.stories} == {"Button"}


def test_edits_after_an_ok_verdict_reach_the_page_by_hot_update(kit: Studio) -> None:
    label = "{children ?? label}"
    first = kit.write(BUTTON, kit.original(BUTTON).replace(label, f"{label}!"))
    assert first.status == "ok", first.model_dump_json(indent=1)
    loads = kit.browser.page_loads(kit.sandbox.sandbox_id)
    assert loads > 0

    # the page is warm: Vite's hot update brings it to the edit, no load
    again = kit.write(BUTTON, kit.original(BUTTON).replace(label, f"{label}?"))
    assert again.status == "ok", again.model_dump_json(indent=1)
    assert set(_by_id(again)) >= BUTTON_IDS
    throwing = kit.original(BUTTON).replace(
        "  return (\n    <button", "  throw new Error('hot boom');\n  return (\n    <button", 1
    )
    broken = kit.write(BUTTON, throwing)
    assert broken.status == "runtime_error", broken.model_dump_json(indent=1)
    assert all(s.status == "runtime_error" for s in broken.stories)
    assert "hot boom" in _by_id(broken)["button--primary"].error.message
    assert kit.browser.page_loads(kit.sandbox.sandbox_id) == loads

    # after an error the page is loaded afresh: no error boundary's state carried over
    fixed = kit.write(BUTTON, kit.original(BUTTON))
    assert fixed.status == "ok", fixed.model_dump_json(indent=1)
    assert kit.browser.page_loads(kit.sandbox.sandbox_id) == loads + 1


def test_a_warm_page_is_loaded_afresh_after_its_quota_of_hot_updates(
    kit: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each hot update's module versions stay in the page: a bounded number of them
    monkeypatch.setattr(render_browser, "_WARM_MAX", 1)
    label = "{children ?? label}"
    edits = [kit.original(BUTTON).replace(label, f"{label}{{'{n}'}}") for n in range(3)]
    sandbox_id = kit.sandbox.sandbox_id
    kit.loop.run(kit.browser.close_page(sandbox_id))
    assert kit.write(BUTTON, edits[0]).status == "ok"
    assert kit.browser.page_loads(sandbox_id) == 1  # a new page
    assert kit.write(BUTTON, edits[1]).status == "ok"
    assert kit.browser.page_loads(sandbox_id) == 1  # warm
    assert kit.write(BUTTON, edits[2]).status == "ok"
    assert kit.browser.page_loads(sandbox_id) == 2  # the quota used up


def test_a_story_file_edit_loads_the_page_afresh(kit: Studio) -> None:
    warm = kit.write(BUTTON, kit.original(BUTTON) + "\n")
    assert warm.status == "ok", warm.model_dump_json(indent=1)
    loads = kit.browser.page_loads(kit.sandbox.sandbox_id)
    # a stories module accepts no hot update: Vite asks for a full reload, the verdict loads
    story = kit.original(BUTTON_STORIES).replace("'Save changes'", "'Save it now'")
    verdict = kit.write(BUTTON_STORIES, story)
    assert verdict.status == "ok", verdict.model_dump_json(indent=1)
    assert kit.browser.page_loads(kit.sandbox.sandbox_id) == loads + 1


def test_the_node_browser_opens_no_window_ui_per_page(kit: Studio) -> None:
    verdict = kit.write(BUTTON, kit.original(BUTTON) + "\n// a page\n")
    assert verdict.status == "ok", verdict.model_dump_json(indent=1)

    async def look() -> list[str]:
        browser = await kit.browser.browser()
        cdp = await browser.new_browser_cdp_session()
        targets = await cdp.send("Target.getTargets")
        await cdp.detach()
        return [str(t["type"]) for t in targets["targetInfos"]]

    types = kit.loop.run(look())
    assert "page" in types
    # no window per browser context with its omnibox popup's renderer
    assert "browser_ui" not in types, types


def test_the_full_chromium_as_the_node_browser_opens_no_omnibox_popup_per_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a node without the headless shell: the full Chromium, its omnibox popups disabled
    monkeypatch.setenv("COMPONENT_STUDIO_RENDER_CHROMIUM", str(render_browser.chromium_path()))
    loop = _Loop()
    browser = RenderBrowser()

    async def look() -> tuple[list[str], str]:
        launched = await browser.browser()
        context = await launched.new_context()
        page = await context.new_page()
        await page.set_content("<p>a page</p>")
        cdp = await launched.new_browser_cdp_session()
        targets = await cdp.send("Target.getTargets")
        await cdp.detach()
        await page.goto("chrome://version")
        command_line = await page.inner_text("#command_line")
        return [str(t["type"]) for t in targets["targetInfos"]], command_line

    try:
        types, command_line = loop.run(look())
    finally:
        loop.run(browser.close())
        loop.close()
    assert "page" in types
    assert "browser_ui" not in types, types
    # one --disable-features: Playwright's list and ours (Chromium reads only the last)
    [switch] = [part for part in command_line.split() if part.startswith("--disable-features=")]
    assert {"WebUIOmniboxPopup", "WebUIOmniboxAimPopup"} <= set(switch.split("=")[1].split(","))
    assert len(switch.split(",")) > 2


def test_a_jsx_syntax_error_is_a_compile_error_with_its_place(kit: Studio) -> None:
    source = kit.original(BUTTON).replace("    </button>\n", "    </buttn>\n")
    line = source.splitlines().index("    </buttn>") + 1
    verdict = kit.write(BUTTON, source)
    assert verdict.status == "compile_error", verdict
    [error] = verdict.compile_errors
    assert error.file is not None and error.file.endswith(BUTTON)
    assert error.line == line
    assert error.column is not None
    assert error.frame and "buttn" in error.frame
    assert set(_by_id(verdict)) >= BUTTON_IDS
    assert all(story.status == "compile_error" for story in verdict.stories)


def test_a_throw_in_render_is_a_runtime_error_with_its_message(kit: Studio) -> None:
    source = kit.original(BUTTON).replace(
        "  return (\n    <button",
        "  throw new Error('boom in render');\n  return (\n    <button",
        1,
    )
    verdict = kit.write(BUTTON, source)
    assert verdict.status == "runtime_error", verdict.model_dump_json(indent=1)
    story = _by_id(verdict)["button--primary"]
    assert story.status == "runtime_error"
    assert "boom in render" in story.error.message
    assert story.error.component_stack and "Button" in story.error.component_stack


def test_a_throw_in_an_effect_is_a_runtime_error(kit: Studio) -> None:
    source = "import { useEffect } from 'react';\n" + kit.original(BUTTON).replace(
        "  return (\n    <button",
        "  useEffect(() => {\n    throw new Error('boom in effect');\n  }, []);\n"
        "  return (\n    <button",
        1,
    )
    verdict = kit.write(BUTTON, source)
    assert verdict.status == "runtime_error", verdict.model_dump_json(indent=1)
    story = _by_id(verdict)["button--secondary"]
    assert "boom in effect" in story.error.message


def test_a_throw_in_what_an_effects_state_update_renders_is_a_runtime_error(
    kit: Studio,
) -> None:
    # the canvas shows the story ready first: the throw comes a render later
    ok = kit.write(BUTTON, kit.original(BUTTON) + "\n")
    assert ok.status == "ok", ok.model_dump_json(indent=1)
    source = "import { useEffect, useState } from 'react';\n" + kit.original(BUTTON).replace(
        "  return (\n    <button",
        "  const [late, setLate] = useState(false);\n"
        "  useEffect(() => {\n    setLate(true);\n  }, []);\n"
        "  if (late) throw new Error('boom a render later');\n"
        "  return (\n    <button",
        1,
    )
    verdict = kit.write(BUTTON, source)
    assert verdict.status == "runtime_error", verdict.model_dump_json(indent=1)
    assert {s.id for s in verdict.stories if s.status == "runtime_error"} >= BUTTON_IDS
    assert "boom a render later" in _by_id(verdict)["button--primary"].error.message


def _route_after_idle(kit: Studio, want: str, seconds: float = 10.0) -> str | None:
    """The page's hash route once it is ``want``, or the last one seen within ``seconds``."""
    deadline = time.monotonic() + seconds
    route = kit.browser.page_route(kit.sandbox.sandbox_id)
    while route != want and time.monotonic() < deadline:
        time.sleep(0.1)
        route = kit.browser.page_route(kit.sandbox.sandbox_id)
    return route


def _spinning(kit: Studio, how: str) -> str:
    """Button.tsx whose button keeps animating: by CSS (``how`` 'css') or by a
    requestAnimationFrame loop ('raf')."""
    if how == "css":
        return kit.original(BUTTON).replace(
            "      disabled={disabled}\n",
            "      disabled={disabled}\n"
            "      style={{ animation: 'uk-spin 1s linear infinite' }}\n",
            1,
        )
    return "import { useEffect } from 'react';\n" + kit.original(BUTTON).replace(
        "  return (\n    <button",
        "  useEffect(() => {\n    let id = 0;\n"
        "    const spin = () => { id = requestAnimationFrame(spin); };\n"
        "    id = requestAnimationFrame(spin);\n    return () => cancelAnimationFrame(id);\n"
        "  }, []);\n  return (\n    <button",
        1,
    )


@pytest.mark.parametrize("how", ["css", "raf"])
def test_an_animated_story_left_on_screen_goes_blank_and_is_shown_again_by_the_next_verdict(
    kit: Studio, how: str
) -> None:
    # frames are unthrottled: an animation left on screen would draw as fast as a core allows
    keyframes = "\n@keyframes uk-spin { to { transform: rotate(360deg); } }\n"
    files = [{"file_path": BUTTON, "content": _spinning(kit, how)}]
    if how == "css":
        files.append({"file_path": STYLES, "content": kit.original(STYLES) + keyframes})
    command = WriteFiles.model_validate({"command": "write_files", "files": files})
    first = kit.edit(command, [f["file_path"] for f in files])
    assert first.status == "ok", first.model_dump_json(indent=1)
    assert _route_after_idle(kit, "/~blank") == "/~blank"
    loads = kit.browser.page_loads(kit.sandbox.sandbox_id)

    # the next verdict shows the edited stories again, warm: no load of the page
    label = "{children ?? label}"
    again = kit.write(BUTTON, _spinning(kit, how).replace(label, f"{label}!"))
    assert again.status == "ok", again.model_dump_json(indent=1)
    assert set(_by_id(again)) >= BUTTON_IDS
    assert kit.browser.page_loads(kit.sandbox.sandbox_id) == loads
    assert _route_after_idle(kit, "/~blank") == "/~blank"


def test_a_still_story_stays_on_screen_between_verdicts(kit: Studio) -> None:
    label = "{children ?? label}"
    verdict = kit.write(BUTTON, kit.original(BUTTON).replace(label, f"{label}!"))
    assert verdict.status == "ok", verdict.model_dump_json(indent=1)
    shown = kit.browser.page_route(kit.sandbox.sandbox_id)
    components = {story.component for story in verdict.stories}
    assert shown and shown.split("/")[1] in components, (shown, components)
    # well past the idle time (_IDLE_BLANK waits 500 ms): nothing draws, nothing changes
    assert _route_after_idle(kit, "/~blank", seconds=2.0) == shown


def test_a_missing_import_is_a_compile_error(kit: Studio) -> None:
    source = "import { Nope } from './Nope';\n" + kit.original(BUTTON).replace(
        "{children ?? label}", "{children ?? label}<Nope />"
    )
    verdict = kit.write(BUTTON, source)
    assert verdict.status == "compile_error", verdict
    [error] = verdict.compile_errors
    assert "./Nope" in error.message
    assert error.file is not None and error.file.endswith(BUTTON)


def test_a_type_only_change_is_ok(kit: Studio) -> None:
    source = kit.original(BUTTON) + "\nexport type ButtonVariant = ButtonProps['variant'];\n"
    verdict = kit.write(BUTTON, source)
    assert verdict.status == "ok", verdict.model_dump_json(indent=1)
    assert set(_by_id(verdict)) >= BUTTON_IDS


def test_a_css_only_change_is_ok(kit: Studio) -> None:
    # a page has rendered (the module graph knows who imports the stylesheet)
    kit.write(BUTTON, kit.original(BUTTON) + "\n")
    verdict = kit.write(STYLES, kit.original(STYLES) + "\n.uk-button { letter-spacing: 1px; }\n")
    assert verdict.status == "ok", verdict.model_dump_json(indent=1)
    # the stylesheet comes in through .storybook/preview: every story may look different
    assert set(_by_id(verdict)) >= BUTTON_IDS


def test_a_story_file_edit_renders_that_files_stories(kit: Studio) -> None:
    source = kit.original(BUTTON_STORIES).replace("'Save changes'", "'Save it'")
    verdict = kit.write(BUTTON_STORIES, source)
    assert verdict.status == "ok", verdict.model_dump_json(indent=1)
    assert set(_by_id(verdict)) == BUTTON_IDS


def test_a_story_that_throws_is_a_runtime_error_of_that_story_only(kit: Studio) -> None:
    source = kit.original(BUTTON_STORIES) + (
        "\nexport const Broken = {\n  render: () => {\n"
        "    throw new Error('broken story');\n  },\n};\n"
    )
    verdict = kit.write(BUTTON_STORIES, source)
    assert verdict.status == "runtime_error", verdict.model_dump_json(indent=1)
    stories = _by_id(verdict)
    assert stories["button--broken"].status == "runtime_error"
    assert "broken story" in stories["button--broken"].error.message
    assert stories["button--primary"].status == "ok"


def test_deleting_an_imported_file_is_a_compile_error_of_its_importer(kit: Studio) -> None:
    kit.write(BUTTON, kit.original(BUTTON) + "\n")  # the graph knows the stories import it
    verdict = kit.edit(DeleteFile(command="delete_file", file_path=BUTTON), [BUTTON])
    assert verdict.status == "compile_error", verdict
    errors = {Path(e.file or "").name: e for e in verdict.compile_errors}
    # every importer: the Button's own stories and those of the Card and Modal, which use it
    assert set(errors) == {"Button.stories.tsx", "Card.stories.tsx", "Modal.stories.tsx"}
    assert 'Failed to resolve import "./Button"' in errors["Button.stories.tsx"].message
    assert errors["Button.stories.tsx"].line == 1
    assert "card--basic" in _by_id(verdict)


def test_a_fix_after_a_break_is_ok_again(kit: Studio) -> None:
    broken = kit.write(BUTTON, kit.original(BUTTON).replace("</button>", "</buttn>"))
    assert broken.status == "compile_error"
    fixed = kit.write(BUTTON, kit.original(BUTTON))
    assert fixed.status == "ok", fixed.model_dump_json(indent=1)
    assert fixed.commit != broken.commit


# -- screenshots ------------------------------------------------------------------------------


def _png_size(picture: bytes) -> tuple[int, int]:
    assert picture[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(picture[16:20], "big"), int.from_bytes(picture[20:24], "big")


def test_a_screenshot_is_the_story_at_the_viewport_and_cached_per_commit(kit: Studio) -> None:
    url = kit.sandbox.renderer_url
    assert url
    head = kit.sandbox.head()
    shoot = kit.browser.screenshot
    picture, cached = kit.loop.run(
        shoot(kit.sandbox.sandbox_id, url, head, "button--primary", parse_viewport("375x667"))
    )
    assert (_png_size(picture), cached) == ((375, 667), False)
    again, cached = kit.loop.run(
        shoot(kit.sandbox.sandbox_id, url, head, "button--primary", parse_viewport("375x667"))
    )
    assert (again, cached) == (picture, True)
    # another story draws something else
    other, _ = kit.loop.run(
        shoot(kit.sandbox.sandbox_id, url, head, "button--large-danger", parse_viewport("375x667"))
    )
    assert other != picture
    # a new commit is a new picture, of what it renders
    kit.write(BUTTON, kit.original(BUTTON).replace("{children ?? label}", "{'changed'}"))
    changed, cached = kit.loop.run(
        shoot(
            kit.sandbox.sandbox_id,
            url,
            kit.sandbox.head(),
            "button--primary",
            parse_viewport("375x667"),
        )
    )
    assert not cached
    assert changed != picture


def _pixels(picture: bytes) -> Image.Image:
    return Image.open(io.BytesIO(picture)).convert("RGBA")


def test_a_screenshot_has_the_pixels_playwright_takes_a_focused_fields_caret_hidden(
    kit: Studio,
) -> None:
    # the field takes the focus: its caret blinks, and no picture may show it
    kit.write(INPUT, kit.original(INPUT).replace("<input", "<input autoFocus", 1))
    url = kit.sandbox.renderer_url
    assert url
    ours, _ = kit.loop.run(
        kit.browser.screenshot(
            kit.sandbox.sandbox_id, url, kit.sandbox.head(), "input--filled", DEFAULT_VIEWPORT
        )
    )
    page = kit.browser._pages[kit.sandbox.sandbox_id].page
    playwrights = kit.loop.run(page.screenshot(type="png"))
    assert ImageChops.difference(_pixels(ours), _pixels(playwrights)).getbbox() is None
    # Whether Chromium draws a focused field's caret depends on which of its windows
    # has the focus (none here): what is asserted is the caret's colour.
    focused = (
        "[document.activeElement.tagName, getComputedStyle(document.activeElement).caretColor]"
    )
    assert kit.loop.run(page.evaluate(focused)) == ["INPUT", "rgba(0, 0, 0, 0)"]


def test_a_screenshot_of_an_unknown_story_is_not_found(kit: Studio) -> None:
    url = kit.sandbox.renderer_url
    assert url
    with pytest.raises(NotFound, match="no story 'button--nope'"):
        kit.loop.run(
            kit.browser.screenshot(
                kit.sandbox.sandbox_id, url, kit.sandbox.head(), "button--nope", DEFAULT_VIEWPORT
            )
        )


@pytest.mark.parametrize("text", ["big", "0x10", "10x", "5000x10", "10 x 10"])
def test_a_bad_viewport_is_refused_saying_the_form(text: str) -> None:
    with pytest.raises(InvalidRequest, match="viewport"):
        parse_viewport(text)


def test_an_edit_no_story_depends_on_is_ok_with_no_stories(kit: Studio) -> None:
    verdict = kit.write("NOTES.md", "# notes\n")
    assert verdict.status == "ok", verdict
    assert verdict.stories == []
    assert verdict.compile_errors == []
    kit.sandbox.on_execute(DeleteFile(command="delete_file", file_path="NOTES.md"))


def _chromium_mains() -> set[int]:
    """This process's Chromium browser processes (not their renderers and helpers)."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "chrom" in child.name() and not any(
                arg.startswith("--type=") for arg in child.cmdline()
            ):
                found.add(child.pid)
    return found


def test_a_crashed_chromium_is_launched_again_by_the_next_verdict(studio: Studio) -> None:
    before = _chromium_mains()
    browser = RenderBrowser()
    try:
        studio.loop.run(browser.browser())
        [main] = _chromium_mains() - before
        url = studio.sandbox.renderer_url
        assert url
        edit = studio.sandbox.on_execute(
            WriteFile(
                command="write_file", file_path=BUTTON, content=studio.original(BUTTON) + "\n"
            )
        )
        assert edit.commit_hash
        first = studio.loop.run(browser.verdict("sb_crash0001", url, edit.commit_hash, [BUTTON]))
        assert first.status == "ok", first
        psutil.Process(main).kill()
        psutil.Process(main).wait(10)
        again = studio.loop.run(browser.verdict("sb_crash0001", url, edit.commit_hash, [BUTTON]))
        assert again.status == "ok", again
        assert browser.launches == 2
        assert len(_chromium_mains() - before) == 1
    finally:
        studio.loop.run(browser.close())
        studio.restore()
