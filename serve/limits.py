"""Limits applied before a request reaches a route: per client address, and body size.

:class:`RequestLimits` is ASGI middleware in front of every route, on the
Serve proxy's path and on the replica's own listener alike:

- every HTTP request and WebSocket connect counts against a token bucket of
  its client address, before its body is read or its caller authenticated:
  a client flooding the API (with tokens or without) is answered 429 by the
  replica alone, with no manager or sandbox call. Each replica keeps its own
  buckets, so with N replicas an address gets up to N times the limit;
- a body over ``max_body`` bytes is refused 413 before it is parsed: on its
  Content-Length header before a byte is read, or, chunked, as soon as the
  bytes read pass the limit (the route's ``receive`` raises
  :class:`~serve.errors.BodyTooLarge`, which FastAPI passes through).

The address is the TCP peer the replica's server saw: through Serve's proxy,
the proxy passes on its own client's address. Behind an ingress or a load
balancer that is the balancer's address, and every client behind it shares one
bucket: raise ``address_rate_limit_*`` there, or limit at the ingress.

Serve's proxy itself reads what a client sends while the request is open (it
queues it for the replica): the early 413 ends the request, which bounds that.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.errors import BodyTooLarge, body_too_large, error_response
from serve.ratelimit import RateLimiter
from studio.errors import RateLimited

__all__ = ["CLOSE_RATE_LIMITED", "RequestLimits", "client_address"]

# A WebSocket refused or closed for its rate: 4000 + HTTP 429, as serve.routes closes.
CLOSE_RATE_LIMITED = 4429
# The key of a client whose server gave no peer address (a Unix socket, a test client).
_UNKNOWN = "unknown"


def client_address(scope: Scope) -> str:
    """The client's address as the server saw it (the host part only)."""
    client = scope.get("client")
    if not client:
        return _UNKNOWN
    return str(client[0])


def _declared_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


class RequestLimits:
    """429 past an address's rate (4429 for a WebSocket), 413 past ``max_body`` bytes."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, max_body: int) -> None:
        self.app = app
        self.limiter = limiter
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        address = client_address(scope)
        wait = self.limiter.check(address)
        if wait > 0:
            await self._refuse(scope, receive, send, address, wait)
        elif scope["type"] == "websocket":
            await self.app(scope, receive, send)
        else:
            await self._capped(scope, receive, send)

    async def _capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_body
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await error_response(body_too_large(limit))(scope, receive, send)
            return
        read = 0

        async def receive_capped() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, receive_capped, send)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, address: str, wait: float
    ) -> None:
        error = RateLimited(
            f"too many requests from {address}: the limit is "
            f"{self.limiter.per_minute} a minute per client address "
            f"(bursts of {self.limiter.burst}); retry in {wait:.1f} s",
            retry_after=wait,
        )
        if scope["type"] == "http":
            await error_response(error)(scope, receive, send)
            return
        # Accepted, then closed with the reason: a refusal before the accept reaches a
        # browser as a bare 403, without the reason (serve.routes refuses the same way).
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        await send(
            {"type": "websocket.close", "code": CLOSE_RATE_LIMITED, "reason": error.message[:120]}
        )
