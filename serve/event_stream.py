"""A sandbox's event stream on an accepted-to-be WebSocket, once its caller is let in.

Shared by the API's ``/api/v1/sandboxes/{id}/ws`` (a user's token) and the
renderer proxy's ``/r/{id}/__studio/events`` (the page's renderer cookie).
"""

from __future__ import annotations

from typing import Any

from fastapi import WebSocket

from serve.errors import status_for
from serve.replica import Replica
from serve.websocket import close, stream_sandbox
from studio.errors import StudioError

__all__ = ["serve_events"]


async def serve_events(
    websocket: WebSocket, replica: Replica, sandbox_id: str, since: int | None
) -> None:
    """Accept ``websocket`` and stream ``sandbox_id``'s events (after ``since``) until it ends.

    A sandbox that does not answer is a close with 4000 + the HTTP status and the reason.
    """
    backend = replica.backend
    try:
        state: dict[str, Any] = await backend.sandbox(sandbox_id, "ping")
    except StudioError as exc:
        await websocket.accept()
        await close(websocket, 4000 + status_for(exc), exc.message)
        return
    await websocket.accept()

    async def publish(message: dict[str, Any], client_id: str) -> None:
        await backend.sandbox(sandbox_id, "publish", message, client_id)

    await stream_sandbox(
        websocket,
        replica.hub,
        sandbox_id,
        since=since,
        status=str(state.get("state", "running")),
        last_seq=int(state.get("last_seq", 0)),
        publish=publish,
        options=replica.session,
    )
