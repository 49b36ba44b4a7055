"""Fixtures of the sandbox tests: real repositories, real Vite, one state dir per node.

Imported by test_sandbox*.py. Each sandbox a test makes is torn down at the
end (no Vite left: the root conftest checks for leaked processes).
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from studio.config import ComponentStudioConfig, StudioSettings
from studio.install.cache import ensure_node_modules
from studio.models import RepositorySource
from studio.ports import port_is_free
from studio.sandbox import ComponentStudioSandbox
from studio.state import TERMINAL_STATES
from tests.support.gitrepo import repo_from_dir

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "studio-template"
UI_KIT = ROOT / "examples" / "ui-kit"
HOST = "127.0.0.1"
PORTS = 30

SandboxFactory = Callable[..., ComponentStudioSandbox]


@pytest.fixture(scope="session")
def install_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's install cache (shared with test_vite): npm ci once."""
    cache = tmp_path_factory.getbasetemp() / "install-cache"
    ensure_node_modules(TEMPLATE, cache)
    return cache


def free_base(count: int = PORTS) -> int:
    """A first port of ``count`` free ports below Ray's worker ports."""
    for _ in range(100):
        base = random.randrange(6000, 9900 - count)
        if all(port_is_free(HOST, p) for p in range(base, base + count, 7)):
            return base
    raise AssertionError("no free port range")


def node_settings(root: Path, install_cache: Path, base: int | None = None) -> StudioSettings:
    """Settings of one "node": its own state dir, the session's install cache linked in."""
    state = root / "state"
    state.mkdir(parents=True, exist_ok=True)
    (state / "install-cache").symlink_to(install_cache, target_is_directory=True)
    return StudioSettings(
        state_dir=state,
        template_dir=TEMPLATE,
        vite_port=base or free_base(),
        vite_port_count=PORTS,
        host=HOST,
        public_host="localhost",
    )


def fast_config(settings: StudioSettings, **overrides: Any) -> ComponentStudioConfig:
    """A config with short backoffs, so restart tests do not sleep long."""
    values: dict[str, Any] = {
        "vite_port": settings.vite_port,
        "websocket_port": 8000,
        "restart_backoff": 0.05,
        "restart_backoff_max": 0.2,
        "max_restarts": 2,
        "ready_timeout": 60.0,
        "commit_pattern": "AI: {description} [{sandbox}]",
        **overrides,
    }
    return ComponentStudioConfig(**values)


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """examples/ui-kit as the repository's source (a non-bare repo on main)."""
    return repo_from_dir(UI_KIT, tmp_path / "origin")


@pytest.fixture
def settings(tmp_path: Path, install_cache: Path) -> StudioSettings:
    return node_settings(tmp_path / "node1", install_cache)


@pytest.fixture
def make_sandbox(origin: Path, settings: StudioSettings) -> Iterator[SandboxFactory]:
    """Builds sandboxes (not set up); tears every one down at the end."""
    made: list[ComponentStudioSandbox] = []

    def make(
        sandbox_id: str = "sb_test0001",
        *,
        node_settings: StudioSettings | None = None,
        config: ComponentStudioConfig | None = None,
        **kwargs: Any,
    ) -> ComponentStudioSandbox:
        use = node_settings or settings
        sandbox = ComponentStudioSandbox(
            sandbox_id,
            RepositorySource(name="ui-kit", source=str(origin)),
            config or fast_config(use),
            use,
            owner="alice",
            **kwargs,
        )
        made.append(sandbox)
        return sandbox

    yield make
    for sandbox in reversed(made):
        if sandbox.state not in TERMINAL_STATES:
            sandbox.on_teardown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port
