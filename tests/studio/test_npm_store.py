"""An npm lockfile linked from the node's store: the tree ``npm ci`` makes, or npm's turn."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from studio.install import cache as cache_module
from studio.install import seal
from studio.install.cache import InstallOptions, ensure_install
from studio.install.npm_store import default_npm_cache, link_install, plan_install
from tests.studio.test_install_cache import _runs, counting_npm

ROOT = Path(__file__).resolve().parents[2]
# A real lockfile written here: 281 packages, 34 of them nested, scoped ones with bins.
STORYBOOK10 = ROOT / "tests" / "fixtures" / "repos" / "storybook10"
REAL_NPM = shutil.which("npm") or "npm"
__all__ = ["counting_npm"]  # a fixture, imported for the tests below
_NO_SCRIPTS = ("--ignore-scripts",)


def _inputs(into: Path, source: Path = STORYBOOK10) -> Path:
    into.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(source / name, into / name)
    return into


def _npm_ci(root: Path) -> None:
    # The flags install_command gives npm when dependencies' scripts are off.
    subprocess.run(
        [
            REAL_NPM,
            "ci",
            "--no-audit",
            "--no-fund",
            "--prefer-offline",
            "--loglevel=error",
            *_NO_SCRIPTS,
        ],
        cwd=root,
        check=True,
        capture_output=True,
        timeout=600,
    )


def _tree(modules: Path) -> dict[str, str]:
    """Every path under ``modules`` -> what it is: a file and its mode, a link and its target."""
    shape = {}
    for directory, subdirs, files in os.walk(modules):
        for name in [*subdirs, *files]:
            path = Path(directory) / name
            relative = path.relative_to(modules).as_posix()
            if path.is_symlink():
                shape[relative] = f"link {os.readlink(path)}"
            elif path.is_dir():
                shape[relative] = "dir"
            else:
                shape[relative] = f"file {stat.S_IMODE(path.stat().st_mode):o}"
    # npm's own record of what it installed (its "hidden lockfile"), not a package.
    shape.pop(".package-lock.json", None)
    return shape


@pytest.fixture(scope="module")
def npm_ci_tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The storybook10 fixture installed by real ``npm ci`` (which also fills npm's cache)."""
    root = _inputs(tmp_path_factory.mktemp("npm-ci") / "repo")
    _npm_ci(root)
    return _tree(root / "node_modules")


def test_the_store_links_the_tree_npm_ci_makes_and_a_second_install_shares_its_files(
    tmp_path: Path, npm_ci_tree: dict[str, str]
) -> None:
    store = tmp_path / "store"
    first = _inputs(tmp_path / "first")
    assert link_install(first, "package-lock.json", store, default_npm_cache()) is None
    assert _tree(first / "node_modules") == npm_ci_tree
    # nested versions and scoped packages' commands, where npm puts them
    assert any("/node_modules/" in path for path in npm_ci_tree)
    assert npm_ci_tree[".bin/vite"] == "link ../vite/bin/vite.js"
    second = _inputs(tmp_path / "second")
    assert link_install(second, "package-lock.json", store, default_npm_cache()) is None
    assert _tree(second / "node_modules") == npm_ci_tree
    vite = Path("node_modules/vite/package.json")
    assert (first / vite).stat().st_ino == (second / vite).stat().st_ino
    # the command runs through its .bin link
    done = subprocess.run(
        [str(second / "node_modules/.bin/vite"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "vite/7.1.12" in done.stdout


def test_installs_filling_one_store_at_once_each_get_the_whole_tree(
    tmp_path: Path, npm_ci_tree: dict[str, str]
) -> None:
    store = tmp_path / "store"
    roots = [_inputs(tmp_path / f"root{n}") for n in range(3)]
    reasons: list[str | None] = []

    def install(root: Path) -> None:
        reasons.append(link_install(root, "package-lock.json", store, default_npm_cache()))

    threads = [threading.Thread(target=install, args=(root,)) for root in roots]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert reasons == [None, None, None]
    for root in roots:
        assert _tree(root / "node_modules") == npm_ci_tree
    assert not [p for p in (store / "v1").iterdir() if p.name.startswith(".unpack-")]


# --- npm's turn -------------------------------------------------------------------------------


def _lock(packages: dict[str, dict[str, object]], **root: object) -> dict[str, object]:
    return {
        "name": "x",
        "lockfileVersion": 3,
        "requires": True,
        "packages": {"": {"name": "x", **root}, **packages},
    }


def _write(root: Path, lock: dict[str, object], manifest: dict[str, object]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "package-lock.json").write_text(json.dumps(lock))
    (root / "package.json").write_text(json.dumps({"name": "x", **manifest}))
    return root


def _tarball(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


def _cache(npm_cache: Path, data: bytes) -> str:
    """Put ``data`` in a cacache layout as npm does; its integrity string."""
    digest = hashlib.sha512(data).digest()
    hexdigest = digest.hex()
    path = npm_cache / "_cacache/content-v2/sha512" / hexdigest[:2] / hexdigest[2:4] / hexdigest[4:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return "sha512-" + base64.b64encode(digest).decode()


def _entry(integrity: str, **more: object) -> dict[str, object]:
    return {
        "version": "1.0.0",
        "resolved": "https://registry.npmjs.org/a/-/a-1.0.0.tgz",
        "integrity": integrity,
        **more,
    }


def test_a_tarball_is_unpacked_as_npm_does_nothing_outside_it_and_no_links(
    tmp_path: Path,
) -> None:
    npm_cache = tmp_path / "npm-cache"
    data = _tarball(
        {
            "package/package.json": b'{"name":"a"}',
            "package/run.sh": b"#!/bin/sh\n",
            "package/.gitignore": b"dist\n",
            "package/../escaped": b"out",
        },
        links={"package/passwd": "/etc/passwd"},
    )
    root = _write(
        tmp_path / "root",
        _lock(
            {"node_modules/a": _entry(_cache(npm_cache, data), bin={"a": "run.sh"})},
            dependencies={"a": "1.0.0"},
        ),
        {"dependencies": {"a": "1.0.0"}},
    )
    assert link_install(root, "package-lock.json", tmp_path / "store", npm_cache) is None
    assert _tree(root / "node_modules") == {
        "a": "dir",
        "a/package.json": "file 644",
        "a/run.sh": "file 755",
        "a/.npmignore": "file 644",
        ".bin": "dir",
        ".bin/a": "link ../a/run.sh",
    }
    assert not (tmp_path / "escaped").exists() and not list(tmp_path.rglob("escaped"))


def test_packages_for_other_platforms_are_skipped_as_npm_skips_them(tmp_path: Path) -> None:
    npm_cache = tmp_path / "npm-cache"
    integrity = _cache(npm_cache, _tarball({"package/package.json": b"{}"}))
    packages = {
        "node_modules/here": _entry(integrity),
        "node_modules/mac": _entry(integrity, os=["darwin"], optional=True),
        "node_modules/not-x64": _entry(integrity, cpu=["!x64", "!arm64"], optional=True),
        "node_modules/musl": _entry(integrity, os=["linux"], libc=["musl"], optional=True),
        "node_modules/here/node_modules/bundled": {"version": "1.0.0", "inBundle": True},
    }
    packages["node_modules/here"]["dependencies"] = {"bundled": "1.0.0"}
    wanted = {"here": "1.0.0", "mac": "1.0.0", "not-x64": "1.0.0", "musl": "1.0.0"}
    root = _write(tmp_path / "root", _lock(packages, dependencies=wanted), {"dependencies": wanted})
    planned = plan_install(root, "package-lock.json")
    assert not isinstance(planned, str)
    assert [package.path for package in planned] == ["node_modules/here"]


@pytest.mark.parametrize(
    ("lock", "manifest", "reason"),
    [
        ({"name": "x", "lockfileVersion": 1, "dependencies": {}}, {}, "lockfile v1"),
        (
            _lock({}, dependencies={"a": "1.0.0"}),
            {"dependencies": {"a": "^1.0.0"}},
            "is not what package-lock.json resolved",
        ),
        (_lock({"node_modules/w": {"resolved": "packages/w", "link": True}}), {}, "workspaces"),
        (
            _lock(
                {"node_modules/g": {"resolved": "git+ssh://git@github.com/o/g.git#abc"}},
                dependencies={"g": "github:o/g"},
            ),
            {"dependencies": {"g": "github:o/g"}},
            "not a registry tarball",
        ),
        (
            _lock(
                {"node_modules/a": _entry("sha512-" + base64.b64encode(b"x" * 64).decode())},
                dependencies={"a": "1.0.0"},
            ),
            {"dependencies": {"a": "1.0.0"}},
            "not in npm's cache",
        ),
    ],
    ids=["lockfile-v1", "manifest-moved-on", "workspaces", "git-dependency", "not-downloaded"],
)
def test_what_npm_must_install_is_left_to_it_and_nothing_is_made(
    tmp_path: Path, lock: dict[str, object], manifest: dict[str, object], reason: str
) -> None:
    root = _write(tmp_path / "root", lock, manifest)
    why = link_install(root, "package-lock.json", tmp_path / "store", tmp_path / "npm-cache")
    assert why is not None and reason in why
    assert not (root / "node_modules").exists()


def test_a_cached_tarball_that_does_not_match_its_integrity_is_refused(tmp_path: Path) -> None:
    npm_cache = tmp_path / "npm-cache"
    integrity = _cache(npm_cache, _tarball({"package/index.js": b"good"}))
    for path in (npm_cache / "_cacache").rglob("*"):
        if path.is_file():
            path.write_bytes(_tarball({"package/index.js": b"tampered"}))
    wanted = {"a": "1.0.0"}
    root = _write(
        tmp_path / "root",
        _lock({"node_modules/a": _entry(integrity)}, dependencies=wanted),
        {"dependencies": wanted},
    )
    why = link_install(root, "package-lock.json", tmp_path / "store", npm_cache)
    assert why is not None and "does not match its integrity" in why
    assert not (root / "node_modules").exists()


# --- through the install cache ----------------------------------------------------------------


def test_the_install_cache_links_an_npm_lockfile_and_runs_npm_only_when_told_to(
    tmp_path: Path, counting_npm: tuple[str, Path], npm_ci_tree: dict[str, str]
) -> None:
    npm, marker = counting_npm
    repo = _inputs(tmp_path / "repo")
    linked = ensure_install(
        repo, tmp_path / "cache-a", InstallOptions(npm=npm, npm_store=tmp_path / "store")
    )
    assert not marker.exists()
    assert _tree(linked.root_modules) == npm_ci_tree
    assert linked.command.startswith("npm ci")
    installed = ensure_install(
        repo, tmp_path / "cache-b", InstallOptions(npm=npm, link_npm_from_store=False)
    )
    assert _runs(marker) == 1
    assert _tree(installed.root_modules) == npm_ci_tree


def test_a_lockfile_behind_package_json_is_still_npms_to_install_unfrozen(
    tmp_path: Path, counting_npm: tuple[str, Path]
) -> None:
    npm, marker = counting_npm
    repo = _inputs(tmp_path / "repo")
    manifest = json.loads((repo / "package.json").read_text())
    # npm ci refuses a dependency its lockfile lacks (it accepts a range the locked version meets)
    manifest["dependencies"]["left-pad"] = "1.3.0"
    (repo / "package.json").write_text(json.dumps(manifest))
    tree = ensure_install(
        repo, tmp_path / "cache", InstallOptions(npm=npm, npm_store=tmp_path / "store")
    )
    # npm ci refused it, npm install installed it: two runs, and the warning says so
    assert _runs(marker) == 2
    assert any("out of date" in warning for warning in tree.warnings)


@pytest.mark.skipif(not seal.can_seal(), reason="sealing needs root (docs/security.md)")
def test_an_entrys_files_are_sealed_and_an_older_unsealed_entry_is_sealed_when_next_used(
    tmp_path: Path,
) -> None:
    repo = _inputs(tmp_path / "repo")
    options = InstallOptions(npm_store=tmp_path / "store")
    installed = ensure_install(repo, tmp_path / "cache", options)
    react = installed.root_modules / "react" / "package.json"
    assert (react.stat().st_uid, react.stat().st_gid) == seal.SEALED_OWNER
    # its directories stay the service's: a sandbox's copy of them takes new files
    assert react.parent.stat().st_uid == os.getuid()
    # an entry from before sealing: its files the service's, its record without "sealed"
    for directory, _, files in os.walk(installed.root_modules):
        for name in files:
            os.lchown(Path(directory) / name, os.getuid(), os.getgid())
    record_path = installed.entry / ".studio-install.json"
    record = json.loads(record_path.read_text())
    del record["sealed"]
    record_path.write_text(json.dumps(record))
    assert react.stat().st_uid == os.getuid()
    assert ensure_install(repo, tmp_path / "cache", options).entry == installed.entry
    assert react.stat().st_uid == seal.SEALED_OWNER[0]
    assert json.loads(record_path.read_text())["sealed"] is True


@pytest.mark.skipif(not seal.can_seal(), reason="sealing needs root (docs/security.md)")
def test_an_unsealed_entry_met_under_its_lock_is_sealed_without_taking_the_lock_again(
    tmp_path: Path,
) -> None:
    # ensure_install meets an entry under its key's lock when another process built
    # it meanwhile; sealing it there must not wait for the lock this thread holds.
    repo = _inputs(tmp_path / "repo")
    installed = ensure_install(
        repo, tmp_path / "cache", InstallOptions(npm_store=tmp_path / "store")
    )
    react = installed.root_modules / "react" / "package.json"
    os.lchown(react, os.getuid(), os.getgid())
    record_path = installed.entry / ".studio-install.json"
    record = json.loads(record_path.read_text())
    del record["sealed"]
    record_path.write_text(json.dumps(record))
    done = threading.Event()

    def seal_under_the_lock() -> None:
        with cache_module._key_lock(installed.entry.parent, installed.entry.name):
            cache_module._seal_unsealed(installed.entry)
        done.set()

    worker = threading.Thread(target=seal_under_the_lock, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert done.is_set(), "sealing under the lock waited for the lock"
    assert react.stat().st_uid == seal.SEALED_OWNER[0]
