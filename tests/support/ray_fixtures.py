"""One real local Ray per test session, shared by every Ray-using test.

``ray.init`` costs seconds and a process can hold only one Ray connection, so
the session starts it once. Tests that use it are exempt from the per-test
child-process leak check (Ray's workers come and go); they clean up their own
actors, Vite processes and worktrees instead.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.ray_internals import raylet_config
from benchmarks._ray import SANDBOX_SLOTS, local_ray_node
from tests.support import ray_coverage

__all__ = ["SANDBOX_SLOTS", "ray_session"]


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
    """A local Ray for the session, in the service's namespace (as the benchmarks start it)."""
    with contextlib.ExitStack() as stack:
        # No job runtime env, as the service's job has none (see coverage_preload);
        # PYTHONPATH is set only while Ray starts.
        with _session_system_config() as system_config:
            stack.enter_context(local_ray_node(system_config))
        yield
