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
from pathlib import Path
from typing import Any

from studio.errors import ProcessStartError
from studio.process.environment import installer_environment

__all__ = [
    "NPM_CI_ARGS",
    "cache_key",
    "cache_package_json",
    "ensure_node_modules",
    "link_node_modules",
    "node_major_version",
    "npm_output_summary",
    "parse_node_major",
]

logger = logging.getLogger(__name__)

NPM_CI_ARGS = ("ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error")
LOCKFILE = "package-lock.json"
MANIFEST = "package.json"
OUTPUT_TAIL_LINES = 60


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


def cache_key(lockfile: bytes, node_major: str) -> str:
    """The cache entry name of a lockfile installed with Node ``node_major``."""
    digest = hashlib.sha256()
    digest.update(f"node{node_major}\0".encode())
    digest.update(lockfile)
    return digest.hexdigest()[:32]


def cache_package_json(manifest: dict[str, Any]) -> dict[str, Any]:
    """The package.json to install a cache entry from: ``manifest`` without ``scripts``.

    The entry holds only the manifest and the lockfile, so the package's own
    lifecycle scripts (``prepare: husky``, ``postinstall: patch-package``)
    would run without the files they expect. Dependencies' install scripts
    still run.
    """
    return {key: value for key, value in manifest.items() if key != "scripts"}


def ensure_node_modules(
    package_dir: Path,
    cache_root: Path,
    *,
    npm: str = "npm",
    node: str = "node",
    timeout: float = 600.0,
) -> Path:
    """The cached node_modules for ``package_dir``'s lockfile, installing it if needed.

    ``package_dir`` holds package.json and package-lock.json. Returns
    ``<cache_root>/<key>/node_modules``. Raises :class:`ProcessStartError`
    with npm's output (``details["output"]``) when ``npm ci`` fails.
    """
    lockfile = package_dir / LOCKFILE
    manifest = package_dir / MANIFEST
    if not lockfile.is_file() or not manifest.is_file():
        raise ProcessStartError(
            f"{package_dir} needs both {MANIFEST} and {LOCKFILE} to install its dependencies; "
            "run `npm install` there once and commit the lockfile",
            output=[],
        )
    key = cache_key(lockfile.read_bytes(), node_major_version(node))
    entry = cache_root / key
    modules = entry / "node_modules"
    # An entry only ever appears by rename, complete: no lock needed to use it.
    if modules.is_dir():
        return modules
    with _key_lock(cache_root, key):
        if modules.is_dir():
            return modules
        for stale in cache_root.glob(f".build-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        build = Path(tempfile.mkdtemp(dir=cache_root, prefix=f".build-{key}-"))
        try:
            shutil.copy2(lockfile, build / LOCKFILE)
            data = json.loads(manifest.read_text())
            (build / MANIFEST).write_text(json.dumps(cache_package_json(data), indent=2) + "\n")
            _run_npm_ci(npm, build, timeout)
            # A package without dependencies gets no node_modules from npm.
            (build / "node_modules").mkdir(exist_ok=True)
            build.rename(entry)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
    logger.info("install cache entry built", extra={"key": key, "package_dir": str(package_dir)})
    return modules


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


def _run_npm_ci(npm: str, cwd: Path, timeout: float) -> None:
    argv = [npm, *NPM_CI_ARGS]
    env = installer_environment({"NO_COLOR": "1", "npm_config_update_notifier": "false"})
    try:
        # Own session: on a timeout the whole tree (npm, its scripts) is killed.
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
            f"cannot run {npm!r}: {exc}; install Node.js and npm", output=[]
        ) from exc
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        tail = npm_output_summary(output)
        raise ProcessStartError(
            f"npm ci did not finish within {timeout:g} s in {cwd}; check the network "
            "and the npm registry",
            output=tail,
        ) from None
    if proc.returncode != 0:
        tail = npm_output_summary(output)
        raise ProcessStartError(
            f"npm ci failed with exit code {proc.returncode}; its output:\n" + "\n".join(tail),
            output=tail,
            returncode=proc.returncode,
        )
