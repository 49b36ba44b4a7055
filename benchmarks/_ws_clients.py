"""Many WebSocket clients in one thread, cheap enough not to be what is measured.

The fan-out scenario needs 100 clients of one sandbox. As 100 connections of
the ``websockets`` asyncio client in one process, each received frame costs
a task wake-up, the library's reader and a future: ~0.1 ms of Python per
client, so the 100th client "received" an event 10 ms after the first even
when every byte had arrived together. Real viewers are 100 processes on 100
machines. Here the connections are plain sockets driven by one ``epoll``
loop and the ``websockets`` sans-I/O protocol (the library's own handshake
and framing, none of its asyncio machinery), and each socket also reports
the kernel's arrival time of its data (``SO_TIMESTAMPNS``), which no client
processing can delay.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

__all__ = ["Arrival", "Clients"]

# Linux's value; the socket module names it only on some builds.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_CMSG_SPACE = socket.CMSG_SPACE(16)


@dataclass(frozen=True)
class Arrival:
    """When a client had a message: parsed by it, and its bytes in its socket (wall clock)."""

    parsed: float
    """``time.time()`` right after the client parsed it."""
    in_socket: float
    """The kernel's timestamp of the last bytes of the read that completed it."""


@dataclass(eq=False)
class _Client:
    sock: socket.socket
    protocol: ClientProtocol
    messages: list[tuple[dict[str, Any], Arrival]] = field(default_factory=list)


class Clients:
    """``count`` WebSocket connections to ``url``, read by one loop.

    Application ``ping`` messages of the studio protocol are answered with a
    ``pong``, as the studio page does.
    """

    def __init__(self, url: str, headers: dict[str, str], count: int) -> None:
        self._epoll = select.epoll()
        self._clients: dict[int, _Client] = {}
        self.clients: list[_Client] = []
        try:
            for _ in range(count):
                client = _connect(url, headers)
                self._epoll.register(client.sock.fileno(), select.EPOLLIN)
                self._clients[client.sock.fileno()] = client
                self.clients.append(client)
        except BaseException:
            self.close()
            raise

    def send_text(self, index: int, text: str) -> None:
        """Send ``text`` from client ``index``."""
        client = self.clients[index]
        client.protocol.send_text(text.encode())
        _flush(client)

    def drain(self, quiet: float) -> None:
        """Read until nothing arrived for ``quiet`` seconds; forget what was read."""
        while self.poll(quiet):
            pass
        for client in self.clients:
            client.messages.clear()

    def poll(self, timeout: float) -> bool:
        """Read what has arrived (waiting up to ``timeout``); False when nothing did."""
        ready = self._epoll.poll(timeout)
        for fd, _ in ready:
            _read(self._clients[fd])
        return bool(ready)

    def wait_for(
        self, match: Callable[[dict[str, Any]], bool], indexes: range, timeout: float
    ) -> dict[int, Arrival]:
        """Client index -> when it had a message that ``match``es, for those in ``indexes``."""
        found: dict[int, Arrival] = {}
        deadline = time.monotonic() + timeout
        while len(found) < len(indexes) and time.monotonic() < deadline:
            self.poll(min(0.5, max(deadline - time.monotonic(), 0.0)))
            for index in indexes:
                client = self.clients[index]
                for message, arrival in client.messages:
                    if index not in found and match(message):
                        found[index] = arrival
                client.messages.clear()
        return found

    def close(self) -> None:
        for client in self.clients:
            try:
                client.protocol.send_close()
                _flush(client)
            except OSError:
                pass
            client.sock.close()
        self.clients.clear()
        self._clients.clear()
        self._epoll.close()


def _connect(url: str, headers: dict[str, str]) -> _Client:
    uri = parse_uri(url)
    protocol = ClientProtocol(uri, max_size=None)
    sock = socket.create_connection((uri.host, uri.port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = _Client(sock, protocol)
    request = protocol.connect()
    for name, value in headers.items():
        request.headers[name] = value
    protocol.send_request(request)
    _flush(client)
    while True:
        data = sock.recv(65536)
        protocol.receive_data(data)
        if not data or any(isinstance(e, Response) for e in protocol.events_received()):
            break
    if protocol.handshake_exc is not None:
        sock.close()
        raise ConnectionError(f"websocket handshake with {url} failed: {protocol.handshake_exc}")
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setblocking(False)
    return client


def _read(client: _Client) -> None:
    try:
        data, ancillary, _flags, _addr = client.sock.recvmsg(1 << 20, _CMSG_SPACE)
    except BlockingIOError:
        return
    in_socket = time.time()
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = struct.unpack("qq", value[:16])
            in_socket = seconds + nanoseconds / 1e9
    if not data:
        client.protocol.receive_eof()
        return
    client.protocol.receive_data(data)
    for frame in client.protocol.events_received():
        if not isinstance(frame, Frame) or frame.opcode is not Opcode.TEXT:
            continue
        message = json.loads(bytes(frame.data))
        if message.get("type") == "ping":
            client.protocol.send_text(
                json.dumps({"type": "pong", "payload": message.get("payload", {})}).encode()
            )
        client.messages.append((message, Arrival(time.time(), in_socket)))
    _flush(client)


def _flush(client: _Client) -> None:
    out = b"".join(client.protocol.data_to_send())
    if out:
        before = client.sock.gettimeout()
        client.sock.settimeout(None)
        try:
            client.sock.sendall(out)
        finally:
            client.sock.settimeout(before)
