"""A sandbox's past commits rendered beside it: a detached worktree with a Vite of its own.

A screenshot of a past commit must come from that commit's files without
touching the live sandbox (the designer keeps editing it). So each sandbox
may have one more worktree, detached at the commit asked for, outside the
sandbox worktrees' directory, with its own Vite started the way the
sandbox's is (studio app from the template, the repository's node_modules
hard-linked from the node's install cache, the same OS boundary, base and
proxy secret), on a port of the node's Vite range reserved under
``<sandbox id>.past``.

Cheapest first: the first past commit pays a worktree and a Vite start; the
next one moves the same worktree to its commit (``git checkout --detach``)
and waits until that Vite's watcher reported the changed files (the verdict
endpoint's ``since`` wait, studio-template/plugin/verdict.mjs), so no Vite
starts again. Only a change of what Vite or the install is made from
(package manifests, lockfiles, Vite or Storybook configuration) starts the
renderer afresh. Idle for ``idle_seconds`` (the sandbox's monitor pass asks)
or at the sandbox's end, it is stopped and its worktree removed.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urljoin

import httpx

from studio.errors import InvalidState, ServiceUnavailable, StudioError
from studio.git import DEFAULT_IDENTITY, GitRunner, Mirror, identity_env
from studio.ports import PortAllocator, ports_below_ray
from studio.process import reap_orphans
from studio.sandbox.vite_supervisor import ViteOptions
from studio.vite import PROXY_SECRET_HEADER, ViteServer

__all__ = ["IDLE_SECONDS", "PastRenderer", "needs_fresh_start"]

logger = logging.getLogger(__name__)

# A past-commit renderer nobody used for this long is stopped (its worktree removed).
IDLE_SECONDS = 300.0
# How long the move to another commit waits for Vite's watcher to report the files.
_WATCH_TIMEOUT = 10.0
# Files whose change Vite or the install must start from: a fresh renderer, not a move.
_FRESH_NAMES = frozenset(
    {
        "package.json",
        "package-lock.json",
        "npm-shrinkwrap.json",
        "pnpm-lock.yaml",
        "pnpm-workspace.yaml",
        "yarn.lock",
        ".npmrc",
        ".yarnrc.yml",
    }
)
_FRESH_PREFIXES = ("vite.config.", "postcss.config.", "tailwind.config.", "tsconfig")


def needs_fresh_start(files: list[str]) -> bool:
    """Whether moving between two commits that differ in ``files`` needs a fresh renderer."""
    for name in files:
        path = PurePosixPath(name)
        if path.name in _FRESH_NAMES or path.name.startswith(_FRESH_PREFIXES):
            return True
        if ".storybook" in path.parts and path.stem in ("main", "preview-head"):
            return True
    return False


class PastRenderer:
    """The renderer of one sandbox's past commits (see the module docstring)."""

    def __init__(
        self,
        options: ViteOptions,
        path: Path,
        pid_file: Path,
        *,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.options = options
        self.path = path
        self.pid_file = pid_file
        self.idle_seconds = idle_seconds
        self.owner = f"{options.sandbox_id}.past"
        self.server: ViteServer | None = None
        self.commit: str | None = None
        self.starts = 0
        self.moves = 0
        self._mirror: Mirror | None = None
        self._lock = threading.Lock()
        self._used = time.monotonic()
        self._leases = 0
        # Set at the sandbox's end: a picture asked for meanwhile starts nothing after it.
        self._ended = False

    @property
    def app_root(self) -> Path:
        package_dir = self.options.package_dir
        return self.path / package_dir if package_dir else self.path

    def headers(self) -> dict[str, str]:
        secret = self.options.proxy_secret
        return {PROXY_SECRET_HEADER: secret} if secret else {}

    def show(self, mirror: Mirror, commit: str) -> int:
        """The renderer's port once it serves ``commit`` (a full hash of the sandbox's
        branch); leased until :meth:`release` (an idle check leaves it running)."""
        with self._lock:
            if self._ended:
                raise InvalidState(
                    f"sandbox {self.options.sandbox_id} ended: no past commits to render",
                    state="ended",
                )
            self._mirror = mirror
            self._leases += 1
            try:
                if self.server is not None and self.server.wait_exit(0) is not None:
                    # Its Vite died (nothing restarts it): a fresh start below.
                    logger.warning(
                        "past renderer's Vite exited; starting it again",
                        extra={"sandbox_id": self.options.sandbox_id},
                    )
                    self._stop()
                if self.server is not None and self.commit != commit:
                    self._move(commit)
                if self.server is None:
                    self._start(mirror, commit)
            except BaseException:
                self._leases -= 1
                raise
            self._used = time.monotonic()
            server = self.server
            assert server is not None
            return server.port

    def release(self) -> None:
        """The caller is done with the commit :meth:`show` served."""
        with self._lock:
            self._leases = max(0, self._leases - 1)
            self._used = time.monotonic()

    def close_if_idle(self) -> bool:
        """Stop the renderer when unleased and idle for ``idle_seconds``; whether it did."""
        with self._lock:
            idle = time.monotonic() - self._used > self.idle_seconds
            if self.server is None or self._leases or not idle:
                return False
            self._stop()
            return True

    def close(self, mirror: Mirror | None = None, *, end: bool = False) -> None:
        """Stop Vite, release its port, remove the worktree (also what a previous
        incarnation of the sandbox's actor left: ``mirror`` is the sandbox's); with
        ``end`` (the sandbox's end) no later :meth:`show` starts it again."""
        with self._lock:
            self._ended = self._ended or end
            self._mirror = self._mirror or mirror
            self._stop()

    # -- under the lock -------------------------------------------------------

    def _ports(self) -> PortAllocator:
        """The node's Vite port range, as the sandbox's own Vite takes from it."""
        options = self.options
        count = ports_below_ray(options.port_base, options.port_count)
        return PortAllocator(
            options.port_locks, host=options.host, base=options.port_base, count=count
        )

    def _git(self, mirror_path: Path) -> GitRunner:
        env = identity_env(DEFAULT_IDENTITY)
        # Without a ceiling, a worktree missing its .git would resolve to a repository above.
        env["GIT_CEILING_DIRECTORIES"] = str(self.path.parent)
        return GitRunner(self.path, (self.path, mirror_path), env)

    def _move(self, commit: str) -> None:
        """Check the running renderer's worktree out at ``commit``; Vite follows it."""
        server, previous = self.server, self.commit
        assert server is not None and previous is not None
        assert self._mirror is not None
        git = self._git(self._mirror.path)
        out = git.run("diff", "--name-only", "--no-renames", "-z", previous, commit)
        files = [name for name in out.split("\0") if name]
        if needs_fresh_start(files):
            logger.info(
                "past renderer restarts: its setup files differ",
                extra={"sandbox_id": self.options.sandbox_id, "commit": commit},
            )
            self._stop()
            return
        since = time.time()
        try:
            git.run("checkout", "--quiet", "--detach", "--force", commit)
            # Untracked files of the previous commit go; ignored ones (.studio/,
            # node_modules/) stay.
            git.run("clean", "-d", "--force", "--quiet")
            self.commit = commit
            self._wait_for_watcher(server.url, files, since)
        except BaseException:
            # Half moved, or Vite not known to have seen the files: never drawn from.
            self._stop()
            raise
        self.moves += 1

    def _wait_for_watcher(self, url: str, files: list[str], since: float) -> None:
        """Until Vite's watcher reported ``files`` changed after ``since``: a page loaded
        sooner would get the previous commit's modules from Vite's caches."""
        prefix = self.options.package_dir.rstrip("/") + "/" if self.options.package_dir else ""
        inside = [f[len(prefix) :] for f in files if f.startswith(prefix)]
        query = "&".join([*(f"file={quote(f)}" for f in inside), f"since={int(since * 1000)}"])
        try:
            response = httpx.get(
                urljoin(url, f"__studio/verdict?{query}"),
                headers=self.headers(),
                timeout=_WATCH_TIMEOUT,
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"the past-commit renderer's Vite did not answer ({exc}); retry shortly"
            ) from exc

    def _start(self, mirror: Mirror, commit: str) -> None:
        options = self.options
        started = time.monotonic()
        self._remove_leftovers(mirror)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mirror.add_detached_worktree(self.path, commit)
        ports = self._ports()
        port = ports.allocate(self.owner)
        try:
            options.make_studio_app(self.path, port, ws_url=None, owner=self.owner)
            server = ViteServer(
                self.app_root,
                ports=ports,
                pid_file=self.pid_file,
                boundary=options.boundary,
            )
            server.start(timeout=options.ready_timeout)
        except BaseException:
            ports.release_owner(self.owner)
            reap_orphans(self.pid_file)
            mirror.remove_worktree(self.path)
            raise
        self.server, self.commit = server, commit
        self.starts += 1
        logger.info(
            "past renderer started",
            extra={
                "sandbox_id": options.sandbox_id,
                "commit": commit,
                "port": server.port,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    def _remove_leftovers(self, mirror: Mirror) -> None:
        """What an earlier renderer (maybe of a crashed incarnation) left: Vite, worktree."""
        reap_orphans(self.pid_file)
        if self.path.exists():
            mirror.remove_worktree(self.path)
            shutil.rmtree(self.path, ignore_errors=True)

    def _stop(self) -> None:
        server, self.server, self.commit = self.server, None, None
        if server is not None:
            server.close()
        else:
            reap_orphans(self.pid_file)
        # Ports a crashed incarnation reserved under the same owner, too.
        self._ports().release_owner(self.owner)
        if self.path.exists():
            if self._mirror is not None:
                try:
                    self._mirror.remove_worktree(self.path)
                except StudioError as exc:
                    logger.warning("past worktree not removed by git: %s", exc)
            shutil.rmtree(self.path, ignore_errors=True)
        if self._mirror is not None:
            # The entry of a directory removed by hand above.
            with contextlib.suppress(StudioError):
                self._mirror.prune()
