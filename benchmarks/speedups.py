"""The create path's speed-ups as a run switches them: ``--speedups off``, ``--without a,b``.

``isolation`` is switched the same way though it is a cost, not a speed-up:
``--without isolation`` runs Vite without the OS boundary, to measure what
the boundary costs; ``--speedups off`` leaves it on.

Each name stands for the service setting that turns the speed-up off
(``StudioSettings``; what each one saves and costs: docs/performance.md) and
that setting's off value. A run applies the switches through the environment
(``COMPONENT_STUDIO_<SETTING>``) before it starts anything, as a node's
operator would: Ray's workers inherit it, so the worker preload and the Vite
standby see it, and every ``StudioSettings`` the run makes reads it.

A speed-up whose setting the service does not declare is not offered (the
names a run accepts are :func:`available`'s).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

__all__ = ["SPEEDUPS", "Speedup", "available", "parse_off", "switched_off", "switches"]


@dataclass(frozen=True)
class Speedup:
    """One speed-up: its name on the command line, its setting and the setting's off value."""

    name: str
    setting: str
    off: bool | int | str
    # Not a speed-up but a cost (the OS boundary): --speedups off keeps it, only
    # --without names it, so that its rows compare with the full service's.
    in_all_off: bool = True

    @property
    def env_var(self) -> str:
        return f"COMPONENT_STUDIO_{self.setting.upper()}"

    def env_value(self) -> str:
        return str(self.off).lower() if isinstance(self.off, bool) else str(self.off)


# In the order the create path meets them (docs/performance.md draws it).
SPEEDUPS = (
    Speedup("warm_pool", "warm_workers", 0),
    Speedup("preload", "worker_preload", False),
    Speedup("standby", "vite_standby", False),
    Speedup("shell", "prebuilt_shell", False),
    Speedup("deps_seed", "vite_deps_seed", False),
    Speedup("inprocess_commits", "inprocess_commits", False),
    Speedup("direct", "ws_direct_port", 0),
    # The bwrap boundary around Vite (studio.process.boundary); without it: isolation=none.
    Speedup("isolation", "isolation", "none", in_all_off=False),
)


def available() -> list[Speedup]:
    """The speed-ups whose setting the service declares."""
    from studio.config import StudioSettings

    return [s for s in SPEEDUPS if s.setting in StudioSettings.model_fields]


def parse_off(speedups: str, without: str | None) -> frozenset[str]:
    """The names to switch off for ``--speedups on|off`` and ``--without a,b``.

    Raises SystemExit naming the known ones for a name that is not one.
    """
    known = [s.name for s in available()]
    if speedups not in ("on", "off"):
        raise SystemExit(f"--speedups takes on or off, not {speedups!r}")
    if speedups == "off":
        return frozenset(s.name for s in available() if s.in_all_off)
    wanted = [name.strip() for name in (without or "").split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise SystemExit(f"unknown speed-up(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return frozenset(wanted)


def switches(off: Iterable[str]) -> dict[str, bool]:
    """Each available speed-up and whether it is on, as the results record it."""
    names = set(off)
    return {s.name: s.name not in names for s in available()}


@contextlib.contextmanager
def switched_off(off: Iterable[str]) -> Iterator[Mapping[str, str]]:
    """The environment with ``off`` switched off while the block runs; restored after."""
    names = set(off)
    values = {s.env_var: s.env_value() for s in available() if s.name in names}
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield values
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
