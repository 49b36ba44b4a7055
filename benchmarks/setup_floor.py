"""The sandbox's own setup, in this process: no Ray, no manager, no HTTP.

``ComponentStudioSandbox.on_setup()`` from PENDING to RUNNING on the sample
repository, then ``on_teardown()``. Next to "create -> ready" through the API
it shows what Ray, the manager and Serve add; next to the bare Vite floor, what
the worktree and the studio app add. The steps are also timed one by one with
the building blocks the sandbox uses (mirror fetch, worktree add, studio app,
Vite start), as figures.
"""

from __future__ import annotations

import time

from benchmarks._proc import TEMPLATE_DIR, sample_repo
from benchmarks.context import RunContext, Scenario
from benchmarks.floors import install_cache_dir, link_install_cache
from benchmarks.results import ScenarioResult
from benchmarks.stats import summarize

__all__ = ["SETUP_SCENARIOS"]

READY_TIMEOUT = 60.0
VITE_PORT_BASE = 5600


def sandbox_setup_floor(ctx: RunContext) -> ScenarioResult:
    """``on_setup()`` -> RUNNING in-process, and the same steps one by one."""
    from studio.config import StudioSettings
    from studio.git import Mirror
    from studio.layout import StateLayout
    from studio.models import RepositorySource
    from studio.naming import new_sandbox_id
    from studio.ports import PortAllocator
    from studio.sandbox import ComponentStudioSandbox
    from studio.vite import ViteServer, cleanup_studio_app, generate_studio_app

    result = ScenarioResult(
        "sandbox_setup_floor",
        "floor: sandbox on_setup in-process (no Ray) -> RUNNING",
        floor="vite_floor",
    )
    state_dir = ctx.work_dir / "setup-floor-state"
    layout = StateLayout(state_dir)
    # Share the run's install cache (a node has one), so no npm ci is timed here.
    link_install_cache(state_dir, install_cache_dir(ctx))
    origin = sample_repo(ctx.work_dir / "setup-floor-origin")
    settings = StudioSettings(
        state_dir=state_dir,
        template_dir=TEMPLATE_DIR,
        vite_port=VITE_PORT_BASE,
        vite_port_count=200,
    )
    repository = RepositorySource(name="ui-kit", source=str(origin))
    config = settings.default_config()
    teardowns = []
    for _ in range(ctx.count(10, 1)):
        sandbox = ComponentStudioSandbox(new_sandbox_id(), repository, config, settings)
        start = time.monotonic()
        try:
            sandbox.on_setup()
            result.samples.append(time.monotonic() - start)
        finally:
            stop = time.monotonic()
            sandbox.on_teardown()
            teardowns.append(time.monotonic() - stop)
    result.figures["teardown_p50_s"] = round(summarize(teardowns)["median"], 3)

    phases: dict[str, list[float]] = {"mirror": [], "worktree": [], "studio_app": [], "vite": []}
    ports = PortAllocator(layout.locks, host="127.0.0.1", base=VITE_PORT_BASE, count=200)
    for _ in range(ctx.count(5, 1)):
        sandbox_id = new_sandbox_id()
        t0 = time.monotonic()
        mirror = Mirror.ensure(layout.mirror("ui-kit"), str(origin))
        t1 = time.monotonic()
        worktree = mirror.add_worktree(sandbox_id, layout.worktree(sandbox_id), "main")
        t2 = time.monotonic()
        port = ports.allocate(sandbox_id)
        generate_studio_app(
            worktree.path,
            template_dir=TEMPLATE_DIR,
            cache_root=layout.install_cache,
            port=port,
            sandbox_id=sandbox_id,
        )
        t3 = time.monotonic()
        # In the OS boundary the settings name (studio.process.boundary), as on_setup's Vite.
        server = ViteServer(worktree.path, ports=ports, boundary=settings.boundary())
        try:
            server.start(READY_TIMEOUT)
            t4 = time.monotonic()
        finally:
            cleanup_studio_app(worktree.path, server)
            mirror.remove_worktree(worktree.path)
        for name, value in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            phases[name].append(value)
    for name, samples in phases.items():
        result.figures[f"{name}_p50_s"] = round(summarize(samples)["median"], 3)
    return result


SETUP_SCENARIOS = [
    Scenario("sandbox_setup_floor", "sandbox setup in-process", sandbox_setup_floor, ("floor",)),
]
