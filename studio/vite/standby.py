"""A Vite launcher started ahead of need, handed to the next sandbox that starts Vite.

Of a cold Vite start (spawn -> ``/@vite/client`` 200) most is Node importing
Vite and the config's plugins. A standby (the template's ``standby.mjs``)
imports them while it waits, then is told where to start (what that saves:
docs/performance.md, Vite standby). It is what
:meth:`studio.vite.server.ViteServer.start` runs instead of spawning
``node .studio/serve.mjs``, once, when it was given one; the service's
``vite_standby`` setting turns standbys off.

The standby imports the packages from an install cache entry's node_modules
(``--import``, resolved from its cwd, the entry). A sandbox's
``.studio/node_modules`` is a link to that directory, so the config's imports
resolve to the same real files, which Node has already loaded. A studio app
whose node_modules are other files, or whose launcher is not the template's
(a test's misbehaving Vite), gets a cold start instead, and the standby is
stopped: it is good for nothing else.

Protocol (stdin): one JSON line ``{"cwd": <worktree>, "launcher":
<.studio/serve.mjs>}``; the standby changes to ``cwd`` and runs the launcher.
stdin closing first ends it, so a standby whose owner died goes with it.

Inside the OS boundary (:mod:`studio.process.boundary`) a standby can only
serve the worktree its boundary was made for: it is started by the sandbox
itself, on the empty worktree directory, before the worktree is checked out,
and imports Vite while git and the studio app are made (``bound_to``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
from pathlib import Path

from studio.process.boundary import Boundary
from studio.process.environment import tool_environment
from studio.vite.server import LAUNCHER, VITE_ENV

__all__ = ["PRELOADED_PACKAGES", "STANDBY_SCRIPT", "ViteStandby", "standby_argv"]

logger = logging.getLogger(__name__)

STANDBY_SCRIPT = "standby.mjs"
# What vite.config.mjs and its plugins import (rolldown only for the prebuilt shell's build).
PRELOADED_PACKAGES = ("vite", "@vitejs/plugin-react", "tinyglobby")
_EXIT_WAIT = 5.0


def standby_argv(template_dir: Path, *, node: str = "node") -> list[str]:
    """``node --import <package>... <template_dir>/standby.mjs``."""
    argv = [node]
    for package in PRELOADED_PACKAGES:
        argv += ["--import", package]
    argv.append(str(template_dir / STANDBY_SCRIPT))
    return argv


class ViteStandby:
    """One standby process, until it is handed over or closed."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        *,
        template_dir: Path,
        modules_dir: Path,
        bound_to: Path | None = None,
    ) -> None:
        self._popen = popen
        self.template_dir = template_dir
        self.modules_dir = modules_dir
        # The worktree the OS boundary it runs in was made for (None: no boundary).
        self.bound_to = bound_to
        self._handed_over = False

    @classmethod
    def start(
        cls,
        template_dir: Path,
        modules_dir: Path,
        *,
        node: str = "node",
        boundary: Boundary | None = None,
        worktree: Path | None = None,
    ) -> ViteStandby:
        """Spawn a standby that imports Vite from ``modules_dir`` (an install cache entry's).

        With an enforced ``boundary`` it runs inside it, made for ``worktree``
        (which must exist, empty is fine: what is added to it later is seen
        inside), and only a Vite of that worktree may take it over.

        Raises OSError when ``node`` cannot be run or ``modules_dir`` is missing.
        """
        modules_dir = modules_dir.resolve(strict=True)
        argv = standby_argv(template_dir, node=node)
        bound_to = None
        if boundary is not None and boundary.enforced:
            if worktree is None:
                raise ValueError("a standby inside a boundary is made for one worktree")
            bound_to = worktree
            argv = boundary.wrap(
                argv, cwd=modules_dir.parent, writable=[worktree], readable=[modules_dir.parent]
            )
        popen = subprocess.Popen(
            argv,
            cwd=modules_dir.parent,
            # As Vite's own spawn: picocolors reads NO_COLOR when Vite is imported.
            # Only allow-listed variables: the Vite it starts runs the repository's code.
            env=tool_environment(VITE_ENV),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        logger.info("vite standby started (pid %d) on %s", popen.pid, modules_dir)
        return cls(popen, template_dir=template_dir, modules_dir=modules_dir, bound_to=bound_to)

    @property
    def pid(self) -> int:
        return self._popen.pid

    def alive(self) -> bool:
        return self._popen.poll() is None

    def unfit_for(self, studio_dir: Path) -> str | None:
        """Why this standby cannot start Vite in ``studio_dir``; None when it can."""
        code = self._popen.poll()
        if code is not None:
            return f"it exited with code {code}"
        try:
            modules = (studio_dir / "node_modules").resolve(strict=True)
        except OSError:
            return "the studio app has no node_modules"
        if modules != self.modules_dir:
            return f"the studio app's node_modules are {modules}, not {self.modules_dir}"
        try:
            same = (studio_dir / LAUNCHER).read_bytes() == (
                self.template_dir / LAUNCHER
            ).read_bytes()
        except OSError as exc:
            return f"cannot compare the launchers: {exc}"
        if not same:
            return f"the studio app's launcher ({LAUNCHER}) is not the template's"
        return None

    def hand_over(self, worktree: Path, studio_dir: Path) -> subprocess.Popen[bytes] | None:
        """Start Vite in ``studio_dir`` and return the process, or None (then it is closed).

        The caller owns the process from here on (its pipes, its group, its exit).
        """
        reason = self.unfit_for(studio_dir)
        if reason is not None:
            logger.info("not using the vite standby (pid %d): %s", self.pid, reason)
            self.close()
            return None
        line = json.dumps({"cwd": str(worktree), "launcher": str(studio_dir / LAUNCHER)})
        stdin = self._popen.stdin
        assert stdin is not None  # spawned with a pipe
        try:
            stdin.write(line.encode() + b"\n")
            stdin.close()
        except OSError as exc:  # it died since unfit_for looked
            logger.info("the vite standby (pid %d) went away: %s", self.pid, exc)
            self.close()
            return None
        self._handed_over = True
        return self._popen

    def close(self) -> None:
        """Kill the standby unless it was handed over (then its new owner stops it)."""
        if self._handed_over:
            return
        popen = self._popen
        if popen.stdin is not None:
            with contextlib.suppress(OSError):
                popen.stdin.close()
        if popen.poll() is None:
            # Nothing to save before Vite started: no graceful stop needed.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(_EXIT_WAIT)
        for pipe in (popen.stdout, popen.stderr):
            if pipe is not None:
                pipe.close()
