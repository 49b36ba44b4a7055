"""npm, pnpm and yarn installs: detection, dependency scripts off, the offline package cache.

The pure decisions are checked on files; the installs run the real package
managers (npm, and pnpm/yarn through corepack as scripts/setup.sh prepared
them). A dependency written here as a local ``file:`` package has a
postinstall that exits 1, as one that downloads a binary does offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from studio.errors import InvalidConfig, ProcessStartError
from studio.install.cache import ENTRY_RECORD, InstallOptions, ensure_install, node_major_version
from studio.install.managers import (
    DEFAULT_VERSIONS,
    Manager,
    corepack_env,
    detect_manager,
    find_install_root,
    install_command,
    is_yarn_berry_lock,
    pinned_version,
    pnpm_allows_builds,
    yarn_default_cache_folder,
)

ROOT = Path(__file__).resolve().parents[2]
PNPM_MONOREPO = ROOT / "tests" / "fixtures" / "repos" / "pnpm-monorepo"
BERRY_LOCK = '__metadata:\n  version: 8\n  cacheKey: 10c0\n\n"root@workspace:.":\n'


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _manifest(**fields: object) -> str:
    return json.dumps({"name": "app", "version": "1.0.0", "private": True, **fields})


# --- detection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"package-lock.json": "{}"}, (Manager.NPM, "package-lock.json")),
        (
            {"npm-shrinkwrap.json": "{}", "package-lock.json": "{}"},
            (Manager.NPM, "npm-shrinkwrap.json"),
        ),
        ({"pnpm-lock.yaml": "lockfileVersion: '9.0'\n"}, (Manager.PNPM, "pnpm-lock.yaml")),
        ({"yarn.lock": "# yarn lockfile v1\n"}, (Manager.YARN_CLASSIC, "yarn.lock")),
        ({"yarn.lock": BERRY_LOCK}, (Manager.YARN_BERRY, "yarn.lock")),
        ({"yarn.lock": "", ".yarnrc.yml": "nodeLinker: pnp\n"}, (Manager.YARN_BERRY, "yarn.lock")),
        ({}, None),
    ],
)
def test_the_lockfile_names_the_manager(tmp_path, files, expected):
    _write(tmp_path, {"package.json": _manifest(), **files})
    assert detect_manager(tmp_path) == expected


def test_a_yarn_lock_pinned_to_yarn_4_is_berry(tmp_path):
    _write(tmp_path, {"package.json": _manifest(packageManager="yarn@4.1.0"), "yarn.lock": ""})
    assert detect_manager(tmp_path) == (Manager.YARN_BERRY, "yarn.lock")
    assert is_yarn_berry_lock(BERRY_LOCK) and not is_yarn_berry_lock("# yarn lockfile v1\n")


def test_pinned_version_only_for_its_own_manager():
    pin = {"packageManager": "pnpm@9.15.0+sha512.abc"}
    assert pinned_version(pin, Manager.PNPM) == "9.15.0+sha512.abc"
    assert pinned_version(pin, Manager.NPM) is None
    assert pinned_version({"packageManager": "yarn@1.22.19"}, Manager.YARN_CLASSIC) == "1.22.19"
    assert pinned_version({"packageManager": "yarn@1.22.19"}, Manager.YARN_BERRY) is None
    assert pinned_version({"packageManager": "yarn@4.5.0"}, Manager.YARN_CLASSIC) is None
    assert pinned_version({"packageManager": "pnpm@latest"}, Manager.PNPM) is None
    assert pinned_version({}, Manager.PNPM) is None


def test_the_install_root_is_the_nearest_directory_with_a_lockfile(tmp_path):
    _write(
        tmp_path,
        {
            "package.json": _manifest(workspaces=["packages/*"]),
            "package-lock.json": "{}",
            "packages/ui/package.json": _manifest(name="ui"),
        },
    )
    assert find_install_root(tmp_path, tmp_path / "packages" / "ui") == tmp_path.resolve()
    _write(tmp_path, {"packages/ui/pnpm-lock.yaml": ""})
    ui = (tmp_path / "packages" / "ui").resolve()
    assert find_install_root(tmp_path, tmp_path / "packages" / "ui") == ui
    with pytest.raises(InvalidConfig, match="not inside"):
        find_install_root(tmp_path / "packages", tmp_path)
    bare = _write(tmp_path / "bare", {"package.json": _manifest()})
    assert find_install_root(bare, bare) is None


# --- the commands -------------------------------------------------------------------------------


def test_npm_and_yarn_ignore_dependency_scripts_unless_allowed(tmp_path):
    npm = _write(tmp_path / "npm", {"package.json": _manifest(), "package-lock.json": "{}"})
    assert "--ignore-scripts" in install_command(npm).argv
    assert "--ignore-scripts" not in install_command(npm, allow_scripts=True).argv
    assert install_command(npm).argv[:2] == ["npm", "ci"]
    classic = _write(tmp_path / "classic", {"package.json": _manifest(), "yarn.lock": ""})
    command = install_command(classic)
    assert command.argv[:4] == ["corepack", "yarn@1.22.22", "install", "--frozen-lockfile"]
    assert "--ignore-scripts" in command.argv and not command.scripts
    berry = _write(tmp_path / "berry", {"package.json": _manifest(), "yarn.lock": BERRY_LOCK})
    command = install_command(berry)
    assert command.argv[1:] == [
        f"yarn@{DEFAULT_VERSIONS[Manager.YARN_BERRY]}",
        "install",
        "--immutable",
    ]
    assert command.env["YARN_ENABLE_SCRIPTS"] == "false"
    assert command.env["YARN_NODE_LINKER"] == "node-modules"
    assert command.env["YARN_NM_MODE"] == "hardlinks-global"
    assert install_command(berry, allow_scripts=True).env["YARN_ENABLE_SCRIPTS"] == "true"


def test_pnpm_runs_only_what_the_repository_allows(tmp_path):
    root = _write(tmp_path, {"package.json": _manifest(), "pnpm-lock.yaml": ""})
    command = install_command(root)
    assert command.argv[:4] == ["corepack", "pnpm@10.34.9", "install", "--frozen-lockfile"]
    assert "--ignore-scripts" in command.argv and not command.scripts
    _write(root, {"package.json": _manifest(pnpm={"onlyBuiltDependencies": ["esbuild"]})})
    assert pnpm_allows_builds(root)
    command = install_command(root)
    assert "--ignore-scripts" not in command.argv and command.scripts
    _write(
        root,
        {"package.json": _manifest(), "pnpm-workspace.yaml": "onlyBuiltDependencies:\n  - sharp\n"},
    )
    assert pnpm_allows_builds(root)
    everything = install_command(root, allow_scripts=True)
    assert everything.env["npm_config_dangerously_allow_all_builds"] == "true"


def test_a_pinned_pnpm_is_used_and_the_cache_can_be_moved(tmp_path):
    root = _write(
        tmp_path, {"package.json": _manifest(packageManager="pnpm@9.15.0"), "pnpm-lock.yaml": ""}
    )
    command = install_command(root, package_cache=tmp_path / "pkg")
    assert command.argv[1] == "pnpm@9.15.0"
    assert f"--store-dir={tmp_path / 'pkg' / 'pnpm-store'}" in command.argv
    assert command.describe().startswith("pnpm@9.15.0 install --frozen-lockfile")


def test_corepack_downloads_from_npms_registry():
    assert corepack_env({})["COREPACK_NPM_REGISTRY"] == "https://registry.npmjs.org"
    mirror = corepack_env({"npm_config_registry": "https://npm.example/"})
    assert mirror["COREPACK_NPM_REGISTRY"] == "https://npm.example"
    assert "COREPACK_NPM_REGISTRY" not in corepack_env({"COREPACK_NPM_REGISTRY": "x"})
    assert corepack_env({})["COREPACK_DEFAULT_TO_LATEST"] == "0"


# --- real installs: a dependency whose postinstall fails ---------------------------------------

_FAILING = {
    "name": "fails-to-download",
    "version": "1.0.0",
    "main": "index.js",
    "scripts": {"postinstall": "echo downloading a browser build && exit 1"},
}


def _app_with_failing_dependency(root: Path, manifest: dict[str, object] | None = None) -> Path:
    _write(
        root,
        {
            "vendor/fails-to-download/package.json": json.dumps(_FAILING),
            "vendor/fails-to-download/index.js": "module.exports = 'usable';\n",
            "package.json": json.dumps(
                {
                    "name": "app",
                    "version": "1.0.0",
                    "private": True,
                    "dependencies": {"fails-to-download": "file:vendor/fails-to-download"},
                    **(manifest or {}),
                }
            ),
        },
    )
    return root


def _lock(root: Path, argv: list[str], env: dict[str, str] | None = None) -> None:
    """Write the lockfile with the manager itself, no scripts run (what a developer commits)."""
    environ = {**os.environ, **corepack_env(os.environ), **(env or {})}
    # Yarn classic would cache into the user's own cache folder (a file: dependency
    # under a new name each time): a cache of the test's own instead.
    with tempfile.TemporaryDirectory(prefix="studio-lock-cache-") as cache:
        result = subprocess.run(
            argv,
            cwd=root,
            env={**environ, "YARN_CACHE_FOLDER": cache},
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    shutil.rmtree(root / "node_modules", ignore_errors=True)


def _uses_the_dependency(root: Path) -> str:
    out = subprocess.run(
        ["node", "-p", "require('fails-to-download')"], cwd=root, capture_output=True, text=True
    )
    return out.stdout.strip()


_LOCKERS = {
    Manager.NPM: (["npm", "install", "--package-lock-only", "--ignore-scripts"], None),
    Manager.PNPM: (["corepack", "pnpm@10.34.9", "install", "--lockfile-only"], None),
    Manager.YARN_CLASSIC: (["corepack", "yarn@1.22.22", "install", "--ignore-scripts"], None),
    Manager.YARN_BERRY: (
        ["corepack", "yarn@4.18.1", "install", "--mode=update-lockfile"],
        {"YARN_ENABLE_SCRIPTS": "false", "YARN_NODE_LINKER": "node-modules"},
    ),
}


@pytest.mark.parametrize("manager", list(_LOCKERS), ids=lambda m: m.value)
def test_a_failing_install_script_does_not_stop_the_install(tmp_path, manager):
    root = _app_with_failing_dependency(tmp_path / "app")
    if manager is Manager.YARN_BERRY:
        _write(root, {".yarnrc.yml": "enableTelemetry: false\n", "yarn.lock": ""})
    argv, env = _LOCKERS[manager]
    _lock(root, argv, env)
    assert detect_manager(root) is not None and detect_manager(root)[0] is manager  # type: ignore[index]
    cache = tmp_path / "cache"
    installed = ensure_install(root, cache, InstallOptions(package_cache=tmp_path / "pkg"))
    assert not installed.scripts and installed.warnings == ()
    assert installed.link_into(root) == [root / "node_modules"]
    assert _uses_the_dependency(root) == "usable"
    if manager is Manager.YARN_BERRY:
        # Its files are links into Yarn's content store, not unpacked again.
        store = tmp_path / "pkg" / "yarn-berry" / "store"
        module = installed.entry / "node_modules" / "fails-to-download" / "index.js"
        assert module.stat().st_nlink >= 2
        assert any(f.stat().st_ino == module.stat().st_ino for f in store.rglob("*.dat"))
    # An operator who allows scripts: the script fails, the install is made without them.
    allowed = ensure_install(
        root, cache, InstallOptions(allow_scripts=True, package_cache=tmp_path / "pkg")
    )
    assert allowed.entry != installed.entry
    assert len(allowed.warnings) == 1 and "install script" in allowed.warnings[0]
    assert json.loads((allowed.entry / ENTRY_RECORD).read_text())["scripts"] is False
    assert (allowed.entry / "node_modules" / "fails-to-download" / "index.js").is_file()


# --- yarn classic: its cache's files linked, not copied -----------------------------------------


def test_yarn_classic_links_from_its_cache_only_with_scripts_off(tmp_path):
    root = _write(tmp_path, {"package.json": _manifest(), "yarn.lock": ""})
    packages = tmp_path / "pkg"
    operator = {"NODE_OPTIONS": "--max-old-space-size=4096"}
    command = install_command(root, package_cache=packages, environ=operator)
    assert command.env["STUDIO_YARN_LINK_FROM"] == str(packages / "yarn")
    kept, preload = command.env["NODE_OPTIONS"].split(" --require ")
    assert kept == "--max-old-space-size=4096"
    assert Path(json.loads(preload)).is_file()
    # Without a package cache of the service's: yarn's own, named so the links come from it.
    default = install_command(root)
    assert f"--cache-folder={yarn_default_cache_folder()}" in default.argv
    assert default.env["STUDIO_YARN_LINK_FROM"] == str(yarn_default_cache_folder())
    for copies in (
        # A dependency's script could rewrite its files through a link, into the cache.
        install_command(root, package_cache=packages, allow_scripts=True),
        install_command(root, package_cache=packages, link_yarn_cache=False),
    ):
        assert "NODE_OPTIONS" not in copies.env and "STUDIO_YARN_LINK_FROM" not in copies.env


def _entries(modules: Path) -> dict[str, tuple[object, ...]]:
    """Each entry under ``modules``: a link and its target, a file's size and mode, a folder."""
    found: dict[str, tuple[object, ...]] = {}
    for path in modules.rglob("*"):
        relative = str(path.relative_to(modules))
        if path.is_symlink():
            found[relative] = ("link", os.readlink(path))
        elif path.is_dir():
            found[relative] = ("folder",)
        else:
            info = path.stat()
            found[relative] = ("file", info.st_size, info.st_mode)
    return found


def _inode(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


@pytest.mark.parametrize("cache_elsewhere", [False, True], ids=["same-filesystem", "tmpfs-cache"])
def test_yarn_classic_from_links_makes_the_tree_its_copies_make(tmp_path, cache_elsewhere):
    # make-dir 3 needs semver 6: yarn nests it under make-dir, beside the root's semver 7.
    root = _app_with_failing_dependency(tmp_path / "app")
    manifest = json.loads((root / "package.json").read_text())
    manifest["dependencies"].update({"semver": "7.6.3", "make-dir": "3.1.0"})
    (root / "package.json").write_text(json.dumps(manifest))
    _lock(root, _LOCKERS[Manager.YARN_CLASSIC][0])
    if cache_elsewhere:
        # Another filesystem: no hard link reaches it, and yarn copies as it always did.
        if os.stat("/dev/shm").st_dev == tmp_path.stat().st_dev:
            pytest.skip("/dev/shm is on the test's own filesystem here")
        packages = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="studio-yarn-cache-"))
    else:
        packages = tmp_path / "pkg"
    try:
        linked = ensure_install(root, tmp_path / "linked", InstallOptions(package_cache=packages))
        copied = ensure_install(
            root,
            tmp_path / "copied",
            InstallOptions(package_cache=packages, link_yarn_from_cache=False),
        )
        assert _entries(linked.root_modules) == _entries(copied.root_modules)
        cached = {_inode(f) for f in (packages / "yarn").rglob("*") if f.is_file()}
        # Every file but yarn's integrity record is one of its cache's (a file: dependency too:
        # yarn caches it), or none where no link reaches; the copies are the control.
        files = [
            f
            for f in linked.root_modules.rglob("*")
            if f.is_file() and not f.is_symlink() and f.name != ".yarn-integrity"
        ]
        assert len(files) > 20
        in_cache = [f for f in files if _inode(f) in cached]
        assert in_cache == ([] if cache_elsewhere else files)
        assert not any(_inode(f) in cached for f in copied.root_modules.rglob("*.js"))
    finally:
        if cache_elsewhere:
            shutil.rmtree(packages)
    linked.link_into(root)
    versions = subprocess.run(
        [
            "node",
            "-p",
            "[require('semver/package.json').version, "
            "require('make-dir/node_modules/semver/package.json').version].join(' ')",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    top, nested = versions.stdout.split()
    assert top == "7.6.3" and nested.startswith("6.")
    command = subprocess.run(
        [str(root / "node_modules" / ".bin" / "semver"), "1.2.3"], capture_output=True, text=True
    )
    assert command.stdout.strip() == "1.2.3"
    assert _uses_the_dependency(root) == "usable"


# --- a lockfile behind its package.json ---------------------------------------------------------


@pytest.mark.parametrize("manager", list(_LOCKERS), ids=lambda m: m.value)
def test_a_lockfile_behind_package_json_installs_unfrozen_with_a_warning(tmp_path, manager):
    root = _app_with_failing_dependency(tmp_path / "app")
    if manager is Manager.YARN_BERRY:
        _write(root, {".yarnrc.yml": "enableTelemetry: false\n", "yarn.lock": ""})
    argv, env = _LOCKERS[manager]
    _lock(root, argv, env)
    lockfile = detect_manager(root)[1]  # type: ignore[index]
    committed = (root / lockfile).read_bytes()
    # A dependency added to package.json after the lockfile was written (seen in real
    # repositories): the frozen install refuses it, the developer's own install does not.
    _write(root, {"vendor/added-later/package.json": _manifest(name="added-later", main="i.js")})
    _write(root, {"vendor/added-later/i.js": "module.exports = 'added';\n"})
    manifest = json.loads((root / "package.json").read_text())
    manifest["dependencies"]["added-later"] = "file:vendor/added-later"
    (root / "package.json").write_text(json.dumps(manifest))
    installed = ensure_install(
        root, tmp_path / "cache", InstallOptions(package_cache=tmp_path / "pkg")
    )
    assert len(installed.warnings) == 1 and "out of date" in installed.warnings[0]
    installed.link_into(root)
    out = subprocess.run(
        ["node", "-p", "require('added-later') + ' ' + require('fails-to-download')"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "added usable", out.stderr
    assert (root / lockfile).read_bytes() == committed


@pytest.mark.skipif(int(node_major_version()) >= 22, reason="pnpm 11 may run on this Node")
def test_a_pinned_pnpm_too_new_for_this_node_falls_back_to_the_default(tmp_path):
    # pnpm 11 needs Node 22.13 (seen pinned in a real monorepo); pnpm 10 reads its lockfile v9.
    root = _app_with_failing_dependency(tmp_path / "app")
    _lock(root, _LOCKERS[Manager.PNPM][0])
    manifest = json.loads((root / "package.json").read_text())
    (root / "package.json").write_text(json.dumps({**manifest, "packageManager": "pnpm@11.22.0"}))
    options = InstallOptions(package_cache=tmp_path / "pkg")
    installed = ensure_install(root, tmp_path / "cache", options)
    [warning] = installed.warnings
    assert "pnpm@11.22.0" in warning and f"pnpm@{DEFAULT_VERSIONS[Manager.PNPM]}" in warning
    installed.link_into(root)
    assert _uses_the_dependency(root) == "usable"


def test_a_failure_that_is_not_the_lockfile_is_not_retried(tmp_path):
    root = _write(
        tmp_path / "app",
        {"package.json": _manifest(dependencies={"missing": "file:vendor/missing"})},
    )
    (root / "package-lock.json").write_text("{not json")
    with pytest.raises(ProcessStartError) as failed:
        ensure_install(root, tmp_path / "cache", InstallOptions(package_cache=tmp_path / "pkg"))
    assert "out of date" not in failed.value.message


# --- the package cache: a second lockfile of the same packages needs no network ----------------


@pytest.mark.parametrize("manager", [Manager.NPM, Manager.PNPM], ids=lambda m: m.value)
def test_a_warm_package_cache_installs_without_the_registry(tmp_path, monkeypatch, manager):
    cache, packages = tmp_path / "cache", tmp_path / "pkg"
    argv = _LOCKERS[manager][0]
    first = _write(tmp_path / "a", {"package.json": _manifest(dependencies={"clsx": "2.1.1"})})
    _lock(first, [a for a in argv if a != "--ignore-scripts"])
    ensure_install(first, cache, InstallOptions(package_cache=packages))
    second = _write(
        tmp_path / "b",
        {"package.json": _manifest(name="other", dependencies={"clsx": "2.1.1"})},
    )
    _lock(second, [a for a in argv if a != "--ignore-scripts"])
    # Nothing answers on this port: any request to the registry would fail the install
    # (at once: no retries, which npm and pnpm would otherwise spread over a minute).
    for name in ("npm_config_proxy", "npm_config_https_proxy", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    # The control: the same lockfile with an empty package cache needs the registry and fails.
    with pytest.raises(ProcessStartError, match="ECONNREFUSED"):
        ensure_install(second, tmp_path / "cold", InstallOptions(package_cache=tmp_path / "empty"))
    assert list((tmp_path / "cold").glob("*/node_modules")) == []  # no entry left half-made
    installed = ensure_install(second, cache, InstallOptions(package_cache=packages))
    assert (installed.root_modules / "clsx" / "package.json").is_file()


# --- a pnpm workspace: the fixture ------------------------------------------------------------


def test_the_pnpm_monorepo_installs_at_its_root_with_workspace_links(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(PNPM_MONOREPO, root)
    ui = root / "packages" / "ui"
    assert find_install_root(root, ui) == root.resolve()
    installed = ensure_install(root, tmp_path / "cache")
    assert installed.node_modules == (".", "packages/tokens", "packages/ui")
    # The root's own "prepare" (exit 3) never ran: the cache's manifests have no scripts.
    assert "scripts" not in json.loads((installed.entry / "package.json").read_text())
    installed.link_into(root)
    tokens = ui / "node_modules" / "@mono" / "tokens"
    assert tokens.is_symlink() and tokens.resolve() == (root / "packages" / "tokens").resolve()
    react = subprocess.run(
        ["node", "-p", "require.resolve('react')"], cwd=ui, capture_output=True, text=True
    )
    assert react.stdout.strip().startswith(str(root / "node_modules" / ".pnpm"))
