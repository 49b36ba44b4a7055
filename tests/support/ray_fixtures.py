"""One real local Ray per test session, shared by every Ray-using test.

``ray.init`` costs seconds and a process can hold only one Ray connection, so
the session starts it once. Tests that use it are exempt from the per-test
child-process leak check (Ray's workers come and go); they clean up their own
actors, Vite processes and worktrees instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from studio.naming import ACTOR_NAMESPACE
from tests.support import ray_coverage

__all__ = ["SANDBOX_SLOTS", "ray_session"]

# Slots the session's single node declares, as a cluster of sandbox nodes would.
SANDBOX_SLOTS = 40


ROOT = Path(__file__).resolve().parents[2]


def _coverage_runtime_env() -> dict[str, object]:
    # Workers do not see the checkout on sys.path (the packages are installed,
    # the tests are not): PYTHONPATH lets them import the setup hook.
    return {
        "worker_process_setup_hook": "tests.support.ray_coverage.start_saving",
        "env_vars": {"PYTHONPATH": str(ROOT)},
    }


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray for the session, in the service's namespace."""
    if ray.is_initialized():
        yield
        return
    # Ray's Unix socket paths break past ~107 bytes: keep the temp dir short.
    temp_dir = tempfile.mkdtemp(prefix="rs-", dir="/tmp")
    ray.init(
        address="local",
        num_cpus=max(4, os.cpu_count() or 1),
        resources={"sandbox_slot": SANDBOX_SLOTS},
        include_dashboard=False,
        namespace=ACTOR_NAMESPACE,
        _temp_dir=temp_dir,
        log_to_driver=False,
        runtime_env=_coverage_runtime_env() if ray_coverage.enabled() else None,
    )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
