"""How the renderer proxy forwards a request to a sandbox's Vite (serve.renderer_proxy).

The upstream is a real HTTP server (Node's, as Vite's is) that answers each
request with what it received and sets a cookie of its own; the proxy is the
API's real router and replica, served in-process, with the sandbox's Vite
address and the service secret already known to the replica (no Ray here:
tests/serve/test_renderer_proxy.py covers the proxy in front of a real
sandbox's Vite).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from serve.renderer_auth import COOKIE_NAME, COOKIE_TTL, CredentialKind, issue_credential
from serve.renderer_proxy import renderer_router
from serve.replica import Replica, ServeOptions
from studio.config import StudioSettings
from studio.viewer import viewer_token
from studio.vite import PROXY_SECRET_HEADER, renderer_base
from tests.studio.test_sandbox_fixtures import free_port

SANDBOX = "sb_forward01"
SECRET = "service-secret-for-tests"

_ECHO = """
const http = require('http');
http.createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    const answer = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body });
    res.setHeader('Set-Cookie', 'upstream=1; Path=/');
    res.setHeader('Content-Type', 'application/json');
    res.end(answer);
  });
}).listen(Number(process.argv[2]), '127.0.0.1', () => console.log('listening'));
"""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The echo server's base URL for the sandbox (``http://127.0.0.1:<port>/r/<id>/``)."""
    script = tmp_path_factory.mktemp("echo") / "echo.js"
    script.write_text(_ECHO)
    port = free_port()
    server = subprocess.Popen(["node", str(script), str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "listening"
        yield f"http://127.0.0.1:{port}{renderer_base(SANDBOX)}"
    finally:
        server.terminate()
        server.wait(10)


def _proxy(upstream: str, tmp_path: Path) -> tuple[FastAPI, Replica]:
    app = FastAPI()
    app.include_router(renderer_router)
    replica = Replica(StudioSettings(state_dir=tmp_path / "state"), ServeOptions())
    # What the manager and the sandbox's actor would answer: no Ray in these tests.
    replica._service_secret = SECRET
    replica._renderer_targets[SANDBOX] = (upstream, time.monotonic())
    app.state.replica = replica
    return app, replica


def _cookie() -> str:
    """The Cookie header of the sandbox's owner (the renderer cookie alone)."""
    return f"{COOKIE_NAME}={issue_credential(SECRET, SANDBOX, CredentialKind.COOKIE, COOKIE_TTL)}"


def _requests(upstream: str, tmp_path: Path, *asks: dict[str, Any]) -> list[httpx.Response]:
    """Each of ``asks`` (httpx.request's arguments, the path relative to the renderer)
    through the proxy, one after the other, on one replica."""

    async def run() -> list[httpx.Response]:
        app, replica = _proxy(upstream, tmp_path)
        transport = httpx.ASGITransport(app=app)
        answers = []
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                for ask in asks:
                    url = f"{renderer_base(SANDBOX)}{ask.pop('path')}"
                    answer = await client.request(ask.pop("method", "GET"), url, **ask)
                    await answer.aread()
                    answers.append(answer)
                    # a browser's cookies are the test's to say, each request
                    client.cookies.clear()
        finally:
            await replica.close()
        return answers

    return asyncio.run(run())


def _seen(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    seen: dict[str, Any] = json.loads(answer.text)
    return seen


def test_the_path_and_query_reach_vite_as_the_browser_sent_them(
    upstream: str, tmp_path: Path
) -> None:
    path = "src/a%20b.tsx?import&t=1&q=%2Fx%3Fy"
    [answer] = _requests(upstream, tmp_path, {"path": path, "headers": {"cookie": _cookie()}})
    assert _seen(answer)["url"] == f"{renderer_base(SANDBOX)}{path}"


def test_vite_gets_the_secret_and_the_browsers_headers_but_not_its_credentials(
    upstream: str, tmp_path: Path
) -> None:
    [answer] = _requests(
        upstream,
        tmp_path,
        {
            "path": "src/main.tsx",
            "headers": {
                "accept": "text/javascript",
                "user-agent": "a-browser/1.0",
                "accept-encoding": "identity",
                "authorization": "Bearer api-token",
                "cookie": f"theirs=1; {_cookie()}",
            },
        },
    )
    headers = _seen(answer)["headers"]
    assert headers[PROXY_SECRET_HEADER] == viewer_token(SECRET, SANDBOX)
    assert headers["accept"] == "text/javascript"
    assert headers["cookie"] == "theirs=1"
    assert "authorization" not in headers
    # the browser's, not replaced by the proxy's own client
    assert (headers["user-agent"], headers["accept-encoding"]) == ("a-browser/1.0", "identity")


def test_a_cookie_vite_set_goes_to_the_browser_and_never_with_a_later_request(
    upstream: str, tmp_path: Path
) -> None:
    ours = {"cookie": _cookie()}
    first, second = _requests(
        upstream, tmp_path, {"path": "a.js", "headers": ours}, {"path": "b.js", "headers": ours}
    )
    assert first.headers["set-cookie"] == "upstream=1; Path=/"
    # the proxy's client keeps no cookie: the next request carries only the browser's
    assert "cookie" not in _seen(second)["headers"]


def test_a_post_body_reaches_vite(upstream: str, tmp_path: Path) -> None:
    [answer] = _requests(
        upstream,
        tmp_path,
        {
            "path": "__studio/args",
            "method": "POST",
            "content": b'{"label": "Hi"}',
            "headers": {"content-type": "application/json", "cookie": _cookie()},
        },
    )
    seen = _seen(answer)
    assert (seen["method"], seen["body"]) == ("POST", '{"label": "Hi"}')
    assert seen["headers"]["content-type"] == "application/json"
