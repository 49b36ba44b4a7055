"""Limits applied before a request reaches a route: per client address, and body size.

:class:`AddressLimit` is ASGI middleware counting every HTTP request and
WebSocket connect against a token bucket of its client address, before the
body is read or the caller authenticated: a client that floods the API with
requests (authenticated or not) is answered 429 by the replica alone, with no
manager or sandbox call. Each replica keeps its own buckets, so with N
replicas an address gets up to N times the limit (docs/limits.md).

The address is the TCP peer the replica's server saw: through Serve's proxy,
the proxy passes on its own client's address. Behind an ingress or a load
balancer that is the balancer's address, and every client behind it shares one
bucket: raise ``address_rate_limit_*`` there, or limit at the ingress.

The body-size cap itself is FastAPI's (``max_body_size``, serve.app): a
Content-Length over it is refused at the first read, a chunked body once the
bytes read pass it; serve.errors words its 413.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from serve.errors import error_response
from serve.ratelimit import RateLimiter
from studio.errors import RateLimited

__all__ = ["CLOSE_RATE_LIMITED", "AddressLimit", "client_address"]

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


class AddressLimit:
    """Answers 429 (HTTP) or closes with 4429 (WebSocket) past an address's rate."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        address = client_address(scope)
        wait = self.limiter.check(address)
        if wait <= 0:
            await self.app(scope, receive, send)
            return
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
