"""uvicorn's WebSocket protocol, plus one extension: write a text frame now.

A sandbox event goes to every client of the sandbox. Through ASGI each copy
costs a task wake-up, the ASGI ``send`` chain (Starlette's wrappers, then
uvicorn's) and a frame built for that connection. A frame from the server is
never masked (RFC 6455, 5.1), so the bytes are the same for every client:
built once, they can be written to each connection's transport in one loop.
Measured with 100 clients of a bare uvicorn server: docs/performance.md,
"Direct listener".

The direct listener (:mod:`serve.direct`) runs uvicorn with
:class:`FrameWriterProtocol`, which puts :data:`WRITE_TEXT` in the scope's
``extensions`` (the ASGI way for a server to offer more than the spec): a
callable ``write(text) -> bool`` that writes at once, or returns False when
it cannot (the client is not reading, the connection is closing), and the
caller then takes the ordinary ``send``. Connections through Serve's proxy
have no such extension and always take ``send``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

__all__ = ["WRITE_TEXT", "FrameWriterProtocol", "TextWriter", "text_writer"]

WRITE_TEXT = "component-studio.write-text"

# (text) -> True when the frame was written, False when the caller must send it itself.
TextWriter = Callable[[str], bool]


@functools.lru_cache(maxsize=16)
def _text_frame(text: str) -> bytes:
    # Keyed by the very string the hub hands every client: hashed once, built once.
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


class FrameWriterProtocol(WebSocketsSansIOProtocol):
    """:class:`WebSocketsSansIOProtocol` offering :data:`WRITE_TEXT` to the app."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        self.scope["extensions"][WRITE_TEXT] = {"write": self.write_text_now}

    def write_text_now(self, text: str) -> bool:
        """Write ``text`` as one frame now; False when only ``send`` may (or nothing can)."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            # A client that does not read: leave it to send(), which waits, and the hub's queue.
            or not self.writable.is_set()
            or self.transport.is_closing()
            or self.conn.state is not State.OPEN
            # A negotiated extension (compression) changes the frame per connection.
            or self.conn.extensions
        ):
            return False
        self.transport.write(_text_frame(text))
        return True


def text_writer(scope: dict[str, Any] | Any) -> TextWriter | None:
    """The :data:`WRITE_TEXT` writer of a WebSocket's ``scope``, None without one."""
    extension = (scope.get("extensions") or {}).get(WRITE_TEXT)
    if not isinstance(extension, dict):
        return None
    write = extension.get("write")
    return write if callable(write) else None
