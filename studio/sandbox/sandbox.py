"""One sandbox as plain Python: worktree, Vite, commits, rollback, events. No Ray.

:class:`ComponentStudioSandbox` carries a sandbox through the lifecycle of
``studio.state`` through its lifecycle hooks: :meth:`~ComponentStudioSandbox.on_setup`,
:meth:`~ComponentStudioSandbox.on_monitor`, :meth:`~ComponentStudioSandbox.on_execute`,
:meth:`~ComponentStudioSandbox.on_teardown`. The Ray actor wraps one of these.

Threads: every method blocks and is thread-safe. Mutations (file writes,
rollbacks, finalize, teardown) take one lock, so they never interleave; reads
(history, file reads, info, logs) take none, and do not wait for a Vite
restart, which holds a lock of its own. Every transition, commit, rollback
and error is appended to :attr:`~ComponentStudioSandbox.events`.

Durability: after each commit, rollback or undo the branch is pushed (forced)
to the mirror's ``origin`` (see ``_sandbox_push``), so another node can recover
the sandbox from there with ``on_setup(recover=True)``. With the config's
``durable_commits`` (the default) execute and rollback answer only once that
push landed; otherwise it runs in the background.
The Vite restart loop lives in :mod:`studio.sandbox.vite_supervisor`; the
all-or-nothing file edits in :mod:`studio.sandbox.files`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.commands import (
    DeleteFile,
    ExecuteCommand,
    ExecuteResult,
    ListFiles,
    ReadFile,
    WriteFile,
    WriteFiles,
)
from studio.config import ComponentStudioConfig, StudioSettings
from studio.errors import (
    GitError,
    InvalidRequest,
    InvalidState,
    ServiceUnavailable,
    StudioError,
)
from studio.git import Commit, Mirror, Worktree, local_remote_path
from studio.install.cache import ensure_node_modules
from studio.layout import StateLayout
from studio.messages import (
    ClientComponentSelected,
    ComponentSelectedPayload,
    ErrorPayload,
    MessageType,
    RollbackPayload,
    SetupStep,
    parse_client_message,
)
from studio.metrics import NO_RECORDER, Recorder
from studio.models import (
    CommitInfo,
    FinalizeResult,
    MonitorReport,
    RepositorySource,
    RollbackResult,
    SandboxInfo,
    SetupCommandReport,
)
from studio.naming import branch_name
from studio.paths import resolve_inside
from studio.pr_images import PullRequestImages, image_files, screenshot_section, screenshots_ref
from studio.process import RestartPolicy
from studio.sandbox.disk import DiskQuota
from studio.sandbox.files import FileChange, commit_message, read_command
from studio.sandbox.lifecycle import SandboxLifecycle
from studio.sandbox.past import PastRenderer
from studio.sandbox.push import BranchPusher
from studio.sandbox.setup_command import set_up_worktree
from studio.sandbox.setup_outputs import SetupOutputs
from studio.sandbox.vite_supervisor import ViteOptions, ViteSupervisor, fetch_components
from studio.state import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    SandboxState,
    require_state,
)
from studio.vite import PAGE_EVENTS_PATH, PROXY_SECRET_HEADER, renderer_base, renderer_url
from studio.vite.standby import ViteStandby
from studio.vite.warm import WarmResult, warm_renderer

if TYPE_CHECKING:
    # studio.pr loads PyGithub (a large import): only a push to GitHub or a finalize needs it.
    from studio.pr import PullRequestProvider

__all__ = ["FLUSH_TIMEOUT", "ComponentStudioSandbox"]

logger = logging.getLogger(__name__)

S = SandboxState
# Where execute and rollback are allowed: Vite may be restarting, the files are there.
_WORKING = frozenset({S.RUNNING, S.RESTARTING})
_FINALIZABLE = frozenset({S.RUNNING, S.RESTARTING, S.FAILED})
# How long teardown and finalize wait for background pushes.
FLUSH_TIMEOUT = 60.0
_DEFAULT_BRANCH = ComponentStudioConfig.model_fields["branch"].default


def _utc(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, UTC)


def _commit_info(commit: Commit) -> CommitInfo:
    return CommitInfo(
        hash=commit.hash,
        message=commit.message,
        timestamp=commit.timestamp,
        is_base=commit.is_base,
    )


def _new_sizes(
    change: FileChange, command: WriteFile | WriteFiles | DeleteFile
) -> Iterator[tuple[Path, int]]:
    """Each file an edit touches and the bytes it will hold (0: deleted).

    A generator: without a disk quota nothing asks, and nothing is resolved twice.
    """
    if isinstance(command, DeleteFile):
        yield resolve_inside(change.root, command.file_path), 0
        return
    if isinstance(command, WriteFile):
        items = [(command.file_path, command.content)]
    else:
        items = [(item.file_path, item.content) for item in command.files]
    for path, content in items:
        yield change.check_write(path, content), len(content.encode("utf-8", "surrogatepass"))


class ComponentStudioSandbox(SandboxLifecycle):
    """A live sandbox: a worktree on ``design/studio-<id>`` and the Vite that renders it."""

    def __init__(
        self,
        sandbox_id: str,
        repository: RepositorySource,
        config: ComponentStudioConfig,
        settings: StudioSettings,
        *,
        owner: str = "",
        start_seq: int = 1,
        node: str | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        base_commit: str | None = None,
        viewer_token: str = "",
        node_address: str | None = None,
        vite_standby: ViteStandby | None = None,
        recorder: Recorder = NO_RECORDER,
        push_provider: Callable[[], PullRequestProvider | None] | None = None,
    ) -> None:
        super().__init__(sandbox_id, start_seq=start_seq, node=node, on_event=on_event)
        self.owner = owner
        self.recorder = recorder
        self.repository = repository
        self.config = config
        self.settings = settings
        self.layout = StateLayout(settings.state_dir)
        self.branch = branch_name(sandbox_id)
        self.last_activity = time.time()
        self.base_commit = base_commit
        # The secret the API's renderer proxy shows this sandbox's Vite (studio.viewer);
        # written into .studio/ only, never into anything Vite serves.
        self._viewer_token = viewer_token
        # This node's address, for the proxy on another node when Vite binds a wildcard.
        self._node_address = node_address
        self.pr_url: str | None = None
        self.pr_number: int | None = None
        # How the repository's setup command went at the last setup (None: it has none).
        self.setup_report: SetupCommandReport | None = None
        self._mirror: Mirror | None = None
        self._worktree: Worktree | None = None
        self._commits: list[CommitInfo] | None = None
        # Bumped whenever the branch moves: a history read meanwhile is not cached.
        self._branch_moves = 0
        # Taken before the lifecycle's state lock, never after it.
        self._mutation = threading.Lock()
        # The worktree's bytes against the quota, kept under the mutation lock.
        self.disk = DiskQuota(settings.sandbox_disk_quota_bytes)
        # A standby started ahead of need runs the first Vite, when it fits (studio.vite.standby).
        self.vite = ViteSupervisor(
            self._vite_options(), self, recorder=recorder, standby=vite_standby
        )
        # Past commits' pictures come from a worktree and a Vite beside the live ones.
        self.past = PastRenderer(
            self.vite.options,
            self.layout.past_worktree(sandbox_id),
            self.layout.pid_file(f"vite-{sandbox_id}-past"),
        )
        # Asked at each push of a forge's repository, for the credentials of that push
        # only: the service's token stays with the manager (docs/security.md).
        self._push_provider = push_provider
        self.pusher = BranchPusher(self._push_origin, name=f"push-{sandbox_id}")
        # A local origin is pushed in-process in a few ms: a durable edit's own
        # thread pushes it (no hand-off to the push thread and back). A network
        # push stays on the push thread, so that push_timeout bounds the wait.
        self._push_here = local_remote_path(repository.source) is not None

    def _vite_options(self) -> ViteOptions:
        config, settings = self.config, self.settings
        return ViteOptions(
            sandbox_id=self.sandbox_id,
            worktree=self.worktree_path,
            template_dir=settings.template_dir,
            install_cache=self.layout.install_cache,
            pid_file=self.layout.pid_file(f"vite-{self.sandbox_id}"),
            port_locks=self.layout.locks,
            host=settings.host,
            port_base=config.vite_port,
            port_count=settings.vite_port_count,
            ws_url=self.websocket_url(),
            base=self.renderer_base,
            proxy_secret=self._viewer_token or None,
            component_glob=config.component_glob,
            wrapper=config.wrapper_component,
            vite_deps_seed=settings.vite_deps_seed,
            prebuilt_shell=settings.prebuilt_shell,
            ready_timeout=config.ready_timeout,
            unhealthy_threshold=config.unhealthy_threshold,
            restart_policy=RestartPolicy(
                max_restarts=config.max_restarts,
                backoff=config.restart_backoff,
                backoff_max=config.restart_backoff_max,
                stable_start=config.stable_start,
            ),
            package_dir=config.package_dir,
            boundary=settings.boundary(),
            install_scripts=config.install_scripts,
            before_vite=self._run_setup_command if config.setup_command else None,
        )

    # -- what the layers read ------------------------------------------------

    @property
    def base_branch(self) -> str:
        """The source branch the sandbox starts from: the config's when set, else the repo's."""
        if self.config.branch != _DEFAULT_BRANCH:
            return self.config.branch
        return self.repository.default_branch

    @property
    def worktree_path(self) -> Path:
        """Where this node keeps the sandbox's worktree."""
        return self.layout.worktree(self.sandbox_id)

    @property
    def restarts(self) -> int:
        """Vite restarts so far (over the sandbox's life on this object)."""
        return self.vite.restarts

    @property
    def port(self) -> int | None:
        """Vite's port while it has one."""
        return self.vite.port

    @property
    def proxied(self) -> bool:
        """Whether the renderer is served through the API's proxy (the manager's sandboxes):
        Vite then runs under ``/r/<id>/`` and answers the proxy's secret only."""
        return bool(self._viewer_token)

    @property
    def renderer_base(self) -> str:
        """Vite's base: ``/r/<id>/`` behind the API's proxy, ``/`` otherwise."""
        return renderer_base(self.sandbox_id) if self.proxied else "/"

    @property
    def renderer_url(self) -> str | None:
        """``http://<public host>:<port><base>`` while the sandbox is live."""
        port = self.port
        if port is None or self.state not in ACTIVE_STATES:
            return None
        return renderer_url(
            self.settings.public_host or self.settings.host, port, self.renderer_base
        )

    @property
    def vite_url(self) -> str | None:
        """Where the API's renderer proxy reaches this Vite, ``http://<address>:<port><base>``.

        The address Vite listens on; this node's own when that is a wildcard.
        """
        port = self.port
        if port is None or self.state not in ACTIVE_STATES:
            return None
        host = self.settings.host
        if host in ("0.0.0.0", "::", ""):
            host = self._node_address or "127.0.0.1"
        return renderer_url(host, port, self.renderer_base)

    def websocket_url(self, api_port: int | None = None) -> str:
        """The studio page's event WebSocket.

        Behind the renderer proxy, a path beside the page (the page's cookie lets it
        in; no token is written anywhere); otherwise the API's, through its port.
        """
        if self.proxied:
            return f"{renderer_base(self.sandbox_id)}{PAGE_EVENTS_PATH}"
        host = self.settings.public_host or self.settings.host
        port = api_port or self.config.websocket_port
        return f"ws://{host}:{port}/api/v1/sandboxes/{self.sandbox_id}/ws"

    def touch(self) -> None:
        """Record activity now (API calls, WebSocket messages)."""
        self.last_activity = time.time()

    # -- setup ---------------------------------------------------------------

    def on_setup(self, *, recover: bool = False) -> SandboxInfo:
        """Mirror, worktree, studio app and Vite; ends RUNNING or raises (then FAILED).

        ``recover=True`` (an actor that restarted, maybe on another node): kill the
        Vite a previous incarnation left, reattach the worktree or recreate it from
        the branch on origin, and say ``recovered`` in the status event.
        """
        with self._mutation:
            with self._state_lock:
                if self.state not in (S.PENDING, S.FAILED):
                    raise InvalidState(
                        f"cannot set up: the sandbox is {self.state.value} (needs pending "
                        "or failed)",
                        state=self.state.value,
                    )
                recover = recover or self.state is S.FAILED
                self.transition(S.STARTING, recovered=recover or None)
            started = time.monotonic()
            try:
                if not recover:
                    self._start_bounded_standby()
                try:
                    self._prepare_worktree(recover)
                except BaseException:
                    # The standby's empty directory, left by a worktree never made: a
                    # recovery must not take it for one.
                    with contextlib.suppress(OSError):
                        self.worktree_path.rmdir()
                    raise
                self.vite.start(recover=recover)
            except StudioError as exc:
                self.fail(exc)
                raise
            except Exception as exc:
                self.fail(f"setup failed: {exc}")
                raise
            self.error = None
            self.touch()
            self.transition(S.RUNNING, recovered=recover or None)
        # create -> ready is observed by the manager, around the whole create.
        logger.info(
            "sandbox ready",
            extra={"sandbox": self.sandbox_id, "seconds": round(time.monotonic() - started, 3)},
        )
        return self.info()

    def _start_bounded_standby(self) -> None:
        """Inside the OS boundary: a Vite standby made for this sandbox's worktree.

        A standby a worker started ahead of need runs outside any boundary, so
        with one in force each sandbox starts its own, on the empty worktree
        directory, and Node imports Vite while git and the studio app are made
        (studio.vite.standby). Without a boundary, or with standbys off, nothing.
        """
        boundary = self.settings.boundary()
        if not (boundary.enforced and self.settings.vite_standby):
            return
        path = self.worktree_path
        try:
            modules = ensure_node_modules(self.settings.template_dir, self.layout.install_cache)
            path.mkdir(parents=True)  # empty: git worktree add fills it (seen inside)
            standby = ViteStandby.start(
                self.settings.template_dir, modules, boundary=boundary, worktree=path
            )
        except (OSError, StudioError) as exc:
            # A cold Vite start instead: slower, not wrong.
            logger.info("no vite standby in the boundary: %s", exc, extra=self.log_fields())
            return
        self.vite.offer_standby(standby)

    def _prepare_worktree(self, recover: bool) -> None:
        self.layout.worktrees.mkdir(parents=True, exist_ok=True)
        self.setup_step(SetupStep.MIRROR)
        mirror = Mirror.ensure(self.layout.mirror(self.repository.name), self.repository.source)
        self._mirror = mirror
        if recover:
            # The past-commit renderer a previous incarnation left (its Vite, its worktree).
            self.past.close(mirror)
        path = self.worktree_path
        inprocess = self.settings.inprocess_commits
        self.setup_step(SetupStep.WORKTREE)
        if recover:
            try:
                worktree = mirror.attach_worktree(
                    self.sandbox_id, path, self.base_commit, inprocess_commits=inprocess
                )
            except GitError as exc:
                if mirror.branch_exists(self.branch) or path.exists():
                    raise
                # The previous incarnation died before it made the branch: start afresh.
                logger.info("nothing to recover (%s); new worktree", exc, extra=self.log_fields())
                worktree = mirror.add_worktree(
                    self.sandbox_id, path, self.base_branch, inprocess_commits=inprocess
                )
        else:
            worktree = mirror.add_worktree(
                self.sandbox_id, path, self.base_branch, inprocess_commits=inprocess
            )
        self._worktree = worktree
        self.base_commit = worktree.base_commit
        self._branch_moved()
        self.disk.measure(worktree.path)

    def _run_setup_command(self) -> None:
        """The repository's setup command, between the studio app and Vite (setup's
        ``setup`` step); what it makes outside the repository's .gitignore is kept out
        of commits. Its failure is reported, and the sandbox goes on starting."""
        self.setup_step(SetupStep.SETUP)
        options = self.vite.options
        report = set_up_worktree(
            self.config.setup_command,
            worktree=self.worktree_path,
            app_root=options.app_root,
            package_dir=self.config.package_dir,
            install_scripts=self.config.install_scripts,
            boundary=options.boundary,
            timeout=self.config.setup_timeout,
            kept=SetupOutputs(self.layout.setup_outputs),
        )
        if report.outputs and self._mirror is not None:
            self._mirror.exclude(report.outputs)
        self.setup_report = report
        if report.status != "ok":
            how = (
                f"exited {report.exit_code}"
                if report.status == "failed" and report.exit_code is not None
                else "could not start"
                if report.status == "failed"
                else f"timed out after {self.config.setup_timeout:g} s"
            )
            message = (
                f"the repository's setup command ({shlex.join(report.command)}) {how}; the "
                "sandbox starts without what it makes (its stories show what is missing)"
            )
            logger.warning(message, extra=self.log_fields())
            self.publish(
                MessageType.ERROR,
                ErrorPayload(message=message, code="setup_command_failed", output=report.output),
            )

    # -- monitor -------------------------------------------------------------

    def on_monitor(self) -> MonitorReport:
        """Check Vite; restart it with backoff when unhealthy (FAILED past max_restarts).

        Also says whether the sandbox has been idle past ``timeout_hours`` (the
        caller tears it down then).
        """
        restarted = False
        healthy = False
        if self.state in (S.RUNNING, S.RESTARTING):
            healthy, restarted = self.vite.check_and_restart()
        self.past.close_if_idle()
        idle = max(time.time() - self.last_activity, 0.0)
        return MonitorReport(
            state=self.state,
            healthy=healthy,
            restarted=restarted,
            idle_seconds=idle,
            idle_expired=idle > self.config.timeout_hours * 3600,
            error=self.error,
        )

    # -- execute -------------------------------------------------------------

    def _working_tree(self, action: str) -> Worktree:
        require_state(self.state, _WORKING, action)
        worktree = self._worktree
        if worktree is None:
            raise InvalidState(f"cannot {action}: the sandbox has no worktree", state="no_worktree")
        return worktree

    def on_execute(self, command: ExecuteCommand) -> ExecuteResult:
        """Run a file command; writes and deletes are serialized and committed."""
        started = time.monotonic()
        try:
            if isinstance(command, ReadFile | ListFiles):
                return self._read(command)
            return self.edit(command)
        finally:
            self.recorder.execute_seconds(command.command, time.monotonic() - started)

    def edit(
        self,
        command: WriteFile | WriteFiles | DeleteFile,
        committed: Callable[[ExecuteResult], None] | None = None,
    ) -> ExecuteResult:
        """:meth:`commit_edit` then :meth:`settle_edit` in this thread.

        ``committed`` is called between the two with the commit's answer: the
        next edit may commit from then on (the actor releases its lock there)
        and a render verdict of this one may start while its push runs, so a
        thread hop back to the caller is not needed for either.
        """
        result, ticket = self.commit_edit(command)
        if committed is not None:
            committed(result)
        return self.settle_edit(result, ticket)

    def commit_edit(
        self, command: WriteFile | WriteFiles | DeleteFile
    ) -> tuple[ExecuteResult, int | None]:
        """The serialized half of an edit: write, commit, ask for a push.

        Returns the answer and, when the caller must wait for the push
        (``durable_commits``), its ticket for :meth:`settle_edit`. Waiting is
        left out of the mutation lock: the next edits commit while this push
        runs, and ride on the push after it (a group commit).
        """
        with self._mutation:
            return self._mutate(command)

    def settle_edit(self, result: ExecuteResult, ticket: int | None) -> ExecuteResult:
        """``result`` once its push landed (``pushed``), or said not to have in time."""
        if ticket is None:
            return result
        if self.pusher.wait(ticket, self.config.push_timeout, push_here=self._push_here):
            return result.model_copy(update={"pushed": True})
        error = self.pusher.last_error
        why = f": {error.message}" if error is not None else f" within {self.config.push_timeout}s"
        output = f"{result.output}; not on the origin yet{why} (kept on this node, retrying)"
        return result.model_copy(update={"pushed": False, "output": output})

    def _read(self, command: ReadFile | ListFiles) -> ExecuteResult:
        worktree = self._working_tree(command.command)
        self.touch()
        return read_command(worktree.path, command, self.settings.max_file_bytes)

    def _mutate(
        self, command: WriteFile | WriteFiles | DeleteFile
    ) -> tuple[ExecuteResult, int | None]:
        """Write, commit and ask for a push; the push's ticket when the caller waits for it."""
        worktree = self._working_tree(command.command)
        self.touch()
        change = FileChange(
            worktree.path, self.settings.max_file_bytes, self.config.editable_config_paths
        )
        counted = self.disk.used
        try:
            # Refused before a byte is written when it would pass the disk quota.
            after = self.disk.plan(worktree.path, _new_sizes(change, command))
            if isinstance(command, WriteFile):
                files = [change.write(command.file_path, command.content)]
            elif isinstance(command, WriteFiles):
                # Every path is checked before the first byte is written.
                for item in command.files:
                    change.check_write(item.file_path, item.content)
                files = [change.write(item.file_path, item.content) for item in command.files]
            else:
                files = [change.delete(command.file_path)]
            self.disk.settle(after)
            files = sorted(set(files))
            if not self.config.auto_commit:
                output = f"{command.command}: {', '.join(files)} (not committed)"
                return ExecuteResult(output=output), None
            message = commit_message(
                self.config.commit_pattern,
                action=command.command,
                files=files,
                description=command.description,
                sandbox_id=self.sandbox_id,
                now=datetime.now(UTC),
            )
            result = worktree.auto_commit(message, files)
        except BaseException:
            change.undo()
            self.disk.used = counted
            raise
        if not result.committed or result.hash is None:
            return ExecuteResult(output=f"{command.command}: {', '.join(files)} unchanged"), None
        self._branch_moved()
        self.publish(
            MessageType.COMMIT,
            {
                "hash": result.hash,
                "message": message,
                "files": list(result.files),
                "timestamp": datetime.now(UTC),
            },
        )
        ticket = self._request_push()
        answer = ExecuteResult(
            output=f"committed {', '.join(result.files)}", commit_hash=result.hash
        )
        return answer, ticket if self.config.durable_commits else None

    def _request_push(self) -> int:
        """Ask for a push of the branch; a durable caller waits for the ticket next."""
        durable = self.config.durable_commits
        return self.pusher.request(
            hurry=durable and not self._push_here, caller_pushes=durable and self._push_here
        )

    # -- rollback and history ------------------------------------------------

    def rollback(
        self, *, commit_hash: str | None = None, steps: int | None = None, undo: bool = False
    ) -> RollbackResult:
        """Move the branch back to ``commit_hash``, by ``steps``, or undo the last rollback."""
        chosen = sum([commit_hash is not None, steps is not None, undo])
        if chosen != 1:
            raise InvalidRequest("give exactly one of commit_hash, steps or undo=True")
        with self._mutation:
            worktree = self._working_tree("roll back")
            self.touch()
            previous = worktree.head()
            if undo:
                current = worktree.undo_rollback()
            elif steps is not None:
                current = worktree.rollback_steps(steps)
            else:
                current = worktree.rollback_to(str(commit_hash))
            self._branch_moved()
            # A rollback changes files wholesale: count them again (studio.sandbox.disk).
            self.disk.measure(worktree.path)
            self.publish(
                MessageType.ROLLBACK,
                RollbackPayload(current_hash=current, previous_hash=previous),
            )
            ticket = self._request_push()
        result = RollbackResult(success=True, current_hash=current, previous_hash=previous)
        if not self.config.durable_commits:
            return result
        pushed = self.pusher.wait(ticket, self.config.push_timeout, push_here=self._push_here)
        return result.model_copy(update={"pushed": pushed})

    def head(self) -> str:
        """The commit the worktree is at (what a screenshot shows)."""
        return self._working_tree("read the head").head()

    def resolve_commit(self, ref: str | None) -> tuple[str, bool]:
        """(full hash, whether it is HEAD) of ``ref``, one of the branch's commits back to
        its base (a hash or unique prefix); HEAD when ``ref`` is None or empty."""
        worktree = self._working_tree("render a commit")
        head = worktree.head()
        if not ref:
            return head, True
        commit = worktree.own_commit(ref)
        return commit, commit == head

    def show_past(self, commit: str) -> int:
        """The port of a renderer (under :attr:`renderer_base`) serving past ``commit`` (a
        full hash of the branch), the live sandbox untouched; :meth:`release_past` after."""
        self._working_tree("render a past commit")
        mirror = self._mirror
        if mirror is None:
            raise InvalidState("the sandbox has no mirror to read past commits from", state="none")
        self.touch()
        return self.past.show(mirror, commit)

    def release_past(self) -> None:
        """Done with the commit :meth:`show_past` served (its renderer may idle out)."""
        self.past.release()

    def changed_files(self, old: str, new: str) -> list[str]:
        """The files that differ between two of the branch's commits (what a rollback changed)."""
        return self._working_tree("compare commits").changed_files(old, new)

    def history(self, count: int = 50) -> list[CommitInfo]:
        """The branch's commits since its base, newest first, the base last (``is_base``)."""
        source = self._history_source()
        if source is None:
            return []
        return [_commit_info(c) for c in source.history(count)]

    def _history_source(self) -> Worktree | None:
        if self._worktree is not None and self._worktree.path.exists():
            return self._worktree
        mirror, base = self._mirror, self.base_commit
        if mirror is None or base is None or not mirror.branch_exists(self.branch):
            return None
        # Torn down: the branch still lives in the mirror, and git log works there.
        return Worktree(mirror, mirror.path, self.sandbox_id, base)

    def _branch_moved(self) -> None:
        with self._state_lock:
            self._branch_moves += 1
            self._commits = None

    def _commit_list(self) -> list[CommitInfo]:
        commits = self._commits
        if commits is None:
            moves = self._branch_moves
            commits = self.history()
            with self._state_lock:
                if moves == self._branch_moves:
                    self._commits = commits
        return commits

    # -- reads of the running app --------------------------------------------

    def components(self) -> dict[str, Any]:
        """The component catalog Vite's studio plugin serves (``/__studio/components.json``)."""
        require_state(self.state, _WORKING, "list components")
        port = self.port
        if port is None:
            raise ServiceUnavailable("Vite has no port yet; retry shortly")
        return fetch_components(
            self.settings.host,
            port,
            base=self.renderer_base,
            proxy_secret=self._viewer_token or None,
        )

    def warm_renderer(self) -> WarmResult:
        """Have Vite transform the page's module graph now (studio.vite.warm): for a
        sandbox set up ahead of need, so that its first user's page load finds it done."""
        require_state(self.state, _WORKING, "warm the renderer")
        port = self.port
        if port is None:
            raise ServiceUnavailable("Vite has no port yet; retry shortly")
        return warm_renderer(
            renderer_url(self.settings.host, port, self.renderer_base),
            headers=self.proxy_headers(),
        )

    def proxy_headers(self) -> dict[str, str]:
        """What a request to this sandbox's Vite carries to pass its proxy guard
        (studio-template/plugin/proxy-guard.mjs): the node's own clients (the browser of
        the render verdicts, the warm-up) stand in for the API's proxy."""
        secret = self._viewer_token
        return {PROXY_SECRET_HEADER: secret} if secret else {}

    def logs(self, lines: int = 200) -> list[str]:
        """Vite's last ``lines`` lines of output, newest last."""
        return self.vite.output(lines)

    def publish_client_message(self, message: dict[str, Any], client_id: str) -> None:
        """A studio page's ``component-selected``, rebroadcast with the sender's id."""
        parsed = parse_client_message(json.dumps(message))
        self.touch()
        if isinstance(parsed, ClientComponentSelected):
            payload = ComponentSelectedPayload(
                component=parsed.payload.component,
                story=parsed.payload.story,
                client_id=client_id[:128] or None,
            )
            self.publish(MessageType.COMPONENT_SELECTED, payload)

    # -- durability ----------------------------------------------------------

    def _forge_provider(self) -> PullRequestProvider | None:
        """Who holds the credentials of a push to the repository's forge; None: push to origin."""
        if not (self.repository.github and "://" in self.repository.source):
            return None
        if self._push_provider is not None:
            return self._push_provider()
        if self.settings.github_token:
            # A sandbox run without the manager (tests, one process): its own settings.
            from studio.pr import GitHubProvider

            return GitHubProvider.from_settings(self.settings)
        return None

    def _push_origin(self) -> None:
        worktree = self._worktree
        if worktree is None or not worktree.path.exists():
            return
        provider = self._forge_provider()
        if provider is None:
            worktree.push("origin", force=True)
            return
        source = self.repository.source
        # The token travels in git's environment, never on its command line.
        worktree.push(provider.push_url(source), force=True, env=provider.push_environment(source))

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> bool:
        """Wait up to ``timeout`` s for background pushes; whether all of them ran."""
        return self.pusher.flush(timeout)

    # -- the end -------------------------------------------------------------

    def finalize(
        self,
        title: str,
        description: str,
        provider: PullRequestProvider | None,
        images: PullRequestImages | None = None,
    ) -> FinalizeResult:
        """Push the branch, open a pull request, tear down (FINALIZED).

        ``images`` (taken by the caller while Vite still ran): their pictures
        go into an orphan commit pushed with the branch, in the same push, to
        ``refs/heads/studio-screenshots/<id>``, and the body shows them. A
        picture that cannot be stored or pushed never stops the pull request:
        the body says so. A push of the branch or a pull request failure
        leaves the sandbox as it was and raises
        (:class:`~studio.errors.PullRequestError` from the forge).
        """
        from studio.pr import GITHUB_BODY_LIMIT, LocalProvider, build_pr_body

        provider = provider or LocalProvider()
        with self._mutation:
            require_state(self.state, _FINALIZABLE, "finalize")
            worktree = self._worktree
            if worktree is None:
                raise InvalidState("cannot finalize: the sandbox has no worktree", state="none")
            self.pusher.flush(FLUSH_TIMEOUT)
            pictures, problem = self._pictures_commit(worktree, images)
            pictures, problem = self._push_for_pull_request(worktree, provider, pictures, problem)
            target = self.repository.github or self.repository.source
            commits = [c for c in worktree.history(10_000) if not c.is_base]
            section = ""
            if images is not None:
                source = self.repository.source
                section = screenshot_section(
                    images,
                    ref=screenshots_ref(self.sandbox_id),
                    commit=pictures,
                    link=lambda path: provider.image_url(source, str(pictures), path),
                    hosting_problem=problem,
                    # Half the body at most: the description and the commits keep the rest.
                    budget=GITHUB_BODY_LIMIT // 2,
                )
            body = build_pr_body(
                description,
                list(reversed(commits)),
                sandbox_id=self.sandbox_id,
                section=section,
            )
            pr = provider.open_pull_request(
                target, head=self.branch, base=self.base_branch, title=title, body=body
            )
            self.pr_url, self.pr_number = pr.url, pr.number
            self._teardown_locked(S.FINALIZED)
        return FinalizeResult(
            pr_url=pr.url,
            pr_number=pr.number,
            branch=self.branch,
            pushed_to=provider.redact(pr.pushed_to),
            message=pr.message,
            commits=len(commits),
            screenshots_ref=screenshots_ref(self.sandbox_id) if pictures else None,
            screenshots_commit=pictures,
        )

    def _pictures_commit(
        self, worktree: Worktree, images: PullRequestImages | None
    ) -> tuple[str | None, str | None]:
        """The orphan commit of the pictures taken (None without any), or why it is not made."""
        files = image_files(images) if images is not None else {}
        if not files:
            return None, None
        try:
            commit = worktree.orphan_commit(
                files, f"Component Studio screenshots of {self.branch}\n\nNot for merging."
            )
        except Exception as exc:  # libgit2 errors are GitError, OSError, ValueError
            logger.warning("screenshots not stored: %s", exc, extra=self.log_fields())
            return None, f"storing them in git failed: {exc}"
        return commit, None

    def _push_for_pull_request(
        self,
        worktree: Worktree,
        provider: PullRequestProvider,
        pictures: str | None,
        problem: str | None,
    ) -> tuple[str | None, str | None]:
        """Push the branch, and the pictures' commit with it in one push when there is one.

        A refused pictures ref (a protection rule, a hook) costs the pictures only:
        the branch is pushed again alone and the body says why.
        """
        source = self.repository.source
        url, env = provider.push_url(source), provider.push_environment(source)
        if pictures is None:
            worktree.push(url, force=True, env=env)
            return None, problem
        try:
            worktree.push(
                url, force=True, env=env, also=[f"+{pictures}:{screenshots_ref(self.sandbox_id)}"]
            )
        except GitError as exc:
            said = provider.redact(str(exc))
            logger.warning("screenshots push refused: %s", said, extra=self.log_fields())
            worktree.push(url, force=True, env=env)
            return None, f"the push of their ref was refused: {said}"
        return pictures, None

    def on_teardown(self, *, final_state: SandboxState = S.STOPPED) -> SandboxInfo:
        """Stop Vite, remove ``.studio/`` and the worktree, release the port; idempotent.

        The branch and every commit stay, in the mirror and (pushed) on origin.
        """
        if final_state not in TERMINAL_STATES:
            raise InvalidState(
                f"a teardown ends stopped or finalized, not {final_state.value}",
                state=self.state.value,
            )
        with self._mutation:
            if self.state not in TERMINAL_STATES:
                self._teardown_locked(final_state)
        return self.info()

    def _teardown_locked(self, final_state: SandboxState) -> None:
        with self._state_lock:
            if self.state is not S.STOPPING:
                self.transition(S.STOPPING)
        if not self.pusher.close(FLUSH_TIMEOUT):
            logger.warning("pushes still pending at teardown", extra=self.log_fields())
        self.vite.close()
        path = self.worktree_path
        past = self.past.path.exists()
        # A setup that failed before its worktree (or its mirror) leaves nothing to remove.
        mirror = self._mirror or (self._existing_mirror() if path.exists() or past else None)
        # Its past commits' renderer (or what a crashed incarnation left of one) too.
        self.past.close(mirror, end=True)
        if mirror is not None:
            mirror.remove_worktree(path)
        elif path.exists():
            logger.warning("no mirror for the worktree; left in place", extra=self.log_fields())
        self.transition(final_state)

    def _existing_mirror(self) -> Mirror | None:
        path = self.layout.mirror(self.repository.name)
        if not path.exists():
            return None
        mirror = Mirror(path, self.repository.source)
        self._mirror = mirror
        return mirror

    def info(self) -> SandboxInfo:
        """The sandbox as the API shows it."""
        commits: list[CommitInfo] = []
        with contextlib.suppress(StudioError):
            commits = self._commit_list()
        return SandboxInfo(
            id=self.sandbox_id,
            owner=self.owner,
            status=self.state,
            renderer_url=self.renderer_url,
            branch=self.branch,
            base_commit=self.base_commit,
            git_commits=commits,
            last_activity=_utc(self.last_activity),
            restarts=self.restarts,
            node=self.node,
            port=self.port if self.state in ACTIVE_STATES else None,
            error=self.error,
            last_seq=self.events.last_seq,
            pr_url=self.pr_url,
            pr_number=self.pr_number,
            setup=self.setup_report,
        )
