"""``studio up``: the whole service in one process, until Ctrl-C or SIGTERM.

Starts (or joins) Ray, the manager actor and the Serve app, registers the
sample repository, prints where everything is, and on a signal shuts down in
the reverse order: every sandbox torn down through the manager (branches
kept), the manager killed, Serve and Ray shut down, then a sweep of this
node's state directory so no Vite process or worktree outlives the command.

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
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from pydantic import ValidationError

from cli.http import ApiClient, CliError
from studio.config import StudioSettings, load_settings
from studio.errors import Conflict, StudioError
from studio.naming import ACTOR_NAMESPACE
from studio.state import TERMINAL_STATES

__all__ = ["EXAMPLE_NAME", "ensure_example_repository", "port_taken", "run_up"]

EXAMPLE_NAME = "ui-kit"
EXAMPLE_SOURCE = Path(__file__).resolve().parent.parent / "examples" / EXAMPLE_NAME
# Repositories `studio up` makes itself live here; it is added to repo_roots.
REPOS_SUBDIR = "repos"
TEARDOWN_TIMEOUT = 60.0
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
    env = {**os.environ, **_GIT_ENV}
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "Sample components (examples/ui-kit)"],
    ):
        subprocess.run(argv, cwd=staging, env=env, check=True, capture_output=True)
    staging.rename(target)
    return target


def _settings(args: argparse.Namespace) -> StudioSettings:
    base = load_settings()
    host = args.host or base.host
    port = args.port or base.ws_port
    repos_dir = base.state_dir / REPOS_SUBDIR
    roots = [*base.repo_roots, repos_dir] if repos_dir not in base.repo_roots else base.repo_roots
    try:
        return load_settings(host=host, ws_port=port, repo_roots=roots)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise CliError(f"invalid setting: {problems}") from exc


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


class _Service:
    """What ``up`` started, so that shutdown stops exactly that, in reverse order."""

    def __init__(self, settings: StudioSettings, args: argparse.Namespace, out: TextIO) -> None:
        self.settings = settings
        self.args = args
        self.out = out
        self.local = args.address is None
        self.ray_started = False
        self.serve_started = False
        self.manager: Any = None
        self.problems: list[str] = []
        self.install_handlers: Callable[[], None] = lambda: None

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def start(self) -> None:
        import ray
        from ray import serve

        from actors._prestart import RAY_SYSTEM_CONFIG
        from actors.handles import start_manager
        from serve.app import build_app

        settings = self.settings
        if self.local:
            context = ray.init(
                address="local",
                namespace=ACTOR_NAMESPACE,
                resources={"sandbox_slot": self.args.slots},
                include_dashboard=not self.args.no_dashboard,
                dashboard_host=settings.host,
                dashboard_port=self.args.dashboard_port,
                _temp_dir=self.args.temp_dir,
                log_to_driver=False,
                # New workers import the sandbox actor's modules while they wait.
                _system_config=RAY_SYSTEM_CONFIG,
            )
        else:
            context = ray.init(address=self.args.address, namespace=ACTOR_NAMESPACE)
        self.ray_started = True
        # Ray's core worker installs its own SIGTERM handler (it aborts): ours again.
        self.install_handlers()
        dashboard = getattr(context, "dashboard_url", "") or ""
        self.manager = start_manager(settings)
        serve.start(http_options={"host": settings.host, "port": settings.ws_port})
        self.serve_started = True
        serve.run(build_app(settings))
        self.install_handlers()
        admin_token = ray.get(self.manager.admin_token.remote())
        repository = self._register_example()
        api = f"http://{_connect_host(settings.host)}:{settings.ws_port}"
        self.say("Component Studio is up")
        self.say(f"  API:         {api}/api/v1")
        self.say(f"  Docs:        {api}/docs")
        self.say(f"  Admin token: {admin_token}")
        self.say(f"  Dashboard:   {'http://' + dashboard if dashboard else '(not started)'}")
        self.say(f"  Repository:  {repository['name']} (id {repository['id']})")
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
        """Stop what started; problems are collected, never raised."""
        import ray

        if self.manager is not None:
            self._step("tear down the sandboxes", self._teardown_sandboxes)
            from actors.handles import kill_manager

            self._step("stop the manager", kill_manager)
        if self.serve_started:
            from ray import serve

            self._step("shut down Serve", serve.shutdown)
        if self.ray_started:
            self._step("shut down Ray", ray.shutdown)
        if self.local:
            self._step("sweep this node", self._sweep)

    def _step(self, what: str, action: Any) -> None:
        try:
            action()
        except Exception as exc:
            self.problems.append(f"could not {what}: {exc}")

    def _teardown_sandboxes(self) -> None:
        import ray

        sandboxes = ray.get(self.manager.list_sandboxes.remote(None), timeout=TEARDOWN_TIMEOUT)
        pending = {
            _field(s, "id"): self.manager.teardown_sandbox.remote(_field(s, "id"), None)
            for s in sandboxes
            if _field(s, "status") not in TERMINAL_STATES
        }
        for sandbox_id, ref in pending.items():
            try:
                ray.get(ref, timeout=TEARDOWN_TIMEOUT)
                self.say(f"  {sandbox_id}: torn down (branch kept)")
            except Exception as exc:
                # The node sweep below still removes its Vite and worktree locally.
                self.problems.append(f"teardown of {sandbox_id} failed: {exc}")

    def _sweep(self) -> None:
        from cluster.sweep import sweep_node

        # Everything is down: no sandbox of this node lives any more.
        report = sweep_node(self.settings.state_dir, live=(), grace_seconds=0)
        left = len(report.processes) + len(report.worktrees)
        if left:
            self.say(f"  swept {left} leftover(s) of sandboxes from {self.settings.state_dir}")
        self.problems += report.errors


def _field(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, dict) else getattr(record, name)


def run_up(args: argparse.Namespace, out: TextIO) -> int:
    """Run the service until SIGINT/SIGTERM; 0 when everything stopped cleanly."""
    settings = _settings(args)
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
        return 1
    service.say("stopped")
    return code
