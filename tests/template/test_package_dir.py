"""A package inside a pnpm monorepo (``package_dir``), rendered in Chromium.

``tests/fixtures/repos/pnpm-monorepo`` becomes a real git repository; the
studio app is generated the way a sandbox generates it
(:func:`studio.vite.generate_studio_app` with ``package_dir="packages/ui"``:
``pnpm install`` at the workspace root through the install cache, ``.studio/``
in the package) and served by the real template (Vite 8) from the package
directory. ``@mono/ui``'s Badge imports colours, class names and a ``Swatch``
component from the sibling workspace package ``@mono/tokens`` (a pnpm
``workspace:*`` link into ``packages/tokens/src``, outside Vite's root).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from studio.install.cache import ensure_node_modules
from studio.ports import PortAllocator
from studio.vite import STUDIO_DIR, ViteServer, generate_studio_app, read_studio_config
from tests.actors.conftest import HOST, TEMPLATE, free_base
from tests.support.browser import save_screenshot
from tests.template.pages import by_id, canvas, make_fixture_repo, open_studio, select

pytestmark = pytest.mark.slow

PACKAGE_DIR = "packages/ui"
# A first start installs the workspace with pnpm and pre-bundles React on a loaded machine.
START_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def install_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's install cache (the other tests'): the template's npm ci once."""
    cache = tmp_path_factory.getbasetemp() / "install-cache"
    ensure_node_modules(TEMPLATE, cache)
    return cache


@pytest.fixture(scope="module")
def monorepo_server(
    tmp_path_factory: pytest.TempPathFactory, install_cache: Path
) -> Iterator[ViteServer]:
    """The fixture's UI package served by Vite as a sandbox serves it; stopped after."""
    base = tmp_path_factory.mktemp("pnpm-monorepo")
    repo = make_fixture_repo("pnpm-monorepo", base)
    ports = PortAllocator(base / "locks", host=HOST, base=free_base(8), count=8)
    generate_studio_app(
        repo,
        template_dir=TEMPLATE,
        cache_root=install_cache,
        port=ports.allocate("monorepo"),
        sandbox_id="monorepo",
        package_dir=PACKAGE_DIR,
    )
    server = ViteServer(repo / PACKAGE_DIR, ports=ports)
    try:
        server.start(START_TIMEOUT)
        yield server
    finally:
        server.close()


def test_the_studio_app_lives_in_the_package(monorepo_server: ViteServer) -> None:
    package = monorepo_server.worktree
    repo = package.parents[1]
    config = read_studio_config(package / STUDIO_DIR)
    assert (config["repoRoot"], config["workspaceRoot"]) == (str(package), str(repo))
    assert not (repo / STUDIO_DIR).exists()
    # pnpm's layout: the root's store and each package's own links (the sibling's a symlink).
    assert (repo / "node_modules" / ".pnpm").is_dir()
    tokens = package / "node_modules" / "@mono" / "tokens"
    assert tokens.is_symlink() and tokens.resolve() == (repo / "packages" / "tokens").resolve()


def test_the_catalog_is_the_packages_own(monorepo_server: ViteServer) -> None:
    reply = httpx.get(f"{monorepo_server.url}__studio/components.json", timeout=30)
    reply.raise_for_status()
    components = by_id(reply.json())
    # Only the package's components: the sibling's Swatch is a dependency, not the catalog's.
    assert set(components) == {"Badge"}
    badge = components["Badge"]
    assert badge["module"] == "src/components/Badge/Badge.tsx"
    assert badge["storiesModule"] == "src/components/Badge/Badge.stories.tsx"
    assert [story["exportName"] for story in badge["stories"]] == ["Brand", "OutlinedWarning"]
    assert json.dumps(badge["stories"][1]["args"], sort_keys=True) == json.dumps(
        {"label": "Deprecated", "outlined": True, "tone": "warning"}, sort_keys=True
    )


@pytest.mark.browser
def test_the_package_renders_with_its_sibling_workspace_package(
    monorepo_server: ViteServer, browser_page: Page
) -> None:
    page = browser_page
    watch = open_studio(page, monorepo_server)

    select(page, "Badge", "Brand")
    badge = canvas(page).locator("span.badge")
    expect(badge).to_have_text("Shipped")
    # The class names come from clsx, called by @mono/tokens (installed only for that package).
    expect(badge).to_have_class("badge badge-brand")
    # colors.brand of @mono/tokens
    expect(badge).to_have_css("background-color", "rgb(14, 116, 144)")
    expect(badge).to_have_css("color", "rgb(255, 255, 255)")
    # The sibling package's own component, rendered inside the UI package's story.
    swatch = badge.get_by_test_id("swatch")
    expect(swatch).to_have_css("background-color", "rgb(14, 116, 144)")
    expect(swatch).to_have_css("width", "8px")
    expect(swatch).to_have_css("border-radius", "50%")
    save_screenshot(page, "package-dir-pnpm-monorepo")

    select(page, "Badge", "OutlinedWarning")
    outlined = canvas(page).locator("span.badge")
    expect(outlined).to_have_text("Deprecated")
    expect(outlined).to_have_class(re.compile(r"\bbadge-outlined\b"))
    expect(outlined).to_have_css("border-top-color", "rgb(180, 83, 9)")
    expect(outlined).to_have_css("color", "rgb(180, 83, 9)")
    expect(outlined.get_by_test_id("swatch")).to_have_css("background-color", "rgb(180, 83, 9)")

    watch.assert_clean(page)
    # The sibling's sources were served from the worktree, outside Vite's root (the package).
    assert any("/packages/tokens/src/Swatch.tsx" in url for url in watch.urls)
