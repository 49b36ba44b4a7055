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
pinned to the node (:func:`prepare_here`), in the background. Where each
node stands is in the manager's health (``preparation``). A failed
preparation is logged and not repeated: the sandboxes then make what they
need themselves, as they would anyway, and meet its error at their setup.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import ray

from studio.config import ComponentStudioConfig, StudioSettings
from studio.models import RepositorySource

__all__ = [
    "PREPARING",
    "READY",
    "TEMPLATE",
    "NodePreparer",
    "NodeWork",
    "PrepBackend",
    "RepositoryWork",
    "prepare_here",
    "prepare_task",
]

logger = logging.getLogger(__name__)

# The template's part of a node's preparation, as the status names it.
TEMPLATE = "(template)"
PREPARING = "preparing"
READY = "ready"
_FAILED = "failed: "


@dataclass(frozen=True)
class RepositoryWork:
    """One repository to prepare: its source (base branch included) and its sandboxes' config."""

    name: str
    source: dict[str, Any]
    config: dict[str, Any]


@dataclass(frozen=True)
class NodeWork:
    """What to prepare on one node, with the settings (its state dir) it is prepared under."""

    node_id: str
    settings: dict[str, Any]
    repositories: tuple[RepositoryWork, ...] = ()


class PrepBackend(Protocol):
    """What the preparer needs from the cluster (the manager's backend)."""

    async def prepare_node(self, work: NodeWork) -> dict[str, str]:
        """Run :func:`prepare_here` on ``work.node_id``; its outcome by part."""
        ...


def prepare_here(settings: dict[str, Any], repositories: list[RepositoryWork]) -> dict[str, str]:
    """Prepare this node: the template and the standby hint, then each repository.

    The outcome says ``ready`` or ``failed: <why>`` for :data:`TEMPLATE` and
    each repository by name. A failing template part raises (nothing else
    can be prepared without it).
    """
    # Here, not at the top: the manager imports this module and never prepares in its process.
    from actors import _standby
    from studio.sandbox import prepare_repository, prepare_template

    node_settings = StudioSettings.model_validate(settings)
    modules = prepare_template(node_settings)
    _standby.remember_modules(node_settings.template_dir, modules)
    outcome = {TEMPLATE: READY}
    for repository in repositories:
        try:
            prepare_repository(
                node_settings,
                RepositorySource.model_validate(repository.source),
                ComponentStudioConfig.model_validate(repository.config),
            )
        except Exception as exc:
            logger.warning(
                "preparing a repository failed; its sandboxes set it up themselves",
                exc_info=True,
                extra={"repository": repository.name},
            )
            outcome[repository.name] = f"{_FAILED}{exc}"
        else:
            outcome[repository.name] = READY
    return outcome


# num_cpus=0: it runs beside the sandboxes (its CPU is the first sandbox's, moved ahead).
prepare_task = ray.remote(num_cpus=0, max_retries=0)(prepare_here)


class NodePreparer:
    """Prepares each node once, and once for each repository; see the module docstring."""

    def __init__(self, backend: PrepBackend) -> None:
        self._backend = backend
        # Per node: the state of each part (TEMPLATE, repository names).
        self._states: dict[str, dict[str, str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def keep(self, work: Iterable[NodeWork]) -> None:
        """Start preparing what each node in ``work`` has not been prepared for yet."""
        if self._closed:
            return
        for node in work:
            states = self._states.get(node.node_id)
            todo = tuple(r for r in node.repositories if states is None or r.name not in states)
            if states is not None and not todo:
                continue
            if states is None:
                states = self._states[node.node_id] = {TEMPLATE: PREPARING}
            for repository in todo:
                states[repository.name] = PREPARING
            task = asyncio.create_task(self._prepare(replace(node, repositories=todo)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def status(self) -> dict[str, dict[str, str]]:
        """Per node, the state of each part: ``preparing``, ``ready`` or ``failed: <why>``."""
        return {node: dict(states) for node, states in self._states.items()}

    async def close(self) -> None:
        """Stop the preparations under way (each removes what it had started) and start none."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _prepare(self, node: NodeWork) -> None:
        states = self._states[node.node_id]
        parts = [TEMPLATE, *(r.name for r in node.repositories)]
        try:
            outcome = await self._backend.prepare_node(node)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning(
                "preparing a node failed; its sandboxes set it up themselves",
                exc_info=True,
                extra={"node": node.node_id},
            )
            outcome = {part: f"{_FAILED}{exc}" for part in parts}
        for part in parts:
            if states.get(part) == PREPARING:
                states[part] = outcome.get(part, f"{_FAILED}no answer")
        logger.info("node prepared", extra={"node": node.node_id, "parts": outcome})
