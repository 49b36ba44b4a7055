"""Plant what dead sandboxes leave on a node: worktrees, Vite-like processes, stale entries.

Everything is real: a bare mirror made by ``studio.git.Mirror`` from a real
repository, worktrees added through it, processes started as children in their
own session with pid records as the sandbox writes them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from studio.git import Mirror
from studio.layout import StateLayout
from studio.naming import branch_name
from studio.process import reap_orphans
from studio.process.orphans import write_pid_record
from tests.support.fakeproc import fake_argv
from tests.support.gitrepo import git, make_repo

__all__ = ["Planted", "plant"]

# Old enough to be past any grace period the tests use.
OLD = time.time() - 3 * 3600


@dataclass
class Planted:
    """Paths and processes planted for one sweep test, and how to clean them up."""

    layout: StateLayout
    mirror: Mirror
    origin: Path
    worktrees: dict[str, Path] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    pid_files: dict[str, Path] = field(default_factory=dict)
    stale: Path | None = None

    def branch_exists(self, sandbox_id: str) -> bool:
        return self.mirror.branch_exists(branch_name(sandbox_id))

    def alive(self, sandbox_id: str) -> bool:
        return self.processes[sandbox_id].poll() is None

    def close(self) -> None:
        for sandbox_id, proc in self.processes.items():
            if proc.poll() is None:
                reap_orphans(self.pid_files[sandbox_id], timeout=2)
                if proc.poll() is None:
                    proc.kill()
            proc.wait(10)


def _worktree(planted: Planted, sandbox_id: str, *, commit: bool = True) -> Path:
    directory = planted.layout.worktree(sandbox_id)
    tree = planted.mirror.add_worktree(sandbox_id, directory, "main")
    (directory / ".studio").mkdir()
    (directory / ".studio" / "vite.config.ts").write_text("export default {}\n")
    if commit:
        (directory / "src").mkdir(exist_ok=True)
        (directory / "src" / f"{sandbox_id}.tsx").write_text("export const X = 1;\n")
        tree.auto_commit(f"edit by {sandbox_id}")
    planted.worktrees[sandbox_id] = directory
    return directory


def _process(planted: Planted, sandbox_id: str, cwd: Path) -> None:
    argv = fake_argv("sleep")
    proc = subprocess.Popen(
        argv, cwd=cwd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    pid_file = planted.layout.pid_file(f"vite-{sandbox_id}")
    write_pid_record(
        pid_file,
        pid=proc.pid,
        create_time=psutil.Process(proc.pid).create_time(),
        argv=argv,
        cwd=cwd,
        name=f"vite-{sandbox_id}",
    )
    planted.processes[sandbox_id] = proc
    planted.pid_files[sandbox_id] = pid_file


def _age(path: Path) -> None:
    os.utime(path, (OLD, OLD))


def plant(state_dir: Path, origin_dir: Path, mirror_name: str = "planted") -> Planted:
    """A node's state with, per sandbox id:

    - ``sb_live000001``: live (worktree + process) -> kept;
    - ``sb_ended00001``: ended in the registry, worktree + process left -> removed;
    - ``sb_unknown001``: unknown to the registry, old worktree + process -> removed;
    - ``sb_fresh00001``: unknown, just created (inside the grace period) -> kept;
    - ``sb_stale00001``: worktree directory deleted, git's entry left -> pruned.
    """
    origin = make_repo(origin_dir, {"src/Button.tsx": "export const Button = 1;\n"})
    layout = StateLayout(state_dir)
    mirror = Mirror.ensure(layout.mirror(mirror_name), str(origin))
    planted = Planted(layout=layout, mirror=mirror, origin=origin)
    for sandbox_id in ("sb_live000001", "sb_ended00001", "sb_unknown001", "sb_fresh00001"):
        directory = _worktree(planted, sandbox_id)
        _process(planted, sandbox_id, directory)
    _age(planted.pid_files["sb_unknown001"])
    _age(planted.worktrees["sb_unknown001"])
    stale = _worktree(planted, "sb_stale00001")
    shutil.rmtree(stale)
    planted.stale = stale
    assert git(mirror.path, "worktree", "list").count("sb_stale00001") == 1
    return planted
