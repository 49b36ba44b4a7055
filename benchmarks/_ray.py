"""The one local Ray of a benchmark run, or of a test session: started the same way.

A single node with ``sandbox_slot`` resources in the service's namespace, a
short temp dir of its own, no dashboard. The run starts its workers as
``studio up`` does (they preload the sandbox actor's modules); the test
session passes its own ``_system_config`` (coverage in the workers).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from benchmarks.context import RunContext

__all__ = ["SANDBOX_SLOTS", "local_ray", "local_ray_node", "use_ray"]

# As many slots as the "40 idle sandboxes fit" target needs.
SANDBOX_SLOTS = 40


@contextlib.contextmanager
def local_ray_node(system_config: dict[str, Any] | None) -> Iterator[None]:
    """``ray.init(address="local")`` in the service's namespace; shut down on exit.

    Nothing is started (or stopped) when this process is connected to a Ray already.
    """
    import ray

    from studio.naming import ACTOR_NAMESPACE

    if ray.is_initialized():
        yield
        return
    # Ray's Unix socket paths break past ~107 bytes: a short temp dir of its own.
    temp_dir = tempfile.mkdtemp(prefix="rs-", dir="/tmp")
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


@contextlib.contextmanager
def local_ray(ctx: RunContext) -> Iterator[None]:
    """The run's Ray, as ``studio up`` starts it: workers preload the sandbox actor's modules."""
    from actors._prestart import RAY_SYSTEM_CONFIG

    with local_ray_node(RAY_SYSTEM_CONFIG):
        yield


def use_ray(ctx: RunContext) -> None:
    """Make sure the run's Ray is up."""
    ctx.resource("ray", local_ray)
