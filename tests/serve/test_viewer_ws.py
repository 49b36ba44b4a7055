"""The studio page's own WebSocket: the viewer token in its wsUrl lets it in, nowhere else.

The page holds no user token; the sandbox writes a per-sandbox viewer token
into the page's config (``.studio/studio.config.json`` ``wsUrl``). That URL
must open this sandbox's stream, and the token must open nothing else.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs, urlsplit

import pytest
import websockets

from studio.layout import StateLayout
from studio.vite import read_studio_config
from tests.serve.conftest import Api
from tests.serve.test_api_ws import recv, recv_until, write

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def page_stream(api: Api) -> tuple[str, str, str]:
    """A user's sandbox and the viewer token its studio page was given."""
    user = api.user("viewer")
    sandbox_id = api.create(user)["sandbox_id"]
    studio_dir = StateLayout(api.settings.state_dir).worktree(sandbox_id) / ".studio"
    page_url = urlsplit(read_studio_config(studio_dir)["wsUrl"])
    assert page_url.path == f"/api/v1/sandboxes/{sandbox_id}/ws"
    (token,) = parse_qs(page_url.query)["token"]
    assert token not in api.tokens.values()
    return user, sandbox_id, token


async def closed_with(url: str) -> int:
    async with websockets.connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 30)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_the_pages_url_opens_its_sandbox_stream(
    api: Api, page_stream: tuple[str, str, str]
) -> None:
    user, sandbox_id, token = page_stream
    url = f"{api.ws_base}/api/v1/sandboxes/{sandbox_id}/ws?token={token}"
    async with websockets.connect(url) as ws:
        hello = await recv(ws)
        assert hello["type"] == "hello"
        commit = await write(api, user, sandbox_id, "from-the-page")
        assert (await recv_until(ws, "commit", hash=commit))["sandbox_id"] == sandbox_id
        # What the page sends (a selection) is accepted and reaches other clients.
        await ws.send(json.dumps({"type": "component-selected", "payload": {"component": "B"}}))


async def test_the_viewer_token_opens_no_other_sandbox_and_no_http_route(
    api: Api, page_stream: tuple[str, str, str]
) -> None:
    _, sandbox_id, token = page_stream
    other = "sb_" + "z" * 10
    assert await closed_with(f"{api.ws_base}/api/v1/sandboxes/{other}/ws?token={token}") == 4401
    headers = {"Authorization": f"Bearer {token}"}
    for path in ("/api/v1/sandboxes", f"/api/v1/sandboxes/{sandbox_id}"):
        reply = await asyncio.to_thread(api.http.get, path, headers=headers)
        assert reply.status_code == 401, reply.text
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    url = f"{api.ws_base}/api/v1/sandboxes/{sandbox_id}/ws?token={forged}"
    assert await closed_with(url) == 4401
