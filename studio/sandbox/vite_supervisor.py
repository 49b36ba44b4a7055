"""The Vite of one sandbox: start, health, restart with backoff, FAILED past the limit.

:class:`ViteSupervisor` belongs to a :class:`~studio.sandbox.sandbox.ComponentStudioSandbox`
and drives its RUNNING / RESTARTING / FAILED transitions. The restart decision is
the pure :class:`~studio.process.RestartPolicy` built from the sandbox's config;
the count of restarts in a row lives here rather than in the process manager,
because a start that fails stops the manager and a fresh start would reset
its count, so a Vite that crashes on every start would never reach the limit.

A restart holds this supervisor's lock (not the sandbox's mutation lock):
executes and reads go on meanwhile. :meth:`ViteSupervisor.close` interrupts a
restart sleeping its backoff and kills whatever it may have spawned.

A dead Vite is noticed at once: a watcher thread blocks until Vite's process
exits (``waitid`` without reaping it, so no CPU while it runs) and then takes
the same restart path as a monitor pass (:meth:`ViteSupervisor.check_and_restart`,
backoff and limit included). The monitor pass stays as the backstop for a
Vite that hangs without exiting; the supervisor's lock keeps the two from
restarting twice, and nothing restarts once :meth:`ViteSupervisor.close` began.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from studio.config import RAY_WORKER_PORT_MIN
from studio.errors import InvalidConfig, RestartLimitExceeded, ServiceUnavailable, StudioError
from studio.messages import SetupStep
from studio.ports import PortAllocator
from studio.process import RestartPolicy, reap_orphans
from studio.state import SandboxState
from studio.vite import (
    STUDIO_DIR,
    ViteServer,
    cleanup_studio_app,
    generate_studio_app,
    read_studio_config,
)

if TYPE_CHECKING:
    from studio.sandbox.sandbox import ComponentStudioSandbox
    from studio.vite.standby import ViteStandby

__all__ = ["ViteSupervisor", "fetch_components"]

logger = logging.getLogger("studio.sandbox")

S = SandboxState
_OUTPUT_LINES = 50
# How often the watcher looks again while Vite is (re)starting or a restart it asked for runs.
_WATCH_IDLE = 0.2
# States in which the watcher has nothing left to do; a new start() starts a new one.
_WATCH_ENDS = frozenset({S.FAILED, S.STOPPING, S.STOPPED, S.FINALIZED})


class ViteSupervisor:
    """Starts, checks, restarts and stops one sandbox's Vite."""

    def __init__(self, sandbox: ComponentStudioSandbox, standby: ViteStandby | None = None) -> None:
        self._sandbox = sandbox
        # Runs the next start's Vite (see studio.vite.standby); used once.
        self._standby = standby
        self.server: ViteServer | None = None
        self.ports: PortAllocator | None = None
        self.restarts = 0
        self._in_row = 0
        self._running_since: float | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        # Bumped by every start(): an older watcher sees it and ends.
        self._watch_generation = 0

    @property
    def port(self) -> int | None:
        server = self.server
        return None if server is None else server.port

    def output(self, lines: int = 200) -> list[str]:
        """Vite's last ``lines`` lines of output (kept after it stopped)."""
        server = self.server
        return [] if server is None else server.output(lines)

    def _policy(self) -> RestartPolicy:
        config = self._sandbox.config
        return RestartPolicy(
            max_restarts=config.max_restarts,
            backoff=config.restart_backoff,
            backoff_max=config.restart_backoff_max,
            stable_start=config.stable_start,
        )

    def _allocator(self) -> PortAllocator:
        sandbox = self._sandbox
        base = sandbox.config.vite_port
        # The range must stay below Ray's worker ports whatever the config's base.
        count = min(sandbox.settings.vite_port_count, RAY_WORKER_PORT_MIN - base)
        if count < 1:
            raise InvalidConfig(f"vite_port {base} leaves no port below {RAY_WORKER_PORT_MIN}")
        return PortAllocator(
            sandbox.layout.locks, host=sandbox.settings.host, base=base, count=count
        )

    # -- start ---------------------------------------------------------------

    def start(self, *, recover: bool) -> None:
        """Generate the studio app and start Vite until healthy (setup's last step)."""
        sandbox = self._sandbox
        pid_file = sandbox.layout.pid_file(f"vite-{sandbox.sandbox_id}")
        worktree = sandbox.worktree_path
        with self._lock:
            self._stopping.clear()
            ports = self.ports = self._allocator()
            preferred = None
            if recover:
                # What the previous incarnation left: its Vite, its reservation, its port.
                if reap_orphans(pid_file):
                    logger.warning(
                        "reaped the previous Vite", extra={"sandbox_id": sandbox.sandbox_id}
                    )
                ports.release_owner(sandbox.sandbox_id)
                preferred = self._previous_port()
            port = ports.allocate(sandbox.sandbox_id, preferred=preferred)
            sandbox.setup_step(SetupStep.INSTALL)
            generate_studio_app(
                worktree,
                template_dir=sandbox.settings.template_dir,
                cache_root=sandbox.layout.install_cache,
                port=port,
                host=sandbox.settings.host,
                ws_url=sandbox.websocket_url(),
                sandbox_id=sandbox.sandbox_id,
                component_glob=sandbox.config.component_glob,
                wrapper=sandbox.config.wrapper_component,
                share_deps=sandbox.settings.vite_deps_seed,
                prebuilt_shell=sandbox.settings.prebuilt_shell,
            )
            server = ViteServer(
                worktree,
                ports=ports,
                unhealthy_threshold=sandbox.config.unhealthy_threshold,
                ready_timeout=sandbox.config.ready_timeout,
                pid_file=pid_file,
                standby=self._standby,
            )
            self._standby = None
            self.server = server
            sandbox.setup_step(SetupStep.VITE)
            server.start(timeout=sandbox.config.ready_timeout)
            self._running_since = time.monotonic()
            self._in_row = 0
            self._watch_generation += 1
            self._watcher = threading.Thread(
                target=self._watch,
                args=(self._watch_generation,),
                name=f"vite-watch-{sandbox.sandbox_id}",
                daemon=True,
            )
            self._watcher.start()

    def stop_watching(self) -> None:
        """Stop reacting to Vite's exit at once; monitor passes still restart it.

        For an incarnation that hands its Vite over to another one (which reaps
        it): the exit that follows is not a crash to repair.
        """
        self._watch_generation += 1

    def _watch(self, generation: int) -> None:
        """Restart Vite as soon as its process exits, until close() or a newer start()."""
        sandbox = self._sandbox
        while not self._stopping.is_set() and generation == self._watch_generation:
            state = sandbox.state
            if state in _WATCH_ENDS:
                return
            server = self.server
            pid = None if server is None else server.pid
            if server is None or pid is None or state is not S.RUNNING:
                self._stopping.wait(_WATCH_IDLE)  # setting up or restarting: look again soon
                continue
            # WNOWAIT: the process manager reaps it; this only learns that it ended.
            # ChildProcessError: reaped already, so it ended too.
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            if self._stopping.is_set() or generation != self._watch_generation:
                return
            if server.pid == pid and sandbox.state is S.RUNNING:
                logger.warning(
                    "Vite exited; restarting it",
                    extra={"sandbox_id": sandbox.sandbox_id, "pid": pid},
                )
                self.check_and_restart()
            # A restart another pass runs (or the one just done) needs a moment to show.
            self._stopping.wait(_WATCH_IDLE)

    def _previous_port(self) -> int | None:
        studio_dir = self._sandbox.worktree_path / STUDIO_DIR
        try:
            port = read_studio_config(studio_dir).get("port")
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
            if self._sandbox.state is S.RUNNING and server.check_health():
                self._reset_if_stable()
                return True, False
            return self._restart_loop(server)
        finally:
            self._lock.release()

    def _reset_if_stable(self) -> None:
        since = self._running_since
        if since is not None and time.monotonic() - since >= self._sandbox.config.stable_start:
            self._in_row = 0

    def _restart_loop(self, server: ViteServer) -> tuple[bool, bool]:
        sandbox = self._sandbox
        policy = self._policy()
        since = self._running_since
        ran_for = 0.0 if since is None else time.monotonic() - since
        output = server.output(_OUTPUT_LINES)
        restarted = False
        while True:
            decision = policy.decide(self._in_row, ran_for)
            if decision.reset_count:
                self._in_row = 0
            if not decision.allowed:
                server.stop()
                sandbox.fail(
                    RestartLimitExceeded(
                        f"Vite failed again after {self._in_row} restart(s) in a row "
                        f"(max_restarts={policy.max_restarts}); the sandbox is FAILED. Its "
                        "commits are kept: tear it down, or finalize it.",
                        output=output,
                        restarts=self.restarts,
                    ),
                    output=output,
                )
                return False, restarted
            # Counted first, so the RESTARTING event says which restart this is.
            self._in_row += 1
            self.restarts += 1
            restarted = True
            if sandbox.state is not S.RESTARTING and not sandbox.transition_if(
                frozenset({S.RUNNING}), S.RESTARTING
            ):
                return False, restarted  # being torn down
            if self._stopping.wait(decision.delay):
                return False, restarted
            sandbox.recorder.vite_restarted(sandbox.sandbox_id)
            logger.warning(
                "restarting Vite (%d in a row)",
                self._in_row,
                extra={"sandbox_id": sandbox.sandbox_id, "restarts": self.restarts},
            )
            try:
                server.stop()
                server.start(timeout=sandbox.config.ready_timeout)
            except StudioError as exc:
                if self._stopping.is_set():
                    return False, restarted
                output = list(exc.details.get("output") or server.output(_OUTPUT_LINES))
                ran_for = 0.0
                continue
            if self._stopping.is_set():
                return False, restarted
            self._running_since = time.monotonic()
            sandbox.transition_if(frozenset({S.RESTARTING}), S.RUNNING)
            return True, restarted

    # -- stop ----------------------------------------------------------------

    def close(self) -> None:
        """Stop Vite (interrupting a restart), release its port, remove ``.studio/``."""
        sandbox = self._sandbox
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
            ports = self.ports or self._allocator()
            ports.release_owner(sandbox.sandbox_id)
            # Without a server of ours (nothing started here), the pid file names
            # the Vite a previous incarnation left; it is killed.
            cleanup_studio_app(
                sandbox.worktree_path,
                pid_file=sandbox.layout.pid_file(f"vite-{sandbox.sandbox_id}"),
            )
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            # Vite is gone, so its watcher is past waitid and sees the stop.
            watcher.join(timeout=10.0)


def fetch_components(host: str, port: int, timeout: float = 10.0) -> dict[str, Any]:
    """The catalog the studio's Vite plugin serves at ``/__studio/components.json``.

    :class:`ServiceUnavailable` when Vite does not answer it (restarting, or not up).
    """
    # http.client, as the readiness probe: no proxy from the environment.
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/__studio/components.json")
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
