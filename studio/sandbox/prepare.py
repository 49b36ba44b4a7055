"""A node prepared ahead of its sandboxes: what the first one would otherwise make on its create.

What a sandbox starts from is made once per node and kept there: the
template's install-cache entry (``npm ci``), each repository's mirror and own
install, the prebuilt shell (:mod:`studio.vite.shell`) and the seed of Vite's
pre-bundled dependencies (:mod:`studio.vite.deps`). Left to the sandboxes,
the node's first create pays for it, and sandboxes created together before
any of it exists each optimise their own dependencies, so a benchmark's
figures would depend on what ran before it. The manager has each node do it
ahead (:mod:`actors._node_prep`): the template part when the service starts
on the node, a repository's when the repository is registered.

A repository is prepared in a scratch worktree of its base branch (on a
throwaway branch, deleted afterwards, under ``<state dir>/prepare/``): the
studio app is generated there as a sandbox's is (which installs, links and
builds the shell), and, unless the seed exists already, Vite runs there until
it has published the seed. Everything is made under the same locks a sandbox
takes, so a create meanwhile waits for the piece it needs or makes it itself.
Nothing of the scratch worktree is left behind: neither its directory, nor
its branch, nor its Vite.

The steps (:class:`~studio.messages.PrepareStep`: mirror, install, setup
when the repository has a setup command, deps, stories) are announced as
they begin: :func:`prepare_repository_steps` yields each, so that the
node's preparation task can report them while it runs
(:mod:`actors._node_prep`) and a create waiting for it can show them. The
last step reads the repository's story index with the studio plugin's own
catalog code (``plugin/discover.mjs``): how many stories its page will list.
Its process starts before the deps step and runs beside Vite's pre-bundle;
the step waits for what is left of it.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from studio.config import ComponentStudioConfig, StudioSettings
from studio.errors import InvalidConfig, ProcessStartError, ViteStartError
from studio.git import Mirror, file_lock
from studio.install.cache import ensure_node_modules
from studio.layout import StateLayout
from studio.messages import PrepareStep
from studio.models import RepositorySource
from studio.naming import branch_name, new_sandbox_id
from studio.ports import PortAllocator, ports_below_ray
from studio.process.boundary import Boundary, bwrap_problem
from studio.process.environment import tool_environment
from studio.sandbox.setup_command import set_up_worktree
from studio.sandbox.setup_outputs import SetupOutputs
from studio.vite import ViteServer, cleanup_studio_app, generate_studio_app, read_studio_config

__all__ = [
    "SEED_TIMEOUT",
    "Prepared",
    "prepare_repository",
    "prepare_repository_steps",
    "prepare_template",
]

logger = logging.getLogger(__name__)

# How long a preparation's Vite may take to publish the seed once it is ready.
SEED_TIMEOUT = 60.0
_SEED_POLL = 0.1
# Reading the story index is a static parse of the repository's files: seconds at most.
_INDEX_TIMEOUT = 120.0
# The catalog the page lists, made by the plugin's own code from the studio config
# (the stories a repository's .storybook/main adds elsewhere are its Vite's to find).
_INDEX_SCRIPT = """
import { loadStudioConfig } from './plugin/studio-config.mjs';
import { createCatalog } from './plugin/discover.mjs';
const catalog = createCatalog(loadStudioConfig(process.cwd())).build();
const components = catalog.components ?? [];
const stories = components.reduce((n, c) => n + (c.stories ?? []).length, 0);
process.stdout.write(JSON.stringify({ components: components.length, stories }));
"""


@dataclass(frozen=True)
class Prepared:
    """What a repository's preparation found: the stories its story index lists."""

    stories: int | None = None


def prepare_template(settings: StudioSettings) -> Path:
    """The template's install-cache ``node_modules`` on this node, installed if missing.

    Raises :class:`InvalidConfig` first when the node cannot make the OS
    boundary its settings ask for: no sandbox could start Vite on it.
    """
    boundary = settings.boundary()
    problem = bwrap_problem(boundary.program) if boundary.enforced else None
    if problem is not None:
        raise InvalidConfig(
            f"isolation={boundary.isolation.value} on this node, but {problem}; install "
            "bubblewrap (scripts/setup.sh), or set COMPONENT_STUDIO_ISOLATION=none to run "
            "repository code without a boundary (docs/security.md)"
        )
    layout = StateLayout(settings.state_dir)
    return ensure_node_modules(settings.template_dir, layout.install_cache)


def prepare_repository(
    settings: StudioSettings,
    repository: RepositorySource,
    config: ComponentStudioConfig,
    *,
    seed_timeout: float = SEED_TIMEOUT,
) -> Prepared:
    """Mirror, install, shell, deps seed and story index of ``repository`` on this node.

    :func:`prepare_repository_steps` run to its end, without watching the steps.
    """
    steps = prepare_repository_steps(settings, repository, config, seed_timeout=seed_timeout)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            prepared: Prepared = done.value
            return prepared


def prepare_repository_steps(
    settings: StudioSettings,
    repository: RepositorySource,
    config: ComponentStudioConfig,
    *,
    seed_timeout: float = SEED_TIMEOUT,
) -> Generator[PrepareStep, None, Prepared]:
    """Prepare ``repository`` on this node as its sandboxes use it, yielding each step as it begins.

    ``repository.default_branch`` is the base its sandboxes start from, and
    ``config`` their effective config (its component glob decides what Vite
    optimises). Raises the :class:`~studio.errors.StudioError` of the step
    that failed (the last one yielded); its sandboxes would meet the same
    error at their setup. Closing the generator early removes what it had
    started, as an error does.
    """
    layout = StateLayout(settings.state_dir)
    yield PrepareStep.MIRROR
    mirror = Mirror.ensure(layout.mirror(repository.name), repository.source)
    # One preparation at a time on a node: a scratch worktree found here is a crashed one's.
    with file_lock(layout.locks / "prepare.lock"):
        _remove_stale(layout.prepare)
        scratch_id = new_sandbox_id()
        directory = layout.prepare / scratch_id
        mirror.add_worktree(scratch_id, directory, repository.default_branch)
        try:
            prepared = yield from _prepare_studio_app(
                settings, layout, directory, scratch_id, config, seed_timeout
            )
        finally:
            cleanup_studio_app(directory / config.package_dir)
            mirror.remove_worktree(directory)
            mirror.delete_branch(branch_name(scratch_id))
    logger.info(
        "repository prepared",
        extra={"repository": repository.name, "stories": prepared.stories},
    )
    return prepared


def _remove_stale(prepare_dir: Path) -> None:
    if prepare_dir.is_dir():
        for stale in prepare_dir.iterdir():
            logger.warning("removing a stale preparation worktree", extra={"path": str(stale)})
            shutil.rmtree(stale, ignore_errors=True)


def _prepare_studio_app(
    settings: StudioSettings,
    layout: StateLayout,
    worktree: Path,
    scratch_id: str,
    config: ComponentStudioConfig,
    seed_timeout: float,
) -> Generator[PrepareStep, None, Prepared]:
    base = config.vite_port
    ports = PortAllocator(
        layout.locks,
        host=settings.host,
        base=base,
        count=max(1, ports_below_ray(base, settings.vite_port_count)),
    )
    port = ports.allocate(scratch_id)
    try:
        yield PrepareStep.INSTALL
        studio_dir = generate_studio_app(
            worktree,
            template_dir=settings.template_dir,
            cache_root=layout.install_cache,
            port=port,
            host=settings.host,
            sandbox_id=scratch_id,
            component_glob=config.component_glob,
            wrapper=config.wrapper_component,
            share_deps=settings.vite_deps_seed,
            prebuilt_shell=settings.prebuilt_shell,
            package_dir=config.package_dir,
            install_scripts=config.install_scripts,
        )
        if config.setup_command:
            # Before the deps step: Vite's scan then sees the files the stories import.
            yield PrepareStep.SETUP
            _run_setup(settings, layout, worktree, studio_dir.parent, config)
        # The story index is read beside Vite's pre-bundle, not after it: one node
        # process loading the repository's .storybook/main while the pre-bundle's
        # rolldown threads and Vite's start take the other core (docs/performance.md,
        # the corpus runs of 2026-12-07).
        with _StoryCount(studio_dir, worktree, settings.boundary()) as count:
            seed = read_studio_config(studio_dir).get("depsSeedDir")
            if isinstance(seed, str) and not Path(seed).is_dir():
                yield PrepareStep.DEPS
                server = ViteServer(
                    studio_dir.parent,
                    ports=ports,
                    pid_file=layout.pid_file(f"prepare-{scratch_id}"),
                    boundary=settings.boundary(),
                )
                try:
                    server.start(timeout=config.ready_timeout)
                    _wait_for_seed(server, Path(seed), seed_timeout)
                finally:
                    server.close()
            yield PrepareStep.STORIES
            return Prepared(stories=count.result())
    finally:
        ports.release_owner(scratch_id)


def _run_setup(
    settings: StudioSettings,
    layout: StateLayout,
    worktree: Path,
    app_root: Path,
    config: ComponentStudioConfig,
) -> None:
    """The repository's setup command, its outputs kept for the node's sandboxes
    (:mod:`studio.sandbox.setup_outputs`). A failure fails no preparation: each
    sandbox runs the command again and reports it on its own record."""
    report = set_up_worktree(
        config.setup_command,
        worktree=worktree,
        app_root=app_root,
        package_dir=config.package_dir,
        install_scripts=config.install_scripts,
        boundary=settings.boundary(),
        timeout=config.setup_timeout,
        kept=SetupOutputs(layout.setup_outputs),
    )
    logger.info(
        "setup command in the preparation",
        extra={"status": report.status, "seconds": report.seconds, "reused": report.reused},
    )


class _StoryCount:
    """How many stories the studio page of ``studio_dir`` lists (its plugin's catalog),
    read by a node process started on entry and waited for by :meth:`result`; a
    process not waited for is killed on exit."""

    def __init__(
        self, studio_dir: Path, worktree: Path, boundary: Boundary, node: str = "node"
    ) -> None:
        try:
            self._proc = subprocess.Popen(
                # It loads the repository's .storybook/main: repository code, as Vite is,
                # so inside the same boundary, with its worktree read-only.
                boundary.wrap(
                    [node, "--input-type=module", "-e", _INDEX_SCRIPT],
                    cwd=studio_dir,
                    readable=[worktree],
                ),
                cwd=studio_dir,
                env=tool_environment(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        except OSError as exc:
            raise ProcessStartError(f"reading the story index failed: {exc}", output=[]) from exc

    def __enter__(self) -> _StoryCount:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.communicate()

    def result(self) -> int:
        try:
            stdout, stderr = self._proc.communicate(timeout=_INDEX_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise ProcessStartError(f"reading the story index failed: {exc}", output=[]) from exc
        if self._proc.returncode != 0:
            raise ProcessStartError(
                f"reading the story index failed (node exited {self._proc.returncode})",
                output=(stdout + stderr).splitlines()[-50:],
            )
        return int(json.loads(stdout)["stories"])


def _wait_for_seed(server: ViteServer, seed: Path, timeout: float) -> None:
    """Until Vite has optimised the dependencies and published them as ``seed``."""
    # Vite optimises the dependencies its config names at startup, without a request.
    deadline = time.monotonic() + timeout
    while not seed.is_dir():
        if server.wait_exit(0) is not None:
            raise ViteStartError(
                f"Vite exited before it published the deps seed {seed}",
                output=server.output(50),
            )
        if time.monotonic() > deadline:
            raise ViteStartError(
                f"Vite did not publish the deps seed {seed} within {timeout:g} s",
                output=server.output(50),
            )
        time.sleep(_SEED_POLL)
