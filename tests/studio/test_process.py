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

from studio.errors import InvalidConfig, InvalidState, ProcessStartError
from studio.process import (
    TRANSITIONS,
    ProcessManager,
    ProcessSpec,
    ProcessStatus,
    RestartCount,
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


def always() -> bool:
    return True


def wait_until(predicate: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def printed(manager: ProcessManager, line: str) -> Callable[[], bool]:
    return lambda: line in manager.output()


def grandchild_pid(manager: ProcessManager) -> int:
    line = next(line for line in manager.output() if line.startswith("child "))
    return int(line.split()[1])


def statuses(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    """The transitions of process ``name`` as its log records tell them."""
    return [
        r.status
        for r in caplog.records
        if getattr(r, "process_name", None) == name and hasattr(r, "status")
    ]


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
        kwargs.setdefault("readiness_probe", always)
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
    assert policy.decide(0, 1.0) == RestartDecision(allowed=True, delay=0.5, in_row=1)
    assert policy.decide(1, 1.0) == RestartDecision(allowed=True, delay=1.0, in_row=2)
    assert policy.decide(2, 1.0) == RestartDecision(allowed=False, delay=0.0, in_row=2)


def test_policy_starts_a_new_row_after_a_stable_run() -> None:
    policy = RestartPolicy(max_restarts=2, backoff=0.5, backoff_max=10.0, stable_start=30.0)
    assert policy.decide(2, 29.9) == RestartDecision(allowed=False, delay=0.0, in_row=2)
    assert policy.decide(2, 30.0) == RestartDecision(allowed=True, delay=0.5, in_row=1)
    assert not RestartPolicy(max_restarts=0).decide(0, 100.0).allowed


@given(
    in_row=st.integers(min_value=0, max_value=10_000),
    ran_for=st.floats(min_value=0, max_value=1e6),
)
def test_policy_delay_is_bounded(in_row: int, ran_for: float) -> None:
    policy = RestartPolicy(max_restarts=5, backoff=0.25, backoff_max=4.0, stable_start=10.0)
    decision = policy.decide(in_row, ran_for)
    assert 0.0 <= decision.delay <= policy.backoff_max
    assert decision.allowed == (in_row < 5 or ran_for >= 10.0)
    if decision.allowed:
        assert 1 <= decision.in_row <= policy.max_restarts


@pytest.mark.parametrize(
    "kwargs",
    [{"backoff": -1.0}, {"max_restarts": -1}, {"stable_start": -1.0}, {"backoff_max": 0.1}],
)
def test_policy_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidConfig):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]


def test_restart_count_backs_off_then_gives_up_and_the_next_start_has_a_new_row() -> None:
    count = RestartCount(RestartPolicy(max_restarts=2, backoff=1.0, backoff_max=8.0))
    count.up(100.0)
    first = count.failed(101.0)
    assert (first.allowed, first.delay, first.in_row) == (True, 1.0, 1)
    count.up(102.0)
    second = count.failed(103.0)
    assert (second.allowed, second.delay, second.in_row) == (True, 2.0, 2)
    refused = count.failed(104.0)  # the second restart never came up
    assert (refused.allowed, refused.in_row) == (False, 2)
    assert count.total == 2
    # Given up: whatever starts the process afresh starts a new row.
    count.up(200.0)
    assert count.failed(201.0).in_row == 1
    assert count.total == 3


def test_restart_count_starts_a_new_row_after_a_stable_run() -> None:
    count = RestartCount(RestartPolicy(max_restarts=1, backoff=1.0, stable_start=30.0))
    count.up(0.0)
    assert count.failed(1.0).allowed
    count.up(2.0)
    assert count.failed(32.0) == RestartDecision(allowed=True, delay=1.0, in_row=1)
    count.up(33.0)
    assert not count.failed(34.0).allowed
    assert count.total == 2


def test_a_restart_that_never_came_up_ran_for_nothing() -> None:
    # However long a failing restart took, it is no stable run.
    count = RestartCount(RestartPolicy(max_restarts=2, backoff=1.0, stable_start=30.0))
    count.up(0.0)
    assert count.failed(1.0).in_row == 1
    assert count.failed(1000.0).in_row == 2
    assert not count.failed(5000.0).allowed


def test_spec_and_manager_reject_bad_values(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig):
        ProcessSpec([], cwd=tmp_path)
    spec = ProcessSpec(fake_argv("sleep"), cwd=tmp_path)
    assert isinstance(spec.argv, tuple)
    with pytest.raises(InvalidConfig):
        ProcessManager(spec, readiness_probe=always, unhealthy_threshold=0)
    with pytest.raises(InvalidConfig):
        ProcessManager(spec, readiness_probe=always, output_lines=0)


# -- starting and stopping ---------------------------------------------------


def test_start_then_stop_by_sigterm(make, tmp_path: Path, caplog) -> None:
    port = free_port()
    pid_file = tmp_path / "run" / "ok.json"
    manager = make("ok", port, readiness_probe=http_probe(port), pid_file=pid_file)
    manager.start()
    assert statuses(caplog, "fake-ok") == ["starting"]  # the probe has not answered yet
    manager.wait_ready(15)
    assert statuses(caplog, "fake-ok") == ["starting", "running"]
    assert "ready" in manager.output()
    pid = manager.pid
    assert pid is not None

    record = json.loads(pid_file.read_text())
    assert record["pid"] == pid
    assert record["pgid"] == os.getpgid(pid) == pid  # its own group
    assert os.getsid(pid) == pid  # and its own session
    assert record["create_time"] == psutil.Process(pid).create_time()
    assert record["argv"] == fake_argv("ok", port)

    assert manager.stop() is StopResult.SIGTERM
    assert manager.last_stop is StopResult.SIGTERM
    assert statuses(caplog, "fake-ok") == ["starting", "running", "stopped"]
    assert manager.wait(0) == -signal.SIGTERM
    assert manager.pid is None
    assert not pid_file.exists()
    # Stopping again is harmless and says there was nothing left to stop.
    assert manager.stop() is StopResult.ALREADY_EXITED
    assert manager.wait(0) == -signal.SIGTERM


def test_process_ignoring_sigterm_is_killed(make) -> None:
    manager = make("ignore-sigterm")
    manager.start()
    wait_until(printed(manager, "ready"))
    assert manager.stop(timeout=0.3) is StopResult.SIGKILL
    assert manager.wait(0) == -signal.SIGKILL
    assert "ignoring SIGTERM" in manager.output()  # stderr is kept beside stdout


def test_a_stop_without_grace_sends_sigkill_at_once(make) -> None:
    manager = make("sleep")
    manager.start()
    assert manager.stop(timeout=0) is StopResult.SIGKILL
    assert manager.last_stop is StopResult.SIGKILL
    assert manager.wait(0) == -signal.SIGKILL


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
    manager = ProcessManager(spec, readiness_probe=always)
    manager.start()
    assert manager.wait(15) == 0
    manager.stop()
    assert manager.output() == ["overlaid True"]


def test_wait_returns_none_until_the_process_exits(make) -> None:
    sleeper = make("sleep")
    sleeper.start()
    assert sleeper.wait(0.05) is None
    dier = make("die-after", 0)
    dier.start()
    assert dier.wait(15) == 3
    assert not dier.check_health()


def test_wait_without_a_timeout_sleeps_until_the_exit_and_never_reaps(make) -> None:
    manager = make("die-after", 0.2)
    manager.start()
    assert manager.wait() == 3
    pid = manager.pid
    assert pid is not None and psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert manager.stop() is StopResult.ALREADY_EXITED
    assert gone(pid) and manager.wait() == 3


def test_a_wait_without_a_timeout_ends_when_another_thread_stops_the_process(make) -> None:
    manager = make("sleep")
    manager.start()
    wait_until(printed(manager, "ready"))
    codes: list[int | None] = []
    waiter = threading.Thread(target=lambda: codes.append(manager.wait()))
    waiter.start()
    manager.stop()
    waiter.join(30)
    assert not waiter.is_alive() and len(codes) == 1 and codes[0] is not None


# -- readiness ---------------------------------------------------------------


def test_crash_on_start_fails_wait_ready_with_its_stderr(make) -> None:
    manager = make("crash-on-start", "Error: Port 5173 is already in use", readiness_probe=bool)
    manager.start()
    with pytest.raises(ProcessStartError) as info:
        manager.wait_ready(15)
    assert "exited with code 1" in str(info.value)
    assert "Error: Port 5173 is already in use" in info.value.details["output"]
    assert info.value.details["returncode"] == 1
    assert manager.wait(0) == 1
    assert manager.stop() is StopResult.ALREADY_EXITED


def test_slow_process_becomes_ready(make, caplog) -> None:
    port = free_port()
    manager = make("slow-ready", 0.3, port, readiness_probe=http_probe(port))
    manager.start()
    manager.wait_ready(15)
    assert statuses(caplog, "fake-slow-ready") == ["starting", "running"]
    assert manager.output() == ["starting", "ready"]


def test_wait_ready_times_out_and_leaves_the_process_as_it_is(make) -> None:
    manager = make("sleep", readiness_probe=lambda: False)
    manager.start()
    with pytest.raises(ProcessStartError, match=r"not ready after 0\.1s") as info:
        manager.wait_ready(0.1)
    assert info.value.details["timeout"] == 0.1
    assert manager.pid is not None and manager.wait(0) is None


def test_wait_ready_needs_a_started_process(make) -> None:
    manager = make("sleep")
    with pytest.raises(InvalidState):
        manager.wait_ready(1)


def test_an_exit_is_seen_before_the_probe(make) -> None:
    manager = make("crash-on-start")  # its probe always answers
    manager.start()
    manager.wait(15)
    with pytest.raises(ProcessStartError, match="exited with code 1"):
        manager.wait_ready(1)


# -- exec failures -----------------------------------------------------------


def test_missing_executable_is_a_start_error(tmp_path: Path, caplog) -> None:
    spec = ProcessSpec([str(tmp_path / "no-such-program")], cwd=tmp_path, name="missing")
    manager = ProcessManager(spec, readiness_probe=always)
    with pytest.raises(ProcessStartError, match="was not found") as info:
        manager.start()
    assert info.value.details["argv"] == [str(tmp_path / "no-such-program")]
    assert statuses(caplog, "missing") == ["starting", "failed"]
    with pytest.raises(ProcessStartError, match="failed: cannot start"):
        manager.wait_ready(1)
    assert manager.stop() is StopResult.ALREADY_EXITED
    assert statuses(caplog, "missing")[-1] == "stopped"


def test_a_failed_start_may_be_started_again(tmp_path: Path) -> None:
    spec = ProcessSpec(fake_argv("sleep"), cwd=tmp_path / "later")
    manager = ProcessManager(spec, readiness_probe=always)
    with pytest.raises(ProcessStartError, match="does not exist"):
        manager.start()
    (tmp_path / "later").mkdir()
    manager.start()  # FAILED -> STARTING
    try:
        manager.wait_ready(15)
        assert manager.pid is not None
    finally:
        manager.stop()


def test_non_executable_file_is_a_start_error(tmp_path: Path) -> None:
    program = tmp_path / "program.sh"
    program.write_text("#!/bin/sh\necho hi\n")
    program.chmod(0o644)
    manager = ProcessManager(ProcessSpec([str(program)], cwd=tmp_path), readiness_probe=always)
    with pytest.raises(ProcessStartError, match="not executable"):
        manager.start()


def test_bad_executable_format_is_a_start_error(tmp_path: Path) -> None:
    program = tmp_path / "garbage"
    program.write_bytes(b"\x00\x01\x02 not a program")
    program.chmod(0o755)
    manager = ProcessManager(ProcessSpec([str(program)], cwd=tmp_path), readiness_probe=always)
    with pytest.raises(ProcessStartError, match="could not be executed"):
        manager.start()


# -- states ------------------------------------------------------------------


def test_a_started_process_cannot_be_started_again(make) -> None:
    manager = make("sleep")
    manager.start()
    manager.wait_ready(15)
    with pytest.raises(InvalidState) as info:
        manager.start()
    assert info.value.details["state"] == "running"


# -- health ------------------------------------------------------------------


def test_unhealthy_only_after_threshold_failures_in_a_row(make, caplog) -> None:
    answers = iter([False, False, True, False, False, False])
    manager = make("sleep", readiness_probe=lambda: next(answers), unhealthy_threshold=3)
    manager.start()
    results = [manager.check_health() for _ in range(6)]
    assert results == [True, True, True, True, True, False]
    # The one answer made it ready.
    assert statuses(caplog, "fake-sleep") == ["starting", "running"]


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
    manager.stop(timeout=0)
    assert not manager.check_health()


# -- output ------------------------------------------------------------------


def test_output_ring_is_bounded(tmp_path: Path) -> None:
    script = "for i in range(50): print('out', i)"
    manager = ProcessManager(
        ProcessSpec([sys.executable, "-c", script], cwd=tmp_path),
        readiness_probe=always,
        output_lines=10,
    )
    manager.start()
    assert manager.wait(15) == 0
    manager.stop()
    assert manager.output() == [f"out {i}" for i in range(40, 50)]  # kept after the stop
    assert manager.output(3) == manager.output()[-3:]
    assert manager.output(0) == []


def test_a_start_forgets_the_output_of_the_run_before(tmp_path: Path) -> None:
    script = "import os; print(os.getpid())"
    manager = ProcessManager(
        ProcessSpec([sys.executable, "-c", script], cwd=tmp_path), readiness_probe=always
    )
    pids = []
    for _ in range(2):
        manager.start()
        pids.append(manager.pid)
        assert manager.wait(15) == 0
        manager.stop()
    assert manager.output() == [str(pids[1])]


# -- orphans -----------------------------------------------------------------


def test_reap_orphans_kills_what_a_dropped_manager_left(tmp_path: Path) -> None:
    pid_file = tmp_path / "run" / "vite.json"
    manager = ProcessManager(
        ProcessSpec(fake_argv("spawn-child"), cwd=tmp_path),
        readiness_probe=always,
        pid_file=pid_file,
    )
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
            readiness_probe=lambda: "ready" in manager.output(),
        )
        manager.start()
        manager.wait_ready(15)
        print(manager.output()[0], flush=True)
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
