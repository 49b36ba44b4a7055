"""An npm lockfile installed by hard links from a node-wide store of unpacked packages.

``npm ci`` with a warm download cache still unpacks every tarball and
rebuilds the tree: 10.3 s for weDevsOfficial/tail-react's 525 packages on
the 2-core machine (2026-12-06). Unpacked once into a store keyed by
integrity (as pnpm's store is), a package is then only hard-linked into each
new install: the same tree in 1.0 s, and 7.1 s the first time, unpacked from
npm's own download cache. Every file of the result is the one ``npm ci``
writes, with its mode; ``node_modules/.bin`` is linked as npm links it.

Only a lockfile npm would install as written is linked here: lockfile v2 or
v3, package.json's dependencies as it resolved them, every package a registry
tarball with an integrity whose bytes npm's cache already holds, no
workspaces, and dependencies' scripts off (nothing here runs them). Anything
else is ``npm ci``'s (:func:`link_install` says why), and so is every
tarball the first time: this never downloads.

The store is a cache like npm's: its directories appear complete by rename,
so several installs may fill it at once.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import json
import os
import platform
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["StorePackage", "default_npm_cache", "default_store", "link_install", "plan_install"]

# Bumped when what a store directory holds changes (its files, their modes).
_LAYOUT = "v1"
# Unpacking is zlib and file writes, which release the GIL: a few threads fill two cores.
_THREADS = 4
_DEPENDENCY_FIELDS = (
    "dependencies",
    "devDependencies",
    "optionalDependencies",
    "peerDependencies",
)
# A dependency's own edges (a lockfile entry lists its peers beside its dependencies).
_EDGE_FIELDS = ("dependencies", "optionalDependencies", "peerDependencies")
# npm's default umask, applied to a file's mode from the tarball.
_NPM_UMASK = 0o022
_NPM_PLATFORM = {"linux": "linux", "darwin": "darwin", "win32": "win32"}
_NPM_CPU = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class StorePackage:
    """One package of the lockfile: where it goes, and what it is."""

    # Its folder relative to the install root (``node_modules/a/node_modules/@s/b``).
    path: str
    algorithm: str
    digest: bytes
    # The commands it declares (``bin`` in the lockfile), name -> file inside it.
    bins: Mapping[str, str]

    @property
    def store_name(self) -> str:
        return f"{self.algorithm}-{self.digest.hex()}"


def default_npm_cache(env: Mapping[str, str] = os.environ) -> Path:
    """npm's download cache: ``npm_config_cache`` when set, else npm's default ``~/.npm``."""
    for name in ("npm_config_cache", "NPM_CONFIG_CACHE"):
        if env.get(name):
            return Path(env[name])
    return Path.home() / ".npm"


def default_store(env: Mapping[str, str] = os.environ) -> Path:
    """The node-wide store: ``$XDG_CACHE_HOME/component-studio/npm-store`` (``~/.cache``)."""
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "component-studio" / "npm-store"


def plan_install(root: Path, lockfile: str) -> list[StorePackage] | str:
    """The packages ``npm ci`` would install at ``root``, or why it is npm's to do."""
    try:
        lock = json.loads((root / lockfile).read_text())
        manifest = json.loads((root / "package.json").read_text())
    except (OSError, ValueError) as exc:
        return f"unreadable {lockfile} or package.json: {exc}"
    packages = lock.get("packages") if isinstance(lock, dict) else None
    if not isinstance(packages, dict) or lock.get("lockfileVersion", 1) < 2:
        return f"{lockfile} is lockfile v1 (no packages map)"
    # npm ci installs package.json's dependencies as the lockfile resolved them.
    # One the lockfile resolved for another range (or not at all) makes it
    # refuse; one only the lockfile still lists is left out.
    own = packages.get("", {})
    for field in _DEPENDENCY_FIELDS:
        locked = own.get(field) or {}
        for name, spec in (manifest.get(field) or {}).items():
            if locked.get(name) != spec:
                return f"package.json's {field} {name}@{spec} is not what {lockfile} resolved"
    packages = {**packages, "": {**own, **{f: manifest.get(f) or {} for f in _DEPENDENCY_FIELDS}}}
    for path, entry in packages.items():
        if not isinstance(entry, dict):
            return f"{lockfile} entry {path!r} is not an object"
        if path and (entry.get("link") or not path.startswith("node_modules/")):
            return f"{lockfile} has workspaces ({path})"
    planned: list[StorePackage] = []
    for path in sorted(_installed(packages)):
        entry = packages[path]
        if entry.get("inBundle"):
            # It comes inside its parent's tarball.
            continue
        package = _store_package(path, entry)
        if isinstance(package, str):
            return package
        planned.append(package)
    return planned


def link_install(root: Path, lockfile: str, store: Path, npm_cache: Path) -> str | None:
    """Make ``root/node_modules`` from the store; None when done, else why it is npm's to do.

    When it returns a reason nothing was made at ``root``: the caller runs
    ``npm ci`` as it would have.
    """
    planned = plan_install(root, lockfile)
    if isinstance(planned, str):
        return planned
    unpacked = store / _LAYOUT
    unpacked.mkdir(parents=True, exist_ok=True)
    unique = {package.store_name: package for package in planned}
    with ThreadPoolExecutor(_THREADS) as pool:
        problems = [
            p for p in pool.map(lambda p: _unpack(p, unpacked, npm_cache), unique.values()) if p
        ]
    if problems:
        return problems[0]
    modules = root / "node_modules"
    try:
        with ThreadPoolExecutor(_THREADS) as pool:
            list(pool.map(lambda p: _link_tree(unpacked / p.store_name, root / p.path), planned))
        _link_bins(root, planned)
    except OSError as exc:
        # Another filesystem (no hard links across), or a full disk: npm's turn, from clean.
        shutil.rmtree(modules, ignore_errors=True)
        return f"cannot link from the store {store}: {exc}"
    return None


def _installed(packages: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """The lockfile's packages npm installs here: those the root reaches, as Node resolves.

    A package for another platform (esbuild's, a wasm32 binding) is skipped,
    and with it what only it needed (its own nested copies, an optional
    package nothing else depends on), as npm removes a failed optional
    dependency and its optional set. An optional peer is followed only
    through another package's dependency on it, and a package the lockfile
    marks extraneous (nothing depends on it) is not installed: npm ci prunes it.
    """
    reached: set[str] = set()
    waiting = [""]
    while waiting:
        at = waiting.pop()
        entry = packages[at]
        optional_peers = {
            name
            for name, meta in (entry.get("peerDependenciesMeta") or {}).items()
            if isinstance(meta, dict) and meta.get("optional")
        }
        for field in _EDGE_FIELDS if at else _DEPENDENCY_FIELDS:
            for name in entry.get(field) or {}:
                if field == "peerDependencies" and name in optional_peers:
                    # installed only when something else depends on it
                    continue
                target = _resolve(packages, at, name)
                if target is None or target in reached:
                    continue
                if packages[target].get("extraneous") or not _fits_this_machine(packages[target]):
                    continue
                reached.add(target)
                waiting.append(target)
    return reached


def _resolve(packages: Mapping[str, object], at: str, name: str) -> str | None:
    """The folder Node finds ``name`` in from package folder ``at`` (nearest node_modules up)."""
    base = at
    while True:
        candidate = f"{base}/node_modules/{name}" if base else f"node_modules/{name}"
        if candidate in packages:
            return candidate
        if not base:
            return None
        base = base[: base.rfind("node_modules/")].rstrip("/")


@functools.cache
def _this_machine() -> dict[str, str]:
    """This machine as npm names it: ``os``, ``cpu`` and ``libc`` ("" when not glibc).

    Once per process: ``platform.libc_ver()`` reads the Python binary.
    """
    machine = platform.machine().lower()
    return {
        "os": _NPM_PLATFORM.get(sys.platform, sys.platform),
        "cpu": _NPM_CPU.get(machine, machine),
        "libc": "glibc" if platform.libc_ver()[0] == "glibc" else "",
    }


def _fits_this_machine(entry: Mapping[str, Any]) -> bool:
    """npm's platform check of a package's ``os``/``cpu`` lists (``!x`` excludes x)."""
    here = _this_machine()
    for key in ("os", "cpu"):
        value = here[key]
        allowed = entry.get(key)
        if not allowed:
            continue
        names = [allowed] if isinstance(allowed, str) else list(allowed)
        excluded = {name[1:] for name in names if name.startswith("!")}
        included = {name for name in names if not name.startswith("!")}
        if value in excluded or (included and value not in included):
            return False
    libc = entry.get("libc")
    if libc:
        names = [libc] if isinstance(libc, str) else list(libc)
        if not here["libc"] or here["libc"] not in names:
            return False
    return True


def _store_package(path: str, entry: Mapping[str, Any]) -> StorePackage | str:
    # Lockfiles written with omit-lockfile-registry-resolved name no tarball: the
    # registry's, found in npm's cache by integrity all the same.
    resolved = str(entry.get("resolved", "https://"))
    integrity = str(entry.get("integrity", ""))
    if not resolved.startswith(("https://", "http://")) or not integrity:
        return f"{path} is not a registry tarball with an integrity ({resolved})"
    # The strongest hash of the list, as npm checks it.
    choices = dict(item.split("-", 1) for item in integrity.split() if "-" in item)
    algorithm = next(
        (name for name in ("sha512", "sha384", "sha256", "sha1") if name in choices), ""
    )
    if not algorithm:
        return f"{path} has an integrity npm's cache does not key ({integrity[:40]})"
    try:
        digest = base64.b64decode(choices[algorithm], validate=True)
    except binascii.Error:
        return f"{path} has a malformed integrity ({integrity[:40]})"
    bins = entry.get("bin") or {}
    if not isinstance(bins, dict):
        return f"{path} has a bin field npm would have normalised ({bins!r})"
    return StorePackage(path, algorithm, digest, {str(k): str(v) for k, v in bins.items()})


def _cached_tarball(package: StorePackage, npm_cache: Path) -> Path:
    """Where npm's cache (cacache) keeps the tarball: by its content's hash."""
    hexdigest = package.digest.hex()
    return (
        npm_cache
        / "_cacache"
        / "content-v2"
        / package.algorithm
        / hexdigest[:2]
        / hexdigest[2:4]
        / hexdigest[4:]
    )


def _unpack(package: StorePackage, unpacked: Path, npm_cache: Path) -> str | None:
    """Unpack ``package`` into the store unless it is there; None, or why it cannot be."""
    target = unpacked / package.store_name
    if target.is_dir():
        return None
    tarball = _cached_tarball(package, npm_cache)
    try:
        data = tarball.read_bytes()
    except OSError:
        return f"{package.path}'s tarball is not in npm's cache {npm_cache}"
    if hashlib.new(package.algorithm, data).digest() != package.digest:
        return f"{package.path}'s tarball in npm's cache does not match its integrity"
    scratch = Path(tempfile.mkdtemp(dir=unpacked, prefix=f".unpack-{package.store_name[:24]}-"))
    try:
        _extract(data, scratch)
        try:
            scratch.rename(target)
        except OSError:
            # Another install unpacked it first: theirs is the same bytes.
            if not target.is_dir():
                raise
    except (OSError, tarfile.TarError, EOFError) as exc:
        return f"cannot unpack {package.path}: {exc}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return None


def _extract(data: bytes, into: Path) -> None:
    """Unpack a package tarball as npm (pacote's extract) does.

    Its first path component (``package/``, whatever its name) is dropped;
    only files and directories are made, never links; a file's mode is the
    tarball's made owner-writable and world-readable under npm's umask; a
    ``.gitignore`` becomes ``.npmignore`` unless that came first (npm pack's
    old renaming, undone); a path leaving the package is skipped.
    """
    ignores: set[PurePosixPath] = set()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar:
            if not (member.isreg() or member.isdir()):
                continue
            name = PurePosixPath(member.name)
            parts = name.parts[1:]
            if not parts or ".." in parts or name.is_absolute():
                continue
            relative = PurePosixPath(*parts)
            target = into / relative
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if relative.name == ".npmignore":
                ignores.add(relative)
            elif relative.name == ".gitignore":
                relative = relative.with_name(".npmignore")
                if relative in ignores:
                    continue
                target = into / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            if source is None:
                continue
            with source, target.open("wb") as out:
                shutil.copyfileobj(source, out)
            target.chmod(((member.mode | 0o666) & ~_NPM_UMASK) | 0o600)


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link every file of ``source`` under ``target`` (directories are made)."""
    for directory, _, files in os.walk(source):
        relative = Path(directory).relative_to(source)
        (target / relative).mkdir(parents=True, exist_ok=True)
        for name in files:
            os.link(Path(directory) / name, target / relative / name)


def _link_bins(root: Path, packages: Iterable[StorePackage]) -> None:
    """``.bin`` links as npm makes them: beside each package, executable targets."""
    for package in packages:
        folder = root / package.path
        modules = folder.parent.parent if folder.parent.name.startswith("@") else folder.parent
        for name, file in sorted(package.bins.items()):
            command = PurePosixPath(name).name
            executable = Path(os.path.normpath(folder / file))
            if not command or not executable.is_relative_to(folder):
                continue
            link = modules / ".bin" / command
            if link.is_symlink() or not executable.is_file():
                continue
            link.parent.mkdir(exist_ok=True)
            link.symlink_to(os.path.relpath(executable, link.parent))
            executable.chmod(0o755)
