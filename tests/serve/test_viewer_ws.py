"""The viewer token is the renderer proxy's secret to the sandbox's Vite, and opens nothing else.

The studio page's own event stream goes through the renderer proxy with the
page's cookie (tests/serve/test_renderer_proxy.py). The per-sandbox viewer
token is written into ``.studio/studio.config.json`` (``proxySecret``, never
served) for Vite to check the proxy's requests: it must open no API route and
no event stream, of its own sandbox or another.
"""

from __future__ import annotations

import asyncio

import pytest
import websockets

from studio.layout import StateLayout
from studio.vite import read_studio_config
from tests.serve.conftest import Api

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def viewer(api: Api) -> tuple[str, str, str]:
    """A user's sandbox and its viewer token."""
    user = api.user("viewer")
    sandbox_id = api.create(user)["sandbox_id"]
    studio_dir = StateLayout(api.settings.state_dir).worktree(sandbox_id) / ".studio"
    config = read_studio_config(studio_dir)
    token = str(config["proxySecret"])
    assert token.startswith("sv_") and token not in api.tokens.values()
    # No token in the page's event stream URL any more: the cookie lets the page in.
    assert "token" not in str(config["wsUrl"])
    return user, sandbox_id, token


async def closed_with(url: str) -> int:
    async with websockets.connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 30)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_the_viewer_token_opens_no_stream_and_no_http_route(
    api: Api, viewer: tuple[str, str, str]
) -> None:
    _, sandbox_id, token = viewer
    other = "sb_" + "z" * 10
    for target in (sandbox_id, other):
        url = f"{api.ws_base}/api/v1/sandboxes/{target}/ws?token={token}"
        assert await closed_with(url) == 4401
    headers = {"Authorization": f"Bearer {token}"}
    for path in ("/api/v1/sandboxes", f"/api/v1/sandboxes/{sandbox_id}", f"/r/{sandbox_id}/"):
        reply = await asyncio.to_thread(api.http.get, path, headers=headers)
        assert reply.status_code == 401, reply.text
    # Nor does it pass as the proxy's header on the API's port.
    reply = await asyncio.to_thread(
        api.http.get, f"/r/{sandbox_id}/", headers={"x-studio-proxy-secret": token}
    )
    assert reply.status_code == 401, reply.text
