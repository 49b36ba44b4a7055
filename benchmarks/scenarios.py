"""Every scenario of the harness, in the order a run measures them.

The floors come first (their medians are the denominators of the ratios), then
the cold create (it must be the service's first sandbox), then the rest; the
node loss last (a cluster of its own, in child processes).
"""

from __future__ import annotations

from benchmarks.boundary import BOUNDARY_SCENARIOS
from benchmarks.context import Scenario
from benchmarks.floors import FLOOR_SCENARIOS
from benchmarks.lifecycle import LIFECYCLE_SCENARIOS
from benchmarks.live import LIVE_SCENARIOS
from benchmarks.node_loss import NODE_LOSS_SCENARIOS
from benchmarks.pictures import PICTURE_SCENARIOS
from benchmarks.renderer_proxy import RENDERER_PROXY_SCENARIOS
from benchmarks.setup_floor import SETUP_SCENARIOS
from benchmarks.verdict import VERDICT_SCENARIOS

__all__ = ["SCENARIOS"]

SCENARIOS: list[Scenario] = [
    *FLOOR_SCENARIOS,
    *BOUNDARY_SCENARIOS,
    *SETUP_SCENARIOS,
    *LIFECYCLE_SCENARIOS,
    *LIVE_SCENARIOS,
    *RENDERER_PROXY_SCENARIOS,
    *VERDICT_SCENARIOS,
    *PICTURE_SCENARIOS,
    *NODE_LOSS_SCENARIOS,
]
