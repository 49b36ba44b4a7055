"""The renderer through the API's port, for its owner only (serve.renderer_proxy).

A sandbox's ``renderer_url`` is ``/r/<id>/?ticket=...`` on the API; the ticket
buys a path-scoped HttpOnly cookie, which every later request (modules, the
HMR WebSocket, the page's event stream) carries. Without it: 401 with a
message. The sandbox's Vite itself answers nobody but the proxy (its secret
header), and nothing served holds a token.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import psutil
import pytest
import ray
import websockets
from playwright.sync_api import Page, expect

from actors.handles import get_manager
from serve.renderer_auth import COOKIE_NAME, CredentialKind, issue_credential
from studio.layout import StateLayout
from studio.viewer import viewer_token
from studio.vite import PAGE_EVENTS_PATH, read_studio_config
from tests.serve.conftest import Api
from tests.serve.test_api_ws import recv, recv_until, write

pytestmark = [pytest.mark.ray, pytest.mark.slow]


class Renderer:
    """One user's sandbox and the URLs of its renderer."""

    def __init__(self, api: Api, user: str, created: dict[str, object]) -> None:
        self.api = api
        self.user = user
        self.sandbox_id = str(created["sandbox_id"])
        self.url = str(created["renderer_url"])
        self.base = f"{api.url}/r/{self.sandbox_id}/"

    @property
    def studio_config(self) -> dict[str, object]:
        worktree = StateLayout(self.api.settings.state_dir).worktree(self.sandbox_id)
        return read_studio_config(worktree / ".studio")

    def cookie(self) -> str:
        """The cookie the ticket of a fresh renderer_url buys (the 303's Set-Cookie)."""
        shown = self.api.http.get(
            f"/api/v1/sandboxes/{self.sandbox_id}", headers=self.api.headers(self.user)
        )
        assert shown.status_code == 200, shown.text
        exchanged = httpx.get(shown.json()["renderer_url"], timeout=30)
        assert exchanged.status_code == 303, exchanged.text
        return str(exchanged.cookies[COOKIE_NAME])


@pytest.fixture(scope="module")
def renderer(api: Api) -> Iterator[Renderer]:
    user = api.user("renderer")
    yield Renderer(api, user, api.create(user))


def test_renderer_url_is_the_proxys_with_a_ticket(api: Api, renderer: Renderer) -> None:
    parts = urlsplit(renderer.url)
    assert parts.path == f"/r/{renderer.sandbox_id}/"
    assert set(parse_qs(parts.query)) == {"ticket"}
    # Where execute_url is: the answering replica's own listener (serve.direct).
    shown = api.http.get(
        f"/api/v1/sandboxes/{renderer.sandbox_id}", headers=api.headers(renderer.user)
    ).json()
    execute = urlsplit(shown["execute_url"])
    assert (parts.scheme, parts.netloc) == (execute.scheme, execute.netloc)
    # The API's port serves the same renderer (behind an ingress, the only port).
    assert httpx.get(renderer.base + "?" + parts.query, timeout=30).status_code == 303
    # Without its last slash, to the page, the ticket kept.
    bare = httpx.get(renderer.base.rstrip("/") + "?" + parts.query, timeout=30)
    assert bare.status_code == 307
    assert bare.headers["location"] == f"/r/{renderer.sandbox_id}/?{parts.query}"
    # The sandbox's Vite is on its own port, under the same path (its base).
    assert renderer.studio_config["base"] == f"/r/{renderer.sandbox_id}/"


def test_without_the_cookie_the_renderer_refuses_with_a_message(renderer: Renderer) -> None:
    for path in ("", "@vite/client", "src/main.tsx"):
        reply = httpx.get(renderer.base + path, timeout=30)
        assert reply.status_code == 401, reply.text
        error = reply.json()["error"]
        assert error["code"] == "unauthenticated"
        assert "renderer_url" in error["message"]
    forged = renderer.url[:-2] + ("AA" if not renderer.url.endswith("AA") else "BB")
    reply = httpx.get(forged, timeout=30)
    assert reply.status_code == 401 and "not valid" in reply.json()["error"]["message"]
    # A ticket is not a cookie: the kind is signed.
    ticket = parse_qs(urlsplit(renderer.url).query)["ticket"][0]
    reply = httpx.get(renderer.base, cookies={COOKIE_NAME: ticket}, timeout=30)
    assert reply.status_code == 401, reply.text


def test_an_expired_ticket_is_refused(api: Api, renderer: Renderer) -> None:
    secret = str(api_secret(api))
    old = issue_credential(secret, renderer.sandbox_id, CredentialKind.TICKET, 60, now=0)
    reply = httpx.get(f"{renderer.base}?ticket={old}", timeout=30)
    assert reply.status_code == 401 and "expired" in reply.json()["error"]["message"]


def api_secret(api: Api) -> str:
    """The service's secret, as the manager keeps it (what tickets are signed with)."""
    return str(ray.get(get_manager().viewer_secret.remote()))


def test_the_ticket_buys_a_path_scoped_http_only_cookie(renderer: Renderer) -> None:
    reply = httpx.get(renderer.url + "&full=1", timeout=30)
    assert reply.status_code == 303
    # The ticket is gone from the URL the browser goes on to, the rest is kept.
    assert reply.headers["location"] == f"/r/{renderer.sandbox_id}/?full=1"
    set_cookie = reply.headers["set-cookie"].lower()
    assert f"path=/r/{renderer.sandbox_id}/" in set_cookie
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie
    cookies = {COOKIE_NAME: reply.cookies[COOKIE_NAME]}
    page = httpx.get(renderer.base, cookies=cookies, timeout=30)
    assert page.status_code == 200 and "studio-root" in page.text
    # Vite's module URLs are under the sandbox's path, so they come back here.
    assert f'src="/r/{renderer.sandbox_id}/@vite/client"' in page.text
    client = httpx.get(renderer.base + "@vite/client", cookies=cookies, timeout=30)
    assert client.status_code == 200 and "vite-hmr" in client.text


def test_one_sandboxs_cookie_opens_no_other(api: Api, renderer: Renderer) -> None:
    other = api.user("renderer-other")
    theirs = Renderer(api, other, api.create(other))
    try:
        mine = renderer.cookie()
        reply = httpx.get(theirs.base, cookies={COOKIE_NAME: mine}, timeout=30)
        assert reply.status_code == 401, reply.text
        # Nor does another user's token get a ticket for my sandbox: it is not found.
        shown = api.http.get(f"/api/v1/sandboxes/{renderer.sandbox_id}", headers=api.headers(other))
        assert shown.status_code == 404, shown.text
        listed = api.http.get("/api/v1/sandboxes", headers=api.headers(other)).json()
        assert [s["id"] for s in listed] == [theirs.sandbox_id]
    finally:
        api.http.delete(f"/api/v1/sandboxes/{theirs.sandbox_id}", headers=api.headers(other))


def test_vites_own_port_refuses_a_request_without_the_proxys_secret(
    api: Api, renderer: Renderer
) -> None:
    config = renderer.studio_config
    direct = f"http://127.0.0.1:{config['port']}/r/{renderer.sandbox_id}/"
    for path in ("", "@vite/client", ".studio/studio.config.json"):
        reply = httpx.get(direct + path, timeout=30)
        assert reply.status_code == 403, reply.text
        assert "Component Studio API" in reply.text
    # Vite binds loopback on one machine.
    assert config["host"] == "127.0.0.1"
    secret = viewer_token(api_secret(api), renderer.sandbox_id)
    assert config["proxySecret"] == secret
    reply = httpx.get(direct + "@vite/client", headers={"x-studio-proxy-secret": secret})
    assert reply.status_code == 200
    wrong = httpx.get(direct + "@vite/client", headers={"x-studio-proxy-secret": secret[:-1] + "x"})
    assert wrong.status_code == 403


async def test_vites_hmr_socket_refuses_an_upgrade_without_the_secret(renderer: Renderer) -> None:
    config = renderer.studio_config
    direct = f"ws://127.0.0.1:{config['port']}/r/{renderer.sandbox_id}/"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(direct, subprotocols=["vite-hmr"]):  # type: ignore[list-item]
            pass
    assert refused.value.response.status_code == 403


async def test_the_hmr_socket_through_the_proxy_needs_the_cookie(renderer: Renderer) -> None:
    url = f"{renderer.api.ws_base}/r/{renderer.sandbox_id}/"
    async with websockets.connect(url, subprotocols=["vite-hmr"]) as ws:  # type: ignore[list-item]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    cookie = await asyncio.to_thread(renderer.cookie)
    async with websockets.connect(
        url,
        subprotocols=["vite-hmr"],  # type: ignore[list-item]
        additional_headers={"Cookie": f"{COOKIE_NAME}={cookie}"},
    ) as ws:
        assert ws.subprotocol == "vite-hmr"
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "connected"


async def test_the_pages_event_stream_is_let_in_by_the_cookie(api: Api, renderer: Renderer) -> None:
    assert renderer.studio_config["wsUrl"] == f"/r/{renderer.sandbox_id}/{PAGE_EVENTS_PATH}"
    url = f"{api.ws_base}/r/{renderer.sandbox_id}/{PAGE_EVENTS_PATH}"
    async with websockets.connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    cookie = await asyncio.to_thread(renderer.cookie)
    headers = {"Cookie": f"{COOKIE_NAME}={cookie}"}
    async with websockets.connect(url, additional_headers=headers) as ws:
        assert (await recv(ws))["type"] == "hello"
        commit = await write(api, renderer.user, renderer.sandbox_id, "through-the-proxy")
        assert (await recv_until(ws, "commit", hash=commit))["sandbox_id"] == renderer.sandbox_id


def test_no_served_file_holds_a_token(api: Api, renderer: Renderer) -> None:
    cookies = {COOKIE_NAME: renderer.cookie()}
    secrets = [t for t in api.tokens.values() if t]
    secrets.append(viewer_token(api_secret(api), renderer.sandbox_id))
    worktree = StateLayout(api.settings.state_dir).worktree(renderer.sandbox_id)
    served = [
        "",
        "@vite/client",
        "@id/__x00__virtual:studio/config",
        f"@fs{worktree}/.studio/studio.config.json",
        "studio.config.json",
    ]
    answers = {
        path: httpx.get(renderer.base + path, cookies=cookies, timeout=30) for path in served
    }
    assert answers["@id/__x00__virtual:studio/config"].status_code == 200
    # The file that holds the proxy's secret is not served, even to the owner.
    assert answers[f"@fs{worktree}/.studio/studio.config.json"].status_code == 403
    for path, reply in answers.items():
        for secret in secrets:
            assert secret not in reply.text, path
    on_disk = (worktree / ".studio" / "studio.config.json").read_text()
    for secret in api.tokens.values():
        assert not secret or secret not in on_disk


def test_hmr_through_the_proxy_in_chromium(
    api: Api, renderer: Renderer, browser_page: Page
) -> None:
    """Edit through the API; the page updates in place, no reload."""
    shown = api.http.get(
        f"/api/v1/sandboxes/{renderer.sandbox_id}", headers=api.headers(renderer.user)
    ).json()
    browser_page.goto(f"{shown['renderer_url']}#/Button")
    canvas = browser_page.locator("[data-testid=studio-canvas]")
    expect(canvas).to_have_attribute("data-state", "ready")
    assert "ticket" not in browser_page.url
    button = canvas.get_by_role("button")
    expect(button).to_have_text("Click me")
    browser_page.evaluate("window.__notReloaded = true")
    path = "src/components/Button/Button.tsx"
    read = api.http.post(
        f"/api/v1/sandboxes/{renderer.sandbox_id}/execute",
        json={"command": "read_file", "file_path": path},
        headers=api.headers(renderer.user),
    )
    assert read.status_code == 200, read.text
    content = read.json()["content"].replace("'Click me'", "'Through the proxy'")
    wrote = api.http.post(
        f"/api/v1/sandboxes/{renderer.sandbox_id}/execute",
        json={"command": "write_file", "file_path": path, "content": content},
        headers=api.headers(renderer.user),
    )
    assert wrote.status_code == 200, wrote.text
    expect(button).to_have_text("Through the proxy")
    assert browser_page.evaluate("window.__notReloaded") is True
    # The page's live stream came through the proxy too (its status banner is fed by it).
    expect(browser_page.locator("[data-testid=studio-status]")).to_have_attribute(
        "data-connection", "open"
    )


def test_a_restarted_vite_is_found_again_and_the_page_reloads_through_the_proxy(
    api: Api, browser_page: Page
) -> None:
    """Vite killed: Vite's HMR client polls through the proxy (refused while Vite is
    down), reloads when it is back, and the proxy finds Vite where it now listens."""
    user = api.user("renderer-restart")
    restarted = Renderer(api, user, api.create(user))
    try:
        browser_page.goto(f"{restarted.url}#/Button")
        canvas = browser_page.locator("[data-testid=studio-canvas]")
        expect(canvas).to_have_attribute("data-state", "ready")
        browser_page.evaluate("window.__notReloaded = true")
        port = int(str(restarted.studio_config["port"]))
        pid = next(
            c.pid
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
        )
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        # Reloaded (the marker is gone) once Vite answers again, and rendered again.
        browser_page.wait_for_function("() => window.__notReloaded === undefined", timeout=60_000)
        expect(canvas).to_have_attribute("data-state", "ready", timeout=60_000)
        shown = api.http.get(f"/api/v1/sandboxes/{restarted.sandbox_id}", headers=api.headers(user))
        assert shown.json()["restarts"] >= 1
    finally:
        api.http.delete(f"/api/v1/sandboxes/{restarted.sandbox_id}", headers=api.headers(user))
