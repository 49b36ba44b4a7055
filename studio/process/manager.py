"""Supervision of one child process: start, output, health, restart, stop.

A :class:`ProcessManager` runs a command in its own session (so its process
group holds everything it forks), reads its output into bounded rings, judges
its health (pid alive AND an optional readiness probe, several failures in a
row), restarts it per a pure :class:`RestartPolicy`, and stops it by escalation:
SIGTERM to the group, wait, SIGKILL to the group. A JSON pid file lets a later
process (a restarted actor) find and kill what an earlier incarnation left, see
:func:`reap_orphans`.

::

    STOPPED -> STARTING -> RUNNING -> BACKOFF -> STARTING -> ...
                  |           |          |
                  +-----------+----------+--> FAILED   (restart limit, exec failure)
    every state but STOPPED -> STOPPED (stop); FAILED -> STARTING (start again)

A process without a readiness probe is RUNNING as soon as it is spawned; with a
probe it stays STARTING until the probe first answers.

The pure decisions live in ``_process_policy``, one spawned child in
``_process_child``, pid records and orphan reaping in ``_process_orphans``;
this module re-exports their public names.
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

from studio.errors import (
    InvalidConfig,
    InvalidState,
    ProcessError,
    ProcessStartError,
    RestartLimitExceeded,
)
from studio.process.child import Child, OutputLine, OutputRing
from studio.process.orphans import reap_orphans, write_pid_record
from studio.process.policy import (
    DEFAULT_POLICY,
    TRANSITIONS,
    ProcessStatus,
    RestartDecision,
    RestartPolicy,
    StopResult,
    check_transition,
)

__all__ = [
    "DEFAULT_POLICY",
    "TRANSITIONS",
    "OutputLine",
    "ProcessManager",
    "ProcessSpec",
    "ProcessStatus",
    "RestartDecision",
    "RestartPolicy",
    "StopResult",
    "check_transition",
    "reap_orphans",
]

logger = logging.getLogger(__name__)

# Lines of output attached to errors: enough to show a stack trace.
_ERROR_LINES = 50

P = ProcessStatus


@dataclass(frozen=True)
class ProcessSpec:
    """What to run: argv, working directory, extra environment, a name for logs.

    ``env`` is laid over this process's environment (``None``: inherit as is).
    """

    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str] | None = None
    name: str = "process"

    def __post_init__(self) -> None:
        if not self.argv:
            raise InvalidConfig(f"{self.name}: argv must name a program")
        # A tuple keeps a shared spec from being changed behind a manager's back.
        object.__setattr__(self, "argv", tuple(self.argv))


class ProcessManager:
    """Supervises one child process; safe to call from several threads.

    Callbacks: ``on_status(old, new)`` on every transition (called with the
    manager's lock held: keep it quick, and do not stop the manager from it; it
    may read the manager), ``on_output(stream, line)`` from the
    reader threads, ``on_failed(error)`` when the monitor gives up. Always end
    with :meth:`stop` (also after the process exited by itself): it kills what
    is left of the group, reaps the leader and removes the pid file.

    The monitor (:meth:`start_monitor`) belongs to the runs of the process:
    :meth:`stop` pauses it (its thread ends), :meth:`start` resumes it, and
    :meth:`stop_monitor` ends it for good.
    """

    def __init__(
        self,
        spec: ProcessSpec,
        *,
        policy: RestartPolicy = DEFAULT_POLICY,
        readiness_probe: Callable[[], bool] | None = None,
        unhealthy_threshold: int = 3,
        ready_timeout: float = 60.0,
        stop_timeout: float = 5.0,
        pid_file: Path | None = None,
        output_lines: int = 500,
        on_status: Callable[[ProcessStatus, ProcessStatus], None] | None = None,
        on_output: Callable[[str, str], None] | None = None,
        on_failed: Callable[[ProcessError], None] | None = None,
    ) -> None:
        if unhealthy_threshold < 1 or output_lines < 1 or ready_timeout <= 0 or stop_timeout < 0:
            raise InvalidConfig(
                "unhealthy_threshold and output_lines must be >= 1, ready_timeout > 0, "
                "stop_timeout >= 0"
            )
        self._spec = spec
        self.policy = policy
        self._probe = readiness_probe
        self._unhealthy_threshold = unhealthy_threshold
        self._ready_timeout = ready_timeout
        self._stop_timeout = stop_timeout
        self.pid_file = pid_file
        self._on_status = on_status
        self._on_failed = on_failed
        self._output = OutputRing(output_lines, on_output)
        # Reentrant: on_status callbacks run under it and may query the manager.
        self._lock = threading.RLock()
        self._status = ProcessStatus.STOPPED
        self._child: Child | None = None
        # Bumped on every spawn, so a delayed decision about an old child is dropped.
        self._generation = 0
        self._running_since: float | None = None
        self._failures = 0
        self._returncode: int | None = None
        # Set by stop(): wakes a restart sleeping its backoff and forbids it to spawn.
        self._stopping = threading.Event()
        self._monitor: tuple[threading.Thread, threading.Event] | None = None
        self._monitor_interval: float | None = None
        self.restarts = 0
        self.total_restarts = 0
        self.last_stop: StopResult | None = None
        self.last_error: ProcessError | None = None

    # -- state ---------------------------------------------------------------

    @property
    def spec(self) -> ProcessSpec:
        """The spec the next spawn uses."""
        return self._spec

    def set_spec(self, spec: ProcessSpec) -> None:
        """Use ``spec`` from the next (re)start on, e.g. with another port."""
        with self._lock:
            self._spec = spec

    @property
    def status(self) -> ProcessStatus:
        return self._status

    @property
    def pid(self) -> int | None:
        child = self._child
        return None if child is None else child.pid

    @property
    def returncode(self) -> int | None:
        """Exit code of the current process once it ended, else of the last one."""
        child = self._child
        return self._returncode if child is None else child.exit_code()

    @property
    def consecutive_failures(self) -> int:
        """Readiness probe failures in a row of the current process."""
        return self._failures

    def _transition(self, target: ProcessStatus) -> None:
        check_transition(self._status, target)
        old, self._status = self._status, target
        self._running_since = time.monotonic() if target is P.RUNNING else None
        logger.info(
            "%s %s -> %s",
            self._spec.name,
            old.value,
            target.value,
            extra={"process_name": self._spec.name, "pid": self.pid, "status": target.value},
        )
        if self._on_status is not None:
            try:
                self._on_status(old, target)
            except Exception:
                logger.exception("status callback of %s failed", self._spec.name)

    # -- output --------------------------------------------------------------

    def output(self, lines: int | None = None) -> list[str]:
        """The last ``lines`` lines of stdout and stderr interleaved, newest last."""
        return [record.text for record in self._output.records(lines)]

    def output_records(self, lines: int | None = None) -> list[OutputLine]:
        """Like :meth:`output`, each line tagged with its stream."""
        return self._output.records(lines)

    def stdout_lines(self) -> list[str]:
        return self._output.stream("stdout")

    def stderr_lines(self) -> list[str]:
        return self._output.stream("stderr")

    # -- starting ------------------------------------------------------------

    def start(self, adopt: subprocess.Popen[bytes] | None = None) -> None:
        """Spawn the process; :class:`ProcessStartError` if it cannot be exec'd.

        ``adopt``: a process already started (its own session, stdout and
        stderr piped) that does what the spec would; it is supervised from
        here on instead of a new spawn. Restarts spawn the spec.
        """
        with self._lock:
            if self._status not in (P.STOPPED, P.FAILED):
                raise InvalidState(
                    f"{self._spec.name} is {self._status.value}; stop it before starting it",
                    state=self._status.value,
                )
            self._stopping.clear()
            self.restarts = 0
            self.last_error = None
            self._output.clear()
            self._transition(P.STARTING)
            self._spawn(adopt)
            self._launch_monitor()

    def _spawn(self, adopt: subprocess.Popen[bytes] | None = None) -> None:
        spec = self._spec
        if adopt is not None:
            self._run(Child(adopt, self._output), f"adopted {spec.name}")
            return
        argv = list(spec.argv)
        if not spec.cwd.is_dir():
            self._fail_start(f"working directory {spec.cwd} does not exist")
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
        self._generation += 1
        self._failures = 0
        self._returncode = None
        self._write_pid_file(child)
        logger.info("%s (pid %d): %s", what, child.pid, " ".join(child.argv))
        if self._probe is None:
            self._transition(P.RUNNING)

    def _fail_start(self, reason: str) -> NoReturn:
        spec = self._spec
        error = ProcessStartError(
            f"cannot start {spec.name}: {reason}",
            argv=list(spec.argv),
            cwd=str(spec.cwd),
            output=[],
        )
        self.last_error = error
        self._transition(P.FAILED)
        self._remove_pid_file()  # a restart's record names the process it replaced
        raise error

    def _probe_ok(self) -> bool:
        if self._probe is None:
            return True
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
        ``details["output"]`` when it exits first, fails, or ``timeout`` passes;
        the process is left as it is (call :meth:`stop`).
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                status, child = self._status, self._child
            if status is P.STOPPED:
                raise InvalidState(f"{self._spec.name} is not started", state=status.value)
            if status is P.FAILED:
                raise self._start_error(f"{self._spec.name} failed: {self.last_error}")
            if child is not None and status in (P.STARTING, P.RUNNING):
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

    def is_alive(self) -> bool:
        """Whether the current process has not exited."""
        child = self._child
        return child is not None and child.exit_code() is None

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
        """SIGTERM the group, wait ``timeout`` s, SIGKILL the group; say which ended it.

        Also pauses the monitor, so nothing restarts the process afterwards.
        """
        self._stopping.set()
        self._end_monitor_thread()
        with self._lock:
            result = self._terminate(timeout)
            if self._status is not P.STOPPED:
                self._transition(P.STOPPED)
            self.last_stop = result
            self._remove_pid_file()
        return result

    def kill(self) -> None:
        """SIGKILL the group at once; otherwise like :meth:`stop`."""
        self.stop(timeout=0.0)

    def _terminate(self, timeout: float) -> StopResult:
        child = self._child
        if child is None:
            return StopResult.ALREADY_EXITED
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
        self._returncode = child.reap()
        self._child = None
        self.last_stop = result
        logger.info(
            "%s (pid %d) ended by %s with code %d",
            self._spec.name,
            child.pid,
            result.value,
            self._returncode,
        )
        return result

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code once the process ends; ``None`` if ``timeout`` passed first."""
        child = self._child
        return self._returncode if child is None else child.wait_exit(timeout)

    # -- restarting ----------------------------------------------------------

    def restart(self) -> None:
        """Stop the process, sleep the policy's delay, start it again.

        Past the policy's limit the process is killed, the status is FAILED and
        :class:`RestartLimitExceeded` (with the last output lines) is raised.
        """
        self._restart(None)

    def _restart(self, generation: int | None) -> None:
        with self._lock:
            if generation is not None and (
                generation != self._generation
                or self._stopping.is_set()
                or self._status not in (P.STARTING, P.RUNNING)
            ):
                return  # stopped or already restarted since the failure was seen
            check_transition(self._status, P.BACKOFF)
            now = time.monotonic()
            ran_for = 0.0 if self._running_since is None else now - self._running_since
            decision = self.policy.decide(self.restarts, ran_for)
            if decision.reset_count:
                self.restarts = 0
            if not decision.allowed:
                self._give_up()
            self._transition(P.BACKOFF)
            self._terminate(self._stop_timeout)
            self.restarts += 1
            self.total_restarts += 1
            generation = self._generation
            logger.warning(
                "restarting %s in %.3gs (restart %d of %d in a row)",
                self._spec.name,
                decision.delay,
                self.restarts,
                self.policy.max_restarts,
            )
        if self._stopping.wait(decision.delay):
            return
        with self._lock:
            if self._status is P.BACKOFF and self._generation == generation:
                self._transition(P.STARTING)
                self._spawn()

    def _give_up(self) -> NoReturn:
        self._terminate(self._stop_timeout)
        error = RestartLimitExceeded(
            f"{self._spec.name} failed again after {self.restarts} restarts in a row "
            f"(max_restarts={self.policy.max_restarts}); giving up",
            output=self.output(_ERROR_LINES),
            restarts=self.restarts,
            returncode=self._returncode,
        )
        self.last_error = error
        self._transition(P.FAILED)
        self._remove_pid_file()
        raise error

    # -- monitor -------------------------------------------------------------

    @property
    def monitoring(self) -> bool:
        """Whether a monitor was started (and not ended by :meth:`stop_monitor`)."""
        return self._monitor_interval is not None

    def start_monitor(self, interval: float) -> None:
        """Check the process every ``interval`` s in a thread; restart it per policy.

        A call while a monitor runs changes nothing.
        """
        if interval <= 0:
            raise InvalidConfig(f"monitor interval must be > 0, not {interval}")
        with self._lock:
            if self._monitor_interval is None:
                self._monitor_interval = interval
            if self._status is not P.STOPPED:
                self._launch_monitor()

    def stop_monitor(self) -> None:
        """End the monitor for good; waits for a check (or restart) in progress."""
        with self._lock:
            self._monitor_interval = None
        self._end_monitor_thread()

    def _launch_monitor(self) -> None:
        with self._lock:
            if self._monitor is not None or self._monitor_interval is None:
                return
            stop_event = threading.Event()
            thread = threading.Thread(
                target=self._monitor_loop,
                args=(self._monitor_interval, stop_event),
                name=f"monitor-{self._spec.name}",
                daemon=True,
            )
            self._monitor = (thread, stop_event)
            thread.start()

    def _end_monitor_thread(self) -> None:
        with self._lock:
            monitor, self._monitor = self._monitor, None
        if monitor is None:
            return
        thread, stop_event = monitor
        stop_event.set()
        if thread is not threading.current_thread():
            thread.join()

    def _monitor_loop(self, interval: float, stop_event: threading.Event) -> None:
        while not stop_event.wait(interval):
            try:
                self._monitor_tick()
            except Exception:
                # One bad check must not end supervision.
                logger.exception("monitor check of %s failed", self._spec.name)

    def _monitor_tick(self) -> None:
        with self._lock:
            status, child, generation = self._status, self._child, self._generation
        if child is None or status not in (P.STARTING, P.RUNNING) or self._stopping.is_set():
            return
        code = child.exit_code()
        if code is not None:
            reason = f"exited with code {code}"
        elif status is P.STARTING:
            if self._probe_ok():
                self._mark_ready(child)
                return
            if time.monotonic() - child.spawned_at < self._ready_timeout:
                return
            reason = f"was not ready after {self._ready_timeout:g}s"
        elif self.check_health():
            self._reset_if_stable()
            return
        else:
            reason = f"failed {self._failures} readiness probes in a row"
        if code is not None:
            child.drain()  # so the restart's log and error carry the last words
        logger.warning("%s (pid %d) %s", self._spec.name, child.pid, reason)
        try:
            self._restart(generation)
        except ProcessError as error:
            logger.error("%s: %s", self._spec.name, error)
            if self._on_failed is not None:
                self._on_failed(error)

    def _reset_if_stable(self) -> None:
        with self._lock:
            since = self._running_since
            if since is not None and time.monotonic() - since >= self.policy.stable_start:
                self.restarts = 0

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
