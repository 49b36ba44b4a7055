"""Which package manager installs a repository, and the command that installs it.

A repository is installed with the manager its lockfile names, never another
one (a foreign manager would re-resolve and install other versions):

========================  =================================  ======================================
lockfile                  manager                            command
========================  =================================  ======================================
package-lock.json,        npm                                ``npm ci``
npm-shrinkwrap.json
pnpm-lock.yaml            pnpm (through corepack)            ``pnpm install --frozen-lockfile``
yarn.lock (v1)            yarn classic (through corepack)    ``yarn install --frozen-lockfile``
yarn.lock with            yarn berry (through corepack)      ``yarn install --immutable``
``__metadata``
========================  =================================  ======================================

pnpm and yarn run through corepack (shipped with Node): the version the
repository's ``packageManager`` field pins when it names that manager, else
the node's default (:data:`DEFAULT_VERSIONS`, which ``scripts/setup.sh``
prepares in corepack's cache so that an unpinned install needs no download).

Dependencies' lifecycle scripts are off unless the repository's own
configuration allows them (pnpm's ``onlyBuiltDependencies``) or the operator
registered the repository with ``install_scripts``: see :func:`install_command`.

Everything here is a pure decision on file contents; nothing runs.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from studio.errors import InvalidConfig

__all__ = [
    "DEFAULT_VERSIONS",
    "LOCKFILES",
    "MANIFEST",
    "InstallCommand",
    "Manager",
    "corepack_env",
    "corepack_specs",
    "detect_manager",
    "find_install_root",
    "install_command",
    "is_yarn_berry_lock",
    "lockfile_out_of_date",
    "pinned_version",
    "pnpm_allows_builds",
    "too_new_for_node",
    "unfrozen",
    "with_default_version",
    "yarn_default_cache_folder",
    "yarn_link_environment",
]


class Manager(StrEnum):
    """A package manager, as named by the lockfile it writes."""

    NPM = "npm"
    PNPM = "pnpm"
    YARN_CLASSIC = "yarn-classic"
    YARN_BERRY = "yarn-berry"

    @property
    def binary(self) -> str:
        """The name corepack (or the PATH, for npm) knows it by."""
        return "yarn" if self in (Manager.YARN_CLASSIC, Manager.YARN_BERRY) else self.value


# The versions used when a repository pins none; scripts/setup.sh installs them
# into corepack's cache (`corepack install -g`), so that no install downloads one.
DEFAULT_VERSIONS: dict[Manager, str] = {
    Manager.PNPM: "10.34.9",
    Manager.YARN_CLASSIC: "1.22.22",
    Manager.YARN_BERRY: "4.18.1",
}

# Lockfile names in the order they are looked for (npm-shrinkwrap before package-lock, as npm).
LOCKFILES: tuple[tuple[str, Manager], ...] = (
    ("npm-shrinkwrap.json", Manager.NPM),
    ("package-lock.json", Manager.NPM),
    ("pnpm-lock.yaml", Manager.PNPM),
    ("yarn.lock", Manager.YARN_CLASSIC),
)
MANIFEST = "package.json"
# Preloaded into yarn classic to link what it copies out of its cache (yarn_link_environment).
_YARN_LINK_COPIES = Path(__file__).with_name("yarn_link_copies.cjs")
_BERRY_METADATA = re.compile(r"^__metadata:", re.MULTILINE)
_PACKAGE_MANAGER = re.compile(r"^(npm|pnpm|yarn)@(\d+)\.(\d+)\.(\d+)([-+.\w]*)$")


def corepack_specs() -> list[str]:
    """``pnpm@10.34.9``-style specs of :data:`DEFAULT_VERSIONS`, for ``corepack install -g``."""
    return [f"{manager.binary}@{version}" for manager, version in DEFAULT_VERSIONS.items()]


def is_yarn_berry_lock(text: str) -> bool:
    """Whether a yarn.lock is yarn 2+'s (YAML with ``__metadata``), not yarn 1's."""
    return bool(_BERRY_METADATA.search(text))


def detect_manager(root: Path) -> tuple[Manager, str] | None:
    """The manager and lockfile name of the workspace root ``root``; None without a lockfile.

    A yarn.lock is yarn berry's when it has ``__metadata`` (yarn 2+ writes
    it first thing), or when the root has ``.yarnrc.yml`` (berry's config
    file) or a ``packageManager`` of ``yarn@2`` or later.
    """
    for name, manager in LOCKFILES:
        lockfile = root / name
        if not lockfile.is_file():
            continue
        if manager is Manager.YARN_CLASSIC:
            berry = (
                is_yarn_berry_lock(lockfile.read_text(errors="replace"))
                or (root / ".yarnrc.yml").is_file()
                or pinned_version(_read_manifest(root), Manager.YARN_BERRY) is not None
            )
            if berry:
                manager = Manager.YARN_BERRY
        return manager, name
    return None


def find_install_root(repo_root: Path, package_dir: Path) -> Path | None:
    """The directory whose lockfile installs ``package_dir``: itself or its nearest parent.

    Looked for from ``package_dir`` up to ``repo_root`` (inclusive); a
    workspace's lockfile sits at the workspace root, beside the manifest
    that lists the workspaces. None when no directory on the way has one.
    """
    repo_root = repo_root.resolve()
    current = package_dir.resolve()
    if current != repo_root and repo_root not in current.parents:
        raise InvalidConfig(f"{package_dir} is not inside {repo_root}")
    while True:
        if (current / MANIFEST).is_file() and detect_manager(current) is not None:
            return current
        if current == repo_root:
            return None
        current = current.parent


def pinned_version(manifest: dict[str, Any], manager: Manager) -> str | None:
    """The version ``packageManager`` pins for ``manager`` (with its hash, if any), else None.

    ``"pnpm@9.15.0+sha512.abc"`` -> ``"9.15.0+sha512.abc"``; a pin of
    another manager, or yarn 1 for berry (and the reverse), is not a pin of
    this one.
    """
    value = manifest.get("packageManager")
    if not isinstance(value, str):
        return None
    match = _PACKAGE_MANAGER.match(value.strip())
    if match is None or match.group(1) != manager.binary:
        return None
    major = int(match.group(2))
    if manager is Manager.YARN_CLASSIC and major != 1:
        return None
    if manager is Manager.YARN_BERRY and major < 2:
        return None
    return value.strip().split("@", 1)[1]


def pnpm_allows_builds(root: Path) -> bool:
    """Whether the repository lists dependencies pnpm may build (``onlyBuiltDependencies``).

    pnpm reads the list from package.json's ``pnpm`` field or from
    pnpm-workspace.yaml; pnpm runs those and no other dependency's scripts.
    """
    pnpm = _read_manifest(root).get("pnpm")
    if isinstance(pnpm, dict) and pnpm.get("onlyBuiltDependencies"):
        return True
    workspace = root / "pnpm-workspace.yaml"
    if workspace.is_file():
        # A key at the top level of the YAML; a full parser is not needed for "is it there".
        text = workspace.read_text(errors="replace")
        return bool(re.search(r"^onlyBuiltDependencies:\s*(\S|\n\s+-)", text, re.MULTILINE))
    return False


@dataclass(frozen=True)
class InstallCommand:
    """How to install one workspace root: argv, environment, and what was decided."""

    manager: Manager
    lockfile: str
    version: str | None
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # Whether dependencies' lifecycle scripts may run (repository allow-list or operator).
    scripts: bool = False

    def describe(self) -> str:
        """``pnpm@10.34.9 install --frozen-lockfile`` as a person would type it."""
        tool = self.manager.binary + (f"@{self.version}" if self.version else "")
        return " ".join([tool, *self.argv[2 if self.version else 1 :]])


def install_command(
    root: Path,
    *,
    allow_scripts: bool = False,
    package_cache: Path | None = None,
    npm: str = "npm",
    corepack: str = "corepack",
    environ: Mapping[str, str] = os.environ,
    link_yarn_cache: bool = True,
) -> InstallCommand:
    """The install of the workspace root ``root`` (which has a lockfile and package.json).

    ``allow_scripts`` (the repository's ``install_scripts`` setting) lets every
    dependency's lifecycle scripts run; without it npm and yarn get
    ``--ignore-scripts`` and pnpm runs only those the repository's
    ``onlyBuiltDependencies`` lists (and none when it lists none, on any pnpm
    version). ``package_cache``: the package managers' download caches go
    under it (``npm/``, ``pnpm-store/``, ``yarn/``); None keeps each one's
    per-user default, which is node-wide already. ``environ``: where corepack's
    registry comes from (npm's, unless COREPACK_NPM_REGISTRY is set).
    ``link_yarn_cache``: yarn classic, with scripts off, hard-links its
    packages' files from its cache instead of copying them
    (:func:`yarn_link_environment`).
    """
    found = detect_manager(root)
    if found is None:
        raise InvalidConfig(
            f"{root} has no lockfile ({', '.join(name for name, _ in LOCKFILES)}); "
            "install once with the repository's package manager and commit the lockfile"
        )
    manager, lockfile = found
    manifest = _read_manifest(root)
    env: dict[str, str] = {"NO_COLOR": "1", "npm_config_update_notifier": "false"}
    if manager is Manager.NPM:
        argv = [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"]
        if not allow_scripts:
            argv.append("--ignore-scripts")
        if package_cache is not None:
            env["npm_config_cache"] = str(package_cache / "npm")
        return InstallCommand(manager, lockfile, None, argv, env, scripts=allow_scripts)
    version = pinned_version(manifest, manager) or DEFAULT_VERSIONS[manager]
    base = [corepack, f"{manager.binary}@{version}"]
    env.update(corepack_env(environ))
    if manager is Manager.PNPM:
        argv = [*base, "install", "--frozen-lockfile", "--prefer-offline", "--reporter=append-only"]
        scripts = allow_scripts or pnpm_allows_builds(root)
        if allow_scripts:
            env["npm_config_dangerously_allow_all_builds"] = "true"
        elif not scripts:
            # pnpm 10 builds nothing unlisted by itself; earlier versions build everything.
            argv.append("--ignore-scripts")
        if package_cache is not None:
            argv.append(f"--store-dir={package_cache / 'pnpm-store'}")
        return InstallCommand(manager, lockfile, version, argv, env, scripts=scripts)
    if manager is Manager.YARN_CLASSIC:
        argv = [*base, "install", "--frozen-lockfile", "--prefer-offline", "--non-interactive"]
        argv += ["--no-progress", "--silent"]
        if not allow_scripts:
            argv.append("--ignore-scripts")
        # Named even when it is yarn's default: the links below are made only from it.
        cache_folder = (
            package_cache / "yarn" if package_cache is not None else yarn_default_cache_folder()
        )
        argv.append(f"--cache-folder={cache_folder}")
        if link_yarn_cache and not allow_scripts:
            env.update(yarn_link_environment(cache_folder, environ))
        return InstallCommand(manager, lockfile, version, argv, env, scripts=allow_scripts)
    # Yarn berry: settings through YARN_* variables, which take precedence over .yarnrc.yml.
    env.update(
        {
            # The studio resolves modules through node_modules (Vite, the template): a
            # repository on Plug'n'Play gets a node_modules install of the same lockfile.
            "YARN_NODE_LINKER": "node-modules",
            "YARN_ENABLE_SCRIPTS": "true" if allow_scripts else "false",
            "YARN_ENABLE_TELEMETRY": "0",
            "YARN_ENABLE_GLOBAL_CACHE": "true",
            # node_modules' files hard-linked from Yarn's content store in its global
            # folder instead of unpacked from each zip again: intro-storybook-react-template's
            # warm install 3.8-4.4 s against 5.7-15.4 s (docs/installs.md). Yarn downgrades
            # the mode itself where the store is on another filesystem; the links are
            # sealed with the rest of the entry (studio.install.seal), as the npm store's are.
            "YARN_NM_MODE": "hardlinks-global",
            "YARN_ENABLE_PROGRESS_BARS": "false",
        }
    )
    if package_cache is not None:
        env["YARN_GLOBAL_FOLDER"] = str(package_cache / "yarn-berry")
    argv = [*base, "install", "--immutable"]
    return InstallCommand(manager, lockfile, version, argv, env, scripts=allow_scripts)


# What each manager prints when the lockfile no longer matches package.json.
_OUT_OF_DATE = (
    "npm ci` can only install packages when your package.json",  # npm
    "ERR_PNPM_OUTDATED_LOCKFILE",  # pnpm
    "Your lockfile needs to be updated",  # yarn classic
    "YN0028",  # yarn berry: "The lockfile would have been modified by this install"
)


def lockfile_out_of_date(output: list[str]) -> bool:
    """Whether a failed install's ``output`` says the lockfile does not match package.json."""
    text = "\n".join(output)
    return any(marker in text for marker in _OUT_OF_DATE)


# pnpm 11 and later refuse an older Node ("This version of pnpm requires at least Node.js v22.13").
_NEEDS_NEWER_NODE = "requires at least Node.js"


def too_new_for_node(command: InstallCommand, output: list[str]) -> bool:
    """Whether a pinned pnpm/yarn refused to run on this node's Node.js version."""
    pinned = command.version is not None and command.version != DEFAULT_VERSIONS.get(
        command.manager
    )
    return pinned and any(_NEEDS_NEWER_NODE in line for line in output)


def with_default_version(command: InstallCommand) -> InstallCommand:
    """``command`` run by this node's default version of its manager instead of the pinned one.

    For a repository pinning a manager newer than this node's Node.js runs
    (pnpm 11 needs Node 22.13): the default reads the same lockfile format
    (pnpm 10 reads lockfile v9), and what it installs is what the lockfile says.
    """
    version = DEFAULT_VERSIONS[command.manager]
    argv = [command.argv[0], f"{command.manager.binary}@{version}", *command.argv[2:]]
    return replace(command, argv=argv, version=version)


def unfrozen(command: InstallCommand) -> InstallCommand:
    """``command`` allowed to bring the lockfile up to date (``npm install``, no frozen lockfile).

    A repository whose lockfile is behind its package.json installs with its
    own ``npm install``/``pnpm install`` on a developer's machine, so its
    Storybook works there; the studio does the same in the cache entry's
    build directory (the repository's own lockfile is not touched).
    """
    argv = list(command.argv)
    if command.manager is Manager.NPM:
        argv[argv.index("ci")] = "install"
        argv += ["--no-save"]
    elif command.manager is Manager.PNPM:
        argv[argv.index("--frozen-lockfile")] = "--no-frozen-lockfile"
    elif command.manager is Manager.YARN_CLASSIC:
        argv.remove("--frozen-lockfile")
    else:
        argv[argv.index("--immutable")] = "--no-immutable"
    return replace(command, argv=argv)


# corepack: no prompt, no "latest" look-up for an unpinned tool (the default is the
# node's, from setup), the version we name even when packageManager names another
# manager, and downloads (a pinned version not in its cache) from the npm registry,
# which also serves yarn berry (@yarnpkg/cli-dist) instead of yarn's own host.
_COREPACK_ENV = {
    "COREPACK_ENABLE_DOWNLOAD_PROMPT": "0",
    "COREPACK_DEFAULT_TO_LATEST": "0",
    "COREPACK_ENABLE_STRICT": "0",
    "COREPACK_ENABLE_AUTO_PIN": "0",
}


def corepack_env(environ: Mapping[str, str]) -> dict[str, str]:
    """What corepack needs in ``environ`` to download from the npm registry npm uses."""
    extra = dict(_COREPACK_ENV)
    if "COREPACK_INTEGRITY_KEYS" not in environ:
        # corepack checks a download against npm's registry signatures (dist.signatures),
        # which a registry mirror may not serve: every download would be refused. The
        # tarball's hash is still checked when the packageManager pin carries one.
        extra["COREPACK_INTEGRITY_KEYS"] = "0"
    if "COREPACK_NPM_REGISTRY" not in environ:
        registry = environ.get("npm_config_registry") or "https://registry.npmjs.org"
        extra["COREPACK_NPM_REGISTRY"] = registry.rstrip("/")
    return extra


def yarn_default_cache_folder() -> Path:
    """Yarn 1's own cache folder in the installer's environment (its ``getCacheDir``).

    That environment passes neither ``XDG_CACHE_HOME`` nor ``YARN_CACHE_FOLDER``
    (studio.process.environment), so it is the fallback: ``~/.cache/yarn``, and
    ``/usr/local/share/.cache/yarn`` for root (yarn's ``user-home-dir``).
    """
    home = Path("/usr/local/share") if os.geteuid() == 0 else Path.home()
    return home / ".cache" / "yarn"


def yarn_link_environment(cache_folder: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """Yarn classic's environment for copying files out of ``cache_folder`` as hard links.

    Yarn 1 copies every file from its cache into node_modules, a warm cache
    or not; the preload (``yarn_link_copies.cjs``) makes each such copy a hard
    link, the rest of the install yarn's own. The links are sealed with the
    rest of the entry (studio.install.seal), as the npm store's are. Measured
    in docs/installs.md. The operator's NODE_OPTIONS are kept.
    """
    preload = f"--require {json.dumps(str(_YARN_LINK_COPIES))}"
    options = " ".join(filter(None, [environ.get("NODE_OPTIONS", ""), preload]))
    return {"NODE_OPTIONS": options, "STUDIO_YARN_LINK_FROM": str(cache_folder)}


def _read_manifest(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise InvalidConfig(f"{root / MANIFEST} is not valid JSON: {exc}") from exc
    return data if isinstance(data, dict) else {}
