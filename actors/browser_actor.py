"""BrowserActor: the node's headless Chromium, one detached actor per node.

Named ``browser:<node id>`` and pinned to its node (hard affinity: it renders
the node's own Vite servers over loopback). The first sandbox that asks for a
render verdict on a node starts it (:func:`browser_actor`, get-or-create, so
concurrent first asks share one); it then lives as long as the service, like
the sandbox actors. Supervision is twofold: Ray restarts the actor when its
worker dies (``max_restarts=-1``), and the actor launches Chromium again when
Chromium alone crashed (:meth:`studio.render.RenderBrowser.browser`). A loop
in the actor closes the pages of sandboxes idle for ``idle_seconds``.

A verdict only reads (it loads pages), so Ray may retry it through a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import psutil
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from studio.naming import ACTOR_NAMESPACE
from studio.render import RenderVerdict
from studio.render.budget import DEFAULT_TIMEOUT, IDLE_SECONDS
from studio.render.screenshot import parse_globals, parse_viewport

__all__ = [
    "BROWSER_PREFIX",
    "BrowserActor",
    "browser_actor",
    "browser_actor_name",
    "kill_browser_actors",
]

logger = logging.getLogger(__name__)

BROWSER_PREFIX = "browser:"
# How often the idle pages are looked for.
_IDLE_CHECK_SECONDS = 30.0


def browser_actor_name(node_id: str) -> str:
    """The node's browser actor, as the dashboard lists it."""
    return f"{BROWSER_PREFIX}{node_id}"


@ray.remote
class BrowserActor:
    """The node's Chromium and its sandbox pages (see the module docstring)."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        # Here, not at the top: every sandbox worker imports this module (for
        # browser_actor), and only the browser actor's worker needs Playwright.
        from studio.render.browser import RenderBrowser

        self._browser = RenderBrowser(idle_seconds=idle_seconds)
        self._idle_task: asyncio.Task[None] | None = None
        with contextlib.suppress(RuntimeError):
            self._idle_task = asyncio.get_running_loop().create_task(
                self._close_idle_pages(min(_IDLE_CHECK_SECONDS, idle_seconds))
            )

    async def _close_idle_pages(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                closed = await self._browser.close_idle()
            except Exception:
                logger.exception("closing idle pages failed")
                continue
            if closed:
                logger.info("closed idle pages", extra={"sandboxes": closed})

    async def verdict(
        self,
        sandbox_id: str,
        base_url: str,
        commit: str,
        files: list[str],
        since: float = 0.0,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - the verdict's own budget
        headers: dict[str, str] | None = None,
        pictures: bool = False,
    ) -> RenderVerdict:
        """What ``commit`` (which changed ``files`` after ``since``, epoch seconds) rendered in
        the sandbox at ``base_url`` (``headers``: on each of its requests); ``pictures``:
        with a picture of each story it rendered."""
        return await self._browser.verdict(
            sandbox_id,
            base_url,
            commit,
            files,
            since=since,
            timeout=timeout,
            headers=headers,
            pictures=pictures,
        )

    async def screenshot(
        self,
        sandbox_id: str,
        base_url: str,
        commit: str,
        story: str,
        viewport: str,
        headers: dict[str, str] | None = None,
        globals_: str = "",
    ) -> tuple[bytes, bool]:
        """A PNG of the sandbox's ``story`` at ``commit`` with ``globals_`` (cached), and
        whether it was cached; ``base_url`` is the Vite that serves ``commit``."""
        return await self._browser.screenshot(
            sandbox_id,
            base_url,
            commit,
            story,
            parse_viewport(viewport),
            headers=headers,
            globals_=parse_globals(globals_),
        )

    async def cached_screenshot(
        self, sandbox_id: str, commit: str, story: str, viewport: str, globals_: str = ""
    ) -> bytes | None:
        """The PNG taken before of the sandbox's ``story`` at ``commit``, or None."""
        return self._browser.cached_screenshot(
            sandbox_id, commit, story, parse_viewport(viewport), parse_globals(globals_)
        )

    async def close_page(self, sandbox_id: str) -> bool:
        """Close the sandbox's page (it ended); whether it had one."""
        return await self._browser.close_page(sandbox_id)

    async def stats(self) -> dict[str, Any]:
        """The actor's pid, Chromium's processes and memory (RSS and PSS summed), its pages."""
        chromium = []
        with contextlib.suppress(psutil.Error):
            for process in psutil.Process().children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if "chrom" in process.name():
                        chromium.append(process)
        rss = pss = 0
        pss_by_kind: dict[str, int] = {}
        for process in chromium:
            with contextlib.suppress(psutil.Error):
                # PSS: the pages Chromium's processes share (libraries, the V8 snapshot)
                # counted once across them, not once per process as RSS counts them
                memory = process.memory_full_info()
                proportional = getattr(memory, "pss", memory.rss)
                rss += memory.rss
                pss += proportional
                kind = _process_kind(process.cmdline())
                pss_by_kind[kind] = pss_by_kind.get(kind, 0) + proportional
        return {
            "pid": os.getpid(),
            "browser_processes": len(chromium),
            "browser_rss": rss,
            "browser_pss": pss,
            "browser_pss_by_kind": pss_by_kind,
            "pages": self._browser.pages(),
            "launches": self._browser.launches,
        }

    async def shutdown(self) -> None:
        """Close Chromium (before the actor is killed, so that no process is left behind)."""
        if self._idle_task is not None:
            self._idle_task.cancel()
        await self._browser.close()


def _process_kind(cmdline: list[str]) -> str:
    """Which of Chromium's processes this is: browser, renderer, gpu-process, or a utility's
    service (network, storage), from its ``--type=`` and ``--utility-sub-type=`` switches."""
    kind = "browser"
    for argument in cmdline:
        if argument.startswith("--type="):
            kind = argument.removeprefix("--type=")
        elif argument.startswith("--utility-sub-type="):
            return argument.removeprefix("--utility-sub-type=")
    return kind


def browser_actor(node_id: str, *, idle_seconds: float = IDLE_SECONDS) -> Any:
    """The handle of ``node_id``'s browser actor, started there if it is not running."""
    options: dict[str, Any] = {
        "name": browser_actor_name(node_id),
        "namespace": ACTOR_NAMESPACE,
        "lifetime": "detached",
        "get_if_exists": True,
        "num_cpus": 0,
        "max_restarts": -1,
        "max_task_retries": -1,
        "max_concurrency": 100,
        "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
    }
    return BrowserActor.options(**options).remote(idle_seconds)  # type: ignore[attr-defined]


def kill_browser_actors(timeout: float = 30.0) -> list[str]:
    """Close and kill every node's browser actor (the service is going away); their names."""
    killed = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = str(entry["name"])
        if entry["namespace"] != ACTOR_NAMESPACE or not name.startswith(BROWSER_PREFIX):
            continue
        with contextlib.suppress(Exception):
            handle = ray.get_actor(name, namespace=ACTOR_NAMESPACE)
            with contextlib.suppress(Exception):
                ray.get(handle.shutdown.remote(), timeout=timeout)
            ray.kill(handle, no_restart=True)
            killed.append(name)
    return killed
