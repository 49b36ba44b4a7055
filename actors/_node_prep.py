"""Each node prepared before its first sandbox, so that no create pays for what the next reuse.

A node's sandboxes start from work kept on the node
(:mod:`studio.sandbox.prepare`): the template's install-cache entry, each
repository's mirror and install, the prebuilt shell, the seed of Vite's
pre-bundled dependencies, and the hint that tells a spare worker which
node_modules its Vite standby imports (:mod:`actors._standby`). Made by the
node's first sandbox instead, a burst of creates that is the node's first
work finds none of it: every spare's standby waits for the hint and every
Vite optimises its own dependencies, so the same burst took several times as
long at the start of a benchmark run as after other scenarios
(docs/performance.md, order independence).

So the manager keeps a :class:`NodePreparer`. Each supervision pass tells it
the nodes sandboxes may go to and what every registered repository needs
(:class:`NodeWork`); a registration tells it at once. For a node it has not
seen it runs the template's part and writes the hint; for a repository a
node has not been prepared for, the repository's part; each as one Ray task
pinned to the node (:func:`prepare_here`), in the background. The task
reports each step as it begins and each part as it ends
(:class:`PrepReport`, a streaming task), so a repository's preparation on a
node is ``preparing`` (with its step), ``ready`` or ``failed`` (with the
error and the failing tool's output), kept in the registry
(:meth:`studio.store.Registry.save_preparation`) and shown on the
repository's record.

A create waits for its repository's preparation on the chosen node
(:meth:`NodePreparer.ready`) instead of repeating the work, and a node that
has not prepared the repository prepares it then. A failed preparation is
not repeated on its own: creates on that node fail at once with its error
(:class:`~studio.errors.PreparationFailed`) until an admin retries it
(:meth:`NodePreparer.retry`). A preparation a stopped manager left
``preparing`` is run again by the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final, Literal, Protocol

import ray

from studio.config import ComponentStudioConfig, StudioSettings
from studio.errors import PreparationFailed, StudioError
from studio.messages import PrepareStep
from studio.models import RepositorySource
from studio.store import NodePreparation, Registry, utcnow

__all__ = [
    "FAILED",
    "PREPARING",
    "READY",
    "TEMPLATE",
    "NodePreparer",
    "NodeWork",
    "PrepBackend",
    "PrepReport",
    "RepositoryWork",
    "prepare_here",
    "prepare_task",
]

logger = logging.getLogger(__name__)

# The template's part of a node's preparation, as the status names it.
TEMPLATE = "(template)"
PREPARING: Final = "preparing"
READY: Final = "ready"
FAILED: Final = "failed"
# Lines of a failing tool's output kept with a failed preparation.
OUTPUT_LINES = 50


@dataclass(frozen=True)
class RepositoryWork:
    """One repository to prepare: its source (base branch included) and its sandboxes' config.

    ``repository_id`` is its registry id (0: not recorded in a registry).
    """

    name: str
    source: dict[str, Any]
    config: dict[str, Any]
    repository_id: int = 0


@dataclass(frozen=True)
class NodeWork:
    """What to prepare on one node, with the settings (its state dir) it is prepared under."""

    node_id: str
    settings: dict[str, Any]
    repositories: tuple[RepositoryWork, ...] = ()


@dataclass(frozen=True)
class PrepReport:
    """What a node's preparation says as it goes: a part's step began, or the part ended.

    ``part`` is :data:`TEMPLATE` or a repository's name; ``step`` is set when a
    step begins, ``state`` (:data:`READY` or :data:`FAILED`) when the part ends.
    """

    part: str
    step: str | None = None
    state: str | None = None
    error: str | None = None
    output: tuple[str, ...] = ()
    stories: int | None = None


class PrepBackend(Protocol):
    """What the preparer needs from the cluster (the manager's backend)."""

    def prepare_node(self, work: NodeWork) -> AsyncIterator[PrepReport]:
        """Run :func:`prepare_here` on ``work.node_id``; its reports as they come."""
        ...


def _output(exc: BaseException) -> tuple[str, ...]:
    lines = exc.details.get("output") if isinstance(exc, StudioError) else None
    if not isinstance(lines, list):
        return ()
    return tuple(str(line) for line in lines[-OUTPUT_LINES:])


def prepare_here(
    settings: dict[str, Any], repositories: list[RepositoryWork]
) -> Iterator[PrepReport]:
    """Prepare this node: the template and the standby hint, then each repository.

    Yields a :class:`PrepReport` as each repository's step begins and as each
    part ends. A failing template part raises (nothing else can be prepared
    without it); a failing repository is reported and the next one goes on.
    """
    # Here, not at the top: the manager imports this module and never prepares in its process.
    from actors import _standby
    from studio.sandbox import prepare_repository_steps, prepare_template

    node_settings = StudioSettings.model_validate(settings)
    modules = prepare_template(node_settings)
    _standby.remember_modules(node_settings.template_dir, modules)
    yield PrepReport(TEMPLATE, state=READY)
    for repository in repositories:
        steps = prepare_repository_steps(
            node_settings,
            RepositorySource.model_validate(repository.source),
            ComponentStudioConfig.model_validate(repository.config),
        )
        try:
            while True:
                try:
                    step = next(steps)
                except StopIteration as done:
                    yield PrepReport(repository.name, state=READY, stories=done.value.stories)
                    break
                yield PrepReport(repository.name, step=step.value)
        except Exception as exc:
            logger.warning(
                "preparing a repository failed",
                exc_info=True,
                extra={"repository": repository.name},
            )
            yield PrepReport(repository.name, state=FAILED, error=str(exc), output=_output(exc))
        finally:
            # Stopped at a report (the task cancelled): its scratch worktree and Vite go now.
            steps.close()


# num_cpus=0: it runs beside the sandboxes (its CPU is the first sandbox's, moved ahead).
# Streaming: each report reaches the manager as it is yielded.
prepare_task = ray.remote(num_cpus=0, max_retries=0, num_returns="streaming")(prepare_here)


@dataclass
class _Part:
    """A repository's preparation on one node, as the manager follows it."""

    repository_id: int
    state: Literal["preparing", "ready", "failed"]
    started_at: datetime = field(default_factory=utcnow)
    step: PrepareStep | None = None
    finished_at: datetime | None = None
    error: str | None = None
    output: tuple[str, ...] = ()
    stories: int | None = None
    # Set (and replaced) on every change: what a waiting create sleeps on.
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, node_id: str) -> NodePreparation:
        return NodePreparation(
            node_id=node_id,
            state=self.state,
            step=self.step,
            started_at=self.started_at,
            finished_at=self.finished_at,
            error=self.error,
            output=list(self.output),
            stories=self.stories,
        )


StepCallback = Callable[[PrepareStep], Awaitable[None]]


class NodePreparer:
    """Prepares each node once, and once for each repository; see the module docstring."""

    def __init__(
        self,
        backend: PrepBackend,
        registry: Registry | None = None,
        *,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        self._backend = backend
        self._registry = registry
        # Called (on the manager's loop) when the last preparation under way ends.
        self._on_settled = on_settled
        # Per node: the template part's state (``failed: <why>`` when it failed).
        self._templates: dict[str, str] = {}
        # Per (node, repository name): its preparation there.
        self._parts: dict[tuple[str, str], _Part] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._load()

    def _load(self) -> None:
        """What the registry kept: ready and failed stay; a ``preparing`` left runs again."""
        if self._registry is None:
            return
        dropped = self._registry.forget_preparations(states=[PREPARING])
        if dropped:
            logger.info("preparations a stopped manager left under way run again: %d", dropped)
        names = {r.id: r.name for r in self._registry.list_repositories()}
        for repository_id, kept in self._registry.list_preparations():
            self._parts[(kept.node_id, names[repository_id])] = _Part(
                repository_id,
                kept.state,
                started_at=kept.started_at,
                step=kept.step,
                finished_at=kept.finished_at,
                error=kept.error,
                output=tuple(kept.output),
                stories=kept.stories,
            )

    def keep(self, work: Iterable[NodeWork]) -> None:
        """Start preparing what each node in ``work`` has not been prepared for yet."""
        for node in work:
            self._start(node)

    def _start(self, node: NodeWork) -> None:
        if self._closed:
            return
        todo = tuple(r for r in node.repositories if (node.node_id, r.name) not in self._parts)
        if node.node_id in self._templates and not todo:
            return
        self._templates.setdefault(node.node_id, PREPARING)
        for repository in todo:
            part = _Part(repository.repository_id, PREPARING)
            self._parts[(node.node_id, repository.name)] = part
            self._save(node.node_id, part)
        task = asyncio.create_task(self._prepare(replace(node, repositories=todo)))
        self._tasks.add(task)
        task.add_done_callback(self._ended)

    async def ready(
        self, node: NodeWork, repository: RepositoryWork, on_step: StepCallback | None = None
    ) -> None:
        """Return once ``repository`` is prepared on ``node.node_id``, preparing it if needed.

        ``on_step`` is awaited with each step the preparation begins while
        this waits (the step under way first). A failed preparation raises
        :class:`PreparationFailed` with its error and output.
        """
        key = (node.node_id, repository.name)
        self._start(replace(node, repositories=(repository,)))
        shown: PrepareStep | None = None
        while True:
            part = self._parts.get(key)
            if part is None:  # closed before it could start
                raise PreparationFailed(
                    f"repository {repository.name!r} cannot be prepared: the manager is stopping"
                )
            changed = part.changed
            if part.state == READY:
                return
            if part.state == FAILED:
                raise self.failure(node.node_id, repository.name)
            if part.step is not None and part.step != shown and on_step is not None:
                shown = part.step
                await on_step(part.step)
            await changed.wait()

    def check(self, node_id: str, name: str) -> None:
        """Raise :class:`PreparationFailed` when ``name`` failed to prepare on ``node_id``."""
        part = self._parts.get((node_id, name))
        if part is not None and part.state == FAILED:
            raise self.failure(node_id, name)

    def failure(self, node_id: str, name: str) -> PreparationFailed:
        """The error a create meets on a node where ``name`` failed to prepare."""
        part = self._parts[(node_id, name)]
        step = part.step.value if part.step is not None else "start"
        return PreparationFailed(
            f"repository {name!r} failed to prepare on node {node_id[:12]} at step {step}: "
            f"{part.error}; fix the cause, then retry it with "
            f"POST /api/v1/repositories/{part.repository_id}/prepare",
            state=FAILED,
            preparation=part.record(node_id).model_dump(mode="json"),
        )

    def retry(self, name: str) -> int:
        """Forget where ``name`` is ready or failed, so that it is prepared again; how many.

        A preparation under way is left to finish. A node whose template part
        failed is prepared again as a whole.
        """
        forgotten = 0
        for (node_id, part_name), part in list(self._parts.items()):
            if part_name == name and part.state != PREPARING:
                del self._parts[(node_id, part_name)]
                forgotten += 1
                if self._registry is not None and part.repository_id:
                    self._registry.forget_preparations(
                        repository_id=part.repository_id, states=[READY, FAILED]
                    )
        for node_id, state in list(self._templates.items()):
            if state.startswith(FAILED):
                del self._templates[node_id]
        return forgotten

    def preparing(self) -> bool:
        """Whether any node's preparation is under way now."""
        return bool(self._tasks)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._on_settled is not None and not self._closed and not self._tasks:
            self._on_settled()

    def status(self) -> dict[str, dict[str, str]]:
        """Per node, the state of each part: ``preparing``, ``ready`` or ``failed: <why>``."""
        status: dict[str, dict[str, str]] = {n: {TEMPLATE: s} for n, s in self._templates.items()}
        for (node_id, name), part in self._parts.items():
            state = f"{FAILED}: {part.error}" if part.state == FAILED else part.state
            status.setdefault(node_id, {})[name] = state
        return status

    async def close(self) -> None:
        """Stop the preparations under way (each removes what it had started) and start none."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _save(self, node_id: str, part: _Part) -> None:
        if self._registry is not None and part.repository_id:
            self._registry.save_preparation(part.repository_id, part.record(node_id))

    def _change(self, node_id: str, part: _Part, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(part, name, value)
        self._save(node_id, part)
        changed, part.changed = part.changed, asyncio.Event()
        changed.set()

    async def _prepare(self, node: NodeWork) -> None:
        names = [r.name for r in node.repositories]
        try:
            async for report in self._backend.prepare_node(node):
                self._apply(node.node_id, report)
        except asyncio.CancelledError:
            # Left preparing in the registry: the next manager runs it again.
            raise
        except Exception as exc:
            logger.warning("preparing a node failed", exc_info=True, extra={"node": node.node_id})
            if self._templates.get(node.node_id) == PREPARING:
                self._templates[node.node_id] = f"{FAILED}: {exc}"
            self._fail_open(node.node_id, names, str(exc), _output(exc))
        else:
            self._fail_open(node.node_id, names, "the node's preparation ended without it", ())
        logger.info("node prepared", extra={"node": node.node_id, "parts": self.status()})

    def _fail_open(
        self, node_id: str, names: list[str], error: str, output: tuple[str, ...]
    ) -> None:
        """Every part of ``names`` still preparing on ``node_id`` failed with ``error``."""
        for name in names:
            part = self._parts.get((node_id, name))
            if part is not None and part.state == PREPARING:
                self._change(
                    node_id, part, state=FAILED, error=error, output=output, finished_at=utcnow()
                )

    def _apply(self, node_id: str, report: PrepReport) -> None:
        if report.part == TEMPLATE:
            self._templates[node_id] = report.state or PREPARING
            return
        part = self._parts.get((node_id, report.part))
        if part is None or part.state != PREPARING:
            return
        if report.state is None:
            self._change(node_id, part, step=PrepareStep(report.step) if report.step else None)
        elif report.state == READY:
            self._change(
                node_id, part, state=READY, step=None, stories=report.stories, finished_at=utcnow()
            )
        else:
            self._change(
                node_id,
                part,
                state=FAILED,
                error=report.error,
                output=report.output,
                finished_at=utcnow(),
            )
