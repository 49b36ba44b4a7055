"""What every MCP tool (serve.mcp_tools) shares: its caller, its answer, its errors.

The caller was authenticated before the request reached the SDK
(serve.mcp_endpoint leaves the user under :data:`CALLER_KEY` in the ASGI
scope); :class:`ToolCall` reads it, and the replica, off the HTTP request the
SDK hands a tool. An answer is the route's JSON as text (what every client
shows the model) and as structured content; a picture is image content. A
:class:`~studio.errors.StudioError` becomes an MCP tool error whose text is the
REST API's status, code and message (``404 sandbox_not_found: no sandbox
'sb_...'``), so an agent reads the same words over either protocol.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from serve.errors import status_for
from serve.replica import Replica
from studio.errors import StudioError, Unauthenticated
from studio.models import UserInfo

__all__ = [
    "CALLER_KEY",
    "ToolCall",
    "ToolFunction",
    "answer",
    "failed",
    "jsonable",
    "png_content",
    "tool_errors",
]

# Where serve.mcp_endpoint leaves the authenticated caller in the request's ASGI scope.
CALLER_KEY = "studio.caller"

P = ParamSpec("P")


class ToolCall:
    """Who calls, and the replica answering: read off the request the SDK hands a tool."""

    def __init__(self, ctx: Context[Any, Any]) -> None:
        request = ctx.request_context.request
        scope: dict[str, Any] = getattr(request, "scope", None) or {}
        user = scope.get(CALLER_KEY)
        if not isinstance(user, UserInfo):
            # Never reached through /mcp, which authenticates first: a transport without it.
            raise Unauthenticated("missing bearer token: send 'Authorization: Bearer <token>'")
        self.user = user
        # /mcp is an HTTP route: the request is Starlette's (its URL makes renderer URLs)
        assert isinstance(request, Request)
        self.request: Request = request
        self.replica: Replica = scope["app"].state.replica

    async def sandbox(self, sandbox_id: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """The sandbox actor's ``method``, after the routes' ownership check."""
        await self.replica.backend.authorize(self.user, sandbox_id)
        return await self.replica.backend.sandbox(sandbox_id, method, *args, **kwargs)


ToolFunction = Callable[P, Awaitable[CallToolResult]]


def tool_errors(fn: ToolFunction[P]) -> ToolFunction[P]:
    """The REST API's errors as MCP tool errors, in the API's words
    (``404 sandbox_not_found: no sandbox ...``): an ``is_error`` result, which the
    agent reads and can act on, rather than the SDK's ToolError, whose text it prefixes."""

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> CallToolResult:
        try:
            return await fn(*args, **kwargs)
        except StudioError as exc:
            return failed(f"{status_for(exc)} {exc.code}: {exc.message}")
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            return failed(f"422 validation_error: {problems}")

    return run


def failed(message: str) -> CallToolResult:
    """A tool error the agent reads: ``message`` alone, ``is_error`` set."""
    return CallToolResult(content=[TextContent(text=message)], is_error=True)


def jsonable(value: Any) -> Any:
    """``value`` with every model in it dumped as JSON data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def answer(data: dict[str, Any], *extra: ContentBlock) -> CallToolResult:
    """``data`` as JSON text (what every client shows the model) and as structured content."""
    shown = jsonable(data)
    text = TextContent(text=json.dumps(shown, separators=(",", ":")))
    return CallToolResult(content=[text, *extra], structured_content=shown)


def png_content(png: bytes) -> ImageContent:
    """A PNG as MCP image content (base64, as the protocol carries images)."""
    return ImageContent(data=base64.b64encode(png).decode("ascii"), mime_type="image/png")
