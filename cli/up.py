"""``studio up``: the whole service, until Ctrl-C, SIGTERM or SIGINT.

Starts a local Ray head (``cli.local_ray``; or joins ``--address``), the
manager actor and the Serve app, registers the sample repository, waits until
the API's ``/readyz`` answers 200, prints where everything is, and on a signal
(to it or to its whole process group) shuts down in the reverse order: Serve
stopped (no new requests), every sandbox torn down through the manager
(branches kept), the manager stopped, Ray stopped, then a sweep of this node's
state directory so no Vite process or worktree outlives the command. If the
local Ray died under it, the steps that need Ray are skipped and the sweep
cleans up.

This is the CLI's entry point into Ray: it imports ``ray``, ``actors``,
``serve`` and ``cluster`` only when ``up`` runs, so the client commands stay
light.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import httpx
from pydantic import ValidationError

from cli.http import ApiClient, CliError
from cli.isolation import choose_boundary
from cli.local_ray import LocalRay, use_token_auth
from studio.config import StudioSettings, load_settings, service_port_problem
from studio.errors import Conflict, StudioError
from studio.git import git_status
from studio.naming import ACTOR_NAMESPACE
from studio.state import TERMINAL_STATES

__all__ = ["EXAMPLE_NAME", "ensure_example_repository", "port_taken", "run_up"]

EXAMPLE_NAME = "ui-kit"
EXAMPLE_SOURCE = Path(__file__).resolve().parent.parent / "examples" / EXAMPLE_NAME
# Repositories `studio up` makes itself live here; it is added to repo_roots.
REPOS_SUBDIR = "repos"
TEARDOWN_TIMEOUT = 60.0
# Seconds the local Ray head may take to start (`ray start` alone waits 30 s for its GCS).
HEAD_START_TIMEOUT = 120.0
# Seconds from the Serve app running to /readyz answering 200.
READY_TIMEOUT = 60.0
# Seconds Serve may take to stop its replicas and proxy.
SERVE_STOP_TIMEOUT = 30.0
# Settings the command's flags set: a refusal names the flag, not the field.
_FLAGS = {"ws_port": "--port", "host": "--host"}
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Component Studio",
    "GIT_AUTHOR_EMAIL": "studio@localhost",
    "GIT_COMMITTER_NAME": "Component Studio",
    "GIT_COMMITTER_EMAIL": "studio@localhost",
}


class _Interrupted(Exception):
    """A signal arrived while starting: stop starting, shut down what is up."""


def port_taken(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails because something holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def ensure_example_repository(repos_dir: Path, source: Path = EXAMPLE_SOURCE) -> Path:
    """A git repository of ``examples/ui-kit`` under ``repos_dir`` (made on first run).

    ``examples/ui-kit`` is plain files in this repository; a sandbox needs a git
    repository with a ``main`` branch to branch from.
    """
    target = repos_dir / source.name
    if (target / ".git").is_dir():
        return target
    if target.exists():
        shutil.rmtree(target)  # a half-made copy from an interrupted first run
    staging = repos_dir / f".{source.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns("node_modules", ".git"))
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-q", "-m", "Sample components (examples/ui-kit)"],
    ):
        code, _, err = git_status(args, cwd=staging, env=_GIT_ENV, timeout=60)
        if code != 0:
            raise CliError(f"cannot make the sample repository in {staging}: git {args[0]}: {err}")
    staging.rename(target)
    return target


def _settings(args: argparse.Namespace) -> StudioSettings:
    if args.port is not None:
        problem = service_port_problem(args.port)
        if problem:
            raise CliError(f"--port {args.port}: {problem}")
    try:
        base = load_settings(**({"ws_port": args.port} if args.port else {}))
        port = base.ws_port
        if args.address is None and not args.no_dashboard and port == args.dashboard_port:
            flag = f"--port {port}" if args.port else f"COMPONENT_STUDIO_WS_PORT {port}"
            raise CliError(
                f"{flag}: the Ray dashboard's port (--dashboard-port); choose another for either"
            )
        repos_dir = base.state_dir / REPOS_SUBDIR
        roots = base.repo_roots if repos_dir in base.repo_roots else [*base.repo_roots, repos_dir]
        return load_settings(host=args.host or base.host, ws_port=port, repo_roots=roots)
    except ValidationError as exc:
        raise CliError("invalid setting: " + "; ".join(_problems(exc, args))) from exc


def _problems(exc: ValidationError, args: argparse.Namespace) -> list[str]:
    """Each problem named as the user set it: the flag given, else the environment variable."""
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        if not field:  # a rule across settings: its message names them
            problems.append(error["msg"].removeprefix("Value error, "))
            continue
        flag = _FLAGS.get(field)
        given = flag is not None and getattr(args, flag.lstrip("-")) is not None
        name = flag if given else f"COMPONENT_STUDIO_{field.upper()}"
        cause = error.get("ctx", {}).get("error")
        problems.append(f"{name} {error['input']}: {cause if cause else error['msg']}")
    return problems


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


class _Service:
    """What ``up`` started, so that shutdown stops exactly that, in reverse order."""

    def __init__(self, settings: StudioSettings, args: argparse.Namespace, out: TextIO) -> None:
        self.settings = settings
        self.args = args
        self.out = out
        self.local = args.address is None
        self.head: LocalRay | None = None
        self.connected = False
        self.serve_started = False
        self.manager: Any = None
        # The local Ray died under the service: the process must not wait for it at exit.
        self.ray_gone = False
        self.problems: list[str] = []
        self.install_handlers: Callable[[], None] = lambda: None
        # The OS boundary repository code runs in, as printed (cli.isolation).
        self.boundary = ""

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def start(self) -> None:
        settings = self.settings
        address = self.args.address
        if self.local:
            # Before Ray is imported here: its configuration is read once.
            use_token_auth(os.environ)
            from actors._prestart import RAY_SYSTEM_CONFIG

            self.head = LocalRay(
                resources={"sandbox_slot": self.args.slots},
                # New workers import the sandbox actor's modules while they wait.
                system_config=RAY_SYSTEM_CONFIG,
                dashboard=not self.args.no_dashboard,
                dashboard_host=settings.host,
                dashboard_port=self.args.dashboard_port,
                temp_dir=self.args.temp_dir,
            )
            address = self.head.start(HEAD_START_TIMEOUT)

        import ray
        from ray import serve

        from actors._accounts import resolve_admin_token
        from actors.handles import start_manager
        from serve.app import build_app
        from serve.replica import ServeOptions

        if self.local:
            context = ray.init(address=address, namespace=ACTOR_NAMESPACE, log_to_driver=False)
        else:
            context = ray.init(address=address, namespace=ACTOR_NAMESPACE)
        self.connected = True
        # Ray's core worker installs its own SIGTERM handler (it aborts): ours again.
        self.install_handlers()
        dashboard = getattr(context, "dashboard_url", "") or ""
        # Resolved here and handed to the manager: no remote method returns it.
        admin_token = resolve_admin_token(settings)
        settings = settings.model_copy(update={"admin_token": admin_token})
        self.manager = start_manager(settings)
        serve.start(http_options={"host": settings.host, "port": settings.ws_port})
        self.serve_started = True
        serve.run(build_app(settings, ServeOptions(ready_repositories=(EXAMPLE_NAME,))))
        self.install_handlers()
        repository = self._register_example()
        api = f"http://{_connect_host(settings.host)}:{settings.ws_port}"
        _wait_until_ready(api, READY_TIMEOUT)
        self.say("Component Studio is up")
        self.say(f"  API:         {api}/api/v1")
        self.say(f"  Docs:        {api}/docs")
        self.say(f"  MCP:         {api}/mcp")
        self.say(f"  Ready:       {api}/readyz")
        self.say(f"  Admin token: {admin_token}")
        self.say(f"  Dashboard:   {'http://' + dashboard if dashboard else '(not started)'}")
        self.say(f"  Repository:  {repository['name']} (id {repository['id']})")
        self.say(f"  Isolation:   {self.boundary}")
        self.say(f"  Try:         STUDIO_URL={api} STUDIO_TOKEN={admin_token} studio create")
        if self.args.demo:
            self._demo(api, admin_token, int(repository["id"]))
        self.say("Press Ctrl-C to stop (sandboxes are torn down; their branches are kept).")

    def _register_example(self) -> dict[str, Any]:
        import ray

        from actors.ray_errors import to_studio_error

        example = ensure_example_repository(self.settings.state_dir / REPOS_SUBDIR)
        try:
            record = ray.get(
                self.manager.register_repository.remote(EXAMPLE_NAME, path=str(example))
            )
        except Exception as exc:
            cause = to_studio_error(exc)
            if not isinstance(cause, Conflict):
                raise cause from exc
            # Registered by an earlier run: the registry outlives `studio up`.
            records = ray.get(self.manager.list_repositories.remote())
            record = next(r for r in records if _field(r, "name") == EXAMPLE_NAME)
        return {"id": _field(record, "id"), "name": _field(record, "name")}

    def _demo(self, api: str, token: str, repository_id: int) -> None:
        from cli.client import Progress
        from cli.http import CREATE_TIMEOUT

        with ApiClient(api, token) as client, Progress("creating the demo sandbox", sys.stderr):
            created = client.request(
                "POST",
                "/sandboxes",
                json={"type": "component-studio", "repository_id": repository_id},
                timeout=CREATE_TIMEOUT,
            )
        self.say(f"  Demo sandbox: {created.get('sandbox_id') or created.get('id')}")
        self.say(f"    renderer:  {created.get('renderer_url')}")
        self.say(f"    websocket: {created.get('websocket_url')}")
        self.say(f"    branch:    {created.get('branch')}")

    def shutdown(self) -> None:
        """Stop what started, in order; problems are collected, never raised.

        Serve first (no new requests), then the sandboxes and the manager, then
        Ray, then the sweep of this node. The steps through Ray run in a thread
        watched here: if the local Ray dies meanwhile (a service manager's
        SIGTERM reaches its processes too), they are abandoned, since each
        would wait for the dead GCS, and the sweep stops what the sandboxes
        left on this node.
        """
        if self.connected:
            if self.head is not None and not self.head.alive():
                self.ray_gone = True
            else:
                self._through_ray()
        if self.ray_gone:
            self.say("  Ray is gone: sweeping this node instead of tearing down through it")
        if self.head is not None:
            self._step("stop Ray", self.head.stop)
        if self.local:
            self._step("sweep this node", self._sweep)

    def _through_ray(self) -> None:
        import ray

        from actors.handles import kill_manager
        from serve.app import stop_serve

        found: list[str] = []

        def steps() -> None:
            if self.serve_started:
                self._step("stop Serve", lambda: stop_serve(SERVE_STOP_TIMEOUT), found)
            if self.manager is not None:
                self._step("tear down the sandboxes", self._teardown_sandboxes, found)
                self._step("stop the manager", kill_manager, found)
            self._step("disconnect from Ray", ray.shutdown, found)

        worker = threading.Thread(target=steps, name="studio-shutdown", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
            if worker.is_alive() and self.head is not None and not self.head.alive():
                # What failed for want of Ray is no problem of its own: the sweep follows.
                self.ray_gone = True
                return
        self.problems += found

    def _step(self, what: str, action: Any, problems: list[str] | None = None) -> None:
        try:
            action()
        except Exception as exc:
            (self.problems if problems is None else problems).append(f"could not {what}: {exc}")

    def _teardown_sandboxes(self) -> None:
        """Every sandbox torn down through the manager, at once; a failure raises at the end."""
        import ray

        # The held ready sandboxes too (actors._ready): nothing may outlive the service.
        sandboxes = ray.get(
            self.manager.list_sandboxes.remote(None, False, True), timeout=TEARDOWN_TIMEOUT
        )
        pending = {
            _field(s, "id"): self.manager.teardown_sandbox.remote(_field(s, "id"), None)
            for s in sandboxes
            if _field(s, "status") not in TERMINAL_STATES
        }
        failed = []
        for sandbox_id, ref in pending.items():
            try:
                ray.get(ref, timeout=TEARDOWN_TIMEOUT)
                self.say(f"  {sandbox_id}: torn down (branch kept)")
            except Exception as exc:
                # The node sweep below still removes its Vite and worktree locally.
                failed.append(f"{sandbox_id} ({exc})")
        if failed:
            raise RuntimeError("teardown failed for " + ", ".join(failed))

    def _sweep(self) -> None:
        from cluster.sweep import sweep_node

        # Everything is down: no sandbox of this node lives any more.
        report = sweep_node(self.settings.state_dir, live=(), grace_seconds=0)
        left = len(report.processes) + len(report.worktrees)
        if left:
            self.say(f"  swept {left} leftover(s) of sandboxes from {self.settings.state_dir}")
        self.problems += report.errors


def _wait_until_ready(api: str, timeout: float) -> None:
    """Wait until the API's ``/readyz`` answers 200; CliError saying what it waits for."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            reply = httpx.get(f"{api}/readyz", timeout=5)
        except httpx.TransportError as exc:
            last = str(exc)
        else:
            if reply.status_code == 200:
                return
            last = reply.text
        time.sleep(0.2)
    raise CliError(f"the API was not ready after {timeout:.0f} s: {last}")


def _field(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, dict) else getattr(record, name)


def run_up(args: argparse.Namespace, out: TextIO) -> int:
    """Run the service until SIGINT/SIGTERM; 0 when everything stopped cleanly."""
    settings, boundary = choose_boundary(
        _settings(args), no_isolation=args.no_isolation, environ=os.environ
    )
    if port_taken(settings.host, settings.ws_port):
        raise CliError(
            f"port {settings.ws_port} on {settings.host} is already in use (another "
            "`studio up`?): stop that, or pass --port P (or COMPONENT_STUDIO_WS_PORT)"
        )
    stop = threading.Event()
    starting = True

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if starting:
            raise _Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    service = _Service(settings, args, out)
    service.boundary = boundary

    def install() -> None:
        for sig in previous:
            signal.signal(sig, on_signal)

    service.install_handlers = install
    code = 0
    try:
        try:
            service.start()
            starting = False
            stop.wait()
        except _Interrupted:
            pass
        except (StudioError, CliError) as exc:
            sys.stderr.write(f"studio: could not start: {exc}\n")
            code = 1
        except Exception as exc:
            sys.stderr.write(f"studio: could not start: {type(exc).__name__}: {exc}\n")
            code = 1
    finally:
        starting = False
        # A second Ctrl-C must not cut the teardown short and leave Vite running.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        service.say("shutting down...")
        service.shutdown()
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
    if service.problems:
        for problem in service.problems:
            sys.stderr.write(f"studio: {problem}\n")
        code = 1
    else:
        service.say("stopped")
    if service.connected:
        # Everything is stopped and swept: end here. A driver whose GCS died
        # cannot exit the normal way (Ray's exit hook and its abandoned calls
        # wait 60 s for the GCS, then abort the process), and after a clean
        # stop the interpreter's own teardown of Ray's modules still took
        # seconds of the stop's bound (docs/operations.md).
        out.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
