"""The node-local install cache: ``npm ci`` once per lockfile, linked everywhere.

Every sandbox needs the studio template's node_modules and, when the
repository has a lockfile, the repository's own. Installing per sandbox would
cost seconds of CPU each time (docs/performance.md, install cache); instead
each distinct lockfile (and Node major version, since native packages differ
by ABI) is installed once per node into ``<cache_root>/<key>/node_modules``.
A sandbox's ``.studio/node_modules`` is a symlink to the template's entry
(:func:`studio.vite.generate_studio_app`: so that a Vite standby's modules
are the ones it loads); a repository's own are a hard-link copy (``cp -al``,
:func:`link_node_modules`): the repository's tools may add files to their
node_modules (a ``.cache``), which then land in the sandbox's own
directories, not in the cache.

An entry is built in a temporary directory and renamed into place, so an
entry that exists is complete: a crash mid-install leaves only a temporary
directory, which the next build of that key removes. Builds of one key are
serialised by a file lock (``fcntl.flock``), so concurrent sandboxes, in
threads or separate processes, run ``npm ci`` once between them.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from studio.errors import ProcessStartError
from studio.install import npm_store, seal
from studio.install.managers import (
    LOCKFILES,
    MANIFEST,
    InstallCommand,
    Manager,
    detect_manager,
    install_command,
    lockfile_out_of_date,
    too_new_for_node,
    unfrozen,
    with_default_version,
)
from studio.process.environment import installer_environment

__all__ = [
    "ENTRY_RECORD",
    "InstallOptions",
    "InstalledTree",
    "cache_key",
    "cache_package_json",
    "ensure_install",
    "ensure_node_modules",
    "entry_name",
    "install_inputs",
    "install_key",
    "link_node_modules",
    "node_major_version",
    "npm_output_summary",
    "parse_node_major",
]

logger = logging.getLogger(__name__)

OUTPUT_TAIL_LINES = 60
# What an entry records of its install, beside its node_modules.
ENTRY_RECORD = ".studio-install.json"
# Files and folders of a workspace root that an install reads besides manifests and lockfile.
_CONFIG_FILES = (
    ".npmrc",
    ".yarnrc",
    ".yarnrc.yml",
    "pnpm-workspace.yaml",
    ".pnpmfile.cjs",
)
_CONFIG_DIRS = (".yarn/releases", ".yarn/plugins", ".yarn/patches", "patches")
_SKIPPED_DIRS = frozenset({"node_modules", ".git", ".studio"})
# The retry of a failed install with scripts: each manager's switch for "none at all".
_NO_SCRIPTS: dict[Manager, list[str]] = {Manager.PNPM: ["--ignore-scripts"]}


def parse_node_major(version_output: str) -> str:
    """``'v20.20.2\\n'`` -> ``'20'``; ValueError on anything else."""
    text = version_output.strip().removeprefix("v")
    major = text.split(".", 1)[0]
    if not major.isdigit():
        raise ValueError(f"not a Node version: {version_output!r}")
    return major


@functools.cache
def node_major_version(node: str = "node") -> str:
    """The major version of the ``node`` executable, e.g. ``'20'``."""
    try:
        result = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ProcessStartError(
            f"cannot run {node!r} --version: {exc}; install Node.js 20 or later",
            output=[],
        ) from exc
    return parse_node_major(result.stdout)


def npm_output_summary(output: str, lines: int = OUTPUT_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of npm's output without its usage text.

    On a usage error (lockfile out of sync) npm prints the reason and then
    ~80 lines of ``npm ci`` help, which would push the reason out of a tail.
    """
    kept: list[str] = []
    in_usage = False
    for line in output.splitlines():
        body = line.removeprefix("npm error").strip()
        if body == "Usage:":
            in_usage = True
        elif in_usage and body.startswith('Run "npm help'):
            in_usage = False
            continue
        if not in_usage:
            kept.append(line)
    return kept[-lines:]


def cache_key(lockfile: bytes, node_major: str, tool: str = "npm ci") -> str:
    """The cache entry name of install inputs ``lockfile`` run by ``tool`` on Node ``node_major``.

    ``lockfile`` is the lockfile's bytes, or (:func:`install_inputs`) every
    file the install reads; ``tool`` the command as described (manager,
    version, whether scripts run), so a change of either is another entry.
    """
    digest = hashlib.sha256()
    digest.update(f"node{node_major}\0{tool}\0".encode())
    digest.update(lockfile)
    return digest.hexdigest()[:32]


def cache_package_json(manifest: dict[str, Any]) -> dict[str, Any]:
    """The package.json to install a cache entry from: ``manifest`` without ``scripts``.

    The entry holds only the manifests and the lockfile, so the packages' own
    lifecycle scripts (``prepare: husky``, ``postinstall: patch-package``)
    would run without the files they expect. Dependencies' install scripts
    are the install command's to allow (:func:`~studio.install.managers.install_command`).
    """
    return {key: value for key, value in manifest.items() if key != "scripts"}


@dataclass(frozen=True)
class InstalledTree:
    """One install-cache entry: a workspace root's node_modules, installed once per node."""

    entry: Path
    # Where the entry has node_modules, relative to the workspace root ("." is the root).
    node_modules: tuple[str, ...]
    command: str
    scripts: bool
    # What went wrong and was worked around (an install script that failed).
    warnings: tuple[str, ...] = ()

    @property
    def root_modules(self) -> Path:
        return self.entry / "node_modules"

    def link_into(self, root: Path) -> list[Path]:
        """Hard-link each node_modules of the entry into ``root`` where it has none yet."""
        linked = []
        for relative in self.node_modules:
            target = root / relative / "node_modules"
            if target.exists() or target.is_symlink() or not target.parent.is_dir():
                continue
            link_node_modules(self.entry / relative / "node_modules", target)
            linked.append(target)
        return linked


def install_inputs(root: Path) -> dict[str, bytes]:
    """Every file the install of workspace root ``root`` reads, by relative POSIX path.

    The lockfile, the package managers' config files and patches, local
    ``file:`` dependencies, and the manifests (``scripts`` removed): the root's, and in a workspace
    (``workspaces`` in package.json, or pnpm-workspace.yaml) every
    package.json below the root, whichever the workspace globs select
    (the package manager ignores the others).
    """
    found = detect_manager(root)
    if found is None or not (root / MANIFEST).is_file():
        raise ProcessStartError(
            f"{root} needs {MANIFEST} and a lockfile "
            f"({', '.join(name for name, _ in LOCKFILES)}) to install its dependencies; "
            "install once with the repository's package manager and commit the lockfile",
            output=[],
        )
    inputs: dict[str, bytes] = {found[1]: (root / found[1]).read_bytes()}
    for name in _CONFIG_FILES:
        if (root / name).is_file():
            inputs[name] = (root / name).read_bytes()
    for folder in _CONFIG_DIRS:
        base = root / folder
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file():
                    inputs[path.relative_to(root).as_posix()] = path.read_bytes()
    root_manifest = _load_manifest(root / MANIFEST)
    manifests = [root / MANIFEST]
    if "workspaces" in root_manifest or (root / "pnpm-workspace.yaml").is_file():
        manifests += _member_manifests(root)
    for path in manifests:
        data = root_manifest if path == root / MANIFEST else _load_manifest(path)
        text = json.dumps(cache_package_json(data), indent=2) + "\n"
        inputs[path.relative_to(root).as_posix()] = text.encode()
        for local in _local_dependencies(data, path.parent, root):
            inputs.setdefault(local.relative_to(root).as_posix(), local.read_bytes())
    return inputs


def _local_dependencies(manifest: dict[str, Any], base: Path, root: Path) -> list[Path]:
    """The files of ``file:`` dependencies (a tarball, a directory) inside ``root``.

    They are part of what the install reads, so they go into the entry and its key.
    """
    found: list[Path] = []
    for field in ("dependencies", "devDependencies", "optionalDependencies"):
        specs = manifest.get(field)
        if not isinstance(specs, dict):
            continue
        for spec in specs.values():
            if not isinstance(spec, str) or not spec.startswith("file:"):
                continue
            target = (base / spec.removeprefix("file:")).resolve()
            if not target.is_relative_to(root.resolve()):
                continue
            if target.is_file():
                found.append(root / target.relative_to(root.resolve()))
            elif target.is_dir():
                for directory, subdirs, files in os.walk(target):
                    subdirs[:] = sorted(d for d in subdirs if d not in _SKIPPED_DIRS)
                    found += [
                        root / (Path(directory) / name).relative_to(root.resolve())
                        for name in sorted(files)
                    ]
    return found


@dataclass(frozen=True)
class InstallOptions:
    """How a repository is installed: its settings, and the tools' paths."""

    # Dependencies' lifecycle scripts may run (the repository's ``install_scripts``).
    allow_scripts: bool = False
    # The package managers' download caches (None: each one's per-user default).
    package_cache: Path | None = None
    npm: str = "npm"
    corepack: str = "corepack"
    # The node-wide store an npm lockfile is linked from (None: ``npm-store`` in
    # package_cache when that is set, else npm_store.default_store()).
    npm_store: Path | None = None
    # Off: every npm lockfile is installed by npm ci (the control of the store's measurements).
    link_npm_from_store: bool = True
    # Off: yarn classic copies its cache's files (the control of yarn_link_environment's).
    link_yarn_from_cache: bool = True

    def command(self, root: Path, *, allow_scripts: bool | None = None) -> InstallCommand:
        """The install command of workspace root ``root`` with these options."""
        return install_command(
            root,
            allow_scripts=self.allow_scripts if allow_scripts is None else allow_scripts,
            package_cache=self.package_cache,
            npm=self.npm,
            corepack=self.corepack,
            link_yarn_cache=self.link_yarn_from_cache,
        )


def install_key(inputs: dict[str, bytes], command: InstallCommand, node: str = "node") -> str:
    """The install-cache entry name of ``inputs`` installed by ``command``."""
    # Whether scripts run is not always in argv (yarn berry takes it from its environment).
    tool = f"{command.describe()}\0scripts={command.scripts}"
    return cache_key(_pack(inputs), node_major_version(node), tool)


def entry_name(root: Path, options: InstallOptions | None = None, *, node: str = "node") -> str:
    """The name of the install-cache entry that installs workspace root ``root``."""
    return install_key(install_inputs(root), (options or InstallOptions()).command(root), node)


def ensure_install(
    root: Path,
    cache_root: Path,
    options: InstallOptions | None = None,
    *,
    node: str = "node",
    timeout: float = 600.0,
) -> InstalledTree:
    """The install-cache entry of workspace root ``root``, installing it if needed.

    ``root`` holds package.json and a lockfile (npm, pnpm or yarn: see
    :mod:`studio.install.managers`). When dependencies' scripts were allowed
    and the install fails, it is tried once more with scripts off (an
    install script that downloads a binary must not stop a sandbox), and
    the entry carries a warning. Raises :class:`ProcessStartError` with the
    tool's output (``details["output"]``) when the install fails.
    """
    options = options or InstallOptions()
    inputs = install_inputs(root)
    command = options.command(root)
    key = install_key(inputs, command, node)
    entry = cache_root / key
    # An entry only ever appears by rename, complete: no lock needed to use it.
    if (entry / "node_modules").is_dir():
        record = _record(entry)
        if _unsealed(record):
            with _key_lock(cache_root, key):
                _seal_unsealed(entry)
        return _tree(entry, record, command)
    with _key_lock(cache_root, key):
        if (entry / "node_modules").is_dir():
            _seal_unsealed(entry)
            return _read_entry(entry, command)
        for stale in cache_root.glob(f".build-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        build = Path(tempfile.mkdtemp(dir=cache_root, prefix=f".build-{key}-"))
        try:
            _write_inputs(build, inputs)
            warnings = _install(command, options, root, build, inputs, timeout)
            # A package without dependencies gets no node_modules from its manager.
            (build / "node_modules").mkdir(exist_ok=True)
            record = {
                "command": command.describe(),
                "scripts": command.scripts and not warnings,
                "node_modules": _modules_dirs(build),
                "warnings": warnings,
            }
            _seal_modules(build, record)
            _write_record(build, record)
            build.rename(entry)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
    logger.info(
        "install cache entry built",
        extra={"key": key, "root": str(root), "command": command.describe()},
    )
    return _read_entry(entry, command)


def ensure_node_modules(
    package_dir: Path,
    cache_root: Path,
    *,
    npm: str = "npm",
    node: str = "node",
    timeout: float = 600.0,
) -> Path:
    """The cached root node_modules of ``package_dir`` (the studio template's install)."""
    options = InstallOptions(npm=npm)
    return ensure_install(package_dir, cache_root, options, node=node, timeout=timeout).root_modules


def _install(
    command: InstallCommand,
    options: InstallOptions,
    root: Path,
    build: Path,
    inputs: dict[str, bytes],
    timeout: float,
) -> list[str]:
    """Run ``command`` in ``build``; the warnings of a retry (lockfile out of date, scripts)."""
    if _linked_from_store(command, options, root, build):
        return []
    try:
        _run_install(command, build, timeout)
        return []
    except ProcessStartError as exc:
        failed = exc.details.get("output") or []
        if exc.details.get("returncode") is None:
            raise
        lines = [str(line) for line in failed]
        if too_new_for_node(command, lines):
            default = with_default_version(command)
            why = (
                f"{command.describe()} does not run on this node's Node.js "
                f"{node_major_version()}; installed with {default.describe()} instead"
            )
            return _retry(default, why, options, root, build, inputs, timeout)
        if lockfile_out_of_date(lines):
            loose = unfrozen(command)
            why = (
                f"{command.lockfile} is out of date with package.json, so {command.describe()} "
                f"refused it; installed with {loose.describe()} instead (the repository's "
                "lockfile is unchanged: commit an updated one for a reproducible install)"
            )
            return _retry(loose, why, options, root, build, inputs, timeout)
        if not command.scripts:
            raise
    logger.warning(
        "install with dependency scripts failed; installing again without them",
        extra={"root": str(root), "command": command.describe()},
    )
    # Start over: what the failed run left half-made is not to be trusted.
    _reset_build(build, inputs)
    safe = options.command(root, allow_scripts=False)
    safe = replace(safe, argv=[*safe.argv, *_NO_SCRIPTS.get(safe.manager, [])], scripts=False)
    _run_install(safe, build, timeout)
    tail = "\n".join(str(line) for line in failed[-10:])
    return [
        f"{command.describe()} failed in a dependency's install script; installed "
        f"without dependencies' scripts instead. Its output ended with:\n{tail}"
    ]


def _linked_from_store(
    command: InstallCommand, options: InstallOptions, root: Path, build: Path
) -> bool:
    """Whether ``npm ci``'s tree was linked from the node's npm store instead (see npm_store)."""
    if not (options.link_npm_from_store and command.manager is Manager.NPM):
        return False
    if command.scripts or "ci" not in command.argv[1:2]:
        return False
    store = options.npm_store or (
        options.package_cache / "npm-store" if options.package_cache else npm_store.default_store()
    )
    npm_cache = npm_store.default_npm_cache({**os.environ, **command.env})
    why = npm_store.link_install(build, command.lockfile, store, npm_cache)
    if why is not None:
        logger.info(
            "npm lockfile installed by npm ci, not linked from the store",
            extra={"root": str(root), "reason": why},
        )
        return False
    logger.info(
        "npm lockfile linked from the store", extra={"root": str(root), "store": str(store)}
    )
    return True


def _retry(
    replacement: InstallCommand,
    why: str,
    options: InstallOptions,
    root: Path,
    build: Path,
    inputs: dict[str, bytes],
    timeout: float,
) -> list[str]:
    """Install again from clean inputs with ``replacement``; ``why`` heads its warnings."""
    logger.warning(why, extra={"root": str(root), "command": replacement.describe()})
    _reset_build(build, inputs)
    return [why, *_install(replacement, options, root, build, inputs, timeout)]


def _reset_build(build: Path, inputs: dict[str, bytes]) -> None:
    """Empty ``build`` but for the install's inputs: a failed run's leftovers are not trusted."""
    for child in build.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    _write_inputs(build, inputs)


def _write_inputs(build: Path, inputs: dict[str, bytes]) -> None:
    for relative, content in inputs.items():
        path = build / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def link_node_modules(cached: Path, target: Path) -> None:
    """Make ``target`` a hard-link copy of ``cached`` (replacing what is there).

    The copy is made beside ``target`` and renamed into place, so ``target``
    is never half populated. Falls back to a plain copy when the two lie on
    different filesystems. Never write into a file of ``target`` in place: it
    is the cache's file.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    token = os.urandom(4).hex()
    staging = target.with_name(f".{target.name}.link-{token}")
    result = subprocess.run(
        ["cp", "-al", str(cached), str(staging)], capture_output=True, text=True
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        logger.warning("cp -al failed (%s), copying instead", result.stderr.strip())
        result = subprocess.run(
            ["cp", "-a", str(cached), str(staging)], capture_output=True, text=True
        )
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise ProcessStartError(
                f"cannot copy {cached} to {target}: {result.stderr.strip()}",
                output=result.stderr.splitlines(),
            )
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{token}")
        target.rename(old)
        staging.rename(target)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
    else:
        staging.rename(target)


@contextlib.contextmanager
def _key_lock(cache_root: Path, key: str) -> Iterator[None]:
    locks = cache_root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / f"{key}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_install(command: InstallCommand, cwd: Path, timeout: float) -> None:
    argv = command.argv
    env = installer_environment(command.env)
    tool = command.describe()
    try:
        # Own session: on a timeout the whole tree (the tool, its scripts) is killed.
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    except OSError as exc:
        raise ProcessStartError(
            f"cannot run {argv[0]!r}: {exc}; install Node.js (npm and corepack come with it) "
            "and run scripts/setup.sh",
            output=[],
        ) from exc
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        tail = npm_output_summary(output)
        raise ProcessStartError(
            f"{tool} did not finish within {timeout:g} s in {cwd}; check the network "
            "and the npm registry",
            output=tail,
        ) from None
    if proc.returncode != 0:
        tail = npm_output_summary(output)
        raise ProcessStartError(
            f"{tool} failed with exit code {proc.returncode}; its output:\n" + "\n".join(tail),
            output=tail,
            returncode=proc.returncode,
        )


def _seal_modules(entry: Path, record: dict[str, Any]) -> None:
    """Seal the entry's files (studio.install.seal): every sandbox links them."""
    if not seal.can_seal():
        return
    for relative in record.get("node_modules") or ["."]:
        seal.seal_tree(entry / relative / "node_modules")
    record["sealed"] = True


def _record(entry: Path) -> dict[str, Any]:
    try:
        record: dict[str, Any] = json.loads((entry / ENTRY_RECORD).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return record


def _unsealed(record: dict[str, Any]) -> bool:
    """Whether an entry's record is from before entries were sealed (and this process may seal)."""
    return bool(record) and not record.get("sealed") and seal.can_seal()


def _seal_unsealed(entry: Path) -> None:
    """Seal an entry built before entries were sealed; the caller holds its key's lock."""
    record = _record(entry)
    if _unsealed(record):
        _seal_modules(entry, record)
        _write_record(entry, record)


def _read_entry(entry: Path, command: InstallCommand) -> InstalledTree:
    return _tree(entry, _record(entry), command)


def _tree(entry: Path, record: dict[str, Any], command: InstallCommand) -> InstalledTree:
    return InstalledTree(
        entry=entry,
        node_modules=tuple(record.get("node_modules") or ["."]),
        command=str(record.get("command") or command.describe()),
        scripts=bool(record.get("scripts", command.scripts)),
        warnings=tuple(record.get("warnings") or ()),
    )


def _write_record(entry: Path, record: dict[str, Any]) -> None:
    # Renamed into place: a reader never sees half a record.
    staging = entry / f"{ENTRY_RECORD}.{os.getpid()}"
    staging.write_text(json.dumps(record, indent=2) + "\n")
    staging.rename(entry / ENTRY_RECORD)


def _modules_dirs(build: Path) -> list[str]:
    """The directories of ``build`` (outside node_modules) that got a node_modules."""
    found = []
    for directory, subdirs, _files in os.walk(build):
        if "node_modules" in subdirs:
            found.append(Path(directory).relative_to(build).as_posix())
        subdirs[:] = [d for d in subdirs if d != "node_modules" and not d.startswith(".")]
    return sorted(found)


def _member_manifests(root: Path) -> list[Path]:
    manifests = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in _SKIPPED_DIRS and not d.startswith("."))
        if MANIFEST in files and Path(directory) != root:
            manifests.append(Path(directory) / MANIFEST)
    return manifests


def _load_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ProcessStartError(f"{path} is not valid JSON: {exc}", output=[]) from exc
    return data if isinstance(data, dict) else {}


def _pack(inputs: dict[str, bytes]) -> bytes:
    digest = hashlib.sha256()
    for relative in sorted(inputs):
        digest.update(relative.encode() + b"\0")
        digest.update(hashlib.sha256(inputs[relative]).digest())
    return digest.digest()
