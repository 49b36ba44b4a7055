"""The repository's own setup step: the codegen or CSS build its Storybook needs first.

Some repositories' stories import files that their own scripts generate and
that are not committed (Panda's ``styled-system/`` from ``panda codegen``, a
stylesheet built by PostCSS). npm would run such a step as the root package's
``prepare`` script on install; the studio installs with scripts off and
outside the worktree (docs/installs.md), so the repository's admin names the
step instead (the ``setup_command`` setting), and each sandbox runs it:

- in its package directory, after its dependencies are linked and before its
  Vite starts, with the package's and the workspace root's
  ``node_modules/.bin`` first on ``PATH`` (as ``npm run`` has them);
- inside the same OS boundary as Vite (:mod:`studio.process.boundary`): the
  worktree is all it may write, the allow-listed environment only;
- no shell: the argv runs as given (a string setting was split with shlex);
- bounded by ``setup_timeout``: past it the whole process group is killed.

A failure does not stop the sandbox: the stories that need what it did not
make show the missing import as their error, as in Storybook, and the
sandbox's record carries the report (:class:`~studio.models.SetupCommandReport`)
with the tool's last lines. What the command made and the repository's
``.gitignore`` does not cover is listed by :func:`untracked_outputs`, for the
mirror's ``info/exclude``: it must never be committed, nor cleaned by a rollback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from studio.models import SetupCommandReport
from studio.process.boundary import Boundary
from studio.process.environment import tool_environment
from studio.sandbox.setup_outputs import (
    SetupOutputs,
    made_paths,
    outputs_key,
    tracked_changed,
    untracked_paths,
)

__all__ = [
    "OUTPUT_LINES",
    "run_setup_command",
    "set_up_worktree",
    "setup_path",
    "untracked_outputs",
]

logger = logging.getLogger(__name__)

# The tool's last lines kept on the record, each cut to a readable length.
OUTPUT_LINES = 50
_LINE_CHARS = 1000
# After a kill, how long to wait for the pipes to close.
_KILL_WAIT = 5.0
# A command run through npm (``npm run build:css``): no registry round trip to ask
# for a newer npm, no funding or audit lines in the output kept on the record.
_QUIET_NPM = {
    "npm_config_update_notifier": "false",
    "npm_config_fund": "false",
    "npm_config_audit": "false",
}


def setup_path(app_root: Path, workspace_root: Path, inherited: str) -> str:
    """``PATH`` for the command: the package's, then the workspace root's
    ``node_modules/.bin``, then ``inherited`` (what ``npm run`` does)."""
    bins = dict.fromkeys(str(root / "node_modules" / ".bin") for root in (app_root, workspace_root))
    return os.pathsep.join([*bins, *(p for p in inherited.split(os.pathsep) if p)])


def _tail(text: str) -> list[str]:
    return [line[:_LINE_CHARS] for line in text.splitlines()[-OUTPUT_LINES:]]


def _kill_group(process: subprocess.Popen[str]) -> None:
    # Its own session: the group holds everything it started (and, inside the
    # boundary, bwrap's pid 1, whose death ends the whole PID namespace).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def run_setup_command(
    argv: Sequence[str],
    *,
    app_root: Path,
    workspace_root: Path,
    boundary: Boundary,
    timeout: float,
) -> SetupCommandReport:
    """Run ``argv`` in ``app_root`` inside ``boundary`` (``workspace_root`` writable).

    Never raises for the command's own failure: the report says what happened.
    """
    path = setup_path(app_root, workspace_root, os.environ.get("PATH", ""))
    env = tool_environment({**_QUIET_NPM, "PATH": path})
    wrapped = boundary.wrap(list(argv), cwd=app_root, writable=[workspace_root])
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            wrapped,
            cwd=app_root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        return SetupCommandReport(
            command=list(argv),
            status="failed",
            seconds=round(time.monotonic() - started, 3),
            output=[f"{argv[0]}: {exc.strerror or exc}"],
        )
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        try:
            out, _ = process.communicate(timeout=_KILL_WAIT)
        except subprocess.TimeoutExpired:
            out = ""
        seconds = round(time.monotonic() - started, 3)
        lines = [*_tail(out or ""), f"killed after {timeout:g} s (setup_timeout)"]
        return SetupCommandReport(
            command=list(argv), status="timeout", seconds=seconds, output=lines[-OUTPUT_LINES:]
        )
    finally:
        # A daemon it left behind in its group goes with it.
        _kill_group(process)
    seconds = round(time.monotonic() - started, 3)
    code = process.returncode
    report = SetupCommandReport(
        command=list(argv),
        status="ok" if code == 0 else "failed",
        exit_code=code,
        seconds=seconds,
        output=_tail(out),
    )
    logger.info(
        "setup command ran",
        extra={"command": list(argv), "status": report.status, "seconds": seconds},
    )
    return report


def untracked_outputs(worktree: Path) -> list[str]:
    """Untracked paths in ``worktree`` that no ignore rule covers (a new directory once,
    as ``dir/``): what a setup command made that git would otherwise see."""
    result = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard", "--directory", "-z"],
        cwd=worktree,
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(path for path in result.stdout.split("\0") if path)


def _mtimes(directories: Sequence[Path]) -> list[int]:
    return [d.stat().st_mtime_ns if d.is_dir() else 0 for d in directories]


def set_up_worktree(
    argv: Sequence[str],
    *,
    worktree: Path,
    app_root: Path,
    package_dir: str,
    install_scripts: bool,
    boundary: Boundary,
    timeout: float,
    kept: SetupOutputs,
) -> SetupCommandReport:
    """The setup command's files in ``worktree``: copied from ``kept`` when an earlier
    sandbox on this node made them from the same tree, else made by running ``argv``
    (and kept when that run was clean, :mod:`studio.sandbox.setup_outputs`).

    The report's ``outputs`` are what git would see (not ignored): for info/exclude.
    """
    key = outputs_key(worktree, argv, package_dir, install_scripts)
    found = kept.find(key)
    if found is not None:
        started = time.monotonic()
        found.restore(worktree)
        return SetupCommandReport(
            command=list(argv),
            status="ok",
            exit_code=0,
            seconds=round(time.monotonic() - started, 3),
            output=found.output,
            outputs=found.outputs,
            reused=True,
        )
    # Dependencies are the install cache's links: a command that writes into them
    # (new entries change a node_modules directory's mtime) cannot be replayed by a copy.
    modules = [root / "node_modules" for root in dict.fromkeys((app_root, worktree))]
    before_all, before_plain = untracked_paths(worktree), set(untracked_outputs(worktree))
    modules_before = _mtimes(modules)
    report = run_setup_command(
        argv, app_root=app_root, workspace_root=worktree, boundary=boundary, timeout=timeout
    )
    made = made_paths(before_all, untracked_paths(worktree))
    outputs = sorted(set(untracked_outputs(worktree)) - before_plain)
    report = report.model_copy(update={"outputs": outputs})
    clean = (
        report.status == "ok"
        and made
        and not tracked_changed(worktree)
        and _mtimes(modules) == modules_before
    )
    if clean:
        kept.keep(key, worktree, made, outputs, report.output)
    return report
