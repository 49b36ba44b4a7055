"""Small process, HTTP and git helpers (no service code involved).

The scenarios use them, and so does the test suite (``tests/support``): one
copy of each, here, because the installed ``benchmarks`` package may not
import ``tests``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = [
    "EXAMPLE_REPO",
    "GIT_IDENTITY",
    "ROOT",
    "TEMPLATE_DIR",
    "commit_all",
    "free_port",
    "git",
    "http_ok",
    "kill_group",
    "repo_from_dir",
    "sample_repo",
    "spawn_group",
    "wait_for",
    "wait_http_ok",
]

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_REPO = ROOT / "examples" / "ui-kit"
TEMPLATE_DIR = ROOT / "studio-template"
# A fixed identity, so commits work on machines with no global git config.
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Studio Sample",
    "GIT_AUTHOR_EMAIL": "sample@studio.invalid",
    "GIT_COMMITTER_NAME": "Studio Sample",
    "GIT_COMMITTER_EMAIL": "sample@studio.invalid",
}


def free_port() -> int:
    """A loopback port the OS just handed out (free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_ok(
    host: str,
    port: int,
    path: str = "/@vite/client",
    timeout: float = 2.0,
    headers: dict[str, str] | None = None,
) -> bool:
    """Whether ``GET path`` (with ``headers``) answers 200 now.

    http.client rather than httpx: no proxy lookup or client set-up inside the
    timed loop, which would add its own milliseconds to every sample.
    """
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def wait_http_ok(
    host: str,
    port: int,
    timeout: float,
    *,
    path: str = "/@vite/client",
    process: subprocess.Popen[bytes] | None = None,
    interval: float = 0.01,
    headers: dict[str, str] | None = None,
) -> float:
    """Poll until ``GET path`` is 200; return ``time.monotonic()`` at that moment.

    RuntimeError when ``process`` exits first or ``timeout`` seconds pass.
    """
    deadline = time.monotonic() + timeout
    while True:
        if http_ok(host, port, path, headers=headers):
            return time.monotonic()
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"http://{host}:{port}{path} not 200 after {timeout:g} s")
        time.sleep(interval)


def wait_for(
    predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    TimeoutError naming ``what`` when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def spawn_group(
    argv: Sequence[str], cwd: Path, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (so the whole group can be killed), output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` s, and reap the leader."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    # npm run wrappers leave their Vite child behind: the group goes whole.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with a fixed identity; stdout, raises on failure."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_IDENTITY},
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    """Stage everything in ``repo`` and commit it; the new commit's hash."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def repo_from_dir(source: Path, path: Path, branch: str = "main") -> Path:
    """A repository at ``path`` holding a copy of ``source`` (no node_modules), on ``branch``."""
    shutil.copytree(source, path, ignore=shutil.ignore_patterns("node_modules", ".git"))
    git(path, "init", "-q", "-b", branch)
    commit_all(path, "initial commit")
    return path


def sample_repo(dest: Path) -> Path:
    """The sample repository (examples/ui-kit) as a git repository at ``dest``, on main."""
    return repo_from_dir(EXAMPLE_REPO, dest)
