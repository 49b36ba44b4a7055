"""The local Ray of ``studio up``: ``ray start --head --block``, a child in a session of its own.

``studio up`` does not start its Ray with ``ray.init()`` inside its own
process, because then:

- Ray's processes share the process group of ``studio up``. A signal to the
  whole group (what systemd sends first with its default
  ``KillMode=control-group``) killed the GCS and the raylet before ``studio
  up`` could tear the sandboxes down through them; it then waited 60 s for the
  dead GCS and exited 1. In a session of its own the head gets no signal but
  the one ``studio up`` sends it, last, once everything on it is stopped.
- Everything Ray starts, jobs included, inherits the head's environment, and
  the head's is chosen here: this interpreter's directory first on PATH, so
  that ``ray job submit ... -- python -m cluster.cleanup`` runs the service's
  own interpreter (with a venv that is not activated, ``python`` is another
  one, without Ray); and token auth on, as ``ray.init()`` would have it.
- ``ray.init()`` cannot move the dashboard agent off port 52365: with another
  Ray on the machine holding it, ``ray job submit`` found no agent. Here it and
  the other ports Ray fixes by default (the GCS's 6379, the Ray Client
  server's 10001) are free ports instead.

The head stops with ``studio up`` even when that is killed outright: the kernel
sends it SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), and ``ray start
--block`` stops its processes on SIGTERM.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import psutil

from cli.http import CliError

__all__ = ["SECRET_SETTING_VARIABLES", "LocalRay", "head_environment", "use_token_auth"]

AUTH_MODE = "RAY_AUTH_MODE"
# What `ray start` prints once the head runs (then --block waits for a signal).
_STARTED = "Ray runtime started"
_PR_SET_PDEATHSIG = 1
# Seconds Ray's processes get to exit once the head is told to stop.
_EXIT_GRACE = 10.0
# Seconds a process the head started gets after the head itself has exited.
_LEFTOVER_GRACE = 2.0


def use_token_auth(env: MutableMapping[str, str]) -> None:
    """Ray's token auth on in ``env`` unless it names a mode already (``ray.init()``'s default).

    The driver needs it too: connecting to an address does not turn it on.
    """
    env.setdefault(AUTH_MODE, "token")


SECRET_SETTING_VARIABLES = frozenset(
    {"COMPONENT_STUDIO_ADMIN_TOKEN", "COMPONENT_STUDIO_GITHUB_TOKEN"}
)


def head_environment(base: Mapping[str, str], interpreter: str) -> dict[str, str]:
    """The head's environment, and so that of every worker and job it starts.

    ``interpreter``'s directory comes first on PATH: a job's ``python`` is then
    the service's interpreter. Not resolved: a venv's ``bin/python`` is a
    symlink to an interpreter that knows nothing of the venv.
    """
    # The service's tokens reach the manager in its settings (studio up passes them):
    # every worker of the head, sandbox actors included, would inherit them from here.
    env = {
        k: v
        for k, v in base.items()
        if k != "RAY_ADDRESS" and k.upper() not in SECRET_SETTING_VARIABLES
    }
    bin_dir = str(Path(interpreter).parent)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
    env["PATH"] = os.pathsep.join([bin_dir, *path])
    use_token_auth(env)
    # On SIGTERM the head first waits for the GCS to drain its node (30 s by
    # default): when studio up sends it, everything on the node is stopped already.
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    return env


def _has_token(env: Mapping[str, str]) -> bool:
    if env.get("RAY_AUTH_TOKEN"):
        return True
    path = env.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return Path(path).is_file()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _exit_with(parent: int) -> None:
    """In the child before it runs Ray: SIGTERM when ``parent`` dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


class LocalRay:
    """One Ray head on this node, started and stopped by ``studio up``."""

    def __init__(
        self,
        *,
        resources: dict[str, float],
        system_config: dict[str, Any],
        dashboard: bool,
        dashboard_host: str,
        dashboard_port: int,
        temp_dir: str | None,
    ) -> None:
        self._resources = resources
        self._system_config = system_config
        self._dashboard = dashboard
        self._dashboard_host = dashboard_host
        self._dashboard_port = dashboard_port
        self._temp_dir = temp_dir
        self._gcs_port = 0
        self._proc: subprocess.Popen[str] | None = None
        self._output: collections.deque[str] = collections.deque(maxlen=60)
        self._started = threading.Event()

    @property
    def address(self) -> str:
        """The GCS address drivers connect to."""
        return f"127.0.0.1:{self._gcs_port}"

    def start(self, timeout: float) -> str:
        """Start the head and wait until it runs; its address. CliError if it does not start.

        Interruptible: a signal handler that raises stops the wait (the head is
        then stopped by :meth:`stop`).
        """
        env = head_environment(os.environ, sys.executable)
        if env[AUTH_MODE] == "token" and not _has_token(env):
            self._ray("get-auth-token", "--generate", env=env)
        self._gcs_port = _free_port()
        argv = [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            f"--port={self._gcs_port}",
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--ray-client-server-port={_free_port()}",
            f"--resources={json.dumps(self._resources)}",
            f"--system-config={json.dumps(self._system_config)}",
            f"--include-dashboard={'true' if self._dashboard else 'false'}",
            f"--dashboard-host={self._dashboard_host}",
            f"--dashboard-port={self._dashboard_port}",
            "--disable-usage-stats",
        ]  # fmt: skip
        if self._temp_dir:
            argv.append(f"--temp-dir={self._temp_dir}")
        parent = os.getpid()
        self._proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            # Runs between fork and exec: one prctl call, no lock another thread could hold.
            preexec_fn=lambda: _exit_with(parent),
        )
        threading.Thread(target=self._read_output, name="ray-head-output", daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self._started.wait(0.2):
            if self._proc.poll() is not None:
                raise CliError(f"Ray did not start (exit {self._proc.returncode}):\n{self.output}")
            if time.monotonic() > deadline:
                raise CliError(f"Ray did not start within {timeout:.0f} s:\n{self.output}")
        return self.address

    @property
    def output(self) -> str:
        """The last lines ``ray start`` printed."""
        return "\n".join(self._output)

    def _read_output(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        # Closed by stop() once the head is gone: that ends the loop too.
        with contextlib.suppress(ValueError, OSError):
            for line in self._proc.stdout:
                self._output.append(line.rstrip())
                if _STARTED in line:
                    self._started.set()

    @staticmethod
    def _ray(*argv: str, env: dict[str, str]) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "ray.scripts.scripts", *argv],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # `get-auth-token` prints the token
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise CliError(f"`ray {' '.join(argv)}` failed: {done.stderr.strip()}")

    def alive(self) -> bool:
        """Whether the head runs and its GCS takes connections."""
        if self._proc is None or self._proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", self._gcs_port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """Stop the head and every process it started; return once they are gone.

        SIGTERM to the head's process group (``ray start`` and the daemons it
        started); the workers (each in a process group of its own) exit when
        their raylet does.
        Whatever is still there after a grace period is killed.
        """
        proc = self._proc
        if proc is None:
            return
        started: list[psutil.Process] = []
        if proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                started = psutil.Process(proc.pid).children(recursive=True)
            # To the head's whole group (its daemons; workers have groups of their
            # own): all stop at once. `ray start` alone would stop them one by one,
            # giving each up to a second.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(_EXIT_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # The head is gone: what it started has nothing left to do. Its workers
        # noticed the raylet's end only after up to ~10 s here, a stop's whole
        # bound, so they are told at once.
        alive = [p for p in started if p.is_running()]
        for leftover in alive:
            with contextlib.suppress(psutil.Error):
                leftover.terminate()
        _gone, alive = psutil.wait_procs(alive, timeout=_LEFTOVER_GRACE)
        for leftover in alive:
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        psutil.wait_procs(alive, timeout=_EXIT_GRACE)
        if proc.stdout is not None:
            proc.stdout.close()
