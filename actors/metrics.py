"""The service's Ray custom metrics, declared once.

Ray exports these through each node's metrics agent (Prometheus format) and
the dashboard's Metrics view. A metric object is per process: the first call
in an actor or Serve replica creates it, later calls reuse it. Outside a Ray
worker (unit tests of plain classes, the CLI) recording is a no-op, so code
can record unconditionally.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import ray
from ray.util.metrics import Counter, Gauge, Histogram

__all__ = [
    "RayRecorder",
    "actor_recoveries",
    "create_to_ready_seconds",
    "execute_seconds",
    "record",
    "sandbox_creates",
    "sandboxes_by_state",
    "vite_restarts",
    "websocket_clients",
]

# Seconds: create -> ready sits around 1 s; a cold install can take a minute.
_READY_BOUNDARIES = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0]
# Seconds: an execute is tens of milliseconds; a locked git can take seconds.
_EXECUTE_BOUNDARIES = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]


@functools.cache
def sandboxes_by_state() -> Gauge:
    """Sandboxes the manager knows, by state (set on each reconcile pass)."""
    return Gauge(
        "studio_sandboxes",
        description="Sandboxes known to the manager, by state.",
        tag_keys=("state",),
    )


@functools.cache
def sandbox_creates() -> Counter:
    """Sandbox creations, by outcome (ready or failed)."""
    return Counter(
        "studio_sandbox_creates",
        description="Sandbox creations, by outcome.",
        tag_keys=("outcome",),
    )


@functools.cache
def create_to_ready_seconds() -> Histogram:
    """Seconds from a create request to a healthy Vite."""
    return Histogram(
        "studio_create_to_ready_seconds",
        description="Seconds from create to a Vite that answers /@vite/client.",
        boundaries=_READY_BOUNDARIES,
    )


@functools.cache
def vite_restarts() -> Counter:
    """Vite restarts after a crash or failed health checks."""
    return Counter(
        "studio_vite_restarts",
        description="Vite dev server restarts by the sandbox supervisor.",
        tag_keys=("sandbox",),
    )


@functools.cache
def actor_recoveries() -> Counter:
    """Sandbox actors reconstructed by Ray or recreated by the manager."""
    return Counter(
        "studio_actor_recoveries",
        description="Sandbox actors brought back after their worker or node died.",
        tag_keys=("how",),
    )


@functools.cache
def execute_seconds() -> Histogram:
    """Latency of execute commands inside the sandbox actor."""
    return Histogram(
        "studio_execute_seconds",
        description="Seconds an execute command took in the sandbox actor.",
        boundaries=_EXECUTE_BOUNDARIES,
        tag_keys=("command",),
    )


@functools.cache
def websocket_clients() -> Gauge:
    """WebSocket clients connected to this Serve replica."""
    return Gauge(
        "studio_websocket_clients",
        description="WebSocket clients connected to a Serve replica.",
    )


def record(action: Callable[[], None]) -> None:
    """Run a metric update when inside a Ray worker; skip it elsewhere.

    Ray metrics need a connected worker; plain-Python callers (tests of the
    sandbox class, the CLI) have none, and a metric must never fail a request.
    """
    if ray.is_initialized():
        action()


class RayRecorder:
    """The core's :class:`studio.metrics.Recorder`, feeding the metrics above."""

    def execute_seconds(self, command: str, seconds: float) -> None:
        record(lambda: execute_seconds().observe(seconds, tags={"command": command}))

    def vite_restarted(self, sandbox_id: str) -> None:
        record(lambda: vite_restarts().inc(tags={"sandbox": sandbox_id}))
