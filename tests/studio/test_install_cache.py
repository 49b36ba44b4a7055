"""The install cache: real ``npm ci`` once per lockfile, hard-linked copies, clear failures."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.errors import ProcessStartError
from studio.install.cache import (
    InstallOptions,
    cache_key,
    cache_package_json,
    ensure_install,
    ensure_node_modules,
    install_inputs,
    install_key,
    link_node_modules,
    node_major_version,
    npm_output_summary,
    parse_node_major,
)
from studio.install.managers import install_command

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "studio-template"
REAL_NPM = shutil.which("npm") or "npm"


def _package(path: Path, name: str = "pkg", version: str = "1.0.0") -> Path:
    """A package.json + lockfile without dependencies (npm ci needs no network)."""
    path.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": name,
        "version": version,
        "private": True,
        "scripts": {"postinstall": "exit 7"},
    }
    lock = {
        "name": name,
        "version": version,
        "lockfileVersion": 3,
        "requires": True,
        "packages": {"": {"name": name, "version": version, "hasInstallScript": True}},
    }
    (path / "package.json").write_text(json.dumps(manifest))
    (path / "package-lock.json").write_text(json.dumps(lock))
    return path


@pytest.fixture
def counting_npm(tmp_path: Path) -> tuple[str, Path]:
    """A real npm behind a wrapper that appends a line to a marker per run."""
    marker = tmp_path / "npm-runs"
    wrapper = tmp_path / "bin" / "npm"
    wrapper.parent.mkdir()
    # The sleep widens the window in which a second installer could race in.
    wrapper.write_text(f'#!/bin/sh\necho "$$" >> "{marker}"\nsleep 0.3\nexec "{REAL_NPM}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper), marker


def _npm_ci_install(
    package: Path, cache: Path, *, npm: str = "npm", timeout: float = 600.0
) -> Path:
    """``ensure_node_modules`` with npm ci always run (the store would link these lockfiles)."""
    options = InstallOptions(npm=npm, link_npm_from_store=False)
    return ensure_install(package, cache, options, timeout=timeout).root_modules


def _runs(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


@pytest.fixture(scope="session")
def template_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template's node_modules from the session's shared install cache."""
    cache = tmp_path_factory.getbasetemp() / "install-cache"
    return ensure_node_modules(TEMPLATE, cache)


# --- pure decisions ---------------------------------------------------------


@pytest.mark.parametrize(("text", "major"), [("v20.20.2\n", "20"), ("22.1.0", "22")])
def test_parse_node_major(text: str, major: str):
    assert parse_node_major(text) == major


def test_parse_node_major_rejects_garbage():
    with pytest.raises(ValueError, match="not a Node version"):
        parse_node_major("command not found")


def test_cache_key_depends_on_lockfile_node_major_and_tool():
    key = cache_key(b"lock-a", "20")
    assert key == cache_key(b"lock-a", "20")
    assert key != cache_key(b"lock-b", "20")
    assert key != cache_key(b"lock-a", "22")
    assert key != cache_key(b"lock-a", "20", "npm ci --ignore-scripts")
    assert len(key) == 32 and all(c in "0123456789abcdef" for c in key)


def test_cache_package_json_drops_only_scripts():
    manifest = {"name": "x", "scripts": {"prepare": "husky"}, "dependencies": {"a": "1"}}
    assert cache_package_json(manifest) == {"name": "x", "dependencies": {"a": "1"}}
    assert "scripts" in manifest


def test_npm_output_summary_drops_the_usage_text_and_keeps_a_tail():
    output = "\n".join(
        [
            "npm error code EUSAGE",
            "npm error Missing: left-pad@1.3.0 from lock file",
            "npm error Usage:",
            "npm error npm ci",
            "npm error   --omit",
            'npm error Run "npm help ci" for more info',
            "npm error A complete log of this run can be found in: /x.log",
        ]
    )
    assert npm_output_summary(output) == [
        "npm error code EUSAGE",
        "npm error Missing: left-pad@1.3.0 from lock file",
        "npm error A complete log of this run can be found in: /x.log",
    ]
    assert npm_output_summary("a\nb\nc", lines=2) == ["b", "c"]


def test_node_major_version_matches_node():
    out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    assert node_major_version() == out.stdout.strip().lstrip("v").split(".")[0]


def test_node_major_version_without_node_is_a_clear_error(tmp_path):
    with pytest.raises(ProcessStartError, match=r"install Node\.js"):
        node_major_version(str(tmp_path / "no-node"))


# --- ensure_node_modules ------------------------------------------------------


def test_ensure_installs_once_and_reuses_the_entry(tmp_path, counting_npm):
    npm, marker = counting_npm
    pkg = _package(tmp_path / "pkg")
    cache = tmp_path / "cache"
    modules = _npm_ci_install(pkg, cache, npm=npm)
    assert modules.is_dir() and modules.name == "node_modules"
    assert modules.parent.parent == cache
    assert _npm_ci_install(pkg, cache, npm=npm) == modules
    assert _runs(marker) == 1
    # The package's own scripts were stripped (its postinstall exits 7).
    assert "scripts" not in json.loads((modules.parent / "package.json").read_text())
    # Nothing half-built is left beside the entry.
    assert not list(cache.glob(".build-*"))


def test_a_changed_lockfile_gets_its_own_entry(tmp_path, counting_npm):
    npm, marker = counting_npm
    cache = tmp_path / "cache"
    first = _npm_ci_install(_package(tmp_path / "a", version="1.0.0"), cache, npm=npm)
    second = _npm_ci_install(_package(tmp_path / "b", version="2.0.0"), cache, npm=npm)
    assert first != second
    assert _runs(marker) == 2


def test_concurrent_threads_run_npm_ci_once(tmp_path, counting_npm):
    npm, marker = counting_npm
    pkg = _package(tmp_path / "pkg")
    cache = tmp_path / "cache"
    results: list[Path] = []
    errors: list[BaseException] = []

    def ensure() -> None:
        try:
            results.append(_npm_ci_install(pkg, cache, npm=npm))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ensure) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(results) == 4 and len(set(results)) == 1
    assert _runs(marker) == 1


_ENSURE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from studio.install.cache import InstallOptions, ensure_install
    options = InstallOptions(npm=sys.argv[3], link_npm_from_store=False)
    print(ensure_install(Path(sys.argv[1]), Path(sys.argv[2]), options).root_modules)
    """
)


def test_concurrent_processes_run_npm_ci_once(tmp_path, counting_npm):
    npm, marker = counting_npm
    pkg = _package(tmp_path / "pkg")
    cache = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ENSURE, str(pkg), str(cache), npm],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    assert len({out.strip() for out, _ in outputs}) == 1
    assert _runs(marker) == 1


def test_a_failing_npm_ci_raises_with_its_output_and_leaves_no_entry(tmp_path):
    pkg = _package(tmp_path / "pkg")
    # A dependency the registry does not know: npm ci fails on it (a lockfile that is
    # merely behind package.json is installed unfrozen: tests/studio/test_install_managers.py).
    missing = "component-studio-no-such-package-7f3a"
    manifest = json.loads((pkg / "package.json").read_text())
    manifest["dependencies"] = {missing: "1.0.0"}
    (pkg / "package.json").write_text(json.dumps(manifest))
    cache = tmp_path / "cache"
    with pytest.raises(ProcessStartError) as info:
        ensure_node_modules(pkg, cache)
    assert "npm ci" in info.value.message and "failed with exit code" in info.value.message
    assert any(missing in line for line in info.value.details["output"])
    assert info.value.details["returncode"] != 0
    assert [p.name for p in cache.iterdir()] == [".locks"]


def test_a_hanging_npm_is_killed_with_its_children_after_the_timeout(tmp_path):
    hang = tmp_path / "npm"
    hang.write_text("#!/bin/sh\necho installing\nsleep 600\n")
    hang.chmod(0o755)
    with pytest.raises(ProcessStartError, match="did not finish") as info:
        _npm_ci_install(_package(tmp_path / "pkg"), tmp_path / "cache", npm=str(hang), timeout=0.5)
    assert info.value.details["output"] == ["installing"]


def test_missing_npm_or_lockfile_are_clear_errors(tmp_path):
    pkg = _package(tmp_path / "pkg")
    with pytest.raises(ProcessStartError, match="cannot run"):
        _npm_ci_install(pkg, tmp_path / "cache", npm=str(tmp_path / "no-npm"))
    (pkg / "package-lock.json").unlink()
    with pytest.raises(ProcessStartError, match=r"package-lock\.json, pnpm-lock\.yaml"):
        ensure_node_modules(pkg, tmp_path / "cache")


def test_a_crashed_build_is_swept_by_the_next_one(tmp_path):
    pkg = _package(tmp_path / "pkg")
    cache = tmp_path / "cache"
    key = install_key(install_inputs(pkg), install_command(pkg))
    stale = cache / f".build-{key}-crashed"
    (stale / "node_modules").mkdir(parents=True)
    modules = ensure_node_modules(pkg, cache)
    assert modules == cache / key / "node_modules"
    assert not stale.exists()


# --- link_node_modules ----------------------------------------------------------


def test_link_shares_inodes_with_the_cache(tmp_path, template_modules):
    target = tmp_path / "app" / "node_modules"
    link_node_modules(template_modules, target)
    cached = template_modules / "vite" / "package.json"
    linked = target / "vite" / "package.json"
    assert linked.stat().st_ino == cached.stat().st_ino
    assert (target / "vite" / "bin" / "vite.js").is_file()
    # npm's .bin entries stay symlinks.
    assert (target / ".bin" / "vite").is_symlink()
    assert not list(target.parent.glob(".node_modules.*"))


def test_link_replaces_an_existing_target(tmp_path, template_modules):
    target = tmp_path / "app" / "node_modules"
    (target / "stale").mkdir(parents=True)
    link_node_modules(template_modules, target)
    assert not (target / "stale").exists()
    assert (target / "react").is_dir()
    assert sorted(p.name for p in target.parent.iterdir()) == ["node_modules"]


def test_link_replaces_a_symlinked_target(tmp_path, template_modules):
    target = tmp_path / "node_modules"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target.symlink_to(elsewhere)
    link_node_modules(template_modules, target)
    assert not target.is_symlink() and (target / "react").is_dir()
    assert elsewhere.is_dir()


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A directory on another filesystem (tmpfs), where hard links cannot reach."""
    root = Path("/dev/shm")
    if not root.is_dir() or os.stat(root).st_dev == os.stat(ROOT).st_dev:
        pytest.skip("no second filesystem to copy across")
    path = root / f"studio-test-{uuid.uuid4().hex}"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_link_falls_back_to_copying_across_filesystems(tmp_path, shm_dir):
    cached = shm_dir / "node_modules"
    (cached / "dep").mkdir(parents=True)
    (cached / "dep" / "index.js").write_text("module.exports = 1;\n")
    target = tmp_path / "node_modules"
    link_node_modules(cached, target)
    assert (target / "dep" / "index.js").read_text() == "module.exports = 1;\n"
    copied, original = target / "dep" / "index.js", cached / "dep" / "index.js"
    assert copied.stat().st_ino != original.stat().st_ino


def test_link_from_a_missing_cache_is_a_clear_error(tmp_path):
    with pytest.raises(ProcessStartError, match="cannot copy"):
        link_node_modules(tmp_path / "missing", tmp_path / "node_modules")
    assert list(tmp_path.iterdir()) == []
