"""The run's one local Ray, started like the service's own tests start it."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

from benchmarks.context import RunContext

__all__ = ["SANDBOX_SLOTS", "local_ray", "use_ray"]

# As many slots as the "40 idle sandboxes fit" target needs.
SANDBOX_SLOTS = 40


@contextlib.contextmanager
def local_ray(ctx: RunContext) -> Iterator[None]:
    """``ray.init(address="local")`` in the service's namespace; shut down on exit."""
    import ray

    from actors._prestart import RAY_SYSTEM_CONFIG
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
        # As studio up starts it: workers preload the sandbox actor's modules.
        _system_config=RAY_SYSTEM_CONFIG,
    )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def use_ray(ctx: RunContext) -> None:
    """Make sure the run's Ray is up."""
    ctx.resource("ray", local_ray)
