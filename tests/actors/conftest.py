"""Fixtures of the actor tests on real Ray: a manager per test, and nothing left after it.

Every test that uses :func:`studio` gets its own state dir (the session's
install cache linked in, so npm ci runs once), a fresh manager actor and a
repository made from examples/ui-kit. Afterwards every sandbox is torn down
through the manager, the manager is killed, and the fixture asserts that no
``sandbox:*`` actor, no Vite process and no worktree is left.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import ray

from actors.browser_actor import kill_browser_actors
from actors.handles import forget_sandbox_handle, get_manager, kill_manager, start_manager
from studio.config import StudioSettings
from studio.install.cache import ensure_node_modules
from studio.naming import ACTOR_NAMESPACE
from studio.ports import port_is_free
from studio.vite import generate_studio_app
from tests.support.gitrepo import repo_from_dir

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "studio-template"
UI_KIT = ROOT / "examples" / "ui-kit"
HOST = "127.0.0.1"
PORTS = 40


@dataclass
class Studio:
    """A running manager for one test, with the repository it registered."""

    manager: Any
    settings: StudioSettings
    origin: Path
    repository_id: int


def get(refs: Any, timeout: float | None = None) -> Any:
    """``ray.get`` typed loosely: actor handles are untyped, so are their answers."""
    return ray.get(refs, timeout=timeout)


def run_with_own_ray(
    script: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a child Python that starts a Ray of its own (the session's is shared).

    Its workers import this checkout: a worker's preload runs before a job hands
    it the driver's ``sys.path``, and would otherwise import the installed package.
    ``env`` is laid over this process's environment (the workers read their
    settings from it).
    """
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **(env or {}), "PYTHONPATH": path},
    )


def free_base(count: int = PORTS) -> int:
    """A first port of ``count`` free ports below Ray's worker ports."""
    for _ in range(100):
        base = random.randrange(6000, 9900 - count)
        if all(port_is_free(HOST, p) for p in range(base, base + count, 5)):
            return base
    raise AssertionError("no free port range")


def vite_answers(port: int) -> bool:
    """Whether a sandbox's Vite answers on ``port`` of this node's loopback."""
    return renderer_answers(f"http://{HOST}:{port}/")


def renderer_answers(renderer_url: str) -> bool:
    """Whether the studio's Vite at ``renderer_url`` answers ``/@vite/client``.

    A sandbox of the manager's refuses whoever is not the API's renderer proxy
    (403 from the template's proxy guard, which runs in a started Vite only):
    that refusal is an answer too.
    """
    try:
        with urllib.request.urlopen(f"{renderer_url}@vite/client", timeout=5) as reply:
            return int(reply.status) == 200
    except urllib.error.HTTPError as refused:
        return refused.code == 403 and b"Component Studio API" in refused.read()
    except OSError:
        return False


def processes_under(path: Path) -> list[psutil.Process]:
    """Live processes whose command line mentions ``path`` (the Vites of a state dir)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            mentions = any(str(path) in part for part in proc.info["cmdline"] or [])
            if mentions and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def sandbox_actor_names() -> list[str]:
    """Names of the live ``sandbox:*`` actors in the service's namespace."""
    return sorted(
        entry["name"]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["namespace"] == ACTOR_NAMESPACE and entry["name"].startswith("sandbox:")
    )


@pytest.fixture(scope="session")
def install_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's install cache: npm ci once."""
    cache = tmp_path_factory.getbasetemp() / "install-cache"
    ensure_node_modules(TEMPLATE, cache)
    return cache


@pytest.fixture
def modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's install cache entry of the template (the one tests/studio uses)."""
    return ensure_node_modules(TEMPLATE, tmp_path_factory.getbasetemp() / "install-cache")


@pytest.fixture
def studio_dir(tmp_path: Path, modules: Path) -> Path:
    """A generated studio app whose node_modules link to ``modules`` (what a sandbox has)."""
    worktree = tmp_path / "worktree"
    (worktree / "src").mkdir(parents=True)
    return generate_studio_app(
        worktree,
        template_dir=TEMPLATE,
        cache_root=modules.parent.parent,
        port=5999,
        share_deps=False,
        prebuilt_shell=False,
    )


def node_settings(state: Path, install_cache: Path, **overrides: Any) -> StudioSettings:
    """Settings of one node: its own state dir, the session's install cache linked in."""
    state.mkdir(parents=True, exist_ok=True)
    link = state / "install-cache"
    if not link.exists():
        link.symlink_to(install_cache, target_is_directory=True)
    values: dict[str, Any] = {
        "state_dir": state,
        "template_dir": TEMPLATE,
        "vite_port": free_base(),
        "vite_port_count": PORTS,
        "host": HOST,
        "public_host": "localhost",
        "repo_roots": [state.parent],
        "health_check_interval": 2.0,
        # One spare per node, not the default pool: each spare's boot is ~1.3 CPU-s
        # the tests' creates would share; tests of the pool ask for more.
        "warm_workers": 1,
        "admin_token": "admin-" + uuid.uuid4().hex,
        **overrides,
    }
    return StudioSettings(**values)


def assert_nothing_left(state_dir: Path) -> None:
    """No sandbox actor, no Vite of ``state_dir`` and no worktree in it."""
    left = sandbox_actor_names()
    for name in left:
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(name, namespace=ACTOR_NAMESPACE), no_restart=True)
    deadline = time.monotonic() + 15
    while (vites := processes_under(state_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for proc in vites:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    worktrees = state_dir / "worktrees"
    remaining = sorted(p.name for p in worktrees.iterdir()) if worktrees.is_dir() else []
    assert not left, f"sandbox actors left: {left}"
    assert not vites, "Vite processes left: " + ", ".join(str(p.pid) for p in vites)
    assert not remaining, f"worktrees left: {remaining}"


def shut_down_studio(state_dir: Path) -> None:
    """Tear down every running sandbox (branches kept), kill the manager, check nothing is left."""
    try:
        manager = get_manager()
        # include_held: the ready sandboxes of tests that turn them on (actors._ready)
        for info in get(manager.list_sandboxes.remote(None, False, True), timeout=60):
            get(manager.teardown_sandbox.remote(info.id, None), timeout=60)
            forget_sandbox_handle(info.id)
    finally:
        kill_manager()
        # the nodes' browsers (render verdicts) close their Chromium before they go
        kill_browser_actors()
    assert_nothing_left(state_dir)


@contextlib.contextmanager
def open_studio(tmp_path: Path, install_cache: Path, **overrides: Any) -> Iterator[Studio]:
    """A manager on the session's Ray with examples/ui-kit registered; cleaned up after."""
    settings = node_settings(tmp_path / "state", install_cache, **overrides)
    origin = repo_from_dir(UI_KIT, tmp_path / "ui-kit")
    manager = start_manager(settings)
    try:
        record = get(manager.register_repository.remote("ui-kit", path=str(origin)))
        yield Studio(manager, settings, origin, record.id)
    finally:
        shut_down_studio(settings.state_dir)


@pytest.fixture
def studio(ray_session: None, tmp_path: Path, install_cache: Path) -> Iterator[Studio]:
    """A manager on the session's Ray with examples/ui-kit registered; cleaned up after."""
    with open_studio(tmp_path, install_cache) as opened:
        yield opened
