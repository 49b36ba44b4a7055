"""The renderer through the API's port: ``/r/<sandbox id>/...`` proxied to the sandbox's Vite.

Users reach only the API's port (one ingress on a cluster): each sandbox's
renderer is served under its own path, HTTP and Vite's HMR WebSocket alike,
to the sandbox's owner only (``serve.renderer_auth``: a ticket from the API
exchanged for a path-scoped cookie). The sandbox's Vite runs with ``base``
``/r/<id>/`` (studio/vite), so the page's module URLs and its HMR client's
WebSocket (the page's own host and port, plus the base) all come back here,
and paths pass through unchanged, no rewriting of what Vite serves.

Every request to Vite carries the sandbox's proxy secret
(``x-studio-proxy-secret``, the sandbox's viewer token): the template's
proxy-guard plugin refuses anything without it, so a Vite port reached
directly (on a cluster it listens on its node's address) serves nothing.

The page's own event stream (status banner, reload, shared selection) is
``/r/<id>/__studio/events``: the same session as ``/api/v1/sandboxes/<id>/ws``,
let in by the cookie, so no token is written into any file the page loads.

Where Vite is (its node's address and port, from the sandbox actor's
``ping``) is cached per replica (``serve.replica.RENDERER_TARGET_TTL``), and forgotten when
a connection to it fails (a restarted Vite may have moved).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import aiohttp
from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from yarl import URL

from serve.errors import error_response, status_for
from serve.event_stream import serve_events
from serve.renderer_auth import (
    COOKIE_NAME,
    COOKIE_TTL,
    TICKET_PARAM,
    TICKET_TTL,
    CredentialKind,
    check_credential,
    issue_credential,
)
from serve.replica import Replica
from serve.websocket import close
from studio.errors import RateLimited, ServiceUnavailable, StudioError, Unauthenticated
from studio.naming import validate_sandbox_id
from studio.vite import PAGE_EVENTS_PATH, PROXY_SECRET_HEADER, renderer_base

__all__ = ["renderer_router", "renderer_url_for"]

logger = logging.getLogger(__name__)

renderer_router = APIRouter()

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Not passed on, either way: per-connection headers (RFC 9110 7.6.1), and what
# authenticates the caller here (the API's cookie and token stay with the API).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "authorization",
        PROXY_SECRET_HEADER,
    }
)
# The WebSocket handshake's own headers: the client library makes its own.
_WS_HANDSHAKE = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"}
    | {"sec-websocket-protocol", "cookie"}
)


def renderer_url_for(base_url: str, secret: str, sandbox_id: str, now: float | None = None) -> str:
    """The owner's ``renderer_url``: the proxy's path under ``base_url`` (``http://host:port``,
    where the caller reaches a replica), with a fresh ticket."""
    ticket = issue_credential(secret, sandbox_id, CredentialKind.TICKET, TICKET_TTL, now)
    return f"{base_url}{renderer_base(sandbox_id)}?{urlencode({TICKET_PARAM: ticket})}"


def _cookie_value(headers: Any) -> str | None:
    """Our cookie from a Cookie header; the path scoping means it is this sandbox's."""
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    with contextlib.suppress(Exception):
        jar.load(raw)
    morsel = jar.get(COOKIE_NAME)
    return None if morsel is None else morsel.value


def _without_our_cookie(raw: str) -> str:
    parts = [p.strip() for p in raw.split(";")]
    return "; ".join(p for p in parts if p and not p.startswith(f"{COOKIE_NAME}="))


async def _authorize_cookie(replica: Replica, sandbox_id: str, headers: Any) -> None:
    """Unauthenticated unless the request carries this sandbox's valid renderer cookie."""
    value = _cookie_value(headers)
    if value is None:
        raise Unauthenticated(
            f"the renderer of sandbox {sandbox_id} is its owner's: open the renderer_url "
            f"that GET /api/v1/sandboxes/{sandbox_id} answers (its ticket sets a cookie)"
        )
    check_credential(await replica.service_secret(), sandbox_id, CredentialKind.COOKIE, value)


def _valid_id(sandbox_id: str) -> None:
    try:
        validate_sandbox_id(sandbox_id)
    except StudioError:
        raise Unauthenticated(f"no renderer {sandbox_id[:64]!r}") from None


# -- HTTP --------------------------------------------------------------------


@renderer_router.api_route("/r/{sandbox_id}", methods=["GET", "HEAD"], include_in_schema=False)
async def renderer_root(sandbox_id: str, request: Request) -> Response:
    """``/r/<id>`` without its slash: to the page, keeping the query (and so a ticket)."""
    _valid_id(sandbox_id)
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"{renderer_base(sandbox_id)}{query}", status_code=307)


@renderer_router.api_route("/r/{sandbox_id}/{path:path}", methods=_METHODS, include_in_schema=False)
async def renderer_http(sandbox_id: str, path: str, request: Request) -> Response:
    """A request of the renderer's page, to the sandbox's Vite (owner only)."""
    replica: Replica = request.app.state.replica
    try:
        _valid_id(sandbox_id)
        ticket = request.query_params.get(TICKET_PARAM)
        if ticket is not None:
            return await _exchange_ticket(replica, sandbox_id, ticket, request)
        await _authorize_cookie(replica, sandbox_id, request.headers)
        return await _forward(replica, sandbox_id, path, request)
    except StudioError as exc:
        return error_response(exc)


async def _exchange_ticket(
    replica: Replica, sandbox_id: str, ticket: str, request: Request
) -> Response:
    """The cookie for a valid ticket, and the same URL without the ticket (303)."""
    secret = await replica.service_secret()
    check_credential(secret, sandbox_id, CredentialKind.TICKET, ticket)
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != TICKET_PARAM])
    location = request.url.path + (f"?{query}" if query else "")
    response = RedirectResponse(location, status_code=303)
    secure = request.headers.get("x-forwarded-proto", request.url.scheme) == "https"
    response.set_cookie(
        COOKIE_NAME,
        issue_credential(secret, sandbox_id, CredentialKind.COOKIE, COOKIE_TTL),
        max_age=COOKIE_TTL,
        path=renderer_base(sandbox_id),
        httponly=True,
        secure=secure,
        # Over TLS the page may be embedded by a studio UI on another site (an iframe
        # gets only SameSite=None cookies); plain HTTP allows no None, so Lax.
        samesite="none" if secure else "lax",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _upstream_url(base: str, sandbox_id: str, path: str, request: Request) -> URL:
    """Vite's URL for ``request``: its path and query as the browser sent them (still
    percent-encoded: Vite serves this sandbox under the same ``/r/<id>/`` base)."""
    prefix = renderer_base(sandbox_id).encode("latin-1")
    raw_path: bytes = request.scope.get("raw_path") or b""
    if raw_path.startswith(prefix):
        tail = raw_path[len(prefix) :].decode("latin-1")
    else:  # a server that gives no raw path: the decoded one, encoded again
        tail = str(URL.build(path="/" + path))[1:]
    query = request.scope.get("query_string", b"").decode("latin-1")
    return URL(base + tail + (f"?{query}" if query else ""), encoded=True)


async def _forward(replica: Replica, sandbox_id: str, path: str, request: Request) -> Response:
    headers = [
        (k, v)
        for k, v in request.headers.items()
        if k not in _HOP_BY_HOP and k != "cookie" and k != "content-length"
    ]
    cookie = _without_our_cookie(request.headers.get("cookie", ""))
    if cookie:
        headers.append(("cookie", cookie))
    has_body = request.method in ("POST", "PUT", "PATCH", "DELETE")
    body = await request.body() if has_body else None
    for attempt in (0, 1):
        base, secret = await replica.renderer_target(sandbox_id, fresh=attempt > 0)
        try:
            answer = await replica.vite_session().request(
                request.method,
                _upstream_url(base, sandbox_id, path, request),
                headers=[*headers, (PROXY_SECRET_HEADER, secret)],
                data=body,
                allow_redirects=False,
            )
        except (aiohttp.ClientConnectionError, OSError) as exc:
            if attempt == 0:
                continue  # Vite may have moved (a restart): ask where it is now
            raise ServiceUnavailable(
                f"the renderer of sandbox {sandbox_id} does not answer ({type(exc).__name__}); "
                "retry shortly",
                retry_after=2,
            ) from None

        async def release(answer: aiohttp.ClientResponse = answer) -> None:
            # On this loop (a plain function would go to a worker thread): the
            # connection back to the pool once the body was sent, or closed if not.
            answer.release()

        response = StreamingResponse(
            answer.content.iter_any(), status_code=answer.status, background=BackgroundTask(release)
        )
        response.raw_headers = [
            (name, value)
            for name, value in answer.raw_headers
            if name.decode("latin-1").lower() not in _HOP_BY_HOP
        ]
        return response
    raise AssertionError("unreachable")  # pragma: no cover


# -- WebSocket ---------------------------------------------------------------


@renderer_router.websocket("/r/{sandbox_id}/{path:path}")
async def renderer_websocket(websocket: WebSocket, sandbox_id: str, path: str) -> None:
    """Vite's HMR WebSocket, or the page's event stream, for the cookie's holder.

    A refusal is an accepted connection closed with 4000 + the HTTP status and
    the reason, as the API's event WebSocket refuses.
    """
    replica: Replica = websocket.app.state.replica
    try:
        _valid_id(sandbox_id)
        await _authorize_cookie(replica, sandbox_id, websocket.headers)
        # The page's sockets of one sandbox count as one caller, as its owner's do.
        wait = replica.limiter.check(f"renderer:{sandbox_id}")
        if wait > 0:
            raise RateLimited(
                f"too many renderer connections to sandbox {sandbox_id}; retry in {wait:.1f} s",
                retry_after=wait,
            )
    except StudioError as exc:
        await websocket.accept()
        await close(websocket, 4000 + status_for(exc), exc.message)
        return
    if path == PAGE_EVENTS_PATH:
        since = websocket.query_params.get("since")
        await serve_events(
            websocket, replica, sandbox_id, int(since) if since and since.isdigit() else None
        )
        return
    await _relay_to_vite(replica, sandbox_id, path, websocket)


async def _relay_to_vite(
    replica: Replica, sandbox_id: str, path: str, websocket: WebSocket
) -> None:
    try:
        base, secret = await replica.renderer_target(sandbox_id)
    except StudioError as exc:
        await websocket.accept()
        await close(websocket, 4000 + status_for(exc), exc.message)
        return
    url = "ws" + base.removeprefix("http") + path
    if websocket.url.query:
        url += f"?{websocket.url.query}"
    headers = [
        (k, v)
        for k, v in websocket.headers.items()
        if k not in _HOP_BY_HOP and k not in _WS_HANDSHAKE
    ]
    headers.append((PROXY_SECRET_HEADER, secret))
    offered = [
        p.strip()
        for p in websocket.headers.get("sec-websocket-protocol", "").split(",")
        if p.strip()
    ]
    try:
        upstream = await connect(
            url,
            subprotocols=offered or None,  # type: ignore[arg-type]
            additional_headers=headers,
            compression=None,
            max_size=None,
            open_timeout=10,
            ping_interval=None,
        )
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        replica.forget_renderer_target(sandbox_id)
        status = exc.response.status_code if isinstance(exc, InvalidStatus) else 502
        logger.info("renderer WebSocket of %s not opened: %s", sandbox_id, exc)
        # Refused before the accept, as Vite itself refuses when it is down: the HMR
        # client polls Vite with WebSockets while it restarts and reloads the page on
        # the first that opens, so one must not open here.
        await websocket.close(code=1011 if status >= 500 else 1008)
        return
    async with upstream:
        await websocket.accept(subprotocol=upstream.subprotocol)
        await _pump(websocket, upstream)


async def _pump(websocket: WebSocket, upstream: ClientConnection) -> None:
    """Frames both ways until either side closes; the other side is then closed too."""

    async def client_to_vite() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await upstream.send(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send(message["bytes"])

    async def vite_to_client() -> None:
        async for frame in upstream:
            if isinstance(frame, str):
                await websocket.send_text(frame)
            else:
                await websocket.send_bytes(frame)

    tasks = [asyncio.create_task(client_to_vite()), asyncio.create_task(vite_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(
                asyncio.CancelledError, ConnectionClosed, WebSocketDisconnect, RuntimeError
            ):
                await task
        code = upstream.close_code or 1000
        # 1005, 1006 and 1015 only report a close without a frame: not codes to send.
        if code in (1005, 1006, 1015):
            code = 1011 if code == 1006 else 1000
        await close(websocket, code, upstream.close_reason or "")
        await upstream.close()
