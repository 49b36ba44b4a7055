"""``/mcp``: the MCP server (serve.mcp_tools) over streamable HTTP on the API's app.

The SDK's session manager runs in the replica (the app's lifespan enters
:meth:`McpEndpoint.running`: Serve runs an ingress's lifespan on its replica,
and a route's ASGI app has none of its own). In front of it, every request is
authenticated the way a REST request is (``serve.routes.current_user``: the
bearer token, the per-user rate limit); refused, it gets the REST API's 401 or
429 and never reaches the SDK. The refusal's body is a JSON-RPC error (the REST
error under ``data``): an MCP client shows a JSON-RPC error's message, and
answers any other body with "Server returned an error response". The user
rides in the request's ASGI scope to the tools, which authorize each sandbox
as the routes do.

Stateless, JSON answers: each POST is a whole exchange, so any replica
(``num_replicas`` > 1 behind Serve's proxy) can answer any request, and no
session is left to expire. The tools ask nothing of the client mid-call
(no sampling or elicitation), which is all statelessness gives up. Only POST
is routed: a GET (a server-to-client stream) and a DELETE (ending a session)
get 405, as the transport's specification allows a server without them; the
SDK's stateless GET would otherwise hold the request open for good.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import INVALID_REQUEST
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from serve.errors import error_response, retry_after, status_for
from serve.mcp_calls import CALLER_KEY
from serve.mcp_tools import build_mcp_server
from serve.replica import Replica
from serve.routes import current_user
from studio.errors import StudioError

__all__ = ["MCP_PATH", "McpEndpoint"]

MCP_PATH = "/mcp"


class McpEndpoint:
    """The ASGI app of ``/mcp``: authenticate, then the SDK's streamable HTTP transport."""

    def __init__(self, replica: Replica) -> None:
        self._replica = replica
        self.server: MCPServer[Any] = build_mcp_server()
        # Builds the SDK's session manager; its Starlette app (routes, no lifespan) is not used.
        self.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=True,
            json_response=True,
            # The API's own cap (serve.limits) already held the body to this.
            max_request_body_size=replica.settings.max_request_bytes,
            # DNS rebinding steals a browser's ambient credentials; a bearer token is
            # never ambient, and the SDK's default would refuse any host but localhost.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self._sessions: StreamableHTTPSessionManager = self.server.session_manager

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The SDK's task group, for the app's lifetime."""
        async with self._sessions.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            user = await current_user(request, self._replica)
        except StudioError as exc:
            await _refusal(exc)(scope, receive, send)
            return
        scope[CALLER_KEY] = user
        await self._sessions.handle_request(scope, receive, send)


def _refusal(error: StudioError) -> JSONResponse:
    """The REST API's refusal (status, Retry-After, its error under ``data``) as JSON-RPC."""
    rest = error_response(error)
    status = status_for(error)
    body = json.loads(bytes(rest.body))["error"]
    wait = retry_after(error)
    return JSONResponse(
        {
            "jsonrpc": "2.0",
            "id": None,
            "error": {
                "code": INVALID_REQUEST,
                "message": f"{status} {error.code}: {error.message}",
                "data": body,
            },
        },
        status_code=status,
        headers={"Retry-After": str(wait)} if wait is not None else None,
    )
