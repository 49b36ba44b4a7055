"""One spawned child process: its output readers and its exit, for :mod:`studio.process.manager`.

The leader is never reaped before its group has been swept with SIGKILL: while
it is a zombie its pid cannot be reused, so the group id still names only what
it forked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from typing import IO

import psutil

__all__ = ["Child", "OutputRing"]

# A line longer than this is split, so a runaway writer cannot exhaust memory.
_MAX_LINE = 64 * 1024
# How often exits are polled; waitid(WNOWAIT) has no timeout of its own.
_EXIT_POLL = 0.01
# How long to wait for the output readers to reach EOF after an exit.
_DRAIN_TIMEOUT = 0.5
# How long the leader's descendants get to finish dying after the group's SIGKILL.
_DESCENDANTS_TIMEOUT = 5.0


class OutputRing:
    """The last lines of a process's stdout and stderr, interleaved; fed by reader threads."""

    def __init__(self, maxlen: int) -> None:
        self._lock = threading.Lock()
        self._lines: deque[str] = deque(maxlen=maxlen)

    def add(self, text: str) -> None:
        """Keep ``text`` (one line), dropping the oldest past the limit."""
        with self._lock:
            self._lines.append(text)

    def last(self, lines: int | None) -> list[str]:
        """The last ``lines`` lines (all if ``None``), oldest first."""
        with self._lock:
            kept = list(self._lines)
        if lines is None:
            return kept
        return kept[-lines:] if lines > 0 else []

    def clear(self) -> None:
        """Forget every kept line."""
        with self._lock:
            self._lines.clear()


def _pump(pipe: IO[bytes], ring: OutputRing) -> None:
    with pipe:
        for raw in iter(lambda: pipe.readline(_MAX_LINE), b""):
            ring.add(raw.decode("utf-8", "replace").rstrip("\r\n"))


class Child:
    """One spawned incarnation: its Popen, process group and output readers."""

    def __init__(self, popen: subprocess.Popen[bytes], ring: OutputRing) -> None:
        self.popen = popen
        self.pid = popen.pid
        # start_new_session makes the child a session and group leader.
        self.pgid = popen.pid
        self.create_time: float | None = None
        with contextlib.suppress(psutil.Error):
            self.create_time = psutil.Process(self.pid).create_time()
        self._exit_code: int | None = None
        self.readers = [
            threading.Thread(
                target=_pump, args=(pipe, ring), name=f"{name}-{self.pid}", daemon=True
            )
            for pipe, name in ((popen.stdout, "stdout"), (popen.stderr, "stderr"))
            if pipe is not None
        ]
        for reader in self.readers:
            reader.start()

    @property
    def argv(self) -> list[str]:
        """The command line it was started with."""
        args = self.popen.args
        if isinstance(args, (str, bytes, os.PathLike)):
            return [os.fsdecode(args)]
        return [os.fsdecode(arg) for arg in args]

    def exit_code(self) -> int | None:
        """The exit code once the leader ended (negative: killed by that signal).

        Does not reap it, so the group id stays reserved until :meth:`reap`.
        """
        if self._exit_code is None:
            try:
                info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                code = self.popen.poll()
                self._exit_code = 0 if code is None else code
                return self._exit_code
            if info is None:
                return None
            killed = info.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
            self._exit_code = -info.si_status if killed else info.si_status
        return self._exit_code

    def wait_exit(self, timeout: float | None) -> int | None:
        """The exit code, waiting up to ``timeout`` seconds (``None``: no limit).

        Without a limit it sleeps in ``waitid`` until the leader exits, so a
        thread can watch for an exit at no cost while the process runs.
        """
        if timeout is None and self._exit_code is None:
            # WNOWAIT: learns of the exit without reaping (see the module docstring).
            # ChildProcessError: reaped meanwhile, so it ended too.
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.exit_code()) is None:
            remaining = _EXIT_POLL if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(_EXIT_POLL, remaining))
        return code

    def signal_group(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the whole process group; a group already gone is fine."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    def drain(self) -> None:
        """Wait briefly for the readers to reach EOF, so the output is complete."""
        for reader in self.readers:
            reader.join(_DRAIN_TIMEOUT)

    def descendants(self) -> list[psutil.Process]:
        """What the leader started, while it runs (empty once it is gone)."""
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return []

    def reap(self, descendants: list[psutil.Process] | None = None) -> int:
        """SIGKILL what is left of the group, then reap the exited leader.

        ``descendants`` (taken while the leader ran) are waited for too: a
        leader that is not the program itself (bwrap, studio.process.boundary)
        can exit before the program inside has released its port.
        """
        self.signal_group(signal.SIGKILL)
        code = self.popen.wait()
        if descendants:
            _wait_dead(descendants, _DESCENDANTS_TIMEOUT)
        self.drain()
        return code


def _dead(proc: psutil.Process) -> bool:
    # A zombie has released its memory and sockets; reaping it is its new parent's
    # business (after bwrap's init died: the host's pid 1, which may take a while).
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _wait_dead(procs: list[psutil.Process], timeout: float) -> None:
    """Wait until every one of ``procs`` exited (or is a zombie), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    pending = procs
    while pending := [proc for proc in pending if not _dead(proc)]:
        if time.monotonic() >= deadline:
            return
        time.sleep(_EXIT_POLL)
