"""The studio app's prebuilt shell: built once per template with real Node and rolldown."""

from __future__ import annotations

import json
from pathlib import Path

from studio.install.cache import ensure_node_modules
from studio.vite import STUDIO_DIR, generate_studio_app
from studio.vite.deps import template_fingerprint
from studio.vite.server import _TEMPLATE_IGNORE
from studio.vite.shell import (
    SHELL_FILE,
    SHELL_MAP,
    SHELL_ROOT,
    ensure_shell,
    install_shell,
    shell_path,
)
from tests.studio.test_vite import TEMPLATE, UI_KIT, install_cache
from tests.support.gitrepo import repo_from_dir

__all__ = ["install_cache"]  # the session fixture, imported for the tests below


def _studio(tmp_path: Path, cache: Path, name: str, **kwargs: object) -> Path:
    repo = repo_from_dir(UI_KIT, tmp_path / name)
    generate_studio_app(repo, template_dir=TEMPLATE, cache_root=cache, port=5173, **kwargs)  # type: ignore[arg-type]
    return repo / STUDIO_DIR


def test_generate_links_the_shell_built_once_for_the_template(tmp_path, install_cache):
    first = _studio(tmp_path, install_cache, "one")
    shell = first / SHELL_FILE
    assert shell.is_file()
    # kept beside the template's node_modules, under the template's fingerprint
    modules = ensure_node_modules(TEMPLATE, install_cache)
    [kept] = [path for path in (modules.parent / SHELL_ROOT).glob("*/*") if path.samefile(shell)]
    assert kept.parent.name == template_fingerprint(TEMPLATE, _TEMPLATE_IGNORE)
    built_at = kept.stat().st_mtime_ns

    second = _studio(tmp_path, install_cache, "two")
    # the same file, not a second build
    assert (second / SHELL_FILE).samefile(kept)
    assert kept.stat().st_mtime_ns == built_at

    code = shell.read_text()
    # React and the config stay imports that Vite resolves: one React for app and components
    assert 'from "react"' in code and 'from "react-dom/client"' in code
    assert 'from "virtual:studio/config"' in code
    assert 'import "./studio.css"' in code
    # the catalog-changed event and the retry after a hot update need the hot context
    assert "import.meta.hot" in code
    assert "function App(" in code
    # with its source map, linked beside it: Vite serves the real map, the devtools the sources
    assert code.rstrip().endswith("//# sourceMappingURL=main.prebuilt.js.map")
    source_map = json.loads((first / SHELL_MAP).read_text())
    assert "App.tsx" in source_map["sources"] and "sourcesContent" in source_map
    assert (second / SHELL_MAP).samefile(first / SHELL_MAP)


def test_without_prebuilt_shell_the_app_runs_from_source(tmp_path, install_cache):
    studio = _studio(tmp_path, install_cache, "source", prebuilt_shell=False)
    assert not (studio / SHELL_FILE).exists()
    assert (studio / "src" / "main.tsx").is_file()


def test_a_failing_build_gives_no_shell_and_keeps_nothing(tmp_path, install_cache):
    studio = _studio(tmp_path, install_cache, "broken", prebuilt_shell=False)
    (studio / "src" / "App.tsx").write_text("export function App( {\n")
    modules = tmp_path / "cache-entry" / "node_modules"
    modules.mkdir(parents=True)
    assert ensure_shell(studio, modules, "f" * 64) is None
    assert not shell_path(modules, "f" * 64).exists()
    # no temporary file left behind either: only the build lock
    root = modules.parent / SHELL_ROOT
    assert [path.name for path in root.iterdir()] == ["f" * 64 + ".lock"]


def test_a_missing_node_gives_no_shell(tmp_path, install_cache):
    studio = _studio(tmp_path, install_cache, "no-node", prebuilt_shell=False)
    modules = tmp_path / "cache-entry" / "node_modules"
    modules.mkdir(parents=True)
    assert ensure_shell(studio, modules, "e" * 64, node=str(tmp_path / "no-node")) is None


def test_install_shell_replaces_an_older_one(tmp_path):
    studio = tmp_path / STUDIO_DIR
    (studio / "src").mkdir(parents=True)
    (studio / SHELL_FILE).write_text("old")
    (studio / SHELL_MAP).write_text("old map")
    built = tmp_path / "main.prebuilt.js"
    built.write_text("new")
    built.with_name("main.prebuilt.js.map").write_text("new map")
    install_shell(studio, built)
    assert (studio / SHELL_FILE).read_text() == "new"
    assert (studio / SHELL_MAP).read_text() == "new map"
