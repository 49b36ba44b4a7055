"""The create path's speed-ups switched off in a sandbox: it works without them (real Vite)."""

# The fixtures are imported from test_sandbox_fixtures, then requested by name.
# ruff: noqa: F811

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page

from studio.config import StudioSettings
from studio.models import RepositorySource
from studio.sandbox import fetch_components, prepare_repository
from studio.vite import SHELL_FILE, read_studio_config
from tests.studio.test_sandbox_fixtures import (  # noqa: F401 (fixtures)
    HOST,
    SandboxFactory,
    install_cache,
    make_sandbox,
    origin,
    settings,
)
from tests.support.browser import hot_reload_button

DEPS = Path(".studio") / ".vite-cache" / "deps"
OPTIMIZE_TIMEOUT = 60.0


def test_with_the_shell_off_the_page_is_built_from_source(
    settings: StudioSettings, make_sandbox: SandboxFactory, browser_page: Page
) -> None:
    sandbox = make_sandbox(node_settings=settings.model_copy(update={"prebuilt_shell": False}))
    sandbox.on_setup()
    assert not (sandbox.worktree_path / ".studio" / SHELL_FILE).exists()
    requested: list[str] = []
    browser_page.on("request", lambda request: requested.append(request.url))
    url = sandbox.renderer_url
    assert url is not None
    hot_reload_button(
        browser_page, url.replace("localhost", HOST), sandbox.worktree_path, "From source"
    )
    assert any(u.endswith("/src/main.tsx") for u in requested), requested
    assert not any("prebuilt" in u for u in requested), requested


def test_with_the_deps_seed_off_vite_optimises_in_the_sandbox_cache(
    settings: StudioSettings, origin: Path, make_sandbox: SandboxFactory
) -> None:
    # A seed exists on the node (its preparation made it): the sandbox could have used it.
    prepare_repository(
        settings, RepositorySource(name="ui-kit", source=str(origin)), settings.default_config()
    )
    sandbox = make_sandbox(node_settings=settings.model_copy(update={"vite_deps_seed": False}))
    sandbox.on_setup()
    assert read_studio_config(sandbox.worktree_path / ".studio")["depsSeedDir"] is None
    metadata = sandbox.worktree_path / DEPS / "_metadata.json"
    deadline = time.monotonic() + OPTIMIZE_TIMEOUT
    while not metadata.is_file():
        assert time.monotonic() < deadline, "Vite did not optimise the dependencies"
        time.sleep(0.1)
    optimized = json.loads(metadata.read_text())["optimized"]
    bundle = sandbox.worktree_path / DEPS / optimized["react-dom/client"]["file"]
    # Its own bundle, written by its own Vite: no link into a seed.
    assert bundle.stat().st_nlink == 1
    # And the sandbox works: its page and its catalog.
    port = sandbox.port
    assert port is not None
    assert httpx.get(f"http://{HOST}:{port}/", timeout=30).status_code == 200
    catalog = fetch_components(HOST, port)
    assert any(c.get("name") == "Button" for c in catalog["components"]), catalog
