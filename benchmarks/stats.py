"""Summary statistics of a scenario's samples: median, p95, p99 and the spread.

Percentiles interpolate linearly between the two nearest ranks (what numpy
calls ``linear``), so a p99 over 20 samples is honest about lying between the
two slowest rather than always reporting the maximum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["percentile", "summarize"]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``samples``; ValueError if empty or q is out of range."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(samples: Sequence[float]) -> dict[str, float | int]:
    """``n``, ``median``, ``p95``, ``p99``, ``mean``, ``min``, ``max`` of ``samples``.

    No samples give ``{"n": 0}``: a scenario that failed every run still reports.
    """
    if not samples:
        return {"n": 0}
    return {
        "n": len(samples),
        "median": percentile(samples, 50),
        "p95": percentile(samples, 95),
        "p99": percentile(samples, 99),
        "mean": sum(samples) / len(samples),
        "min": min(samples),
        "max": max(samples),
    }
