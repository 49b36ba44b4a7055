"""Where the CPU of a burst goes: CPU seconds of this run's process tree, by kind.

Everything the benchmark starts descends from its own process: ``ray.init``
spawns the GCS and the raylet, the raylet spawns the workers (the manager,
Serve's actors, the sandbox actors), a sandbox actor spawns its Vite (and Vite
its esbuild). :class:`CpuAccount` reads each one's CPU times (``/proc`` through
psutil) when the burst starts, every ``interval`` during it (a process that
exits keeps its last reading) and when it ends; the difference is what the
burst cost, by kind of process. A sandbox worker's reaped children (``git``
subprocesses: they exit before they are ever sampled) are counted from the
worker's ``children_user``/``children_system`` times.

Other engineers share the machine: the whole machine's busy time
(``/proc/stat``) is read too, so a figure says how much CPU went elsewhere.

The kind of a process is a pure function of its name and command line
(:func:`classify`), so a unit test can check it without starting anything.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import psutil

__all__ = ["CpuAccount", "CpuReport", "ProcSeen", "classify", "start_time_skew"]

# Kinds, in the order a report lists them.
SANDBOX_WORKER = "sandbox_worker"
SANDBOX_GIT = "sandbox_children"
SPARE_WORKER = "idle_worker"
VITE = "vite"
MANAGER = "manager"
SERVE = "serve"
RAY_SYSTEM = "ray_system"
DRIVER = "driver"
OTHER = "other"
KINDS = (SANDBOX_WORKER, SANDBOX_GIT, SPARE_WORKER, VITE, MANAGER, SERVE, RAY_SYSTEM, DRIVER, OTHER)

_RAY_SYSTEM_MARKERS = ("raylet", "gcs_server", "dashboard", "log_monitor", "runtime_env", "agent")


def classify(name: str, cmdline: Iterable[str], *, is_root: bool = False) -> str:
    """The kind of a process of the run's tree, from its name and command line."""
    if is_root:
        return DRIVER
    args = " ".join(cmdline)
    title = args or name
    if title.startswith("ray::SandboxActor"):
        return SANDBOX_WORKER
    if title.startswith("ray::IDLE"):
        return SPARE_WORKER
    if title.startswith("ray::ManagerActor"):
        return MANAGER
    if title.startswith(("ray::Serve", "ray::ProxyActor")):
        return SERVE
    if "vite" in args or name in {"node", "esbuild"}:
        return VITE
    if any(marker in title for marker in _RAY_SYSTEM_MARKERS) or title.startswith("ray::"):
        return RAY_SYSTEM
    if name == "git":
        return SANDBOX_GIT
    return OTHER


@dataclass
class ProcSeen:
    """One process as last sampled: its kind and its CPU seconds (own, reaped children)."""

    pid: int
    created: float
    kind: str
    own: float
    children: float
    own_at_start: float = 0.0
    children_at_start: float = 0.0

    @property
    def own_delta(self) -> float:
        return max(0.0, self.own - self.own_at_start)

    @property
    def children_delta(self) -> float:
        return max(0.0, self.children - self.children_at_start)


@dataclass
class CpuReport:
    """CPU seconds spent during the burst, by kind, and the machine's busy time."""

    wall_s: float
    by_kind: dict[str, float]
    machine_busy_s: float
    cores: int
    # When the burst began, on psutil's clock of process start times (start_time_skew).
    started_at: float = 0.0
    processes: list[ProcSeen] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return sum(self.by_kind.values())

    @property
    def lower_bound_s(self) -> float:
        """The burst's wall time if its CPU were spread perfectly over every core."""
        return self.total_s / self.cores

    def figures(self, creates: int) -> dict[str, float]:
        """The report as scenario figures (per create where it says so)."""
        n = max(1, creates)
        out = {
            "cpu_total_s": round(self.total_s, 2),
            "cpu_per_create_s": round(self.total_s / n, 3),
            "cpu_lower_bound_s": round(self.lower_bound_s, 2),
            "cpu_machine_busy_s": round(self.machine_busy_s, 2),
            # Busy time of processes outside this run (other engineers' work).
            "cpu_outside_run_s": round(max(0.0, self.machine_busy_s - self.total_s), 2),
            "cpu_utilization": round(self.machine_busy_s / (self.wall_s * self.cores), 3)
            if self.wall_s > 0
            else 0.0,
        }
        for kind in KINDS:
            seconds = self.by_kind.get(kind, 0.0)
            if seconds:
                out[f"cpu_per_create_{kind}_s"] = round(seconds / n, 3)
        # A worker started before the burst (a spare) spent only the actor's own work
        # in it; one started during the burst also paid its boot (Python, ray, preload).
        for label, workers in (("spare", self._workers(spare=True)), ("new", self._workers())):
            if workers:
                out[f"cpu_worker_{label}_p50_s"] = round(_median(workers), 3)
                out[f"workers_{label}"] = len(workers)
        return out

    def _workers(self, *, spare: bool = False) -> list[float]:
        return [
            p.own_delta
            for p in self.processes
            if p.kind == SANDBOX_WORKER and (p.created < self.started_at) == spare
        ]


def start_time_skew() -> float:
    """How far a process's start time as psutil reports it lies after the clock's.

    psutil adds the start time in clock ticks to the boot time, which /proc/stat
    gives in whole seconds: the sum can be up to a second off. A process started
    now measures the difference.
    """
    before = time.time()
    child = subprocess.Popen(["sleep", "5"])
    after = time.time()
    try:
        return psutil.Process(child.pid).create_time() - (before + after) / 2
    finally:
        child.kill()
        child.wait()


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _machine_busy() -> float:
    """Busy CPU seconds of the whole machine since boot (every core)."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times) - idle


class CpuAccount:
    """Samples the CPU times of ``root``'s process tree between :meth:`start` and :meth:`stop`."""

    def __init__(self, root_pid: int | None = None, interval: float = 0.2) -> None:
        self._root = root_pid if root_pid is not None else os.getpid()
        self._interval = interval
        self._seen: dict[tuple[int, float], ProcSeen] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._started_at = 0.0
        self._busy_at_start = 0.0
        self._lock = threading.Lock()

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self._root)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def _sample(self, *, baseline: bool) -> None:
        for proc in self._tree():
            try:
                with proc.oneshot():
                    key = (proc.pid, proc.create_time())
                    times = proc.cpu_times()
                    name = proc.name()
                    cmdline = proc.cmdline()
            except psutil.Error:
                continue
            own = times.user + times.system
            children = times.children_user + times.children_system
            kind = classify(name, cmdline, is_root=proc.pid == self._root)
            with self._lock:
                seen = self._seen.get(key)
                if seen is None:
                    seen = ProcSeen(proc.pid, key[1], kind, own, children)
                    if baseline:
                        seen.own_at_start, seen.children_at_start = own, children
                    self._seen[key] = seen
                else:
                    seen.own, seen.children = own, children
                    # An idle worker becomes a sandbox actor's: the later name says what it did.
                    if kind != OTHER:
                        seen.kind = kind

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample(baseline=False)

    def start(self) -> None:
        """Read every process's CPU times now (the baseline) and sample from here on."""
        self._busy_at_start = _machine_busy()
        self._started = time.monotonic()
        # On the clock of process start times, which spares are told apart by.
        self._started_at = time.time() + start_time_skew()
        self._sample(baseline=True)
        self._thread = threading.Thread(target=self._loop, name="cpu-account", daemon=True)
        self._thread.start()

    def stop(self) -> CpuReport:
        """Sample a last time and return what the tree spent since :meth:`start`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample(baseline=False)
        wall = time.monotonic() - self._started
        busy = _machine_busy() - self._busy_at_start
        by_kind: dict[str, float] = {}
        with self._lock:
            processes = list(self._seen.values())
        for seen in processes:
            by_kind[seen.kind] = by_kind.get(seen.kind, 0.0) + seen.own_delta
            # Only a sandbox worker's reaped children are counted: the raylet's
            # are workers that exited, already counted as themselves.
            if seen.kind == SANDBOX_WORKER:
                by_kind[SANDBOX_GIT] = by_kind.get(SANDBOX_GIT, 0.0) + seen.children_delta
        cores = psutil.cpu_count() or 1
        return CpuReport(wall, by_kind, busy, cores, self._started_at, processes)
