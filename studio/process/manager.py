"""One child process: start, output, readiness, health, stop.

A :class:`ProcessManager` runs a command in its own session (so its process
group holds everything it forks), reads its output into a bounded ring, judges
its health (pid alive AND its readiness probe, several failures in a row), and
stops it by escalation: SIGTERM to the group, wait, SIGKILL to the group, the
step that ended it recorded. A JSON pid file lets a later process (a restarted
actor) find and kill what an earlier incarnation left, see :func:`reap_orphans`.

::

    STOPPED -> STARTING -> RUNNING          (RUNNING once the probe first answers)
                  |
                  +--> FAILED               (could not be exec'd)
    every state but STOPPED -> STOPPED (stop); FAILED -> STARTING (start again)

Restarting is not done here: whoever supervises the process decides with
:class:`~studio.process.policy.RestartCount` and stops and starts it again.
The pure decisions live in :mod:`studio.process.policy`, one spawned child in
:mod:`studio.process.child`, pid records and orphan reaping in
:mod:`studio.process.orphans`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from studio.errors import InvalidConfig, InvalidState, ProcessStartError
from studio.process.child import Child, OutputRing
from studio.process.orphans import write_pid_record
from studio.process.policy import ProcessStatus, StopResult, check_transition

__all__ = ["ProcessManager", "ProcessSpec"]

logger = logging.getLogger(__name__)

# Lines of output attached to errors: enough to show a stack trace.
_ERROR_LINES = 50

P = ProcessStatus


@dataclass(frozen=True)
class ProcessSpec:
    """What to run: argv, working directory, extra environment, a name for logs.

    ``env`` is laid over this process's environment (``None``: inherit as is);
    with ``inherit=False`` it is the child's whole environment (a program that
    runs untrusted code gets an allow-list, ``studio.process.environment``).
    """

    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str] | None = None
    name: str = "process"
    inherit: bool = True

    def __post_init__(self) -> None:
        if not self.argv:
            raise InvalidConfig(f"{self.name}: argv must name a program")
        # A tuple keeps a shared spec from being changed behind a manager's back.
        object.__setattr__(self, "argv", tuple(self.argv))


class ProcessManager:
    """One child process at a time; safe to call from several threads.

    It is STARTING until ``readiness_probe`` first answers true (in
    :meth:`wait_ready` or :meth:`check_health`), RUNNING from then on. Always
    end with :meth:`stop` (also after the process exited by itself): it kills
    what is left of the group, reaps the leader and removes the pid file.
    """

    def __init__(
        self,
        spec: ProcessSpec,
        *,
        readiness_probe: Callable[[], bool],
        unhealthy_threshold: int = 3,
        pid_file: Path | None = None,
        output_lines: int = 500,
    ) -> None:
        if unhealthy_threshold < 1 or output_lines < 1:
            raise InvalidConfig("unhealthy_threshold and output_lines must be >= 1")
        self._spec = spec
        self._probe = readiness_probe
        self._unhealthy_threshold = unhealthy_threshold
        self.pid_file = pid_file
        self._output = OutputRing(output_lines)
        self._lock = threading.Lock()
        self._status = ProcessStatus.STOPPED
        self._child: Child | None = None
        self._failures = 0
        self._returncode: int | None = None
        self._last_error: ProcessStartError | None = None
        self.last_stop: StopResult | None = None

    @property
    def pid(self) -> int | None:
        child = self._child
        return None if child is None else child.pid

    def _transition(self, target: ProcessStatus) -> None:
        check_transition(self._status, target)
        old, self._status = self._status, target
        logger.info(
            "%s %s -> %s",
            self._spec.name,
            old.value,
            target.value,
            extra={"process_name": self._spec.name, "pid": self.pid, "status": target.value},
        )

    def output(self, lines: int | None = None) -> list[str]:
        """The last ``lines`` lines of stdout and stderr interleaved, newest last.

        A start clears them; a stop keeps them (they explain why it stopped).
        """
        return self._output.last(lines)

    # -- starting ------------------------------------------------------------

    def start(self, adopt: subprocess.Popen[bytes] | None = None) -> None:
        """Spawn the process; :class:`ProcessStartError` if it cannot be exec'd.

        ``adopt``: a process already started (its own session, stdout and
        stderr piped) that does what the spec would; it is supervised from
        here on instead of a new spawn.
        """
        with self._lock:
            if self._status not in (P.STOPPED, P.FAILED):
                raise InvalidState(
                    f"{self._spec.name} is {self._status.value}; stop it before starting it",
                    state=self._status.value,
                )
            self._last_error = None
            self._output.clear()
            self._transition(P.STARTING)
            self._spawn(adopt)

    def _spawn(self, adopt: subprocess.Popen[bytes] | None) -> None:
        spec = self._spec
        if adopt is not None:
            self._run(Child(adopt, self._output), f"adopted {spec.name}")
            return
        argv = list(spec.argv)
        if not spec.cwd.is_dir():
            self._fail_start(f"working directory {spec.cwd} does not exist")
        if not spec.inherit:
            env: dict[str, str] | None = dict(spec.env or {})
        else:
            env = None if spec.env is None else {**os.environ, **spec.env}
        try:
            popen = subprocess.Popen(
                argv,
                cwd=spec.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            self._fail_start(f"{argv[0]!r} was not found")
        except PermissionError:
            self._fail_start(f"{argv[0]!r} is not executable (permission denied)")
        except OSError as exc:
            self._fail_start(f"{argv[0]!r} could not be executed: {exc.strerror or exc}")
        self._run(Child(popen, self._output), f"started {spec.name}")

    def _run(self, child: Child, what: str) -> None:
        self._child = child
        self._failures = 0
        self._returncode = None
        self._write_pid_file(child)
        logger.info("%s (pid %d): %s", what, child.pid, " ".join(child.argv))

    def _fail_start(self, reason: str) -> NoReturn:
        spec = self._spec
        error = ProcessStartError(
            f"cannot start {spec.name}: {reason}",
            argv=list(spec.argv),
            cwd=str(spec.cwd),
            output=[],
        )
        self._last_error = error
        self._transition(P.FAILED)
        self._remove_pid_file()  # a record left behind names the process it replaced
        raise error

    def _probe_ok(self) -> bool:
        try:
            return bool(self._probe())
        except Exception:
            # A probe that raises (connection refused, timeout) is a failed probe.
            logger.debug("readiness probe of %s raised", self._spec.name, exc_info=True)
            return False

    def _mark_ready(self, child: Child) -> None:
        with self._lock:
            if self._child is child:
                self._failures = 0
                if self._status is P.STARTING:
                    self._transition(P.RUNNING)

    def wait_ready(self, timeout: float, poll_interval: float = 0.025) -> None:
        """Wait until the process is RUNNING (its probe answered) and alive.

        Raises :class:`ProcessStartError` with the last output lines in
        ``details["output"]`` when it exits first, failed to start, or
        ``timeout`` passes; the process is left as it is (call :meth:`stop`).
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                status, child = self._status, self._child
            if status is P.STOPPED:
                raise InvalidState(f"{self._spec.name} is not started", state=status.value)
            if status is P.FAILED:
                raise self._start_error(f"{self._spec.name} failed: {self._last_error}")
            if child is not None:
                code = child.exit_code()
                if code is not None:
                    child.drain()
                    raise self._start_error(
                        f"{self._spec.name} exited with code {code} before it was ready",
                        returncode=code,
                    )
                if status is P.RUNNING:
                    return
                if self._probe_ok():
                    self._mark_ready(child)
                    continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._start_error(
                    f"{self._spec.name} was not ready after {timeout:g}s", timeout=timeout
                )
            time.sleep(min(poll_interval, remaining))

    def _start_error(self, message: str, **details: object) -> ProcessStartError:
        return ProcessStartError(message, output=self.output(_ERROR_LINES), **details)

    # -- health --------------------------------------------------------------

    def check_health(self) -> bool:
        """Pid alive AND the probe not failed ``unhealthy_threshold`` times in a row."""
        with self._lock:
            child = self._child
        if child is None or child.exit_code() is not None:
            return False
        if self._probe_ok():
            self._mark_ready(child)
            return True
        with self._lock:
            if self._child is not child:
                return False
            self._failures += 1
            return self._failures < self._unhealthy_threshold

    # -- stopping ------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> StopResult:
        """SIGTERM the group, wait ``timeout`` s, SIGKILL the group; say which ended it."""
        with self._lock:
            result = self._terminate(timeout)
            if self._status is not P.STOPPED:
                self._transition(P.STOPPED)
            self.last_stop = result
            self._remove_pid_file()
        return result

    def _terminate(self, timeout: float) -> StopResult:
        child = self._child
        if child is None:
            return StopResult.ALREADY_EXITED
        # Taken before any signal: once the leader is gone its children are not findable.
        descendants = child.descendants()
        if child.exit_code() is not None:
            result = StopResult.ALREADY_EXITED
        else:
            result = StopResult.SIGKILL
            if timeout > 0:
                child.signal_group(signal.SIGTERM)
                if child.wait_exit(timeout) is not None:
                    result = StopResult.SIGTERM
            if result is StopResult.SIGKILL:
                child.signal_group(signal.SIGKILL)
                child.wait_exit(None)
        self._returncode = child.reap(descendants)
        self._child = None
        logger.info(
            "%s (pid %d) ended by %s with code %d",
            self._spec.name,
            child.pid,
            result.value,
            self._returncode,
        )
        return result

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code once the process ends; ``None`` if ``timeout`` passed first.

        With no ``timeout`` it blocks in the kernel (no polling) until the
        process exits; it never reaps it, :meth:`stop` does. Once stopped, the
        code of the process it stopped.
        """
        child = self._child
        return self._returncode if child is None else child.wait_exit(timeout)

    # -- pid file ------------------------------------------------------------

    def _write_pid_file(self, child: Child) -> None:
        if self.pid_file is not None:
            write_pid_record(
                self.pid_file,
                pid=child.pid,
                create_time=child.create_time,
                argv=child.argv,
                cwd=self._spec.cwd,
                name=self._spec.name,
            )

    def _remove_pid_file(self) -> None:
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)
