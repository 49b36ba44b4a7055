"""The run's shared context: sample counts, a work directory, and lazily started parts.

Ray, the service and Chromium each cost seconds to start, so a run starts each
at most once, on the first scenario that needs it, and stops all of them (in
reverse order) when the run ends, whatever happened in between.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.results import ScenarioResult

__all__ = ["RunContext", "Scenario", "ScenarioFn"]

T = TypeVar("T")


class RunContext:
    """What scenarios share: ``quick``, the speed-ups, ``work_dir`` and lazily started resources.

    ``speedups`` says which speed-up of the create path is on (all when
    empty); the environment already carries the settings that switched the
    others off (benchmarks/speedups.py).
    """

    def __init__(
        self,
        *,
        quick: bool,
        work_dir: Path | None = None,
        speedups: Mapping[str, bool] | None = None,
    ) -> None:
        self.quick = quick
        self.speedups: dict[str, bool] = dict(speedups or {})
        # Short: Ray's Unix socket paths break past ~107 bytes, and its temp dir lives here.
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))
        self._own_work_dir = work_dir is None
        self._stack = contextlib.ExitStack()
        self._resources: dict[str, Any] = {}
        self._failures: dict[str, Exception] = {}

    def on(self, speedup: str) -> bool:
        """Whether the speed-up named ``speedup`` is on in this run."""
        return self.speedups.get(speedup, True)

    def count(self, full: int, quick: int) -> int:
        """How many samples to take: ``quick`` in quick mode, ``full`` otherwise."""
        return quick if self.quick else full

    def path(self, name: str) -> Path:
        """A fresh directory ``name`` under the work dir."""
        path = self.work_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def resource(
        self, name: str, factory: Callable[[RunContext], contextlib.AbstractContextManager[T]]
    ) -> T:
        """The resource ``name``, entered from ``factory(self)`` on first use; exited by close().

        A resource that failed to start fails the same way for every later
        scenario, without another attempt (a broken service costs one timeout).
        """
        failed = self._failures.get(name)
        if failed is not None:
            raise RuntimeError(f"{name} did not start: {failed}") from failed
        if name not in self._resources:
            try:
                self._resources[name] = self._stack.enter_context(factory(self))
            except Exception as exc:
                self._failures[name] = exc
                raise
        value: T = self._resources[name]
        return value

    def release(self, name: str) -> None:
        """Forget ``name`` (it stays open until close(): an ExitStack cannot pop one entry)."""
        self._resources.pop(name, None)
        self._failures.pop(name, None)

    def close(self) -> None:
        """Stop every started resource (newest first) and remove the work dir."""
        try:
            self._stack.close()
        finally:
            self._resources.clear()
            if self._own_work_dir:
                shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> RunContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


ScenarioFn = Callable[[RunContext], ScenarioResult]


@dataclass(frozen=True)
class Scenario:
    """A named measurement; ``run`` returns its result (raising counts as an error result)."""

    name: str
    title: str
    run: ScenarioFn
    tags: tuple[str, ...] = field(default=())
