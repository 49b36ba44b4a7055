"""The studio app's prebuilt shell: built once per template on a node, linked into every sandbox.

The template's ``plugin/shell.mjs`` bundles the app's own modules (``src/*``)
into ``src/main.prebuilt.js``, which index.html then loads instead of
``src/main.tsx``: the first page load of a sandbox no longer has Vite
transform a dozen modules, nor the browser walk their imports. The app only
changes with the template, so the build is kept beside the template's
install-cache ``node_modules`` under the template's fingerprint (the same one
the deps seed uses, :mod:`studio.vite.deps`), and made at most once per
fingerprint on a node (a file lock serialises concurrent builds), usually
by the node's preparation (:mod:`studio.sandbox.prepare`). The service's
``prebuilt_shell`` setting turns the shell off (what it saves:
docs/performance.md, prebuilt shell).

A build that fails is logged and the sandbox runs the app from source, as the
template does on its own: slower to load, the same page.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
from pathlib import Path

from studio.install import seal
from studio.process.environment import tool_environment

__all__ = [
    "SHELL_FILE",
    "SHELL_MAP",
    "SHELL_ROOT",
    "ensure_shell",
    "install_shell",
    "shell_path",
]

logger = logging.getLogger(__name__)

SHELL_ROOT = "studio-shell"
# Where the template's vite config looks for it (plugin/shell.mjs SHELL_FILE).
SHELL_FILE = "src/main.prebuilt.js"
# Its source map, beside it (named by the shell's sourceMappingURL comment).
SHELL_MAP = SHELL_FILE + ".map"
_BUILD_SCRIPT = "plugin/shell.mjs"
_BUILD_TIMEOUT = 120.0


def shell_path(template_modules: Path, fingerprint: str) -> Path:
    """Where the shell of the template with ``fingerprint`` is kept, beside its node_modules."""
    return template_modules.parent / SHELL_ROOT / fingerprint / Path(SHELL_FILE).name


def ensure_shell(
    studio_dir: Path, template_modules: Path, fingerprint: str, *, node: str = "node"
) -> Path | None:
    """The kept shell for ``fingerprint``, built from ``studio_dir`` if there is none yet.

    ``studio_dir`` is a materialised studio app of that template (its
    node_modules has the bundler). None when the build failed (logged).
    """
    target = shell_path(template_modules, fingerprint)
    if target.is_file():
        return target
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent.parent / f"{fingerprint}.lock"
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():  # built by another sandbox while this one waited
            return target
        return _build(studio_dir, target, node)


def _map_of(shell: Path) -> Path:
    return shell.with_name(shell.name + ".map")


def _build(studio_dir: Path, target: Path, node: str) -> Path | None:
    # Built under its final names in a directory of its own, then moved in, the
    # map before the shell: a reader that sees the shell sees a whole shell and its map.
    staging = target.parent.parent / f".build-{target.parent.name}-{os.getpid()}"
    built = staging / target.name
    try:
        staging.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [node, str(studio_dir / _BUILD_SCRIPT), str(built)],
            cwd=studio_dir,
            env=tool_environment(),
            check=True,
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT,
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        _map_of(built).replace(_map_of(target))
        built.replace(target)
    except (OSError, subprocess.SubprocessError) as exc:
        output = getattr(exc, "stderr", None) or ""
        logger.warning(
            "could not prebuild the studio app's shell; sandboxes load it from source: %s %s",
            exc,
            output[-2000:],
            extra={"studio_dir": str(studio_dir)},
        )
        return None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def install_shell(studio_dir: Path, shell: Path) -> None:
    """Put ``shell`` and its map into ``studio_dir`` (hard links; copies across file systems).

    Linked, they are every sandbox's files: sealed first (studio.install.seal).
    """
    pairs = ((_map_of(shell), studio_dir / SHELL_MAP), (shell, studio_dir / SHELL_FILE))
    seal.seal_files(source for source, _ in pairs)
    for source, destination in pairs:
        destination.unlink(missing_ok=True)
        try:
            os.link(source, destination)
        except OSError:
            shutil.copyfile(source, destination)
