"""Vite's pre-bundled dependencies shared by sandboxes: the seed's name; real Vite using it."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page

from studio.errors import InvalidConfig
from studio.install.cache import ensure_node_modules
from studio.paths import atomic_write
from studio.ports import PortAllocator
from studio.vite import ViteServer, generate_studio_app, read_studio_config, studio_config
from studio.vite.deps import SEED_ROOT, deps_seed_dir, seed_key, template_fingerprint
from tests.studio.test_vite import HOST, START_TIMEOUT, TEMPLATE, UI_KIT, _free_base
from tests.support.browser import hot_reload_button
from tests.support.gitrepo import repo_from_dir

DEPS = Path(".studio") / ".vite-cache" / "deps"
METADATA = "_metadata.json"
SEED_INFO = "studio-seed.json"
PUBLISH_TIMEOUT = 60.0

# --- the seed's name -----------------------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_template_fingerprint_covers_names_and_contents_but_not_ignored_names(tmp_path):
    tpl = _tree(tmp_path / "t", {"vite.config.mjs": "a", "plugin/p.mjs": "b"})
    first = template_fingerprint(tpl, ignore=("node_modules",))
    _tree(tpl, {"node_modules/x/index.js": "ignored"})
    assert template_fingerprint(tpl, ignore=("node_modules",)) == first
    _tree(tpl, {"plugin/p.mjs": "changed"})
    assert template_fingerprint(tpl, ignore=("node_modules",)) != first
    _tree(tpl, {"plugin/p.mjs": "b"})
    (tpl / "plugin" / "p.mjs").rename(tpl / "plugin" / "q.mjs")
    assert template_fingerprint(tpl, ignore=("node_modules",)) != first


def test_seed_key_separates_repository_installs():
    assert seed_key("t", None) == seed_key("t", None)
    keys = {seed_key("t", None), seed_key("t", "k1"), seed_key("t", "k2"), seed_key("u", None)}
    assert len(keys) == 4


def test_deps_seed_dir_follows_the_repository_install(tmp_path):
    tpl = _tree(tmp_path / "t", {"vite.config.mjs": "a"})
    modules = tmp_path / "cache" / "entry" / "node_modules"
    repo = tmp_path / "repo"
    repo.mkdir()

    def seed(install: str | None = None) -> Path | None:
        return deps_seed_dir(repo, template_dir=tpl, template_modules=modules, repo_install=install)

    bare = seed()
    assert bare is not None and bare.parent == modules.parent / SEED_ROOT
    first = seed("entry-1")
    assert first not in (None, bare)
    assert seed("entry-2") not in (None, bare, first)
    # node_modules that no install of ours made: nothing says what a seed would hold
    (repo / "node_modules").mkdir()
    assert seed() is None
    assert seed("entry-1") == first


def test_studio_config_carries_an_absolute_seed_dir(tmp_path):
    assert studio_config(repo_root=tmp_path, port=5173)["depsSeedDir"] is None
    config = studio_config(repo_root=tmp_path, port=5173, deps_seed_dir=tmp_path / "seed")
    assert config["depsSeedDir"] == str(tmp_path / "seed")
    with pytest.raises(InvalidConfig):
        studio_config(repo_root=tmp_path, port=5173, deps_seed_dir=Path("relative"))


# --- real Vite -----------------------------------------------------------------------------


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """The studio template plus a file of this test's own: a seed name no other test uses."""
    copy = tmp_path / "template"
    shutil.copytree(TEMPLATE, copy, ignore=shutil.ignore_patterns("node_modules", ".vite-cache"))
    (copy / "test-marker.txt").write_text(str(tmp_path))
    return copy


@pytest.fixture
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's install cache (test_vite's): npm ci of the template once."""
    cache = tmp_path_factory.getbasetemp() / "install-cache"
    ensure_node_modules(TEMPLATE, cache)
    return cache


@pytest.fixture
def start_sandbox(
    tmp_path: Path, template: Path, cache_root: Path
) -> Iterator[Callable[..., tuple[Path, ViteServer]]]:
    """Starts Vite on a fresh copy of ui-kit with ``template``; stops every one at the end."""
    ports = PortAllocator(tmp_path / "locks", host=HOST, base=_free_base(8), count=8)
    servers: list[ViteServer] = []

    def start(name: str, prepare: Callable[[Path], None] | None = None) -> tuple[Path, ViteServer]:
        repo = repo_from_dir(UI_KIT, tmp_path / name)
        if prepare is not None:
            prepare(repo)
        generate_studio_app(
            repo,
            template_dir=template,
            cache_root=cache_root,
            port=ports.allocate(name),
            sandbox_id=name,
        )
        server = ViteServer(repo, ports=ports)
        servers.append(server)
        server.start(START_TIMEOUT)
        return repo, server

    yield start
    for server in servers:
        server.close()


def _seed_of(repo: Path) -> Path:
    seed = read_studio_config(repo / ".studio")["depsSeedDir"]
    assert isinstance(seed, str)
    return Path(seed)


def _wait_for(path: Path, timeout: float = PUBLISH_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout}s"
        time.sleep(0.1)


def _without_hashes(optimized: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    return {
        dep: {key: value for key, value in entry.items() if key != "fileHash"}
        for dep, entry in optimized.items()
    }


def _load_app(server: ViteServer) -> None:
    """What a first page load asks of Vite: the app entry, which imports the optimised React."""
    for path in ("", "src/main.tsx", "src/App.tsx"):
        assert httpx.get(server.url + path, timeout=60).status_code == 200


def test_the_first_sandbox_publishes_its_deps_and_the_next_starts_with_them(start_sandbox):
    first, first_server = start_sandbox("first")
    seed = _seed_of(first)
    _load_app(first_server)
    _wait_for(seed / SEED_INFO)
    published = json.loads((seed / METADATA).read_text())
    assert {"react", "react-dom/client", "react/jsx-dev-runtime"} <= set(published["optimized"])
    # published without source maps; with the imports that restamp Vite's file hashes
    assert not list(seed.glob("*.map"))
    client_bundle = seed / published["optimized"]["react-dom/client"]["file"]
    assert "sourceMappingURL" not in client_bundle.read_text()
    imports = json.loads((seed / SEED_INFO).read_text())["imports"]
    assert set(imports) == set(published["optimized"])

    second, second_server = start_sandbox("second")
    assert _seed_of(second) == seed
    deps = second / DEPS
    metadata = json.loads((deps / METADATA).read_text())
    # stamped with the second Vite's own config hash (its root differs), the bundles the seed's
    assert metadata["configHash"] != published["configHash"]
    assert _without_hashes(metadata["optimized"]) == _without_hashes(published["optimized"])
    bundle = published["optimized"]["react-dom/client"]["file"]
    assert (deps / bundle).stat().st_ino == (seed / bundle).stat().st_ino
    _load_app(second_server)
    # Vite kept the copy: a cache it rejected would have been removed and rebuilt
    assert (deps / bundle).stat().st_ino == (seed / bundle).stat().st_ino
    assert json.loads((deps / METADATA).read_text())["configHash"] == metadata["configHash"]
    assert not any("Re-optimizing" in line for line in second_server.output())


def _with_own_dependency(repo: Path) -> None:
    """A lockfile, and installed in node_modules (untracked) a package the seed does not hold."""
    (repo / "package-lock.json").write_text(json.dumps({"name": "ui-kit", "lockfileVersion": 3}))
    package = repo / "node_modules" / "tiny-dep"
    package.mkdir(parents=True)
    (package / "package.json").write_text(
        json.dumps({"name": "tiny-dep", "version": "1.0.0", "type": "module", "main": "index.js"})
    )
    (package / "index.js").write_text("globalThis.tinyDep = 'loaded';\n")


def test_a_dependency_the_seed_lacks_is_optimised_without_a_full_reload(start_sandbox, tmp_path):
    first, first_server = start_sandbox("first", prepare=_with_own_dependency)
    seed = _seed_of(first)
    _load_app(first_server)
    _wait_for(seed / SEED_INFO)

    def import_it(repo: Path) -> None:
        _with_own_dependency(repo)
        source = repo / "src" / "components" / "Button" / "Button.tsx"
        source.write_text("import 'tiny-dep';\n" + source.read_text())

    second, server = start_sandbox("second", prepare=import_it)
    assert _seed_of(second) == seed
    _load_app(server)
    button = second / "src" / "components" / "Button" / "Button.tsx"
    assert httpx.get(f"{server.url}@fs{button}", timeout=60).status_code == 200
    deadline = time.monotonic() + PUBLISH_TIMEOUT
    while not any("optimized: tiny-dep" in line for line in server.output()):
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)
    # the seeded entries kept their file hashes: only the new one was added
    assert not any("reloading" in line for line in server.output()), server.output()


def test_a_seed_of_another_vite_mode_is_not_used(start_sandbox, template, cache_root, tmp_path):
    first, first_server = start_sandbox("first")
    seed = _seed_of(first)
    _load_app(first_server)
    _wait_for(seed / SEED_INFO)
    info = json.loads((seed / SEED_INFO).read_text())
    (seed / SEED_INFO).write_text(json.dumps({**info, "define": "production"}))

    second, second_server = start_sandbox("second")
    _load_app(second_server)
    deps = second / DEPS
    _wait_for(deps / METADATA)
    bundle = json.loads((deps / METADATA).read_text())["optimized"]["react"]["file"]
    assert (deps / bundle).stat().st_ino != (seed / bundle).stat().st_ino


@pytest.mark.browser
def test_a_sandbox_on_the_seed_renders_its_own_components_and_hot_reloads(
    start_sandbox, browser_page: Page
):
    first, first_server = start_sandbox("first")
    _load_app(first_server)
    _wait_for(_seed_of(first) / SEED_INFO)
    # the first sandbox's Button says something else: the second must show its own
    source = first / "src" / "components" / "Button" / "Button.tsx"
    atomic_write(source, source.read_text().replace("'Click me'", "'First sandbox'"))

    second, server = start_sandbox("second")
    page = browser_page
    hot_reload_button(page, server.url, second, "Edited on the seed")
