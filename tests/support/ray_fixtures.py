"""One real local Ray per test session, shared by every Ray-using test.

``ray.init`` costs seconds and a process can hold only one Ray connection, so
the session starts it once. Tests that use it are exempt from the per-test
child-process leak check (Ray's workers come and go); they clean up their own
actors, Vite processes and worktrees instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from actors.ray_internals import raylet_config
from studio.naming import ACTOR_NAMESPACE
from tests.support import ray_coverage

__all__ = ["SANDBOX_SLOTS", "ray_session"]

# Slots the session's single node declares, as a cluster of sandbox nodes would.
SANDBOX_SLOTS = 40


ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def _session_system_config() -> Iterator[dict[str, object]]:
    """The session Ray's ``_system_config``: with coverage, each worker saves its own.

    As the service's Ray (``actors._prestart.RAY_SYSTEM_CONFIG``), the raylet
    starts no workers for the first driver: the warm pool counts never-used
    workers, and only its spares may be. The service's preload is not named:
    tests of it start a Ray of their own. Workers import the coverage preload
    from the checkout (the tests are not installed): PYTHONPATH is set while
    Ray starts, which its workers inherit.
    """
    if not ray_coverage.enabled():
        yield raylet_config([], workers_for_first_driver=False)
        return
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), before) if p)
    try:
        yield raylet_config(["tests.support.coverage_preload"], workers_for_first_driver=False)
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray for the session, in the service's namespace."""
    if ray.is_initialized():
        yield
        return
    # Ray's Unix socket paths break past ~107 bytes: keep the temp dir short.
    temp_dir = tempfile.mkdtemp(prefix="rs-", dir="/tmp")
    # No job runtime env, as the service's job has none (see coverage_preload).
    with _session_system_config() as system_config:
        ray.init(
            address="local",
            num_cpus=max(4, os.cpu_count() or 1),
            resources={"sandbox_slot": SANDBOX_SLOTS},
            include_dashboard=False,
            namespace=ACTOR_NAMESPACE,
            _temp_dir=temp_dir,
            log_to_driver=False,
            _system_config=system_config,
        )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
