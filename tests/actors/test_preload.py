"""The preload (actors._preload) prepares sandbox actors' workers, and no other worker."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from actors import _preload
from actors._sandbox_worker import SANDBOX_WORKER_VARIABLE
from tests.actors.conftest import TEMPLATE, run_with_own_ray

# A Ray of its own, started as `studio up` starts it (the session's has no preload), in a
# child process. After a sandbox wrote the node's hint, the warm pool's way of starting a
# spare; then a sandbox-like actor, a plain actor and a Serve-like one (async, a runtime
# env of its own, as a replica's) report what their worker holds.
_CHILD = textwrap.dedent(
    """
    import json, os, shutil, sys, tempfile, time
    from pathlib import Path
    import psutil, ray
    from actors import _prestart, _standby
    from actors._sandbox_worker import sandbox_runtime_env

    def holds():
        return {
            "pid": os.getpid(),
            "sandbox_modules": "actors.sandbox_actor" in sys.modules,
            "standby_module": "actors._standby" in sys.modules,
            "children": [p.pid for p in psutil.Process().children(recursive=True)],
        }

    @ray.remote(num_cpus=0)
    class SandboxLike:
        def report(self):
            held = holds()  # before the claim: the standby is a child still
            standby = _standby.claim()
            held["standby"] = standby is not None and standby.alive()
            if standby is not None:
                standby.close()
            return held

    @ray.remote(num_cpus=0)
    class Plain:
        def report(self):
            return holds()

    @ray.remote(num_cpus=0)
    class ServeLike:
        async def report(self):
            return holds()

    def idle_titled():
        return sorted(
            p.pid for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [""])[0].startswith("ray::IDLE")
        )

    temp_dir = tempfile.mkdtemp(prefix="rp-", dir="/tmp")
    try:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
                 _temp_dir=temp_dir, _system_config=_prestart.RAY_SYSTEM_CONFIG)
        node_id = ray.get_runtime_context().get_node_id()
        _standby.remember(Path(sys.argv[1]), Path(sys.argv[2]))
        found = {"idle_before": _prestart.idle_workers(node_id), "idle_titled": idle_titled()}
        found["prestarted"] = _prestart.prestart_workers(node_id)
        deadline = time.monotonic() + 120
        while _prestart.idle_workers(node_id) == found["idle_before"]:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        found["spares"] = sorted(set(idle_titled()) - set(found["idle_titled"]))
        plain = Plain.remote()
        serve_like = ServeLike.options(
            runtime_env={"env_vars": {"SERVE_LIKE": "1"}}, max_concurrency=100
        ).remote()
        found["plain"] = ray.get(plain.report.remote(), timeout=120)
        found["serve_like"] = ray.get(serve_like.report.remote(), timeout=120)
        found["idle_after_others"] = _prestart.idle_workers(node_id)
        sandbox = SandboxLike.options(runtime_env=sandbox_runtime_env()).remote()
        found["sandbox"] = ray.get(sandbox.report.remote(), timeout=120)
        # One more spare: counted by the raylet before its preload is over, which it says.
        before = _prestart.idle_workers(node_id)
        _prestart.prestart_workers(node_id)
        deadline = time.monotonic() + 120
        while _prestart.idle_workers(node_id) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        preloading = [_prestart.preloading_workers(node_id)]
        while preloading[-1] != 0 and time.monotonic() < deadline:
            time.sleep(0.02)
            preloading.append(_prestart.preloading_workers(node_id))
        found["preloading"] = preloading
        print("FOUND " + json.dumps(found))
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    """
)


def run_child(studio_dir: Path) -> dict[str, object]:
    # No OS boundary: with one in force the workers keep no standby (studio.process.boundary).
    done = run_with_own_ray(
        _CHILD, str(TEMPLATE), str(studio_dir), env={"COMPONENT_STUDIO_ISOLATION": "none"}
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("FOUND ")]
    assert lines, done.stdout + done.stderr
    found: dict[str, object] = json.loads(lines[-1].removeprefix("FOUND "))
    return found


def test_only_a_sandbox_worker_is_prepared_and_a_sandbox_actor_lands_on_the_spare(
    studio_dir: Path,
) -> None:
    found = run_child(studio_dir)
    # The raylet starts no workers of its own: what it counts are the pool's spares.
    assert found["idle_before"] == 0 and found["prestarted"] is True
    spares = found["spares"]
    assert isinstance(spares, list) and len(spares) == 1, found
    for other in ("plain", "serve_like"):
        held = found[other]
        assert isinstance(held, dict)
        assert held["pid"] not in spares, f"a {other} actor took the sandboxes' spare"
        assert held["sandbox_modules"] is False, f"a {other} worker imported the sandbox"
        assert held["standby_module"] is False, f"a {other} worker loaded the standby"
        assert held["children"] == [], f"a {other} worker started a process"
    assert found["idle_after_others"] == 1  # the spare still waits
    sandbox = found["sandbox"]
    assert isinstance(sandbox, dict)
    assert sandbox["pid"] == spares[0], "the sandbox actor did not land on the spare"
    assert sandbox["sandbox_modules"] is True
    assert sandbox["standby"] is True and len(sandbox["children"]) >= 1
    # The second spare was counted while it preloaded, and said when it was done.
    preloading = found["preloading"]
    assert isinstance(preloading, list) and preloading[0] == 1 and preloading[-1] == 0, found


def test_the_preload_does_nothing_outside_a_sandbox_worker(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(SANDBOX_WORKER_VARIABLE, raising=False)
    monkeypatch.setattr(_preload, "_SANDBOX_MODULES", ("actors.no_such_module",))
    _preload.preload()
    assert caplog.text == ""


def test_a_failing_preload_only_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Logged, not raised: the actor's own import then says why, where its creator sees it.
    monkeypatch.setenv(SANDBOX_WORKER_VARIABLE, "1")
    monkeypatch.setattr(_preload, "_SANDBOX_MODULES", ("actors.no_such_module",))
    _preload.preload()
    assert "preloading actors.no_such_module failed" in caplog.text
