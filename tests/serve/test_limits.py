"""Limits of the API behind Ray Serve, with real clients: bodies, addresses, tokens, quotas.

More applications of the API run beside the package's, with tight limits of
a replica's own: ``/addr`` per address, ``/tokens`` for unknown tokens,
``/limited`` for WebSocket messages. All share the package's manager, whose
health counts its token lookups: what a request costs the manager is read
there. The sandbox quota is the manager's setting, so its refusal is tested
on the manager (tests/actors/test_manager.py), not here.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import ray
import websockets
from ray import serve

from actors.handles import get_manager
from serve.app import build_app
from serve.websocket import CLOSE_RATE_LIMITED, CLOSE_TOO_BIG
from tests.serve.conftest import OPTIONS, Api

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TEN_MB = 10 * 1024 * 1024
TIMEOUT = 30


def token_lookups() -> int:
    """Tokens the manager has looked up since it started."""
    return int(ray.get(get_manager().health.remote(), timeout=TIMEOUT)["token_lookups"])


def random_token() -> str:
    return "st_" + secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def addr(api: Api) -> Iterator[str]:
    """``/addr``: 30 requests per client address, refilled one a minute; 3 unknown tokens."""
    settings = api.settings.model_copy(
        update={
            "address_rate_limit_per_minute": 1,
            "address_rate_limit_burst": 30,
            "auth_failures_per_minute": 1,
            "auth_failure_burst": 3,
        }
    )
    serve.run(build_app(settings, OPTIONS), name="studio-addr", route_prefix="/addr")
    try:
        yield api.url + "/addr"
    finally:
        serve.delete("studio-addr")


@pytest.fixture(scope="module")
def limited(api: Api) -> Iterator[str]:
    """``/limited``: WebSocket messages of 1 KiB at most, 5 at once."""
    settings = api.settings.model_copy(
        update={
            "ws_max_message_bytes": 1024,
            "ws_messages_per_second": 0.1,
            "ws_message_burst": 5,
        }
    )
    serve.run(build_app(settings, OPTIONS), name="studio-limited", route_prefix="/limited")
    try:
        yield api.url + "/limited"
    finally:
        serve.delete("studio-limited")


def create_body(api: Api, **overrides: Any) -> dict[str, Any]:
    return {"type": "component-studio", "repository_id": api.repository_id, **overrides}


def test_a_10_mb_body_gets_413_before_anything_reaches_the_manager(api: Api) -> None:
    stranger = {"Authorization": f"Bearer {random_token()}"}
    big = json.dumps(create_body(api, padding="x" * TEN_MB)).encode()
    before = token_lookups()

    # With a Content-Length: refused on the header, before a byte of the body is read.
    reply = api.http.post(
        "/api/v1/sandboxes",
        content=big,
        headers={**stranger, "Content-Type": "application/json"},
    )
    assert reply.status_code == 413, reply.text
    error = reply.json()["error"]
    assert error["code"] == "payload_too_large"
    limit = api.settings.max_request_bytes
    assert error["limit"] == limit and f"larger than {limit} bytes" in error["message"]

    # Chunked, without a length: refused once what was read passes the limit.
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    reply = api.http.post(
        "/api/v1/sandboxes/sb_abcdef/execute",
        content=chunks(),
        headers={**stranger, "Content-Type": "application/json"},
    )
    assert reply.request.headers.get("transfer-encoding") == "chunked"
    assert reply.status_code == 413, reply.text
    assert reply.json()["error"]["code"] == "payload_too_large"
    assert token_lookups() == before

    # The same request with a small body does cost the manager a lookup (the count counts).
    reply = api.http.post("/api/v1/sandboxes", json=create_body(api), headers=stranger)
    assert reply.status_code == 401, reply.text
    assert token_lookups() == before + 1


async def test_an_address_past_its_limit_gets_429_before_authentication(addr: str) -> None:
    async with httpx.AsyncClient(base_url=addr, timeout=60) as client:
        replies = await asyncio.gather(*(client.get("/api/v1/repositories") for _ in range(40)))
    statuses = [r.status_code for r in replies]
    # 40 at once from one address, 30 allowed: the others are refused unauthenticated.
    assert statuses.count(429) >= 10, statuses
    assert set(statuses) <= {401, 429}
    limited = next(r for r in replies if r.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    error = limited.json()["error"]
    assert error["code"] == "rate_limited"
    assert "a minute per client address" in error["message"]

    # A WebSocket from that address is closed with 4429 and the same reason.
    ws_url = addr.replace("http://", "ws://") + "/api/v1/sandboxes/sb_abcdef/ws"
    async with websockets.connect(ws_url, open_timeout=TIMEOUT) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_RATE_LIMITED
    assert "per client address" in closed.value.rcvd.reason


def test_random_tokens_cost_the_manager_no_more_than_the_address_budget(api: Api) -> None:
    # Its own application: the address limit above must not answer first.
    settings = api.settings.model_copy(
        update={"auth_failures_per_minute": 1, "auth_failure_burst": 3}
    )
    serve.run(build_app(settings, OPTIONS), name="studio-tokens", route_prefix="/tokens")
    try:
        before = token_lookups()
        statuses = []
        for _ in range(12):
            reply = api.http.get(
                "/tokens/api/v1/repositories",
                headers={"Authorization": f"Bearer {random_token()}"},
            )
            statuses.append(reply.status_code)
        assert statuses == [401] * 3 + [429] * 9, statuses
        assert "too many unknown tokens" in reply.json()["error"]["message"]
        assert token_lookups() == before + 3
    finally:
        serve.delete("studio-tokens")


def test_overrides_past_a_bound_or_for_admins_only_are_refused(api: Api) -> None:
    alice = api.user("alice")
    cases = [
        (alice, {"timeout_hours": 1000}, 400, "timeout_hours", "less than or equal to 168"),
        ("admin", {"ready_timeout": 7200}, 400, "ready_timeout", "less than or equal to 600"),
        (alice, {"timeout_hours": 8}, 403, "timeout_hours", "only an admin may raise it"),
        (alice, {"max_restarts": 50}, 403, "max_restarts", "only an admin may raise it"),
        (alice, {"vite_port": 6000}, 403, "vite_port", "only an admin may set vite_port"),
        (alice, {"websocket_port": 9000}, 403, "websocket_port", "only an admin may set"),
    ]
    before = {s["id"] for s in api.http.get("/api/v1/sandboxes", headers=api.headers(alice)).json()}
    for user, overrides, status, field, words in cases:
        reply = api.http.post(
            "/api/v1/sandboxes", json=create_body(api, **overrides), headers=api.headers(user)
        )
        assert reply.status_code == status, (overrides, reply.text)
        error = reply.json()["error"]
        assert field in error["message"] and words in error["message"], error
        if status == 403:
            assert error["field"] == field
    after = {s["id"] for s in api.http.get("/api/v1/sandboxes", headers=api.headers(alice)).json()}
    assert after == before


async def test_websocket_messages_past_their_size_or_rate_close_the_connection(
    api: Api, limited: str
) -> None:
    bob = api.user("bob")
    headers = api.headers(bob)
    reply = api.http.post(
        limited + "/api/v1/sandboxes", json=create_body(api), headers=headers, timeout=180
    )
    assert reply.status_code == 201, reply.text
    created = reply.json()
    sandbox_id = created["sandbox_id"]
    try:
        token = api.tokens[bob]
        proxied = limited.replace("http://", "ws://") + f"/api/v1/sandboxes/{sandbox_id}/ws"
        urls = [f"{proxied}?token={token}", f"{created['websocket_url']}?token={token}"]
        for url in urls:
            # A message over 1 KiB: the Serve proxy's path closes in the session, the
            # replica's own listener in the protocol; both with 1009.
            assert await closed_after(url, ["x" * 2048]) == CLOSE_TOO_BIG, url
            # Ten pings at once, five allowed: answered, then closed with 4429.
            pings = [json.dumps({"type": "ping", "payload": {"nonce": str(n)}}) for n in range(10)]
            code, reason, pongs = await closed_with(url, pings)
            assert code == CLOSE_RATE_LIMITED, url
            assert "too many messages" in reason and "bursts of 5" in reason
            assert pongs == 5, url
    finally:
        reply = api.http.delete(f"/api/v1/sandboxes/{sandbox_id}", headers=headers, timeout=120)
        assert reply.status_code == 200, reply.text


async def closed_after(url: str, messages: list[str]) -> int:
    code, _reason, _pongs = await closed_with(url, messages)
    return code


async def closed_with(url: str, messages: list[str]) -> tuple[int, str, int]:
    """Send ``messages`` at once; the close code and reason, and the pongs before it."""
    pongs = 0
    async with websockets.connect(url, open_timeout=TIMEOUT) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert hello["type"] == "hello"
        for message in messages:
            await ws.send(message)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                reply = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                pongs += reply["type"] == "pong"
    assert closed.value.rcvd is not None, closed.value
    return closed.value.rcvd.code, closed.value.rcvd.reason, pongs
