"""Ray workers preload the sandbox actor's modules (actors._preload) when Ray is started so."""

from __future__ import annotations

import textwrap

import pytest

from actors import _preload
from tests.actors.conftest import run_with_own_ray

# A Ray of its own (the session's was started without the setting), in a child process:
# a task's fresh worker reports whether the sandbox actor's modules were already loaded.
_CHILD = textwrap.dedent(
    """
    import shutil, sys, tempfile
    import ray
    from actors._prestart import RAY_SYSTEM_CONFIG

    @ray.remote(num_cpus=0)
    def loaded():
        return "actors.sandbox_actor" in sys.modules

    temp_dir = tempfile.mkdtemp(prefix="rp-", dir="/tmp")
    try:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
                 _temp_dir=temp_dir, _system_config=RAY_SYSTEM_CONFIG)
        print("LOADED" if ray.get(loaded.remote(), timeout=120) else "NOT LOADED")
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    """
)


def test_a_worker_of_a_ray_started_with_the_setting_has_the_sandbox_modules_loaded() -> None:
    done = run_with_own_ray(_CHILD)
    assert "LOADED" in done.stdout.splitlines(), done.stdout + done.stderr


def test_a_failing_preload_only_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Logged, not raised: the actor's own import then says why, where its creator sees it.
    monkeypatch.setattr(_preload, "_SANDBOX_MODULES", ("actors.no_such_module",))
    _preload.preload()
    assert "preloading actors.no_such_module failed" in caplog.text
