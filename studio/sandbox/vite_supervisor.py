"""The Vite of one sandbox: start, health, restart with backoff, FAILED past the limit.

:class:`ViteSupervisor` drives a sandbox's RUNNING / RESTARTING / FAILED
transitions through a narrow interface: the :class:`ViteOptions` it is built
with, and the :class:`SandboxStates` it reports to (the sandbox's lifecycle).
It is the one restart loop of Vite: the restarts in a row, the backoff, the
limit and the stable-start reset are :class:`~studio.process.RestartCount`'s,
kept here across starts (a start that fails stops Vite's process manager, so a
count kept there would restart from zero and a Vite that crashes on every start
would never reach the limit).

A restart holds this supervisor's lock (not the sandbox's mutation lock):
executes and reads go on meanwhile. :meth:`ViteSupervisor.close` interrupts a
restart sleeping its backoff and kills whatever it may have spawned.

A dead Vite is noticed at once: a watcher thread sleeps until Vite's process
exits (:meth:`~studio.vite.ViteServer.wait_exit`, no CPU while it runs) and then
takes the same restart path as a monitor pass
(:meth:`ViteSupervisor.check_and_restart`, backoff and limit included). The
monitor pass stays as the backstop for a Vite that hangs without exiting; the
supervisor's lock keeps the two from restarting twice, and nothing restarts
once :meth:`ViteSupervisor.close` began.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from studio.errors import RestartLimitExceeded, ServiceUnavailable, StudioError
from studio.messages import SetupStep
from studio.metrics import NO_RECORDER, Recorder
from studio.ports import PortAllocator, ports_below_ray
from studio.process import RestartCount, RestartPolicy, reap_orphans
from studio.process.boundary import Boundary
from studio.state import SandboxState
from studio.vite import (
    PROXY_SECRET_HEADER,
    STUDIO_DIR,
    ViteServer,
    cleanup_studio_app,
    generate_studio_app,
    read_studio_config,
)

if TYPE_CHECKING:
    from studio.vite.standby import ViteStandby

__all__ = ["SandboxStates", "ViteOptions", "ViteSupervisor", "fetch_components"]

logger = logging.getLogger("studio.sandbox")

S = SandboxState
_OUTPUT_LINES = 50
# How often the watcher looks again while Vite is (re)starting or a restart it asked for runs.
_WATCH_IDLE = 0.2
# States in which the watcher has nothing left to do; a new start() starts a new one.
_WATCH_ENDS = frozenset({S.FAILED, S.STOPPING, S.STOPPED, S.FINALIZED})


@dataclass(frozen=True)
class ViteOptions:
    """What one sandbox's Vite is made of: its files, its ports, how it is watched."""

    sandbox_id: str
    worktree: Path
    template_dir: Path
    install_cache: Path
    pid_file: Path
    port_locks: Path
    host: str
    port_base: int
    port_count: int
    # The studio page's event WebSocket, written into the studio app's config.
    ws_url: str
    component_glob: str
    wrapper: str | None
    # Speed-ups of the studio app, each with its off-switch (docs/performance.md).
    vite_deps_seed: bool
    prebuilt_shell: bool
    ready_timeout: float
    unhealthy_threshold: int
    restart_policy: RestartPolicy
    # The package the studio renders, inside the worktree ("" for its root), and
    # whether dependencies' install scripts may run (the repository's settings).
    package_dir: str = ""
    install_scripts: bool = False
    # Vite's base (the API's renderer proxy serves the sandbox under it) and the
    # secret every request to this Vite must carry (None: no such check).
    base: str = "/"
    proxy_secret: str | None = None
    # The OS boundary Vite runs in (the service's isolation setting); none by default.
    boundary: Boundary = field(default_factory=Boundary)
    # Run once the studio app is made and before Vite starts: the repository's setup
    # command (studio.sandbox.setup_command), which the sandbox runs and reports.
    before_vite: Callable[[], None] | None = None

    @property
    def app_root(self) -> Path:
        """Where the studio app lives and Vite runs: the worktree's package directory."""
        return self.worktree / self.package_dir if self.package_dir else self.worktree

    def make_studio_app(self, worktree: Path, port: int, *, ws_url: str | None, owner: str) -> None:
        """The studio app in ``worktree``, served on ``port``, as these options make it
        (the sandbox's own worktree, or a past commit's beside it: studio.sandbox.past)."""
        generate_studio_app(
            worktree,
            template_dir=self.template_dir,
            cache_root=self.install_cache,
            port=port,
            host=self.host,
            ws_url=ws_url,
            sandbox_id=owner,
            base=self.base,
            proxy_secret=self.proxy_secret,
            component_glob=self.component_glob,
            wrapper=self.wrapper,
            share_deps=self.vite_deps_seed,
            prebuilt_shell=self.prebuilt_shell,
            package_dir=self.package_dir,
            install_scripts=self.install_scripts,
        )


class SandboxStates(Protocol):
    """What the supervisor reads and drives of its sandbox's lifecycle."""

    @property
    def state(self) -> SandboxState:
        """The sandbox's state now."""
        ...

    def transition_if(self, allowed: frozenset[SandboxState], target: SandboxState) -> bool:
        """Go to ``target`` only from one of ``allowed``; whether it happened."""
        ...

    def setup_step(self, step: SetupStep) -> None:
        """Say which setup step is under way."""
        ...

    def fail(self, error: StudioError | str, *, output: list[str] | None = None) -> None:
        """Go FAILED with an ``error`` event carrying ``output``."""
        ...


class ViteSupervisor:
    """Starts, checks, restarts and stops one sandbox's Vite."""

    def __init__(
        self,
        options: ViteOptions,
        lifecycle: SandboxStates,
        *,
        recorder: Recorder = NO_RECORDER,
        standby: ViteStandby | None = None,
    ) -> None:
        self.options = options
        self._lifecycle = lifecycle
        self._recorder = recorder
        # Runs the next start's Vite (see studio.vite.standby); used once.
        self._standby = standby
        self.server: ViteServer | None = None
        # The range stays below Ray's worker ports whatever the config's base.
        count = ports_below_ray(options.port_base, options.port_count)
        self.ports = PortAllocator(
            options.port_locks, host=options.host, base=options.port_base, count=count
        )
        self._restarts = RestartCount(options.restart_policy)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        # Bumped by every start(): an older watcher sees it and ends.
        self._watch_generation = 0

    @property
    def restarts(self) -> int:
        """Vite restarts so far, over this supervisor's life."""
        return self._restarts.total

    @property
    def port(self) -> int | None:
        server = self.server
        return None if server is None else server.port

    def output(self, lines: int = 200) -> list[str]:
        """Vite's last ``lines`` lines of output (kept after it stopped)."""
        server = self.server
        return [] if server is None else server.output(lines)

    # -- start ---------------------------------------------------------------

    def start(self, *, recover: bool) -> None:
        """Generate the studio app and start Vite until healthy (setup's last step)."""
        options = self.options
        with self._lock:
            self._stopping.clear()
            preferred = None
            if recover:
                # What the previous incarnation left: its Vite, its reservation, its port.
                if reap_orphans(options.pid_file):
                    logger.warning(
                        "reaped the previous Vite", extra={"sandbox_id": options.sandbox_id}
                    )
                self.ports.release_owner(options.sandbox_id)
                preferred = self._previous_port()
            port = self.ports.allocate(options.sandbox_id, preferred=preferred)
            self._lifecycle.setup_step(SetupStep.INSTALL)
            options.make_studio_app(
                options.worktree, port, ws_url=options.ws_url, owner=options.sandbox_id
            )
            if options.before_vite is not None:
                options.before_vite()
            server = ViteServer(
                options.app_root,
                ports=self.ports,
                unhealthy_threshold=options.unhealthy_threshold,
                pid_file=options.pid_file,
                standby=self._standby,
                boundary=options.boundary,
            )
            self._standby = None
            self.server = server
            self._lifecycle.setup_step(SetupStep.VITE)
            server.start(timeout=options.ready_timeout)
            self._restarts.up(time.monotonic())
            self._watch_generation += 1
            self._watcher = threading.Thread(
                target=self._watch,
                args=(self._watch_generation,),
                name=f"vite-watch-{options.sandbox_id}",
                daemon=True,
            )
            self._watcher.start()

    def _watch(self, generation: int) -> None:
        """Restart Vite as soon as its process exits, until close() or a newer start()."""
        lifecycle = self._lifecycle
        while not self._stopping.is_set() and generation == self._watch_generation:
            state = lifecycle.state
            if state in _WATCH_ENDS:
                return
            server = self.server
            pid = None if server is None else server.pid
            if server is None or pid is None or state is not S.RUNNING:
                self._stopping.wait(_WATCH_IDLE)  # setting up or restarting: look again soon
                continue
            server.wait_exit()
            if self._stopping.is_set() or generation != self._watch_generation:
                return
            # The exit seen is of the Vite still in place, not of one a restart replaced.
            if server.pid == pid and lifecycle.state is S.RUNNING:
                logger.warning(
                    "Vite exited; restarting it",
                    extra={"sandbox_id": self.options.sandbox_id, "pid": pid},
                )
                self.check_and_restart()
            # A restart another pass runs (or the one just done) needs a moment to show.
            self._stopping.wait(_WATCH_IDLE)

    def _previous_port(self) -> int | None:
        try:
            port = read_studio_config(self.options.app_root / STUDIO_DIR).get("port")
        except StudioError:
            return None
        return port if isinstance(port, int) else None

    # -- health and restarts -------------------------------------------------

    def check_and_restart(self) -> tuple[bool, bool]:
        """One monitor pass: (healthy now, restarted in this pass).

        An unhealthy Vite is restarted with backoff until it is healthy again
        or the restart limit is hit (then the sandbox is FAILED with an
        ``error`` event carrying Vite's last output). A pass that finds another
        pass restarting returns at once.
        """
        if not self._lock.acquire(blocking=False):
            return False, False
        try:
            server = self.server
            if server is None or self._stopping.is_set():
                return False, False
            if self._lifecycle.state is S.RUNNING and server.check_health():
                return True, False
            return self._restart_loop(server)
        finally:
            self._lock.release()

    def _restart_loop(self, server: ViteServer) -> tuple[bool, bool]:
        lifecycle, options = self._lifecycle, self.options
        output = server.output(_OUTPUT_LINES)
        restarted = False
        while True:
            # Counted before the RESTARTING event, so that event says which restart this is.
            decision = self._restarts.failed(time.monotonic())
            if not decision.allowed:
                server.stop()
                lifecycle.fail(
                    RestartLimitExceeded(
                        f"Vite failed again after {decision.in_row} restart(s) in a row "
                        f"(max_restarts={options.restart_policy.max_restarts}); the sandbox "
                        "is FAILED. Its commits are kept: tear it down, or finalize it.",
                        output=output,
                        restarts=self.restarts,
                    ),
                    output=output,
                )
                return False, restarted
            restarted = True
            if lifecycle.state is not S.RESTARTING and not lifecycle.transition_if(
                frozenset({S.RUNNING}), S.RESTARTING
            ):
                return False, restarted  # being torn down
            if self._stopping.wait(decision.delay):
                return False, restarted
            self._recorder.vite_restarted(options.sandbox_id)
            logger.warning(
                "restarting Vite (%d in a row)",
                decision.in_row,
                extra={"sandbox_id": options.sandbox_id, "restarts": self.restarts},
            )
            try:
                server.stop()
                server.start(timeout=options.ready_timeout)
            except StudioError as exc:
                if self._stopping.is_set():
                    return False, restarted
                output = list(exc.details.get("output") or server.output(_OUTPUT_LINES))
                continue
            if self._stopping.is_set():
                return False, restarted
            self._restarts.up(time.monotonic())
            lifecycle.transition_if(frozenset({S.RESTARTING}), S.RUNNING)
            return True, restarted

    def offer_standby(self, standby: ViteStandby) -> None:
        """Have ``standby`` run the next start's Vite (one started meanwhile is closed)."""
        previous, self._standby = self._standby, standby
        if previous is not None:
            previous.close()

    # -- stop ----------------------------------------------------------------

    def close(self) -> None:
        """Stop Vite (interrupting a restart), release its port, remove ``.studio/``."""
        options = self.options
        self._stopping.set()
        standby, self._standby = self._standby, None
        if standby is not None:
            standby.close()
        server = self.server
        if server is not None:
            # Unblocks a restart waiting for Vite to become ready.
            server.close()
        with self._lock:
            # A restart may have spawned Vite between the close above and its end.
            if server is not None:
                server.close()
            # Also a reservation an earlier incarnation in this process made.
            self.ports.release_owner(options.sandbox_id)
            # Without a server of ours (nothing started here), the pid file names
            # the Vite a previous incarnation left; it is killed.
            cleanup_studio_app(options.app_root, pid_file=options.pid_file)
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            # Vite is gone, so its watcher is past its wait and sees the stop.
            watcher.join(timeout=10.0)


def fetch_components(
    host: str,
    port: int,
    timeout: float = 10.0,
    *,
    base: str = "/",
    proxy_secret: str | None = None,
) -> dict[str, Any]:
    """The catalog the studio's Vite plugin serves at ``<base>__studio/components.json``.

    ``proxy_secret``: what a Vite behind the API's renderer proxy wants to see
    (the template's proxy guard). :class:`ServiceUnavailable` when Vite does
    not answer it (restarting, or not up).
    """
    # http.client, as the readiness probe: no proxy from the environment.
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = {PROXY_SECRET_HEADER: proxy_secret} if proxy_secret else {}
    try:
        conn.request("GET", f"{base}__studio/components.json", headers=headers)
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ServiceUnavailable(
            f"Vite is not answering on port {port} ({exc}); it may be restarting, retry shortly"
        ) from exc
    finally:
        conn.close()
    if response.status != 200:
        raise ServiceUnavailable(
            f"Vite answered {response.status} for the component catalog; retry shortly",
            status=response.status,
        )
    data = json.loads(body)
    return data if isinstance(data, dict) else {"components": data}
