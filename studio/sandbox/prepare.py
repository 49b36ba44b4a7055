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
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from studio.config import ComponentStudioConfig, StudioSettings
from studio.errors import ViteStartError
from studio.git import Mirror, file_lock
from studio.install.cache import ensure_node_modules
from studio.layout import StateLayout
from studio.models import RepositorySource
from studio.naming import branch_name, new_sandbox_id
from studio.ports import PortAllocator, ports_below_ray
from studio.vite import ViteServer, cleanup_studio_app, generate_studio_app, read_studio_config

__all__ = ["SEED_TIMEOUT", "prepare_repository", "prepare_template"]

logger = logging.getLogger(__name__)

# How long a preparation's Vite may take to publish the seed once it is ready.
SEED_TIMEOUT = 60.0
_SEED_POLL = 0.1


def prepare_template(settings: StudioSettings) -> Path:
    """The template's install-cache ``node_modules`` on this node, installed if missing."""
    layout = StateLayout(settings.state_dir)
    return ensure_node_modules(settings.template_dir, layout.install_cache)


def prepare_repository(
    settings: StudioSettings,
    repository: RepositorySource,
    config: ComponentStudioConfig,
    *,
    seed_timeout: float = SEED_TIMEOUT,
) -> None:
    """Mirror, install, shell and deps seed of ``repository`` on this node, as its sandboxes use.

    ``repository.default_branch`` is the base its sandboxes start from, and
    ``config`` their effective config (its component glob decides what Vite
    optimises). Raises the :class:`~studio.errors.StudioError` of the step
    that failed; its sandboxes then meet the same error at their setup.
    """
    layout = StateLayout(settings.state_dir)
    mirror = Mirror.ensure(layout.mirror(repository.name), repository.source)
    # One preparation at a time on a node: a scratch worktree found here is a crashed one's.
    with file_lock(layout.locks / "prepare.lock"):
        _remove_stale(layout.prepare)
        scratch_id = new_sandbox_id()
        directory = layout.prepare / scratch_id
        mirror.add_worktree(scratch_id, directory, repository.default_branch)
        try:
            _prepare_studio_app(settings, layout, directory, scratch_id, config, seed_timeout)
        finally:
            cleanup_studio_app(directory / config.package_dir)
            mirror.remove_worktree(directory)
            mirror.delete_branch(branch_name(scratch_id))
    logger.info("repository prepared", extra={"repository": repository.name})


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
) -> None:
    base = config.vite_port
    ports = PortAllocator(
        layout.locks,
        host=settings.host,
        base=base,
        count=max(1, ports_below_ray(base, settings.vite_port_count)),
    )
    port = ports.allocate(scratch_id)
    try:
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
        seed = read_studio_config(studio_dir).get("depsSeedDir")
        if not isinstance(seed, str) or Path(seed).is_dir():
            return
        server = ViteServer(
            studio_dir.parent,
            ports=ports,
            pid_file=layout.pid_file(f"prepare-{scratch_id}"),
        )
        try:
            server.start(timeout=config.ready_timeout)
            _wait_for_seed(server, Path(seed), seed_timeout)
        finally:
            server.close()
    finally:
        ports.release_owner(scratch_id)


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
