"""Every scenario of the harness, in the order a run measures them."""

from __future__ import annotations

from benchmarks.context import Scenario
from benchmarks.floors import FLOOR_SCENARIOS

__all__ = ["SCENARIOS"]

SCENARIOS: list[Scenario] = [*FLOOR_SCENARIOS]
