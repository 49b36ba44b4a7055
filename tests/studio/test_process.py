"""Tests of studio/process/ against real child processes (tests/support/fakeproc.py)."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from studio.errors import (
    InvalidConfig,
    InvalidState,
    ProcessError,
    ProcessStartError,
    RestartLimitExceeded,
)
from studio.process import (
    TRANSITIONS,
    ProcessManager,
    ProcessSpec,
    ProcessStatus,
    RestartDecision,
    RestartPolicy,
    StopResult,
    check_transition,
    reap_orphans,
)
from tests.support.fakeproc import fake_argv
from tests.support.procs import gone

ROOT = Path(__file__).resolve().parents[2]
S = ProcessStatus
FAST = RestartPolicy(max_restarts=3, backoff=0.01, backoff_max=0.05, stable_start=60.0)
MONITOR_INTERVAL = 0.02


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_probe(port: int) -> Callable[[], bool]:
    def probe() -> bool:
        url = f"http://127.0.0.1:{port}/@vite/client"
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)

    return probe


def wait_until(predicate: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def printed(manager: ProcessManager, line: str) -> Callable[[], bool]:
    return lambda: line in manager.stdout_lines()


def status_of(manager: ProcessManager) -> ProcessStatus:
    """The status now (a call, so a type checker does not carry an earlier check over)."""
    return manager.status


def grandchild_pid(manager: ProcessManager) -> int:
    line = next(line for line in manager.stdout_lines() if line.startswith("child "))
    return int(line.split()[1])


@pytest.fixture(autouse=True)
def log_everything(caplog: pytest.LogCaptureFixture) -> None:
    """Every log call of the module runs for real (a bad ``extra`` key raises)."""
    caplog.set_level(logging.DEBUG, logger="studio")


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., ProcessManager]]:
    """Builds managers running a fakeproc mode; stops every one at teardown."""
    made: list[ProcessManager] = []

    def factory(mode: str, *args: object, **kwargs: object) -> ProcessManager:
        spec = ProcessSpec(fake_argv(mode, *args), cwd=tmp_path, name=f"fake-{mode}")
        manager = ProcessManager(spec, **kwargs)  # type: ignore[arg-type]
        made.append(manager)
        return manager

    yield factory
    for manager in made:
        manager.stop(timeout=1.0)


# -- the pure parts ----------------------------------------------------------


def test_transition_table_and_guard() -> None:
    for current in S:
        for target in S:
            if target in TRANSITIONS[current]:
                check_transition(current, target)
            else:
                with pytest.raises(InvalidState) as info:
                    check_transition(current, target)
                assert info.value.details == {"state": current.value, "target": target.value}


def test_policy_delay_grows_exponentially_up_to_the_cap() -> None:
    policy = RestartPolicy(max_restarts=10, backoff=0.5, backoff_max=3.0, stable_start=30.0)
    delays = [policy.decide(n, ran_for=0.0).delay for n in range(6)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert policy.delay(10_000) == 3.0


def test_policy_refuses_past_the_limit() -> None:
    policy = RestartPolicy(max_restarts=2, backoff=0.5, backoff_max=10.0, stable_start=30.0)
    assert policy.decide(0, 1.0) == RestartDecision(allowed=True, delay=0.5, reset_count=False)
    assert policy.decide(1, 1.0).allowed
    assert policy.decide(2, 1.0) == RestartDecision(allowed=False, delay=0.0, reset_count=False)


def test_policy_resets_the_count_after_a_stable_start() -> None:
    policy = RestartPolicy(max_restarts=2, backoff=0.5, backoff_max=10.0, stable_start=30.0)
    assert policy.decide(2, 30.0) == RestartDecision(allowed=True, delay=0.5, reset_count=True)
    assert not RestartPolicy(max_restarts=0).decide(0, 100.0).allowed


@given(
    restarts=st.integers(min_value=0, max_value=10_000),
    ran_for=st.floats(min_value=0, max_value=1e6),
)
def test_policy_delay_is_bounded(restarts: int, ran_for: float) -> None:
    policy = RestartPolicy(max_restarts=5, backoff=0.25, backoff_max=4.0, stable_start=10.0)
    decision = policy.decide(restarts, ran_for)
    assert 0.0 <= decision.delay <= policy.backoff_max
    assert decision.allowed == (restarts < 5 or ran_for >= 10.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"backoff": -1.0}, {"max_restarts": -1}, {"stable_start": -1.0}, {"backoff_max": 0.1}],
)
def test_policy_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidConfig):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]


def test_spec_and_manager_reject_bad_values(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig):
        ProcessSpec([], cwd=tmp_path)
    spec = ProcessSpec(fake_argv("sleep"), cwd=tmp_path)
    assert isinstance(spec.argv, tuple)
    with pytest.raises(InvalidConfig):
        ProcessManager(spec, unhealthy_threshold=0)
    with pytest.raises(InvalidConfig):
        ProcessManager(spec).start_monitor(0)


# -- starting and stopping ---------------------------------------------------


def test_start_then_stop_by_sigterm(make, tmp_path: Path, caplog) -> None:
    port = free_port()
    events: list[tuple[ProcessStatus, ProcessStatus]] = []
    pid_file = tmp_path / "run" / "ok.json"
    manager = make(
        "ok",
        port,
        readiness_probe=http_probe(port),
        pid_file=pid_file,
        on_status=lambda old, new: events.append((old, new)),
    )
    manager.start()
    assert manager.status is S.STARTING  # a probe has not answered yet
    manager.wait_ready(15)
    assert status_of(manager) is S.RUNNING
    assert manager.is_alive()
    assert "ready" in manager.stdout_lines()
    pid = manager.pid
    assert pid is not None

    record = json.loads(pid_file.read_text())
    assert record["pid"] == pid
    assert record["pgid"] == os.getpgid(pid) == pid  # its own group
    assert os.getsid(pid) == pid  # and its own session
    assert record["create_time"] == psutil.Process(pid).create_time()
    assert record["argv"] == list(manager.spec.argv)

    assert manager.stop() is StopResult.SIGTERM
    assert manager.last_stop is StopResult.SIGTERM
    assert status_of(manager) is S.STOPPED
    assert manager.returncode == -signal.SIGTERM
    assert manager.pid is None
    assert not pid_file.exists()
    assert events == [(S.STOPPED, S.STARTING), (S.STARTING, S.RUNNING), (S.RUNNING, S.STOPPED)]
    # Stopping again is harmless and says there was nothing left to stop.
    assert manager.stop() is StopResult.ALREADY_EXITED
    assert manager.wait(0) == -signal.SIGTERM
    transitions = [r for r in caplog.records if getattr(r, "status", None) == "running"]
    assert transitions[0].process_name == manager.spec.name


def test_process_ignoring_sigterm_is_killed(make) -> None:
    manager = make("ignore-sigterm")
    manager.start()
    wait_until(printed(manager, "ready"))
    assert manager.stop(timeout=0.3) is StopResult.SIGKILL
    assert manager.returncode == -signal.SIGKILL
    assert "ignoring SIGTERM" in manager.stderr_lines()


def test_kill_sends_sigkill_at_once(make) -> None:
    manager = make("sleep")
    manager.start()
    manager.kill()
    assert manager.last_stop is StopResult.SIGKILL
    assert manager.status is S.STOPPED
    assert manager.returncode == -signal.SIGKILL


def test_grandchild_dies_with_the_group(make) -> None:
    manager = make("spawn-child")
    manager.start()
    wait_until(printed(manager, "ready"))
    child = grandchild_pid(manager)
    assert os.getpgid(child) == manager.pid
    assert manager.stop() is StopResult.SIGTERM
    wait_until(lambda: gone(child))


def test_group_is_swept_after_the_leader_exits(make) -> None:
    # The grandchild ignores SIGTERM; the leader dies of it. The SIGKILL sweep
    # of the group must still end the grandchild.
    manager = make("spawn-child", "--stubborn")
    manager.start()
    wait_until(printed(manager, "ready"))
    child = grandchild_pid(manager)
    assert manager.stop(timeout=2.0) is StopResult.SIGTERM
    wait_until(lambda: gone(child))


def test_environment_is_laid_over_the_inherited_one(tmp_path: Path) -> None:
    script = "import os; print(os.environ['STUDIO_TEST_VAR'], 'PATH' in os.environ)"
    spec = ProcessSpec(
        [sys.executable, "-c", script], cwd=tmp_path, env={"STUDIO_TEST_VAR": "overlaid"}
    )
    manager = ProcessManager(spec)
    manager.start()
    assert manager.wait(15) == 0
    manager.stop()
    assert manager.stdout_lines() == ["overlaid True"]


def test_wait_returns_none_until_the_process_exits(make) -> None:
    sleeper = make("sleep")
    sleeper.start()
    assert sleeper.wait(0.05) is None
    dier = make("die-after", 0)
    dier.start()
    assert dier.wait(15) == 3
    assert not dier.is_alive()
    assert not dier.check_health()


# -- readiness ---------------------------------------------------------------


def test_crash_on_start_fails_wait_ready_with_its_stderr(make) -> None:
    manager = make("crash-on-start", "Error: Port 5173 is already in use", readiness_probe=bool)
    manager.start()
    with pytest.raises(ProcessStartError) as info:
        manager.wait_ready(15)
    assert "exited with code 1" in str(info.value)
    assert "Error: Port 5173 is already in use" in info.value.details["output"]
    assert info.value.details["returncode"] == 1
    assert manager.returncode == 1
    assert manager.stop() is StopResult.ALREADY_EXITED


def test_slow_process_becomes_ready(make) -> None:
    port = free_port()
    manager = make("slow-ready", 0.3, port, readiness_probe=http_probe(port))
    manager.start()
    manager.wait_ready(15)
    assert manager.status is S.RUNNING
    assert manager.stdout_lines() == ["starting", "ready"]


def test_wait_ready_times_out(make) -> None:
    manager = make("sleep", readiness_probe=lambda: False)
    manager.start()
    with pytest.raises(ProcessStartError, match=r"not ready after 0\.1s") as info:
        manager.wait_ready(0.1)
    assert info.value.details["timeout"] == 0.1
    assert manager.status is S.STARTING


def test_wait_ready_needs_a_started_process(make) -> None:
    manager = make("sleep")
    with pytest.raises(InvalidState):
        manager.wait_ready(1)


def test_exited_process_without_probe_is_not_ready(make) -> None:
    manager = make("crash-on-start")
    manager.start()
    manager.wait(15)
    with pytest.raises(ProcessStartError, match="exited with code 1"):
        manager.wait_ready(1)


# -- exec failures -----------------------------------------------------------


def test_missing_executable_is_a_start_error(tmp_path: Path) -> None:
    manager = ProcessManager(ProcessSpec([str(tmp_path / "no-such-program")], cwd=tmp_path))
    with pytest.raises(ProcessStartError, match="was not found") as info:
        manager.start()
    assert info.value.details["argv"] == [str(tmp_path / "no-such-program")]
    assert manager.status is S.FAILED
    assert manager.last_error is info.value
    with pytest.raises(ProcessStartError, match="failed: cannot start"):
        manager.wait_ready(1)
    assert manager.stop() is StopResult.ALREADY_EXITED
    assert status_of(manager) is S.STOPPED


def test_non_executable_file_is_a_start_error(tmp_path: Path) -> None:
    program = tmp_path / "program.sh"
    program.write_text("#!/bin/sh\necho hi\n")
    program.chmod(0o644)
    manager = ProcessManager(ProcessSpec([str(program)], cwd=tmp_path))
    with pytest.raises(ProcessStartError, match="not executable"):
        manager.start()


def test_bad_executable_format_is_a_start_error(tmp_path: Path) -> None:
    program = tmp_path / "garbage"
    program.write_bytes(b"\x00\x01\x02 not a program")
    program.chmod(0o755)
    manager = ProcessManager(ProcessSpec([str(program)], cwd=tmp_path))
    with pytest.raises(ProcessStartError, match="could not be executed"):
        manager.start()


def test_missing_working_directory_is_a_start_error(tmp_path: Path) -> None:
    manager = ProcessManager(ProcessSpec(fake_argv("sleep"), cwd=tmp_path / "missing"))
    with pytest.raises(ProcessStartError, match="does not exist"):
        manager.start()


# -- states ------------------------------------------------------------------


def test_illegal_operations_raise_invalid_state(make) -> None:
    manager = make("sleep")
    with pytest.raises(InvalidState):
        manager.restart()  # STOPPED -> BACKOFF is not a transition
    manager.start()
    with pytest.raises(InvalidState) as info:
        manager.start()
    assert info.value.details["state"] == "running"


def test_callback_errors_do_not_break_supervision(make) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("callback bug")

    manager = make("flood", 3, on_status=broken, on_output=broken)
    manager.start()
    assert manager.status is S.RUNNING
    manager.wait(15)
    manager.stop()
    assert manager.stdout_lines() == ["out 0", "out 1", "out 2"]


# -- health ------------------------------------------------------------------


def test_unhealthy_only_after_threshold_failures_in_a_row(make) -> None:
    answers = iter([False, False, True, False, False, False])
    manager = make("sleep", readiness_probe=lambda: next(answers), unhealthy_threshold=3)
    manager.start()
    results = [manager.check_health() for _ in range(6)]
    assert results == [True, True, True, True, True, False]
    assert manager.consecutive_failures == 3
    assert manager.status is S.RUNNING  # the one success made it ready


def test_probe_that_raises_counts_as_a_failure(make) -> None:
    def probe() -> bool:
        raise ConnectionRefusedError("nothing listens")

    manager = make("sleep", readiness_probe=probe, unhealthy_threshold=1)
    manager.start()
    assert not manager.check_health()


def test_dead_process_is_unhealthy(make) -> None:
    manager = make("sleep")
    assert not manager.check_health()  # never started
    manager.start()
    assert manager.check_health()
    manager.kill()
    assert not manager.check_health()


# -- restarts ----------------------------------------------------------------


def test_monitor_restarts_a_process_that_dies(make, tmp_path: Path) -> None:
    events: list[tuple[ProcessStatus, ProcessStatus]] = []
    pid_file = tmp_path / "die.json"
    manager = make(
        "die-after",
        0.2,
        policy=RestartPolicy(max_restarts=20, backoff=0.01, backoff_max=0.05),
        pid_file=pid_file,
        on_status=lambda old, new: events.append((old, new)),
    )
    manager.start()
    first = manager.pid
    manager.start_monitor(MONITOR_INTERVAL)
    manager.start_monitor(MONITOR_INTERVAL)  # a second call keeps the one monitor
    wait_until(lambda: manager.total_restarts >= 1 and manager.status is S.RUNNING)
    assert manager.pid != first
    assert "dying" in manager.stderr_lines()
    backoff = events.index((S.RUNNING, S.BACKOFF))
    assert events[backoff + 1 : backoff + 3] == [(S.BACKOFF, S.STARTING), (S.STARTING, S.RUNNING)]
    manager.stop()
    assert not pid_file.exists()


def test_crash_loop_ends_failed(make, tmp_path: Path) -> None:
    failures: list[ProcessError] = []
    pid_file = tmp_path / "crash.json"
    manager = make(
        "crash-on-start",
        policy=RestartPolicy(max_restarts=2, backoff=0.01, backoff_max=0.02),
        pid_file=pid_file,
        on_failed=failures.append,
    )
    manager.start()
    manager.start_monitor(MONITOR_INTERVAL)
    wait_until(lambda: failures)
    error = failures[0]
    assert isinstance(error, RestartLimitExceeded)
    assert manager.status is S.FAILED
    assert manager.last_error is error
    assert "error: simulated crash on start" in error.details["output"]
    assert error.details["returncode"] == 1
    assert manager.restarts == manager.total_restarts == 2
    assert manager.pid is None
    assert not pid_file.exists()


def test_manual_restarts_hit_the_limit_then_start_again(make) -> None:
    manager = make("crash-on-start", policy=RestartPolicy(max_restarts=1, backoff=0.0))
    manager.start()
    first = manager.pid
    assert manager.wait(15) == 1
    manager.restart()
    assert manager.pid != first
    assert manager.wait(15) == 1
    with pytest.raises(RestartLimitExceeded) as info:
        manager.restart()
    assert info.value.details["restarts"] == 1
    assert manager.status is S.FAILED
    manager.start()  # a FAILED process may be started afresh
    assert manager.restarts == 0
    assert status_of(manager) is S.RUNNING


def test_stable_start_resets_the_restart_count(make) -> None:
    events: list[tuple[ProcessStatus, ProcessStatus]] = []
    # Each run lasts longer than stable_start, so one allowed restart is enough forever.
    manager = make(
        "die-after",
        0.15,
        policy=RestartPolicy(max_restarts=1, backoff=0.01, backoff_max=0.01, stable_start=0.05),
        on_status=lambda old, new: events.append((old, new)),
    )
    manager.start()
    manager.start_monitor(MONITOR_INTERVAL)
    wait_until(lambda: manager.total_restarts >= 3)
    manager.stop()
    assert all(new is not S.FAILED for _, new in events)


def test_monitor_restarts_an_unhealthy_process(make) -> None:
    port = free_port()
    healthy = [True]
    events: list[tuple[ProcessStatus, ProcessStatus]] = []
    probe = http_probe(port)
    manager = make(
        "ok",
        port,
        readiness_probe=lambda: healthy[0] and probe(),
        unhealthy_threshold=2,
        policy=FAST,
        on_status=lambda old, new: events.append((old, new)),
    )
    manager.start()
    manager.wait_ready(15)
    first = manager.pid
    manager.start_monitor(MONITOR_INTERVAL)
    healthy[0] = False
    wait_until(lambda: (S.RUNNING, S.BACKOFF) in events)
    healthy[0] = True
    wait_until(lambda: manager.status is S.RUNNING and manager.pid != first)
    assert manager.total_restarts == 1
    assert events[-2:] == [(S.BACKOFF, S.STARTING), (S.STARTING, S.RUNNING)]


def test_monitor_gives_up_on_a_process_that_never_gets_ready(make) -> None:
    failures: list[ProcessError] = []
    manager = make(
        "sleep",
        readiness_probe=lambda: False,
        ready_timeout=0.1,
        policy=RestartPolicy(max_restarts=1, backoff=0.01, backoff_max=0.01),
        on_failed=failures.append,
    )
    manager.start()
    manager.start_monitor(MONITOR_INTERVAL)
    wait_until(lambda: failures)
    assert isinstance(failures[0], RestartLimitExceeded)
    assert manager.total_restarts == 1
    assert manager.last_stop is StopResult.SIGTERM  # the supervisor stopped it


def test_monitor_reports_a_restart_that_cannot_exec(make, tmp_path: Path) -> None:
    failures: list[ProcessError] = []
    manager = make("die-after", 0, policy=FAST, on_failed=failures.append)
    manager.start()
    manager.set_spec(ProcessSpec([str(tmp_path / "gone")], cwd=tmp_path))
    manager.start_monitor(MONITOR_INTERVAL)
    wait_until(lambda: failures)
    assert isinstance(failures[0], ProcessStartError)
    assert manager.status is S.FAILED


def monitor_threads(manager: ProcessManager) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"monitor-{manager.spec.name}"]


def test_monitor_pauses_on_stop_and_resumes_on_start(make) -> None:
    manager = make(
        "die-after", 0.1, policy=RestartPolicy(max_restarts=50, backoff=0.01, backoff_max=0.01)
    )
    manager.start_monitor(MONITOR_INTERVAL)  # before start: it watches from the first run
    assert manager.monitoring
    assert monitor_threads(manager) == []
    manager.start()
    wait_until(lambda: manager.total_restarts >= 1)
    manager.stop()
    assert manager.monitoring
    assert monitor_threads(manager) == []
    before = manager.total_restarts
    manager.start()
    wait_until(lambda: manager.total_restarts > before)
    manager.stop_monitor()
    assert not manager.monitoring
    assert monitor_threads(manager) == []


def test_restart_uses_the_replaced_spec(make, tmp_path: Path) -> None:
    manager = make("sleep", policy=RestartPolicy(backoff=0.0, backoff_max=0.0))
    manager.start()
    wait_until(printed(manager, "ready"))
    manager.set_spec(ProcessSpec(fake_argv("flood", 2), cwd=tmp_path, name="flood"))
    manager.restart()
    assert manager.spec.name == "flood"
    assert manager.wait(15) == 0
    manager.stop()
    # A restart keeps the earlier run's lines: they explain why it restarted.
    assert manager.stdout_lines() == ["ready", "out 0", "out 1"]
    assert manager.restarts == 1


@pytest.mark.timeout(30)
def test_stop_interrupts_a_backoff(make) -> None:
    events: list[tuple[ProcessStatus, ProcessStatus]] = []
    manager = make(
        "crash-on-start",
        policy=RestartPolicy(max_restarts=3, backoff=60.0, backoff_max=60.0),
        on_status=lambda old, new: events.append((old, new)),
    )
    manager.start()
    manager.start_monitor(MONITOR_INTERVAL)
    wait_until(lambda: manager.status is S.BACKOFF)
    assert manager.stop() is StopResult.ALREADY_EXITED
    assert manager.status is S.STOPPED
    assert events[-1] == (S.BACKOFF, S.STOPPED)
    assert manager.pid is None


# -- output ------------------------------------------------------------------


def test_output_rings_are_bounded(make) -> None:
    seen: list[tuple[str, str]] = []
    manager = make("flood", 50, output_lines=10, on_output=lambda s, t: seen.append((s, t)))
    manager.start()
    assert manager.wait(15) == 0
    manager.stop()
    assert manager.stdout_lines() == [f"out {i}" for i in range(40, 50)]
    assert manager.stderr_lines() == [f"err {i}" for i in range(40, 50)]
    assert len(manager.output()) == 10
    assert manager.output(3) == manager.output()[-3:]
    assert manager.output(0) == []
    records = manager.output_records()
    assert {record.stream for record in records} <= {"stdout", "stderr"}
    assert all(record.text.startswith(record.stream[3:]) for record in records)  # out/err
    assert len(seen) == 100


# -- orphans -----------------------------------------------------------------


def test_reap_orphans_kills_what_a_dropped_manager_left(tmp_path: Path) -> None:
    pid_file = tmp_path / "run" / "vite.json"
    manager = ProcessManager(ProcessSpec(fake_argv("spawn-child"), cwd=tmp_path), pid_file=pid_file)
    manager.start()
    wait_until(printed(manager, "ready"))
    leader, child = manager.pid, grandchild_pid(manager)
    assert leader is not None
    # Dropping a manager without stopping it leaves its process running, as a
    # crashed actor would; Python says so with a ResourceWarning.
    with pytest.warns(ResourceWarning):
        del manager
        gc.collect()
    assert not gone(leader)
    try:
        assert reap_orphans(pid_file) is True
        wait_until(lambda: gone(leader) and gone(child))
        assert not pid_file.exists()
    finally:
        for pid in (leader, child):
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(leader, 0)  # still this test's child: reap its zombie


def test_reap_orphans_kills_what_a_dead_process_left(tmp_path: Path) -> None:
    # The previous incarnation is another Python process that exits without
    # stopping what it started, as a killed actor does.
    pid_file = tmp_path / "run" / "vite.json"
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from studio.process import ProcessManager, ProcessSpec
        spec = ProcessSpec({fake_argv("spawn-child")!r}, cwd=Path({str(tmp_path)!r}))
        manager = ProcessManager(
            spec,
            pid_file=Path({str(pid_file)!r}),
            readiness_probe=lambda: "ready" in manager.stdout_lines(),
        )
        manager.start()
        manager.wait_ready(15)
        print(manager.stdout_lines()[0], flush=True)
        os._exit(0)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    leader = json.loads(pid_file.read_text())["pid"]
    child = int(result.stdout.split()[1])
    try:
        assert not gone(leader) and not gone(child)
        assert reap_orphans(pid_file) is True
        wait_until(lambda: gone(leader) and gone(child))
        assert not pid_file.exists()
        assert reap_orphans(pid_file) is False  # nothing recorded any more
    finally:
        for pid in (leader, child):
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def _record(pid_file: Path, pid: int, create_time: float) -> None:
    pid_file.write_text(json.dumps({"pid": pid, "pgid": pid, "create_time": create_time}))


def test_reap_orphans_leaves_a_reused_pid_alone(tmp_path: Path) -> None:
    pid_file = tmp_path / "other.json"
    proc = subprocess.Popen(fake_argv("sleep"), stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        # Same pid, earlier create time: the recorded process is gone and the
        # pid now names an unrelated one.
        _record(pid_file, proc.pid, psutil.Process(proc.pid).create_time() - 100.0)
        assert reap_orphans(pid_file) is False
        assert proc.poll() is None
        assert not pid_file.exists()
    finally:
        proc.kill()
        proc.wait()


def test_reap_orphans_kills_the_group_of_a_leader_already_gone(tmp_path: Path) -> None:
    pid_file = tmp_path / "left.json"
    proc = subprocess.Popen(
        fake_argv("spawn-child", "--stubborn"), stdout=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline().split()[1])
    try:
        assert proc.stdout.readline().strip() == b"ready"
        _record(pid_file, proc.pid, psutil.Process(proc.pid).create_time())
        proc.kill()
        proc.wait()
        assert not gone(child)
        # The stubborn grandchild ignores the SIGTERM and needs the SIGKILL.
        assert reap_orphans(pid_file, timeout=0.2) is True
        wait_until(lambda: gone(child))
    finally:
        proc.stdout.close()
        if not gone(child):
            os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize("content", ["not json", '{"pid": 1}', '{"pid": 1, "pgid": 1}'])
def test_reap_orphans_drops_malformed_files(tmp_path: Path, content: str) -> None:
    pid_file = tmp_path / "bad.json"
    pid_file.write_text(content)
    assert reap_orphans(pid_file) is False
    assert not pid_file.exists()
    assert reap_orphans(tmp_path / "absent.json") is False
