"""Vite standbys in Ray workers (actors._standby): the hint, the claim, the unclaimed ones."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors import _standby
from studio.vite.standby import ViteStandby
from tests.actors.conftest import TEMPLATE, run_with_own_ray
from tests.support.procs import ends_within

NODE_ID = "ab" * 28


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process as a Ray worker of a session in ``tmp_path``; its standby closed at the end."""
    session = tmp_path / "session"
    monkeypatch.setattr(_standby, "_here", lambda: (session, NODE_ID))
    monkeypatch.setattr(_standby, "_in_worker", lambda: True)
    monkeypatch.setattr(_standby, "_remembered", None)
    monkeypatch.setattr(_standby, "_standby", None)
    # prestart's threads: this process gets no work until the test ends (then a thread
    # still waiting for a hint stops).
    work = {"given": False}
    monkeypatch.setattr(_standby, "_has_work", lambda: work["given"])
    yield session
    work["given"] = True
    left = _standby.claim()
    if left is not None:
        left.close()


def test_a_sandbox_remembers_its_modules_and_a_later_worker_starts_a_standby(
    worker, studio_dir, modules
):
    _standby.remember(TEMPLATE, studio_dir)
    hint = json.loads(_standby.hint_file(worker, NODE_ID).read_text())
    assert hint == {"template_dir": str(TEMPLATE.resolve()), "modules_dir": str(modules.resolve())}
    started = _standby.prestart()
    assert started is not None and started.alive()
    assert started.unfit_for(studio_dir) is None
    claimed = _standby.claim()
    assert claimed is started
    assert _standby.claim() is None  # claimed once
    claimed.close()
    assert ends_within(claimed.pid)


def test_a_spare_booted_before_the_first_sandbox_starts_its_standby_once_the_hint_exists(
    worker, studio_dir
):
    assert _standby.prestart() is None  # no sandbox on this node yet: it waits
    time.sleep(0.3)
    assert _standby.claim() is None
    _standby.remember(TEMPLATE, studio_dir)
    deadline = time.monotonic() + 10
    while (standby := _standby.claim()) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert standby is not None and standby.alive()
    assert standby.unfit_for(studio_dir) is None
    standby.close()


def test_a_worker_given_work_stops_waiting_for_a_hint(worker, studio_dir):
    _standby.remember(TEMPLATE, studio_dir)
    _standby.await_hint(_standby.hint_file(worker, NODE_ID), lambda: True)  # returns at once
    assert _standby.claim() is None


def test_a_driver_importing_the_preload_starts_no_standby(worker, studio_dir, monkeypatch):
    _standby.remember(TEMPLATE, studio_dir)
    monkeypatch.undo()  # the real _in_worker: this test process is no Ray worker
    monkeypatch.setattr(_standby, "_here", lambda: (worker, NODE_ID))
    assert _standby.prestart() is None


def test_a_hint_naming_what_is_gone_or_unreadable_starts_nothing(worker, tmp_path, caplog):
    hint = _standby.hint_file(worker, NODE_ID)
    hint.parent.mkdir(parents=True)
    hint.write_text(json.dumps({"template_dir": str(TEMPLATE), "modules_dir": str(tmp_path)}))
    assert _standby.prestart() is None
    hint.write_text("{")
    assert _standby.prestart() is None
    assert "unreadable vite standby hint" in caplog.text


def test_a_dead_standby_is_not_claimed(worker, studio_dir):
    _standby.remember(TEMPLATE, studio_dir)
    started = _standby.prestart()
    assert started is not None
    started.close()
    assert _standby.claim() is None


def _unclaimed(modules: Path, monkeypatch: pytest.MonkeyPatch) -> ViteStandby:
    standby = ViteStandby.start(TEMPLATE, modules)
    monkeypatch.setattr(_standby, "_standby", standby)
    return standby


def test_an_unclaimed_standby_is_closed_once_the_worker_had_work_for_the_grace(
    modules, monkeypatch
):
    standby = _unclaimed(modules, monkeypatch)
    work = {"given": False}
    watcher = _thread(standby, lambda: work["given"], grace=0.3)
    time.sleep(0.3)
    assert standby.alive()  # an idle worker (a spare) keeps it
    work["given"] = True
    watcher.join(timeout=10)
    assert not watcher.is_alive()
    assert ends_within(standby.pid)
    assert _standby.claim() is None


def test_a_claimed_standby_is_left_to_its_claimer(modules, monkeypatch):
    standby = _unclaimed(modules, monkeypatch)
    watcher = _thread(standby, lambda: True, grace=0.5)
    assert _standby.claim() is standby
    watcher.join(timeout=10)
    assert not watcher.is_alive() and standby.alive()
    standby.close()
    assert ends_within(standby.pid)


def _thread(standby: ViteStandby, has_work, grace: float):
    import threading

    thread = threading.Thread(
        target=_standby.watch_unclaimed, args=(standby, has_work, grace, 0.02), daemon=True
    )
    thread.start()
    return thread


# A Ray of its own with the preload (the session's has none), in a child process: after
# a sandbox wrote the node's hint, a new sandbox worker has a live standby its actor claims.
_CHILD = textwrap.dedent(
    """
    import shutil, sys, tempfile
    from pathlib import Path
    import ray
    from actors import _standby
    from actors._prestart import RAY_SYSTEM_CONFIG
    from actors._sandbox_worker import sandbox_runtime_env

    @ray.remote(num_cpus=0)
    class Claimer:
        def claim(self):
            standby = _standby.claim()
            if standby is None:
                return None
            alive = standby.alive()
            standby.close()
            return {"alive": alive, "has_work": _standby._has_work()}

    temp_dir = tempfile.mkdtemp(prefix="rv-", dir="/tmp")
    try:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
                 _temp_dir=temp_dir, _system_config=RAY_SYSTEM_CONFIG)
        _standby.remember(Path(sys.argv[1]), Path(sys.argv[2]))
        # A sandbox actor's worker, started now (after the hint): no spare waits.
        actor = Claimer.options(runtime_env=sandbox_runtime_env()).remote()
        print("CLAIMED", ray.get(actor.claim.remote(), timeout=120))
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    """
)


def test_a_worker_of_a_ray_with_the_preload_has_a_standby_for_its_actor(studio_dir):
    # No OS boundary: with one in force the workers keep no standby (studio.process.boundary).
    done = run_with_own_ray(
        _CHILD, str(TEMPLATE), str(studio_dir), env={"COMPONENT_STUDIO_ISOLATION": "none"}
    )
    assert "CLAIMED {'alive': True, 'has_work': True}" in done.stdout, done.stdout + done.stderr
