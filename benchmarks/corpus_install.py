"""A repository's own clean install, as its developers run it, with a cache dir of our choosing.

The package manager comes from the lockfile (and ``packageManager`` in
package.json, which corepack honours): ``npm ci``, ``pnpm install
--frozen-lockfile`` or ``yarn install --frozen-lockfile`` / ``--immutable``
(Berry). pnpm and yarn run through corepack, which fetches the version the
repository pins. Each install gets the cache dir it is given, so a fresh empty
dir is a cold cache and the same dir again a warm one. Where the install with
lifecycle scripts fails (a postinstall downloading a binary, say) it is run
again with scripts off and the result says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "InstallRun",
    "clean_install",
    "detect_manager",
    "install_command",
    "remove_node_modules",
]

# What corepack fetches when package.json pins no version: the lockfile decides.
_PNPM_FOR_LOCKFILE = {"9": "pnpm@9.15.9", "6": "pnpm@8.15.9", "5": "pnpm@7.33.7"}
_YARN_CLASSIC = "yarn@1.22.22"
_YARN_BERRY = "yarn@4.9.2"


@dataclass
class InstallRun:
    """One install: how long, whether scripts ran, and the tail of its output on failure."""

    seconds: float
    ok: bool
    scripts: bool
    command: list[str]
    output_tail: str = ""


def _pinned_manager(root: Path) -> str | None:
    try:
        value = json.loads((root / "package.json").read_text()).get("packageManager")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, str) else None


def detect_manager(root: Path) -> str:
    """``npm``, ``pnpm``, ``yarn`` (classic) or ``yarn-berry``, by package.json and lockfile."""
    pinned = _pinned_manager(root) or ""
    if pinned.startswith("pnpm@") or (
        not pinned
        and (root / "pnpm-lock.yaml").is_file()
        and not (root / "package-lock.json").is_file()
    ):
        return "pnpm"
    lock = root / "yarn.lock"
    if pinned.startswith("yarn@") or (not pinned and lock.is_file()):
        berry = lock.is_file() and "__metadata:" in lock.read_text(errors="replace")[:2000]
        return "yarn-berry" if berry else "yarn"
    return "npm"


def install_command(
    root: Path, manager: str, cache: Path, *, scripts: bool
) -> tuple[list[str], dict[str, str]]:
    """The argv and extra environment of a frozen install into ``root`` with cache ``cache``."""
    pinned = _pinned_manager(root)
    if manager == "npm":
        argv = ["npm", "ci", "--no-audit", "--no-fund", "--cache", str(cache)]
        return ([*argv, "--ignore-scripts"] if not scripts else argv), {}
    if manager == "pnpm":
        lock_head = (root / "pnpm-lock.yaml").read_text(errors="replace")[:60]
        major = lock_head.split("'")[1].split(".")[0] if "'" in lock_head else "9"
        tool = (
            "pnpm"
            if pinned and pinned.startswith("pnpm@")
            else _PNPM_FOR_LOCKFILE.get(major, "pnpm@9.15.9")
        )
        argv = [
            "corepack",
            tool,
            "install",
            "--frozen-lockfile",
            "--store-dir",
            str(cache / "store"),
            f"--config.cache-dir={cache / 'cache'}",
        ]
        return ([*argv, "--ignore-scripts"] if not scripts else argv), {}
    if manager == "yarn":
        tool = "yarn" if pinned and pinned.startswith("yarn@") else _YARN_CLASSIC
        argv = [
            "corepack",
            tool,
            "install",
            "--frozen-lockfile",
            "--non-interactive",
            "--cache-folder",
            str(cache),
        ]
        return ([*argv, "--ignore-scripts"] if not scripts else argv), {}
    env = {
        "YARN_CACHE_FOLDER": str(cache),
        "YARN_ENABLE_GLOBAL_CACHE": "0",
        "YARN_ENABLE_SCRIPTS": "1" if scripts else "0",
    }
    # The release a Berry repository commits (yarnPath): corepack would fetch it from
    # repo.yarnpkg.com, which only the npm registry's mirror of it may replace.
    release = _yarn_path(root)
    if release is not None:
        return ["node", str(release), "install", "--immutable"], env
    tool = "yarn" if pinned and pinned.startswith("yarn@") else _YARN_BERRY
    return ["corepack", tool, "install", "--immutable"], env


def _yarn_path(root: Path) -> Path | None:
    try:
        lines = (root / ".yarnrc.yml").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "yarnPath" and value.strip():
            path = root / value.strip().strip("'\"")
            return path if path.is_file() else None
    return None


def remove_node_modules(root: Path) -> None:
    """Every node_modules under ``root`` (a workspace has one per package) and Yarn's state."""
    for path in sorted(root.rglob("node_modules"), key=lambda p: len(p.parts)):
        if path.is_dir() and "node_modules" not in path.parent.parts:
            shutil.rmtree(path, ignore_errors=True)
    for name in (".pnp.cjs", ".pnp.loader.mjs", ".yarn/install-state.gz"):
        (root / name).unlink(missing_ok=True)


def _run(
    argv: list[str], root: Path, env: dict[str, str], timeout: float
) -> tuple[float, int, str]:
    started = time.monotonic()
    environment = {
        **os.environ,
        "CI": "1",
        "COREPACK_ENABLE_DOWNLOAD_PROMPT": "0",
        "COREPACK_ENABLE_STRICT": "0",
        **env,
    }
    try:
        done = subprocess.run(
            argv,
            cwd=root,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code = -1
        partial = [
            part.decode(errors="replace") if isinstance(part, bytes) else part or ""
            for part in (exc.stdout, exc.stderr)
        ]
        output = f"timed out after {timeout:.0f} s\n" + "".join(partial)
    return time.monotonic() - started, code, output


def clean_install(
    root: Path, manager: str, cache: Path, timeout: float, *, scripts: bool = True
) -> InstallRun:
    """Remove node_modules and install; with scripts off again if that fails with them on."""
    cache.mkdir(parents=True, exist_ok=True)
    remove_node_modules(root)
    argv, env = install_command(root, manager, cache, scripts=scripts)
    seconds, code, output = _run(argv, root, env, timeout)
    if code == 0:
        return InstallRun(seconds, True, scripts, argv)
    if scripts:
        retry = clean_install(root, manager, cache, timeout, scripts=False)
        if retry.ok:
            retry.output_tail = "with scripts it failed: " + output[-1500:]
        return retry
    return InstallRun(seconds, False, scripts, argv, output[-3000:])
