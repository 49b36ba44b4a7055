"""The API on the session's real Ray: a manager, Serve on a loopback port, real clients.

One manager and one Serve application for the package (``serve.run`` costs
seconds); every sandbox a test creates is torn down at the end, Serve is shut
down, the manager killed, and nothing (actor, Vite, worktree) may be left.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ray import serve

from actors.handles import start_manager
from serve.app import build_app
from serve.replica import ServeOptions
from studio.config import StudioSettings
from studio.install.cache import ensure_node_modules
from tests.actors.conftest import TEMPLATE, UI_KIT, node_settings, shut_down_studio
from tests.support.gitrepo import repo_from_dir

# WebSocket keep-alive shrunk so that a silent client is found in seconds.
# The fields of a create answer (201 or 202), the contract's plus the direct listener's.
CREATE_FIELDS = {"sandbox_id", "renderer_url", "websocket_url", "execute_url", "branch", "status"}
OPTIONS = ServeOptions(ping_interval=1.0, pong_timeout=5.0, client_queue=64, poll_timeout=5.0)
# Generous: 200 WebSocket clients of one user connect at once. test_api.py runs
# a second application with a tight limit for the 429 case.
RATE_PER_MINUTE = 6000
RATE_BURST = 1000


@dataclass
class Api:
    """The running API: its URL, the admin token, users' tokens and the sample repository."""

    url: str
    settings: StudioSettings
    repository_id: int
    origin: Path
    tokens: dict[str, str]
    http: httpx.Client

    @property
    def ws_base(self) -> str:
        return self.url.replace("http://", "ws://")

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def user(self, name: str) -> str:
        """A new (non-admin) user's name; its token goes into ``tokens``."""
        name = f"{name}-{uuid.uuid4().hex[:6]}"
        reply = self.http.post("/api/v1/users", json={"name": name}, headers=self.headers("admin"))
        assert reply.status_code == 201, reply.text
        self.tokens[name] = reply.json()["token"]
        return name

    def create(self, user: str, **overrides: Any) -> dict[str, Any]:
        reply = self.http.post(
            "/api/v1/sandboxes",
            json={"type": "component-studio", "repository_id": self.repository_id, **overrides},
            headers=self.headers(user),
            timeout=180,
        )
        assert reply.status_code == 201, reply.text
        return dict(reply.json())


@contextlib.contextmanager
def open_renderer(renderer_url: str) -> Iterator[httpx.Client]:
    """A client of the sandbox's renderer as a browser gets it: the ticket in
    ``renderer_url`` exchanged for the proxy's cookie, paths relative to the renderer."""
    with httpx.Client(follow_redirects=True, timeout=60) as client:
        page = client.get(renderer_url)
        assert page.status_code == 200, page.text
        client.base_url = httpx.URL(renderer_url).copy_with(query=None)
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="package")
def api(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The API served on 127.0.0.1 with ui-kit registered; everything cleaned up after."""
    base = tmp_path_factory.mktemp("api")
    # The same cache as the actor tests: npm ci runs once per session.
    cache = tmp_path_factory.getbasetemp() / "install-cache"
    ensure_node_modules(TEMPLATE, cache)
    settings = node_settings(
        base / "state",
        cache,
        rate_limit_per_minute=RATE_PER_MINUTE,
        rate_limit_burst=RATE_BURST,
        # Every test's client is 127.0.0.1: the per-address limits as generous as the
        # per-user one. test_limits.py runs an application with tight ones.
        address_rate_limit_per_minute=RATE_PER_MINUTE,
        address_rate_limit_burst=RATE_BURST,
        auth_failures_per_minute=RATE_PER_MINUTE,
        auth_failure_burst=RATE_BURST,
    )
    origin = repo_from_dir(UI_KIT, base / "ui-kit")
    start_manager(settings, ping_timeout=2.0)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, timeout=60)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(settings, OPTIONS), name="studio-test", route_prefix="/")
        tokens = {"admin": settings.admin_token or ""}
        reply = http.post(
            "/api/v1/repositories",
            json={"name": "ui-kit", "path": str(origin)},
            headers={"Authorization": f"Bearer {tokens['admin']}"},
        )
        assert reply.status_code == 201, reply.text
        yield Api(url, settings, reply.json()["id"], origin, tokens, http)
    finally:
        http.close()
        with contextlib.suppress(Exception):
            serve.shutdown()
        shut_down_studio(settings.state_dir)


@pytest.fixture
async def client(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    """An async HTTP client of the API (for concurrent requests)."""
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as http:
        yield http
