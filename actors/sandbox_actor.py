"""SandboxActor: one sandbox as a detached, restartable Ray actor.

The actor is a thin async shell around :class:`studio.sandbox.ComponentStudioSandbox`
(plain blocking Python): blocking work runs on the actor's own thread pool,
lifecycle changes and file mutations take one asyncio lock, and the event log
is read without any thread (long-poll :meth:`SandboxActor.events`, or the
streaming :meth:`SandboxActor.stream`).

Restarts. Ray reruns ``__init__`` with the original arguments when the worker
dies (``max_restarts``). The new incarnation sees
``was_current_actor_reconstructed`` and recovers in the background at once
(calls other than ``ping`` and ``events`` wait for it): ``on_setup(recover=True)``
reaps the Vite its predecessor left, reattaches the worktree and starts Vite
again; a ``status`` event with ``recovered=True`` says so. Event numbers keep
increasing across the restart: a small file in the node's state dir keeps the
highest number reserved (handed out a hundred at a time, so that not every
event writes it) and the new log starts after it.

Methods that change things (setup, execute, rollback, finalize, teardown) are
never retried by Ray (``max_task_retries=0``): a retried call that crashed its
own worker would crash it again, forever (DESIGN.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import ray
from pydantic import ValidationError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors import _standby, metrics
from actors._sandbox_worker import sandbox_runtime_env
from actors.browser_actor import browser_actor
from actors.scheduling import SLOT_RESOURCE
from studio.commands import ExecuteResult, changed_paths, command_adapter, is_mutation
from studio.config import ComponentStudioConfig, StudioSettings
from studio.errors import InvalidRequest, InvalidState, NotFound
from studio.layout import StateLayout
from studio.messages import ErrorPayload, MessageType, PrepareStep, StatusPayload, encode
from studio.models import (
    CommitInfo,
    FinalizeResult,
    MonitorReport,
    RepositorySource,
    RollbackResult,
    SandboxInfo,
)
from studio.naming import ACTOR_NAMESPACE, MANAGER_ACTOR_NAME, sandbox_actor_name
from studio.pr_capture import capture_images
from studio.pr_images import PullRequestImages
from studio.render import RenderVerdict, wants_verdict
from studio.render.diff import PictureDiff, compare
from studio.render.screenshot import DEFAULT_VIEWPORT, parse_globals, parse_viewport
from studio.sandbox import ComponentStudioSandbox
from studio.state import SandboxState
from studio.vite import STUDIO_DIR, renderer_url

if TYPE_CHECKING:
    # studio.pr loads PyGithub (a large import): only a finalize to GitHub needs it.
    from studio.pr import PullRequestProvider

__all__ = ["SandboxActor", "provider_from_spec", "sandbox_actor_options", "seq_file"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Threads for blocking sandbox calls; long-polls use none.
_THREADS = 16
# How long one step of the streaming generator waits before checking again.
_STREAM_POLL_SECONDS = 15.0
# How long teardown waits for the final event to reach the polls already waiting.
_ANSWER_SECONDS = 2.0
# Event numbers handed out per write of the seq file: a restarted actor starts
# after the last number reserved, so numbers only grow (with a gap, which
# consumers already see after a restart), and an edit rarely pays for a file write.
_SEQ_RESERVE = 100
# Diffs kept per sandbox (a diff PNG is tens of kB).
_DIFFS_KEPT = 16
# How long a push waits for the manager to hand it the GitHub token.
_CREDENTIAL_TIMEOUT = 30.0
# How often at most an actor tells the manager its node's sandboxes are busy editing.
_BUSY_EVERY_S = 1.0


def sandbox_actor_options(
    sandbox_id: str,
    *,
    node_id: str | None,
    max_restarts: int,
    use_slot: bool | None = None,
    on_spare: bool = False,
) -> dict[str, Any]:
    """Ray options of a sandbox's actor: named, detached, pinned to ``node_id``.

    ``use_slot`` None asks Ray whether the cluster declares ``sandbox_slot``;
    the actor then holds one. The pin is hard: a sandbox's worktree is on that
    node's disk (the manager recreates it elsewhere when the node dies).
    ``on_spare`` gives it the runtime env of the warm pool's spares, so that it
    lands on one (:mod:`actors._sandbox_worker`).
    """
    if use_slot is None:
        use_slot = ray.is_initialized() and SLOT_RESOURCE in ray.cluster_resources()  # type: ignore[no-untyped-call]
    options: dict[str, Any] = {
        "name": sandbox_actor_name(sandbox_id),
        "namespace": ACTOR_NAMESPACE,
        "lifetime": "detached",
        "num_cpus": 0,
        "max_restarts": max_restarts,
        # Safe methods are retried through a restart; unsafe ones opt out below.
        "max_task_retries": -1,
        "max_concurrency": 1000,
    }
    if on_spare:
        options["runtime_env"] = sandbox_runtime_env()
    if use_slot:
        options["resources"] = {SLOT_RESOURCE: 1}
    if node_id is not None:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
    return options


def seq_file(state_dir: Path, sandbox_id: str) -> Path:
    """Where a sandbox's actor keeps the highest event number it may have handed out."""
    # Not *.json: run/*.json are pid records, which the orphan scan reads.
    return StateLayout(state_dir).run / f"{sandbox_id}.seq"


def _read_seq(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["last_seq"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def provider_from_spec(
    spec: dict[str, Any] | None, token: Callable[[], str | None]
) -> PullRequestProvider | None:
    """The PR provider the manager described; None means the sandbox's default (local).

    ``token`` asks the manager for the GitHub token, now, for this one use: it
    is never part of the spec, the actor's arguments or its settings.
    """
    if not spec or spec.get("kind") == "local":
        return None
    if spec.get("kind") == "github":
        from studio.pr import GitHubProvider

        return GitHubProvider(token() or "", base_url=str(spec["base_url"]))
    raise InvalidRequest(f"unknown pull request provider {spec.get('kind')!r}")


@ray.remote
class SandboxActor:
    """The Ray actor of one sandbox; see the module docstring."""

    def __init__(
        self,
        sandbox_id: str,
        repository: dict[str, Any],
        config: dict[str, Any],
        settings: dict[str, Any],
        owner: str = "",
        start_seq: int = 1,
        viewer_token: str = "",
    ) -> None:
        self._settings = StudioSettings.model_validate(settings)
        context = ray.get_runtime_context()
        self._node_id = context.get_node_id()
        self._reconstructed = bool(context.was_current_actor_reconstructed)
        self._seq_path = seq_file(self._settings.state_dir, sandbox_id)
        self._seq_lock = threading.Lock()
        start = max(start_seq, _read_seq(self._seq_path) + 1)
        self._seq_reserved = start - 1
        self._pool = ThreadPoolExecutor(_THREADS, thread_name_prefix=f"sandbox-{sandbox_id}")
        self._lock = asyncio.Lock()
        self._recovery: asyncio.Task[None] | None = None
        # The node's browser actor, looked up on the first render verdict.
        self._browser: Any = None
        # When the manager was last told of an edit here (_busy).
        self._told_busy = -_BUSY_EVERY_S
        # Pictures of past commits come one commit at a time from the past renderer.
        self._past_lock = asyncio.Lock()
        # Diffs made (a diff's JSON, then its PNG: the second costs nothing).
        self._diffs: OrderedDict[tuple[str, ...], PictureDiff] = OrderedDict()
        self._sandbox = ComponentStudioSandbox(
            sandbox_id,
            RepositorySource.model_validate(repository),
            ComponentStudioConfig.model_validate(config),
            self._settings,
            owner=owner,
            start_seq=start,
            node=self._node_id,
            on_event=self._on_event,
            viewer_token=viewer_token,
            node_address=str(ray.util.get_node_ip_address()),  # type: ignore[no-untyped-call]
            # The worker's Vite standby, if the preload started one (actors._standby).
            vite_standby=_standby.claim(
                use=self._settings.vite_standby and not self._settings.boundary().enforced
            ),
            recorder=metrics.RayRecorder(),
            push_provider=self._github_provider,
        )
        # Ray runs an async actor's __init__ on its event loop: a reconstructed actor
        # starts recovering at once, without waiting for a first call.
        with contextlib.suppress(RuntimeError):
            self._start_recovery()
        logger.info(
            "sandbox actor started",
            extra={
                "sandbox_id": sandbox_id,
                "node": self._node_id,
                "start_seq": start,
                "reconstructed": self._reconstructed,
            },
        )

    # -- plumbing ---------------------------------------------------------

    def _busy(self) -> None:
        """Tell the manager, without waiting, that a sandbox of this node is editing (at
        most once every _BUSY_EVERY_S): the node's warm pool boots no spare worker among
        an agent's edits (actors._warm_pool)."""
        now = time.monotonic()
        if now - self._told_busy < _BUSY_EVERY_S:
            return
        self._told_busy = now

        def tell() -> None:
            # off the event loop: the lookup asks the GCS (each time, as _push_token does:
            # a manager started again is another actor)
            try:
                manager: Any = ray.get_actor(MANAGER_ACTOR_NAME, namespace=ACTOR_NAMESPACE)
                manager.sandbox_busy.remote(self._node_id)
            except Exception:  # no manager (a lone actor) or none yet: only a spare's timing
                logger.debug("could not tell the manager of an edit", exc_info=True)

        asyncio.get_running_loop().run_in_executor(None, tell)

    def _push_token(self) -> str | None:
        """The GitHub token, asked of the manager for one push (called off the event loop)."""
        manager: Any = ray.get_actor(MANAGER_ACTOR_NAME, namespace=ACTOR_NAMESPACE)
        reference: Any = manager.push_credential.remote(self._sandbox.sandbox_id)
        token: str | None = ray.get(reference, timeout=_CREDENTIAL_TIMEOUT)
        return token

    def _github_provider(self) -> PullRequestProvider | None:
        """The provider a push to the repository's forge uses; None when there is no token."""
        from studio.pr import GitHubProvider

        token = self._push_token()
        if not token:
            return None
        return GitHubProvider(token, base_url=self._settings.github_api_url)

    def _on_event(self, event: dict[str, Any]) -> None:
        seq = int(event.get("seq", 0))
        with self._seq_lock:
            if seq <= self._seq_reserved:
                return
            reserved = seq + _SEQ_RESERVE
            self._seq_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._seq_path.with_name(f".{self._seq_path.name}.tmp")
            tmp.write_text(json.dumps({"last_seq": reserved}))
            tmp.replace(self._seq_path)
            self._seq_reserved = reserved

    async def _run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: func(*args, **kwargs))

    def _start_recovery(self) -> asyncio.Task[None] | None:
        if self._reconstructed and self._recovery is None:
            self._recovery = asyncio.get_running_loop().create_task(self._recover())
        return self._recovery

    async def _recovered(self) -> None:
        task = self._start_recovery()
        if task is not None:
            await asyncio.shield(task)

    async def _recover(self) -> None:
        sandbox = self._sandbox
        first_seq = sandbox.events.last_seq
        async with self._lock:
            if sandbox.state in (SandboxState.STOPPED, SandboxState.FINALIZED):
                return
            try:
                await self._run(sandbox.on_setup, recover=True)
            except Exception:
                # The sandbox is FAILED and said why on its stream; calls keep working.
                logger.exception("recovery failed", extra={"sandbox_id": sandbox.sandbox_id})
                return
            self._remember_studio_app()
        metrics.record(lambda: metrics.actor_recoveries().inc(tags={"how": "reconstructed"}))
        said = any(
            m.type is MessageType.STATUS and getattr(m.payload, "recovered", None)
            for m in sandbox.events.since(first_seq)
        )
        if not said:
            sandbox.events.append(
                MessageType.STATUS,
                {
                    "status": sandbox.state.value,
                    "recovered": True,
                    "detail": "the sandbox's actor restarted and recovered",
                },
            )

    # -- lifecycle --------------------------------------------------------

    async def ping(self) -> dict[str, Any]:
        """Liveness: pid, node, state and last event number; starts a pending recovery."""
        self._start_recovery()
        recovering = self._recovery is not None and not self._recovery.done()
        return {
            "pid": os.getpid(),
            "node_id": self._node_id,
            "state": self._sandbox.state.value,
            "last_seq": self._sandbox.events.last_seq,
            "reconstructed": self._reconstructed,
            "recovering": recovering,
            # Where the API's renderer proxy reaches this sandbox's Vite (None: not running).
            "renderer": self._sandbox.vite_url,
        }

    @ray.method(max_task_retries=0)
    async def setup(self, recover: bool = False) -> SandboxInfo:
        """Run on_setup; returns when the sandbox is RUNNING (or raises, FAILED)."""
        if self._reconstructed:
            await self._recovered()
            return self._sandbox.info()
        async with self._lock:
            info = await self._run(self._sandbox.on_setup, recover=recover)
        self._remember_studio_app()
        return info

    async def preparation_step(self, step: str) -> None:
        """Say on the stream that the create waits for its repository's preparation ``step``."""
        self._sandbox.events.append(
            MessageType.STATUS,
            StatusPayload(
                status=SandboxState.STARTING.value,
                preparation=PrepareStep(step),
                detail=f"waiting for the repository's preparation on this node: {step}",
            ),
        )

    async def preparation_failed(self, message: str, code: str, output: list[str]) -> None:
        """Say on the stream that the repository's preparation failed, with its output."""
        self._sandbox.events.append(
            MessageType.ERROR, ErrorPayload(message=message, code=code, output=output or None)
        )

    def _remember_studio_app(self) -> None:
        # The node's next workers start their Vite standby from this studio app's modules.
        studio_dir = self._sandbox.vite.options.app_root / STUDIO_DIR
        _standby.remember(self._settings.template_dir, studio_dir)

    async def info(self) -> SandboxInfo:
        """The sandbox's status."""
        await self._recovered()
        return await self._run(self._sandbox.info)

    async def monitor(self) -> MonitorReport:
        """One on_monitor pass (health, restart with backoff, idleness)."""
        await self._recovered()
        return await self._run(self._sandbox.on_monitor)

    @ray.method(max_task_retries=0)
    async def teardown(self, final_state: str = "stopped") -> SandboxInfo:
        """Stop Vite and remove the worktree, keeping the branch; idempotent."""
        await self._recovered()
        async with self._lock:
            info = await self._run(self._sandbox.on_teardown, final_state=SandboxState(final_state))
        self._close_browser_page()
        await self._last_event_answered()
        with contextlib.suppress(OSError):
            self._seq_path.unlink()
        return info

    @ray.method(max_task_retries=0)
    async def finalize(
        self,
        title: str,
        description: str,
        provider_spec: dict[str, Any] | None = None,
        images: bool = True,
    ) -> FinalizeResult:
        """Push the branch, open the PR, tear down.

        ``images``: the body shows the touched stories before and after
        (:mod:`studio.pr_capture`), taken here while Vite still runs.
        """
        await self._recovered()
        async with self._lock:
            pictures = await self._pull_request_images() if images else None
            # The token is asked for in the pool's thread: ray.get must not block the loop.
            provider = await self._run(provider_from_spec, provider_spec, self._push_token)
            result = await self._run(self._sandbox.finalize, title, description, provider, pictures)
        self._close_browser_page()
        await self._last_event_answered()
        with contextlib.suppress(OSError):
            self._seq_path.unlink()
        return result

    async def _pull_request_images(self) -> PullRequestImages:
        """The stories the sandbox's commits touched, at its base and at its head.

        Never raises: whatever stops the pictures is said in the result.
        """
        sandbox = self._sandbox
        viewport = str(DEFAULT_VIEWPORT)
        base = sandbox.base_commit or ""
        try:
            head = await self._run(sandbox.head)
            files = await self._run(sandbox.changed_files, base, head) if base else []
        except Exception as exc:
            return PullRequestImages(
                base=base, head="", viewport=viewport, note=f"the commits could not be read: {exc}"
            )
        note = None
        verdict = None
        if not base:
            note = "the sandbox's base commit is not known"
        elif not files:
            note = "no file changed since the base commit"
        elif sandbox.port is None:
            note = "the sandbox's Vite is not running, so nothing could be rendered"
        else:
            # The base's renderer starts (a worktree and a Vite) while the verdict renders
            # the head: the first "before" picture then finds it up.
            warming = asyncio.get_running_loop().create_task(self._warm_past(base))
            verdict = await self._render_verdict(head, files, 0.0)
            await warming
        return await capture_images(
            base=base,
            head=head,
            viewport=viewport,
            verdict=verdict,
            take=self._pull_request_picture,
            note=note,
        )

    async def _warm_past(self, commit: str) -> None:
        """Start the past renderer at ``commit`` ahead of its pictures; a failure is left for
        the pictures to report."""
        try:
            async with self._past_lock:
                await self._run(self._sandbox.show_past, commit)
                self._sandbox.release_past()
        except Exception as exc:
            logger.warning(
                "past renderer not warmed: %s", exc, extra={"sandbox_id": self._sandbox.sandbox_id}
            )

    async def _pull_request_picture(self, story: str, commit: str) -> bytes:
        """A PNG of ``story`` at ``commit``: the running Vite's at the head, the sandbox's
        past renderer's at the base."""
        shot = await self.screenshot(story, commit=commit)
        png: bytes = shot["png"]
        return png

    async def _last_event_answered(self) -> None:
        # The manager kills this actor once teardown/finalize returns; the
        # replicas' long-polls woken by the final status must answer first,
        # or their clients would see the stream end without it.
        if not await self._sandbox.events.answered(_ANSWER_SECONDS):
            logger.warning(
                "event polls still unanswered at teardown",
                extra={"sandbox_id": self._sandbox.sandbox_id},
            )

    # -- work -------------------------------------------------------------

    @ray.method(max_task_retries=0)
    async def execute(self, command: dict[str, Any]) -> ExecuteResult:
        """Run one execute command (the API's execute request body)."""
        try:
            parsed = command_adapter.validate_python(command)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'command'}: {e['msg']}"
                for e in exc.errors()
            )
            raise InvalidRequest(f"invalid command: {problems}") from None
        await self._recovered()
        if not is_mutation(parsed):
            return await self._run(self._sandbox.on_execute, parsed)
        self._busy()
        started = time.monotonic()
        written_after = time.time()
        wait = str(getattr(parsed, "wait", "commit"))
        loop = asyncio.get_running_loop()
        await self._lock.acquire()
        unlocked = False
        verdict: asyncio.Task[RenderVerdict] | None = None

        def unlock() -> None:
            nonlocal unlocked
            if not unlocked:
                unlocked = True
                self._lock.release()

        def on_commit(made: ExecuteResult) -> None:
            nonlocal verdict
            unlock()
            if verdict is None and wants_verdict(wait) and made.commit_hash is not None:
                # Outside the lock, while the push runs: edits behind this one commit
                # while it renders; the verdict names the commit it belongs to.
                verdict = asyncio.create_task(
                    self._render_verdict(
                        made.commit_hash,
                        changed_paths(parsed),
                        written_after,
                        pictures=wait == "screenshot",
                    )
                )

        try:
            # One thread does the commit and then waits for (or makes) the push:
            # the lock is let go (and a verdict started) once the commit is made,
            # without a hop back here first.
            result = await self._run(
                self._sandbox.edit, parsed, lambda made: loop.call_soon_threadsafe(on_commit, made)
            )
        except BaseException:
            if verdict is not None:
                verdict.cancel()
            raise
        finally:
            unlock()
            self._sandbox.recorder.execute_seconds(parsed.command, time.monotonic() - started)
        if verdict is None:
            return result
        return result.model_copy(update={"render": await verdict})

    @ray.method(max_task_retries=0)
    async def rollback(
        self,
        commit_hash: str | None = None,
        steps: int | None = None,
        undo: bool = False,
        wait: str = "commit",
    ) -> RollbackResult:
        """Move the branch back (or undo the last rollback); ``wait="render"`` adds the verdict."""
        await self._recovered()
        self._busy()
        written_after = time.time()
        async with self._lock:
            result = await self._run(
                self._sandbox.rollback, commit_hash=commit_hash, steps=steps, undo=undo
            )
        if not wants_verdict(wait):
            return result
        files = await self._run(
            self._sandbox.changed_files, result.previous_hash, result.current_hash
        )
        verdict = await self._render_verdict(
            result.current_hash, files, written_after, pictures=wait == "screenshot"
        )
        return result.model_copy(update={"render": verdict})

    async def screenshot(
        self,
        story: str,
        viewport: str = "",
        *,
        commit: str | None = None,
        globals: str | None = None,
    ) -> dict[str, Any]:
        """A PNG of ``story`` at ``commit`` (the current one by default; else one of the
        branch's commits back to its base, rendered from its own tree without touching the
        live sandbox) with Storybook ``globals`` (``theme:dark``):
        ``{png, commit, cached, current, globals}``."""
        await self._recovered()
        # Bad input is refused before any git or browser work.
        parse_viewport(viewport)
        globals_ = parse_globals(globals)
        target, current = await self._run(self._sandbox.resolve_commit, commit)
        return await self._picture(story, viewport, target, current, globals_)

    async def _picture(
        self, story: str, viewport: str, commit: str, current: bool, globals_: str
    ) -> dict[str, Any]:
        """The picture of ``commit``, from the live Vite when it is HEAD, else from the
        sandbox's past renderer (started, or moved to ``commit``, unless cached)."""
        sandbox_id = self._sandbox.sandbox_id
        if self._browser is None:
            self._browser = browser_actor(self._node_id)
        answer = {"commit": commit, "current": current, "globals": globals_}

        async def taken_from(port: int) -> tuple[bytes, bool]:
            picture: tuple[bytes, bool] = await self._browser.screenshot.remote(
                sandbox_id,
                self._local_renderer(port),
                commit,
                story,
                viewport,
                self._sandbox.proxy_headers(),
                globals_,
            )
            return picture

        if current:
            port = self._sandbox.port
            if port is None:
                raise InvalidState(
                    f"sandbox {sandbox_id} has no running Vite to render with",
                    state=self._sandbox.state.value,
                )
            png, cached = await taken_from(port)
            return {**answer, "png": png, "cached": cached}
        # A past commit's picture taken before costs no renderer.
        kept = await self._browser.cached_screenshot.remote(
            sandbox_id, commit, story, viewport, globals_
        )
        if kept is not None:
            return {**answer, "png": kept, "cached": True}
        # One past commit at a time: the renderer's worktree stays at it until the picture.
        async with self._past_lock:
            port = await self._run(self._sandbox.show_past, commit)
            try:
                png, cached = await taken_from(port)
            except NotFound:
                # Ray's error is also a NotFound: the story may be younger than the commit.
                raise NotFound(
                    f"no story {story[:200]!r} at commit {commit[:12]} of sandbox {sandbox_id} "
                    "(its catalog then did not have it): use a story id or component id as "
                    "GET .../components lists them"
                ) from None
            finally:
                # In the pool: an idle check may hold the renderer's lock while it stops Vite.
                await self._run(self._sandbox.release_past)
        return {**answer, "png": png, "cached": cached}

    async def diff(
        self,
        story: str,
        from_commit: str | None = None,
        to_commit: str | None = None,
        viewport: str = "",
        globals: str | None = None,
    ) -> dict[str, Any]:
        """Pictures of ``story`` at two commits (``from_commit``: the base by default,
        ``to_commit``: the current one) compared pixel by pixel (studio.render.diff):
        ``{story, from, to, viewport, globals, changed_pixels, total_pixels, ratio, width,
        height, png}`` (the last few kept: its JSON, then its PNG, cost one diff)."""
        await self._recovered()
        size = parse_viewport(viewport)
        globals_ = parse_globals(globals)
        first, first_current = await self._run(
            self._sandbox.resolve_commit, from_commit or self._sandbox.base_commit
        )
        second, second_current = await self._run(self._sandbox.resolve_commit, to_commit)
        key = (first, second, story, str(size), globals_)
        found = self._diffs.get(key)
        if found is None:
            before = await self._picture(story, viewport, first, first_current, globals_)
            after = await self._picture(story, viewport, second, second_current, globals_)
            found = await self._run(compare, before["png"], after["png"])
            self._diffs[key] = found
            while len(self._diffs) > _DIFFS_KEPT:
                self._diffs.popitem(last=False)
        self._diffs.move_to_end(key)
        return {
            "story": story,
            "from": first,
            "to": second,
            "viewport": str(size),
            "globals": globals_,
            "changed_pixels": found.changed_pixels,
            "total_pixels": found.total_pixels,
            "ratio": found.ratio,
            "width": found.width,
            "height": found.height,
            "png": found.png,
        }

    def _local_renderer(self, port: int) -> str:
        """Vite where it listens, under its base: the browser runs on this node, not at
        ``public_host``."""
        host = self._settings.host
        return renderer_url(
            "127.0.0.1" if host in ("0.0.0.0", "") else host, port, self._sandbox.renderer_base
        )

    def _close_browser_page(self) -> None:
        """Let the node's browser close this sandbox's page now (not when it idles out)."""
        if self._browser is not None:
            # Not awaited: the browser's answer changes nothing for the teardown.
            self._browser.close_page.remote(self._sandbox.sandbox_id)

    async def _render_verdict(
        self, commit: str, files: list[str], since: float, *, pictures: bool = False
    ) -> RenderVerdict:
        """What ``commit`` rendered, asked of the node's browser actor (it starts on first use);
        ``pictures``: with a picture of each story it rendered (``"wait": "screenshot"``).

        A verdict that cannot be made (no Vite, no browser) is a ``timeout``
        with the reason in ``detail``: the commit stands either way.
        """
        port = self._sandbox.port
        if port is None:
            return RenderVerdict(
                commit=commit, status="timeout", detail="the sandbox's Vite is not running"
            )
        base = self._local_renderer(port)
        try:
            if self._browser is None:
                self._browser = browser_actor(self._node_id)
            verdict: RenderVerdict = await self._browser.verdict.remote(
                self._sandbox.sandbox_id,
                base,
                commit,
                files,
                since,
                headers=self._sandbox.proxy_headers(),
                pictures=pictures,
            )
        except Exception as exc:
            # Looked up again next time (a node's browser actor that is gone for good).
            self._browser = None
            logger.warning("render verdict failed", extra={"sandbox_id": self._sandbox.sandbox_id})
            return RenderVerdict(
                commit=commit, status="timeout", detail=f"the node's browser failed: {exc}"
            )
        return verdict

    async def history(self, count: int = 50) -> list[CommitInfo]:
        """The branch's commits, newest first."""
        await self._recovered()
        return await self._run(self._sandbox.history, count)

    async def components(self) -> dict[str, Any]:
        """The component catalog of the sandbox's Vite."""
        await self._recovered()
        return await self._run(self._sandbox.components)

    async def logs(self, lines: int = 200) -> list[str]:
        """Vite's last output lines."""
        return await self._run(self._sandbox.logs, lines)

    async def publish(self, message: dict[str, Any], client_id: str) -> None:
        """A client's message (component-selected) onto the event stream."""
        await self._run(self._sandbox.publish_client_message, message, client_id)

    async def warm_renderer(self) -> dict[str, Any]:
        """Transform the page's module graph ahead of its first load (a ready sandbox)."""
        await self._recovered()
        result = await self._run(self._sandbox.warm_renderer)
        return {"loaded": result.loaded, "failed": result.failed, "seconds": result.seconds}

    async def touch(self) -> None:
        """Mark activity (a WebSocket message, a page view)."""
        self._sandbox.touch()

    # -- events -----------------------------------------------------------

    # The timeout travels with the call: a long-poll answers [] when it runs out.
    async def events(self, after_seq: int, timeout: float) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """Events after ``after_seq`` as soon as there are any; ``[]`` after ``timeout`` s.

        When ``after_seq`` is older than the oldest event kept, the answer
        starts at the oldest: the consumer sees the gap in the numbers.
        """
        messages = await self._sandbox.events.wait(after_seq, timeout)
        return [json.loads(encode(m)) for m in messages]

    @ray.method(num_returns="streaming")
    async def stream(self, after_seq: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Every event after ``after_seq``, as it happens (cancel the ref to stop)."""
        last = after_seq
        while True:
            for message in await self._sandbox.events.wait(last, _STREAM_POLL_SECONDS):
                last = message.seq
                yield json.loads(encode(message))
