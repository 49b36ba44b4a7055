"""Service scenarios of a sandbox's life: create, render, 20 at once, memory, recovery.

Every scenario drives the real service through its HTTP API (and Chromium
where the issue says "rendered"), and tears down what it created before it
returns, so each starts from the same idle service.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil

from benchmarks._browser import browser
from benchmarks.burst_timeline import sandbox_timeline, timeline_figures
from benchmarks.context import RunContext, Scenario, ScenarioFn
from benchmarks.cpu_account import CpuAccount
from benchmarks.results import ScenarioResult, Target
from benchmarks.service import BenchService, Created, service
from benchmarks.stats import summarize
from studio.errors import InvalidConfig

__all__ = ["LIFECYCLE_SCENARIOS", "render_component", "sandbox_memory"]

MIB = 2**20
COMPONENT = "Button"
RENDER_TIMEOUT_MS = 60_000
RECOVERY_TIMEOUT = 120.0


def create_cold(ctx: RunContext) -> ScenarioResult:
    """The first sandbox of a freshly started service: first actor, first Vite of the node."""
    result = ScenarioResult(
        "create_ready_cold",
        "1. create -> ready, cold (first sandbox on the node)",
        floor="vite_floor",
        targets=[Target("median", 1.0, "p50 <= 1.0 s (cold: informative)")],
    )
    bench = service(ctx, settled=False)
    created = bench.create()
    result.samples.append(created.ready - created.requested)
    result.figures["response_s"] = round(created.responded - created.requested, 3)
    bench.delete(created.sandbox_id)
    result.notes.append(
        "First create after the service started, once it prepared the node (mirror, "
        "installs, shell, deps seed and standby hint are made before any sandbox); the "
        "warm pool may still be filling."
    )
    return result


# Seconds between a teardown and the next create: the manager asks for a spare
# worker 2 s after a create (ManagerTimeouts.spare_delay), and it takes about a
# second more to boot (docs/performance.md, warm pool).
SETTLE_S = 3.5


def create_warm(ctx: RunContext) -> ScenarioResult:
    """Create -> 201 and ``/@vite/client`` 200, one at a time, each torn down after.

    Each create starts on a settled node (:data:`SETTLE_S` after the last
    teardown): the warm case is a service whose caches and spare worker are
    ready. Creates right after a teardown are measured too, as a figure: on 2
    cores they share the CPU with the spare's boot and the teardown's end.
    """
    result = ScenarioResult(
        "create_ready",
        "1. create -> ready (201 + /@vite/client 200), warm",
        floor="vite_floor",
        targets=[
            Target("median", 1.0, "p50 <= 1.0 s"),
            Target("ratio_to_floor", 1.35, "<= 1.35x floor"),
        ],
    )
    bench = service(ctx)
    responses = []
    teardowns = []
    back_to_back = []
    settled = ctx.count(15, 2)
    for index in range(settled + ctx.count(5, 1)):
        if index < settled:
            time.sleep(SETTLE_S)
        created = bench.create()
        ready = created.ready - created.requested
        if index < settled:
            result.samples.append(ready)
            responses.append(created.responded - created.requested)
        else:
            back_to_back.append(ready)
        started = time.monotonic()
        bench.delete(created.sandbox_id)
        teardowns.append(time.monotonic() - started)
    result.figures["response_p50_s"] = round(summarize(responses)["median"], 3)
    result.figures["teardown_p50_s"] = round(summarize(teardowns)["median"], 3)
    result.figures["back_to_back_p50_s"] = round(summarize(back_to_back)["median"], 3)
    result.notes.append(
        f"Each create starts {SETTLE_S:g} s after the previous teardown (the spare worker "
        "has booted); back_to_back is creates right after a teardown."
    )
    return result


def render_component(page: Any, renderer_url: str, component: str = COMPONENT) -> None:
    """Open the studio page on ``component`` and wait until its canvas has rendered it."""
    page.goto(f"{renderer_url}#/{component}")
    page.wait_for_selector(
        f"[data-testid=studio-canvas][data-state=ready][data-component={component}]",
        timeout=RENDER_TIMEOUT_MS,
    )


def create_rendered(ctx: RunContext) -> ScenarioResult:
    """Create -> the component rendered in Chromium."""
    result = ScenarioResult(
        "create_rendered",
        "2. create -> component rendered in Chromium",
        floor="vite_floor",
        targets=[Target("median", 1.5, "p50 <= 1.5 s")],
    )
    bench = service(ctx)
    chromium = browser(ctx)
    for _ in range(ctx.count(10, 1)):
        context = chromium.new_context()
        try:
            # The tab is open before the create, as a designer's is: its renderer
            # process starts on its own time, not the create's.
            page = context.new_page()
            time.sleep(SETTLE_S)  # on a settled node, as create -> ready
            created = bench.create()
            render_component(page, created.renderer_url)
            result.samples.append(time.monotonic() - created.requested)
        finally:
            context.close()
        bench.delete(created.sandbox_id)
    return result


def _pss_uss(processes: list[psutil.Process]) -> tuple[float, float]:
    pss = uss = 0.0
    for proc in processes:
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        pss += getattr(info, "pss", 0) / MIB
        uss += info.uss / MIB
    return pss, uss


def sandbox_memory(bench: BenchService, sandbox_id: str) -> dict[str, float]:
    """PSS and USS (MiB) of the sandbox's actor worker and of its Vite process tree."""
    worker, children = bench.processes(sandbox_id)
    actor_pss, actor_uss = _pss_uss([worker])
    vite_pss, vite_uss = _pss_uss(children)
    return {
        "actor_pss": actor_pss,
        "actor_uss": actor_uss,
        "vite_pss": vite_pss,
        "vite_uss": vite_uss,
        "pss": actor_pss + vite_pss,
        "uss": actor_uss + vite_uss,
    }


def concurrent_creates(ctx: RunContext) -> ScenarioResult:
    """20 creates at once: time until every one is ready; failures counted."""
    count = ctx.count(20, 2)
    result = ScenarioResult(
        "concurrent_creates",
        f"3. {count} concurrent creates -> all ready",
        targets=[
            Target("median", 10.0, "all ready <= 10 s"),
            Target("failed_creates", 0, "0 failures"),
        ],
    )
    bench = service(ctx)  # on a settled node: its pool is full
    spares = bench.warm_pool()
    created: list[Created] = []
    errors: list[str] = []
    account = CpuAccount()
    with ThreadPoolExecutor(max_workers=count) as pool:
        account.start()
        wall0, start = time.time(), time.monotonic()
        futures = [pool.submit(bench.create) for _ in range(count)]
        for future in futures:
            try:
                created.append(future.result())
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
        finished = time.monotonic()
        cpu = account.stop()
    result.samples.append(finished - start)
    result.failures = len(errors)
    result.figures["failed_creates"] = len(errors)
    result.figures["warm_workers"] = bench.warm_workers
    result.figures["spares_before_burst"] = spares
    if created:
        each = [c.ready - c.requested for c in created]
        result.figures["each_ready_p50_s"] = round(summarize(each)["median"], 3)
        result.figures["each_ready_max_s"] = round(max(each), 3)
        result.figures.update(cpu.figures(len(created)))
        result.figures.update(timeline_figures(sandbox_timeline(bench, created, wall0, start)))
        result.notes.append(
            f"The service keeps warm_workers={bench.warm_workers} spare Ray workers per node; "
            "the burst starts once the node is prepared and they have booted. A create that "
            "finds no spare boots its own worker in the burst (docs/performance.md)."
        )
        result.notes.append(
            "cpu_* figures: CPU seconds of the run's process tree from the first request "
            "to the last ready, by kind (benchmarks/cpu_account.py); cpu_lower_bound_s is "
            "their total over the cores. t_* figures: seconds after the first request "
            "(benchmarks/burst_timeline.py)."
        )
        time.sleep(2.0)  # let the startup settle before weighing them idle
        memory = [sandbox_memory(bench, c.sandbox_id)["pss"] for c in created]
        result.figures["pss_per_sandbox_mib_at_n"] = round(sum(memory) / len(memory), 1)
        result.figures["available_mib_at_n"] = round(psutil.virtual_memory().available / MIB)
    result.notes.extend(errors[:5])
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda c: bench.delete(c.sandbox_id), created))
    return result


def memory_per_sandbox(ctx: RunContext) -> ScenarioResult:
    """PSS/USS of actor + Vite per sandbox, idle and after a page load; how many fit idle."""
    result = ScenarioResult(
        "memory",
        "4. memory per running sandbox (PSS, idle)",
        unit="MiB",
        targets=[
            Target("pss_after_load_mib", 300, "<= 300 MB PSS after a page load"),
            Target("fit_idle_estimate", 40, ">= 40 idle fit", at_least=True),
        ],
    )
    bench = service(ctx)
    chromium = browser(ctx)
    created = [bench.create() for _ in range(ctx.count(3, 1))]
    time.sleep(2.0)  # past the startup's transient allocations
    idle = [sandbox_memory(bench, c.sandbox_id) for c in created]
    loaded = []
    for sandbox in created:
        context = chromium.new_context()
        try:
            render_component(context.new_page(), sandbox.renderer_url)
            loaded.append(sandbox_memory(bench, sandbox.sandbox_id))
        finally:
            context.close()
    result.samples = [m["pss"] for m in idle]
    for key in ("actor_pss", "actor_uss", "vite_pss", "vite_uss", "uss"):
        result.figures[f"idle_{key}_mib"] = round(summarize([m[key] for m in idle])["median"], 1)
    result.figures["pss_after_load_mib"] = round(summarize([m["pss"] for m in loaded])["median"], 1)
    result.figures["uss_after_load_mib"] = round(summarize([m["uss"] for m in loaded])["median"], 1)
    available = psutil.virtual_memory().available / MIB
    per_sandbox = summarize(result.samples)["median"]
    result.figures["available_mib"] = round(available)
    result.figures["fit_idle_estimate"] = len(created) + int(available // per_sandbox)
    result.notes.append(
        "fit_idle_estimate is extrapolated: sandboxes running + available memory / median "
        "idle PSS per sandbox (memory only; CPU is the limit for starting them, see 3.)."
    )
    for sandbox in created:
        bench.delete(sandbox.sandbox_id)
    return result


def _wait_serving(bench: BenchService, sandbox_id: str, deadline: float) -> float:
    """Poll until the sandbox says running and its (maybe moved) renderer answers 200."""
    while time.monotonic() < deadline:
        try:
            info = bench.info(sandbox_id)
        except Exception:
            info = {}
        if info.get("status") == "running" and info.get("renderer_url"):
            try:
                vite = bench.vite_address(sandbox_id)
            except (FileNotFoundError, InvalidConfig):
                vite = None
            if vite is not None and vite.answers(timeout=1.0):
                return time.monotonic()
        time.sleep(0.02)
    raise RuntimeError(f"{sandbox_id} not serving again after {RECOVERY_TIMEOUT:g} s")


def _recovery_scenario(
    name: str, title: str, limit_s: float, kill: Callable[[BenchService, Created], float]
) -> ScenarioFn:
    """A scenario that ``kill``s part of a fresh sandbox and times it to serving again.

    ``kill`` returns when it struck. A fresh sandbox per sample: restarts back
    off, and the first one is what users see.
    """

    def measure(ctx: RunContext) -> ScenarioResult:
        result = ScenarioResult(
            name, title, targets=[Target("median", limit_s, f"<= {limit_s:g} s")]
        )
        bench = service(ctx)
        for _ in range(ctx.count(5, 1)):
            created = bench.create()
            start = kill(bench, created)
            ready = _wait_serving(bench, created.sandbox_id, start + RECOVERY_TIMEOUT)
            result.samples.append(ready - start)
            bench.delete(created.sandbox_id)
        return result

    return measure


def _kill_vite(bench: BenchService, created: Created) -> float:
    """SIGKILL the sandbox's Vite group; returns once its renderer stopped answering."""
    vite = bench.vite(created.sandbox_id)
    address = bench.vite_address(created.sandbox_id)
    start = time.monotonic()
    # The group of its session: led by Vite itself, or by the bwrap that runs it
    # inside the OS boundary (studio.process.boundary).
    os.killpg(os.getpgid(vite.pid), signal.SIGKILL)
    vite.wait(timeout=10)
    while address.answers(timeout=0.5):
        time.sleep(0.005)
    return start


def _kill_actor_worker(bench: BenchService, created: Created) -> float:
    """SIGKILL the sandbox actor's worker; returns once a new worker answers its ping."""
    old_pid = int(bench.ping(created.sandbox_id)["pid"])
    start = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    deadline = start + RECOVERY_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if int(bench.ping(created.sandbox_id, timeout=5.0)["pid"]) != old_pid:
                break
        except Exception:
            time.sleep(0.05)
    return start


# SIGKILL the sandbox's Vite -> its renderer answers /@vite/client 200 again.
vite_recovery = _recovery_scenario(
    "vite_recovery", "8a. recovery: Vite killed -> healthy again", 2.0, _kill_vite
)
# SIGKILL the sandbox actor's worker -> the actor is back and Vite serves again.
actor_recovery = _recovery_scenario(
    "actor_recovery",
    "8b. recovery: actor worker killed -> Vite serving again",
    5.0,
    _kill_actor_worker,
)


LIFECYCLE_SCENARIOS = [
    Scenario("create_ready_cold", "create -> ready, cold", create_cold, ("service",)),
    Scenario("create_ready", "create -> ready, warm", create_warm, ("service",)),
    Scenario("create_rendered", "create -> rendered", create_rendered, ("service", "browser")),
    Scenario("concurrent_creates", "20 concurrent creates", concurrent_creates, ("service",)),
    Scenario("memory", "memory per sandbox", memory_per_sandbox, ("service", "browser")),
    Scenario("vite_recovery", "Vite killed -> healthy", vite_recovery, ("service",)),
    Scenario("actor_recovery", "actor killed -> serving", actor_recovery, ("service",)),
]
