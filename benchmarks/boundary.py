"""What the OS boundary costs Vite: spawn -> ready and memory, bwrap against none.

``boundary_cost``: bare Vite on the template's studio app (as ``vite_floor``),
started alternately without a boundary and inside the bwrap boundary
(studio.process.boundary), so that both halves share the machine's load of
the moment. The samples are the boundary's starts; the figures set them
beside the unbounded ones started in between, and the memory (PSS) of each
process tree once ready, so the bwrap processes' own share shows.
"""

from __future__ import annotations

import shutil
import statistics
import time

import psutil

from benchmarks._proc import (
    TEMPLATE_DIR,
    free_port,
    kill_group,
    sample_repo,
    spawn_group,
    wait_http_ok,
)
from benchmarks.context import RunContext, Scenario
from benchmarks.floors import READY_TIMEOUT, install_cache_dir
from benchmarks.results import ScenarioResult

__all__ = ["BOUNDARY_SCENARIOS"]

MIB = 1024 * 1024


def _tree_pss(pid: int) -> float:
    """PSS (MiB) of ``pid`` and its descendants."""
    total = 0.0
    try:
        leader = psutil.Process(pid)
        procs = [leader, *leader.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for proc in procs:
        try:
            total += getattr(proc.memory_full_info(), "pss", 0) / MIB
        except psutil.Error:
            continue
    return total


def boundary_cost(ctx: RunContext) -> ScenarioResult:
    """Vite spawn -> /@vite/client 200, inside the bwrap boundary and without, interleaved."""
    from studio.process.boundary import Boundary, Isolation, bwrap_problem
    from studio.vite import (
        VITE_ENV,
        generate_studio_app,
        read_studio_config,
        vite_argv,
        write_studio_config,
    )

    result = ScenarioResult(
        "boundary_cost",
        "boundary: Vite spawn -> /@vite/client 200 inside bwrap (interleaved with none)",
        floor="vite_floor",
    )
    problem = bwrap_problem()
    if problem is not None:
        result.error = problem
        return result
    cache = install_cache_dir(ctx)
    repo = sample_repo(ctx.work_dir / "boundary-cost")
    studio = generate_studio_app(
        repo, template_dir=TEMPLATE_DIR, cache_root=cache, port=free_port()
    )
    boundaries = {
        "none": Boundary(),
        "bwrap": Boundary.for_node(Isolation.BWRAP, install_cache=cache, template_dir=TEMPLATE_DIR),
    }
    times: dict[str, list[float]] = {name: [] for name in boundaries}
    memory: dict[str, list[float]] = {name: [] for name in boundaries}
    for index in range(ctx.count(10, 2)):
        # Which goes first alternates: a start right after another's kill is not the same.
        order = list(boundaries.items())
        for name, boundary in order if index % 2 == 0 else reversed(order):
            shutil.rmtree(studio / ".vite-cache", ignore_errors=True)
            config = read_studio_config(studio)
            config["port"] = port = free_port()
            write_studio_config(studio, config)
            argv = boundary.wrap(vite_argv(studio), cwd=repo, writable=[repo])
            start = time.monotonic()
            process = spawn_group(argv, repo, studio / f"vite-{name}-{index}.log", dict(VITE_ENV))
            try:
                ready = wait_http_ok("127.0.0.1", port, READY_TIMEOUT, process=process)
                times[name].append(ready - start)
                memory[name].append(_tree_pss(process.pid))
            finally:
                kill_group(process)
    result.samples = times["bwrap"]
    for name in boundaries:
        result.figures[f"{name}_p50_s"] = round(statistics.median(times[name]), 3)
        result.figures[f"{name}_pss_mib"] = round(statistics.median(memory[name]), 1)
    result.figures["ratio_p50"] = round(
        statistics.median(times["bwrap"]) / statistics.median(times["none"]), 3
    )
    result.notes.append(
        "Pairs started one after the other (none first in even pairs, bwrap first in odd "
        "ones) on the same studio app with an empty Vite cache each, so both see the same "
        "load; PSS is the whole tree once ready (bwrap adds its monitor and its init "
        "process, ~0.2 MiB each)."
    )
    return result


BOUNDARY_SCENARIOS = [
    Scenario("boundary_cost", "OS boundary cost", boundary_cost, ("floor",)),
]
