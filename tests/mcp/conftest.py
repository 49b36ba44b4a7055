"""The MCP server on the running service: Serve on loopback, a GitHub repository behind Prism.

One manager and one Serve application for the package, as tests/serve has
(``serve.run`` costs seconds), but its repository is a GitHub one: examples/ui-kit
served over smart HTTP on loopback (tests/support/git_http.py), its REST API
Prism behind the recording front (tests/support/prism.py), so that finalize
opens a pull request. Every sandbox is torn down at the end, Serve shut down,
the manager killed, and nothing may be left.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from ray import serve

from actors.handles import start_manager
from serve.app import build_app
from studio.config import StudioSettings
from studio.install.cache import ensure_node_modules
from tests.actors.conftest import TEMPLATE, UI_KIT, node_settings, shut_down_studio
from tests.serve.conftest import OPTIONS, free_port
from tests.support.git_http import GitHttpServer, bare_repository, serve_git
from tests.support.gitrepo import repo_from_dir
from tests.support.prism import VALID_TOKEN, GitHubFront, PrismServer

GITHUB_REPO = "octo/hello"


@dataclass
class Service:
    """The running service: its URL, the admin token, the GitHub mock and the repository."""

    url: str
    settings: StudioSettings
    repository_id: int
    github: GitHubFront
    git_server: GitHttpServer
    http: httpx.Client

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp"

    def user(self, name: str) -> str:
        """A new (non-admin) user's token."""
        reply = self.http.post(
            "/api/v1/users",
            json={"name": f"{name}-{uuid.uuid4().hex[:6]}"},
            headers={"Authorization": f"Bearer {self.settings.admin_token}"},
        )
        assert reply.status_code == 201, reply.text
        return str(reply.json()["token"])


def _with_push_permission(repo: dict[str, Any]) -> dict[str, Any]:
    return {**repo, "permissions": {"admin": False, "push": True, "pull": True}}


@pytest.fixture(scope="package")
def service(
    ray_session: None, prism: PrismServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    base = tmp_path_factory.mktemp("mcp")
    cache = tmp_path_factory.getbasetemp() / "install-cache"
    ensure_node_modules(TEMPLATE, cache)
    source = repo_from_dir(UI_KIT, base / "ui-kit")
    bare_repository(base / "served", "hello.git", source)
    with contextlib.ExitStack() as stack:
        git_server = stack.enter_context(serve_git(base / "served"))
        github = stack.enter_context(GitHubFront(prism.url))
        github.edit("GET", f"/repos/{GITHUB_REPO}", _with_push_permission)
        settings = node_settings(
            base / "state", cache, github_token=VALID_TOKEN, github_api_url=github.url
        )
        start_manager(settings, ping_timeout=2.0)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        http = stack.enter_context(httpx.Client(base_url=url, timeout=60))
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            serve.run(build_app(settings, OPTIONS), name="studio-mcp-test", route_prefix="/")
            reply = http.post(
                "/api/v1/repositories",
                json={
                    "name": "hello",
                    "github": GITHUB_REPO,
                    "clone_url": f"{git_server.url}/hello.git",
                },
                headers={"Authorization": f"Bearer {settings.admin_token}"},
                timeout=300,
            )
            assert reply.status_code == 201, reply.text
            yield Service(url, settings, reply.json()["id"], github, git_server, http)
        finally:
            with contextlib.suppress(Exception):
                serve.shutdown()
            shut_down_studio(settings.state_dir)


@contextlib.asynccontextmanager
async def mcp_session(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    """An initialized session of the SDK's own client, sending ``token`` as a bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # Creates and finalizes take longer than the SDK's default 30 s for a whole answer.
    timeout = httpx2.Timeout(30.0, read=600.0)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session
