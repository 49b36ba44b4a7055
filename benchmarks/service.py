"""The real service for the service scenarios, started as ``studio up`` starts it.

Local Ray (the run's), the manager actor (``actors.handles.start_manager``),
Serve on a free loopback port with ``serve.app.build_app``, and the sample
repository (examples/ui-kit made into a git repository) registered through
the API. Leaving the context tears down every sandbox, kills the manager,
shuts Serve down and reaps any Vite a sandbox's pid file still names.

The rate limiter is raised out of the way: it guards users, and a benchmark
that sends 200 edits a few milliseconds apart is not what it should measure.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import secrets
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

from benchmarks._proc import http_ok, sample_repo, wait_http_ok
from benchmarks._ray import use_ray
from benchmarks.context import RunContext
from benchmarks.floors import install_cache_dir

__all__ = [
    "BenchService",
    "Created",
    "ViteAddress",
    "renderer_address",
    "running_service",
    "service",
]

logger = logging.getLogger(__name__)

# Vite ports of the benchmark's sandboxes: a range of their own, below Ray's worker ports.
VITE_PORT_BASE = 6200
# The API's port: StudioSettings wants it below Ray's worker ports too.
API_PORTS = (8600, 9000)
# Lock files of the API ports that runs on this machine hold (see _reserved_api_port).
_PORT_LOCK_DIR = Path(tempfile.gettempdir()) / "component-studio-bench-ports"
READY_TIMEOUT = 120.0
# The name the sample repository is registered under.
REPOSITORY = "ui-kit"
# Spare workers the service keeps per node (the setting warm_workers), full run and
# quick: sized for scenario 3's burst, as a deployment expecting such bursts would be.
WARM_WORKERS = (20, 2)


def renderer_address(url: str) -> tuple[str, int]:
    """``http://host:port/`` -> ``(host, port)``."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"renderer URL without host and port: {url!r}")
    return parts.hostname, parts.port


@dataclass(frozen=True)
class ViteAddress:
    """Where a sandbox's Vite is and what the API's renderer proxy shows it (its
    studio app's config): for probes that must not go through the proxy."""

    host: str
    port: int
    base: str
    headers: dict[str, str]

    @property
    def client_path(self) -> str:
        """Vite's readiness probe, under its base."""
        return f"{self.base}@vite/client"

    def answers(self, timeout: float = 1.0) -> bool:
        """Whether this Vite serves its client now."""
        return http_ok(self.host, self.port, self.client_path, timeout, self.headers)


@dataclass
class Created:
    """One created sandbox: its API answer and when it was asked for / was ready."""

    body: dict[str, Any]
    requested: float
    responded: float
    ready: float

    @property
    def sandbox_id(self) -> str:
        return str(self.body["sandbox_id"])

    @property
    def renderer_url(self) -> str:
        return str(self.body["renderer_url"])


@dataclass
class BenchService:
    """A running service and an authenticated API client for it."""

    base_url: str
    token: str
    repository_id: int
    state_dir: Path
    client: httpx.Client
    warm_workers: int
    repository: str
    created: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call (raises on a status >= 400, with the body in the message)."""
        response = self.client.request(method, f"/api/v1{path}", **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response

    def create(self, overrides: dict[str, Any] | None = None) -> Created:
        """POST /sandboxes and wait until its renderer answers ``/@vite/client`` 200."""
        body: dict[str, Any] = {"type": "component-studio", "repository_id": self.repository_id}
        # Config overrides are extra top-level fields of the create request.
        body.update(overrides or {})
        requested = time.monotonic()
        response = self.api("POST", "/sandboxes", json=body)
        responded = time.monotonic()
        answer = response.json()
        self.created.append(str(answer["sandbox_id"]))
        vite = self.vite_address(str(answer["sandbox_id"]))
        ready = wait_http_ok(
            vite.host, vite.port, READY_TIMEOUT, path=vite.client_path, headers=vite.headers
        )
        return Created(answer, requested, responded, ready)

    def vite_address(self, sandbox_id: str) -> ViteAddress:
        """The sandbox's Vite as its studio app's config says now (a restart may move it).

        FileNotFoundError while the sandbox has no studio app (torn down, recovering).
        """
        from studio.layout import StateLayout
        from studio.vite import PROXY_SECRET_HEADER, read_studio_config
        from studio.vite.server import CONFIG_FILE

        studio_dir = StateLayout(self.state_dir).worktree(sandbox_id) / ".studio"
        if not (studio_dir / CONFIG_FILE).is_file():
            raise FileNotFoundError(studio_dir / CONFIG_FILE)
        config = read_studio_config(studio_dir)
        secret = config.get("proxySecret")
        return ViteAddress(
            str(config["host"]),
            int(config["port"]),
            str(config.get("base") or "/"),
            {PROXY_SECRET_HEADER: str(secret)} if secret else {},
        )

    def delete(self, sandbox_id: str) -> None:
        """DELETE the sandbox (tear down, branch kept)."""
        self.api("DELETE", f"/sandboxes/{sandbox_id}")
        with contextlib.suppress(ValueError):
            self.created.remove(sandbox_id)

    def execute(self, sandbox_id: str, command: dict[str, Any]) -> dict[str, Any]:
        """POST /sandboxes/{id}/execute and return the answer."""
        answer: dict[str, Any] = self.api(
            "POST", f"/sandboxes/{sandbox_id}/execute", json=command
        ).json()
        return answer

    def info(self, sandbox_id: str) -> dict[str, Any]:
        """GET /sandboxes/{id}."""
        answer: dict[str, Any] = self.api("GET", f"/sandboxes/{sandbox_id}").json()
        return answer

    def ping(self, sandbox_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The sandbox actor's ``ping()``: its worker pid, node, state and last event seq."""
        import ray

        from actors.handles import sandbox_handle

        answer: dict[str, Any] = ray.get(sandbox_handle(sandbox_id).ping.remote(), timeout=timeout)
        return answer

    def processes(self, sandbox_id: str) -> tuple[psutil.Process, list[psutil.Process]]:
        """The sandbox actor's worker process and the processes it started (its Vite tree)."""
        worker = psutil.Process(int(self.ping(sandbox_id)["pid"]))
        return worker, worker.children(recursive=True)

    def vite(self, sandbox_id: str) -> psutil.Process:
        """The sandbox's Vite: the node process its actor runs (serve.mjs, or a standby's)."""
        _worker, children = self.processes(sandbox_id)
        for proc in children:
            if is_vite(proc):
                return proc
        raise RuntimeError(f"no Vite process among the children of {sandbox_id}'s actor")

    def warm_pool(self, timeout: float = 180.0) -> int:
        """Wait until this node's pool is full (or ``timeout``); how many spares it has."""
        import ray

        from actors._prestart import idle_workers

        node_id = ray.get_runtime_context().get_node_id()
        deadline = time.monotonic() + timeout
        while (have := idle_workers(node_id) or 0) < self.warm_workers:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        return have

    def prepared(self, timeout: float = 300.0) -> dict[str, str]:
        """Wait until the manager has prepared this node for the repository; its parts' states.

        The service prepares each node in the background when it starts and
        when a repository is registered (actors/_node_prep.py); a scenario
        measures a prepared node, whichever scenario ran before it.
        """
        import ray

        from actors.handles import get_manager

        node_id = ray.get_runtime_context().get_node_id()
        manager = get_manager()
        deadline = time.monotonic() + timeout
        while True:
            health = ray.get(manager.health.remote(), timeout=60)
            parts: dict[str, str] = health.get("preparation", {}).get(node_id, {})
            if parts.get(self.repository) not in (None, "preparing"):
                if any(state != "ready" for state in parts.values()):
                    logger.warning("the node's preparation failed: %s", parts)
                return parts
            if time.monotonic() > deadline:
                logger.warning("the node was not prepared in time: %s", parts)
                return parts
            time.sleep(0.25)

    def settle(self) -> None:
        """Wait until the node is prepared, its warm pool full and its last spare settled."""
        self.prepared()
        if self.warm_pool() < self.warm_workers:
            logger.warning("the warm pool did not fill in time")
        time.sleep(_STANDBY_SETTLE_S)

    def teardown_all(self) -> None:
        """Tear down every sandbox this run created, ignoring the ones already gone."""
        for sandbox_id in list(self.created):
            try:
                self.delete(sandbox_id)
            except (RuntimeError, httpx.HTTPError) as exc:
                logger.warning("teardown of %s: %s", sandbox_id, exc)
                self.created.remove(sandbox_id)


@contextlib.contextmanager
def _reserved_api_port() -> Iterator[int]:
    """A port of :data:`API_PORTS` that no other benchmark run on this machine holds.

    A free bind is not enough: Serve's proxy listens with SO_REUSEPORT, so two
    runs that picked the same free port in the ~10 s before either proxy was up
    both bind it, and the kernel then splits each run's requests between the two
    services (the other one answers 401: it knows another admin token). A lock
    file per port, held while the service runs, keeps concurrent runs apart;
    the kernel drops the lock if the run dies.
    """
    _PORT_LOCK_DIR.mkdir(parents=True, exist_ok=True)
    for port in range(*API_PORTS):
        handle = (_PORT_LOCK_DIR / f"{port}.lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        try:
            if not port_free(port):
                continue
            yield port
            return
        finally:
            handle.close()
    raise RuntimeError(f"no free API port in {API_PORTS[0]}..{API_PORTS[1] - 1}")


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` binds now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def is_vite(proc: psutil.Process) -> bool:
    """Whether ``proc`` is a Vite: node running vite.js, serve.mjs or a standby that runs it."""
    try:
        return proc.name() == "node" or any("vite" in part for part in proc.cmdline())
    except psutil.Error:
        return False


def _kill_studio_actors() -> None:
    """Kill the manager, the browser actors and any sandbox actor left (detached actors outlive
    their driver)."""
    import ray
    from ray.util import list_named_actors

    from actors.browser_actor import kill_browser_actors
    from actors.handles import kill_manager
    from studio.naming import ACTOR_NAMESPACE, MANAGER_ACTOR_NAME

    with contextlib.suppress(Exception):
        kill_manager()
    # The nodes' browsers close their Chromium first (render verdicts, benchmarks/verdict.py).
    with contextlib.suppress(Exception):
        kill_browser_actors()
    for entry in list_named_actors(all_namespaces=True):
        name = entry["name"] if isinstance(entry, dict) else entry
        namespace = entry.get("namespace") if isinstance(entry, dict) else ACTOR_NAMESPACE
        if namespace != ACTOR_NAMESPACE:
            continue
        if name == MANAGER_ACTOR_NAME or name.startswith("sandbox:"):
            with contextlib.suppress(Exception):
                ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)


def _reap_vites(state_dir: Path) -> None:
    from studio.layout import StateLayout
    from studio.process import reap_orphans

    run_dir = StateLayout(state_dir).run
    if run_dir.is_dir():
        for pid_file in run_dir.glob("*.json"):
            with contextlib.suppress(Exception):
                reap_orphans(pid_file)


@contextlib.contextmanager
def running_service(ctx: RunContext, *, ready_sandboxes: int = 0) -> Iterator[BenchService]:
    """Start the service on the run's Ray; everything it started is gone after the block.

    ``ready_sandboxes`` 0 by default: the lifecycle scenarios time a create's own
    setup (a held sandbox would answer them); the corpus measures with them.
    """
    from ray import serve

    from actors.handles import start_manager
    from serve.app import build_app
    from studio.config import StudioSettings

    use_ray(ctx)
    state_dir = ctx.work_dir / "state"
    repos = ctx.path("repos")
    repo = sample_repo(Path(tempfile.mkdtemp(prefix="ui-kit-", dir=repos)) / "ui-kit")
    # A resource of the run: released after the service (entered before it), never during.
    api_port = ctx.resource("api_port", lambda _ctx: _reserved_api_port())
    token = secrets.token_urlsafe(24)
    settings = StudioSettings(
        state_dir=state_dir,
        repo_roots=[repos],
        vite_port=VITE_PORT_BASE,
        vite_port_count=400,
        ws_port=api_port,
        host="127.0.0.1",
        public_host="127.0.0.1",
        admin_token=token,
        rate_limit_per_minute=10_000_000,
        rate_limit_burst=1_000_000,
        # Every client of a run is 127.0.0.1: no per-address limit either.
        address_rate_limit_per_minute=10_000_000,
        address_rate_limit_burst=1_000_000,
        # The warm pool's off-switch is this setting (benchmarks/speedups.py).
        warm_workers=ctx.count(*WARM_WORKERS) if ctx.on("warm_pool") else 0,
        ready_sandboxes=ready_sandboxes,
    )
    # The floors filled it; a node's state dir keeps it between service runs.
    install_cache_dir(ctx).mkdir(parents=True, exist_ok=True)
    base_url = f"http://127.0.0.1:{api_port}"
    client = httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=READY_TIMEOUT
    )
    bench: BenchService | None = None
    try:
        start_manager(settings)
        serve.start(http_options={"host": "127.0.0.1", "port": api_port})
        serve.run(build_app(settings))
        response = client.post("/api/v1/repositories", json={"name": REPOSITORY, "path": str(repo)})
        if response.status_code != 201:
            raise RuntimeError(f"registering {repo}: {response.status_code} {response.text}")
        bench = BenchService(
            base_url,
            token,
            int(response.json()["id"]),
            state_dir,
            client,
            settings.warm_workers,
            REPOSITORY,
        )
        yield bench
    finally:
        if bench is not None:
            bench.teardown_all()
        _kill_studio_actors()
        with contextlib.suppress(Exception):
            serve.shutdown()  # type: ignore[no-untyped-call]
        _reap_vites(state_dir)
        client.close()


# After the pool is full: the last spare's Vite standby is still importing Vite.
_STANDBY_SETTLE_S = 1.0


def service(ctx: RunContext, *, settled: bool = True) -> BenchService:
    """The run's service, started on first use, once its node is prepared.

    ``settled``: also once the node's warm pool is full. A scenario measures
    a settled node, not the pool refilling after the one before (after
    scenario 3's burst: 20 worker boots).
    """
    bench = ctx.resource("service", running_service)
    if settled:
        bench.settle()
    else:
        bench.prepared()
    return bench


@contextlib.contextmanager
def owned_sandbox(ctx: RunContext) -> Iterator[Created]:
    """A sandbox of the run's service shared by a group of scenarios (through
    ``ctx.resource``), deleted when the run ends."""
    bench = service(ctx)
    created = bench.create()
    try:
        yield created
    finally:
        with contextlib.suppress(Exception):
            bench.delete(created.sandbox_id)
