"""Helpers of the template's tests on fixture repositories (tests/fixtures/repos/).

A fixture becomes a real git repository with its own ``npm ci``'d
dependencies, served by the real template; these look at the page it serves.
The ``deps_cache`` and ``serve`` fixtures are in ``conftest.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from playwright.sync_api import ConsoleMessage, Page, Response, expect

from tests.support.gitrepo import repo_from_dir
from tests.support.template_runner import TemplateServer

__all__ = [
    "FIXTURES",
    "RENDER_TIMEOUT_MS",
    "PageWatch",
    "Serve",
    "by_id",
    "canvas",
    "css_colour",
    "expect_landed",
    "make_fixture_repo",
    "open_studio",
    "select",
    "story_summary",
]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "repos"
# First renders compile Tailwind and pre-bundle dependencies on a shared 2-core
# machine: generous, and only a ceiling against hanging.
RENDER_TIMEOUT_MS = 30_000


def make_fixture_repo(kind: str, tmp_path: Path) -> Path:
    """A fresh git repository holding a copy of ``tests/fixtures/repos/<kind>``."""
    return repo_from_dir(FIXTURES / kind, tmp_path / kind)


def by_id(catalog: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in catalog["components"]}


def story_summary(component: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(s["exportName"], s["args"]) for s in component["stories"]]


# -- watching the page -----------------------------------------------------------------------


@dataclass
class PageWatch:
    """What a page did that a healthy studio page never does."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    bad_responses: list[str] = field(default_factory=list)
    loads: int = 0
    # every URL the page fetched, to tell what it loaded
    urls: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("response", self._on_response)
        # "load" fires once per document: a second one is a full reload
        # (Vite's re-optimisation answers 504 and reloads the page).
        page.on("load", self._on_load)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} @ {message.location}")

    def _on_response(self, response: Response) -> None:
        self.urls.append(response.url)
        if response.status >= 400:
            self.bad_responses.append(f"{response.status} {response.url}")

    def _on_load(self, _page: Page) -> None:
        self.loads += 1

    def assert_clean(self, page: Page) -> None:
        assert self.console_errors == []
        assert self.page_errors == []
        assert self.bad_responses == []
        assert self.loads == 1, f"the page loaded {self.loads} times (a full reload happened)"
        assert page.evaluate("window.__fixtureMarker") == "first load"


def expect_landed(page: Page, timeout_ms: float) -> None:
    """A page opened with no component in its link shows the first story and names it."""
    canvas = page.locator("[data-testid=studio-canvas]")
    shown = re.compile(r"^(ready|error)$")
    expect(canvas).to_have_attribute("data-state", shown, timeout=timeout_ms)
    component = canvas.get_attribute("data-component")
    assert component and f"#/{quote(component, safe='')}/" in page.url, page.url


def open_studio(page: Page, server: TemplateServer) -> PageWatch:
    """Load the studio page once, watching it; components are then chosen in the sidebar."""
    watch = PageWatch()
    watch.attach(page)
    page.goto(server.url)
    expect_landed(page, RENDER_TIMEOUT_MS)
    # survives everything but a full reload
    page.evaluate("window.__fixtureMarker = 'first load'")
    return watch


def select(page: Page, component: str, story: str | None = None) -> None:
    """Click a component (or one of its stories) in the sidebar and wait for it to render."""
    target = f"story-{component}-{story}" if story else f"component-{component}"
    page.locator(f"[data-testid='{target}']").click()
    canvas = page.locator("[data-testid=studio-canvas]")
    expect(canvas).to_have_attribute("data-component", component)
    expect(canvas).to_have_attribute("data-state", "ready", timeout=RENDER_TIMEOUT_MS)
    expect(canvas.locator("[data-testid=studio-error]")).to_have_count(0)


def css_colour(page: Page, value: str) -> str:
    """How this browser computes ``value`` as a colour (``rgb(...)``), for exact comparisons."""
    colour: str = page.evaluate(
        """(value) => {
            const probe = document.createElement('div');
            probe.style.color = value;
            document.body.appendChild(probe);
            const computed = getComputedStyle(probe).color;
            probe.remove();
            return computed;
        }""",
        value,
    )
    return colour


def canvas(page: Page) -> Any:
    return page.locator("[data-testid=studio-canvas]")


Serve = Callable[..., TemplateServer]
