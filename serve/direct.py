"""A replica's own listener: event streams and edits without the Serve proxy between.

Through Ray Serve's HTTP proxy every WebSocket frame crosses two processes
(proxy and replica) as one item of a Ray stream, and an HTTP request pays
the same toll (in, the replica fetching the body back from the proxy by a
Ray call, and out): what that costs a fan-out and an edit is in
docs/performance.md, direct listener. Served by the replica itself the
fan-out is a loop of socket writes and the edit a direct call. So each
replica also listens on a port of its own (the first free one from
``ws_direct_port``) and answers there, with the very same app, the hot
paths only: the sandbox event WebSocket, ``POST .../execute`` and the
renderer proxy (``/r/<id>/``: a first page load is dozens of requests).
Authentication, rate limits, viewer tokens and the hub are shared with the
proxied routes, which stay (the studio page and clients that only reach the
API's port use them).

The API hands out the direct addresses in ``websocket_url``,
``execute_url`` and ``renderer_url``. The host in them is ``public_host`` when the replica runs on
the head node (on one machine, always) and the replica node's address
otherwise: clients must be able to reach the nodes, or the listener is turned
off with ``ws_direct_port=0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import re
import socket
import time

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve._ws_protocol import FrameWriterProtocol
from studio.config import service_port_problem

__all__ = ["PORT_TRIES", "DirectListener", "direct_routes_only"]

logger = logging.getLogger(__name__)
# Under ray.serve, whose handlers write the replica's log file (serve/replica_*.log),
# beside the access lines of requests that came through the proxy.
access_logger = logging.getLogger("ray.serve.direct")

# Ports tried from the base before giving up (replicas of one node share the range).
PORT_TRIES = 100
# The routes this port serves: the event stream and the edits.
_EVENTS_PATH = re.compile(r"/api/v1/sandboxes/[^/]+/ws")
_EXECUTE_PATH = re.compile(r"/api/v1/sandboxes/[^/]+/execute")
# The sandboxes' renderers (serve.renderer_proxy): a page load is dozens of requests.
_RENDERER_PATH = re.compile(r"/r/[^/]+(/.*)?")
# A renderer request that answered well is logged only if it took longer (seconds).
_RENDERER_LOG_SLOWER_THAN = 1.0
# Seconds open connections get to finish when the replica stops.
_SHUTDOWN_GRACE = 2


def direct_routes_only(app: ASGIApp, api_hint: str) -> ASGIApp:
    """``app`` restricted to the event WebSocket, ``POST .../execute`` and the renderer
    proxy (``/r/<id>/...``, HTTP and WebSocket); the rest refused.

    Any other HTTP request gets a 404 saying where the API is (``api_hint``);
    a WebSocket to another path is closed before it is accepted (the client
    sees a 403).
    """

    async def only_direct_routes(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and (
            _EVENTS_PATH.fullmatch(scope["path"]) or _RENDERER_PATH.fullmatch(scope["path"])
        ):
            await app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        elif (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and _EXECUTE_PATH.fullmatch(scope["path"])
        ) or (scope["type"] == "http" and _RENDERER_PATH.fullmatch(scope["path"])):
            await _logged(app, scope, receive, send)
        elif scope["type"] == "http":
            message = (
                "this port serves only the sandbox event WebSocket "
                "(/api/v1/sandboxes/{id}/ws), POST /api/v1/sandboxes/{id}/execute and the "
                "renderers (/r/{id}/); "
                f"the API is at {api_hint}"
            )
            body = json.dumps({"error": {"code": "not_found", "message": message}}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

    return only_direct_routes


async def _logged(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one HTTP request and log it as Serve's proxy logs its own: method, path, status, ms.

    Only the path: the listener keeps uvicorn's access log off for the
    WebSocket's query-string tokens, and an edit carries its token in a header.
    A renderer's request is logged only when it failed or was slow: a page
    load is dozens of module requests, and a line each through the replica's
    log handlers was a fifth of the replica's CPU for a page (py-spy,
    docs/performance.md, the renderer proxy).
    """
    started = time.monotonic()
    status = 500

    async def send_noting_status(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        await send(message)

    try:
        await app(scope, receive, send_noting_status)
    finally:
        elapsed = time.monotonic() - started
        quiet = (
            status < 400
            and elapsed < _RENDERER_LOG_SLOWER_THAN
            and _RENDERER_PATH.fullmatch(scope["path"]) is not None
        )
        if not quiet:
            access_logger.info(
                "%s %s %d %.1fms (direct)",
                scope["method"],
                scope["path"],
                status,
                elapsed * 1000,
            )


def _bind(host: str, first: int, tries: int) -> socket.socket | None:
    """A listening-ready socket on the first free port of ``first`` .. ``first + tries - 1``.

    Ports of Ray's worker range (and past 65535) are skipped; None when no port is free.
    """
    for port in range(first, first + tries):
        if service_port_problem(port):
            continue
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise
        return sock
    return None


class DirectListener:
    """One uvicorn server on the replica's event loop, serving ``app``'s two hot paths."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str,
        first_port: int,
        advertised_host: str,
        api_hint: str,
        ws_max_size: int = 16 * 1024 * 1024,
    ) -> None:
        self._app = direct_routes_only(app, api_hint)
        # Larger client messages are refused by the protocol itself (close 1009),
        # before they are buffered whole: the session's own cap (serve.websocket)
        # is all a connection through Serve's proxy has.
        self._ws_max_size = ws_max_size
        self._host = host
        self._first_port = first_port
        self._advertised_host = advertised_host
        self._server: uvicorn.Server | None = None
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int | None:
        """The port listened on, None when not listening."""
        return None if self._socket is None else int(self._socket.getsockname()[1])

    @property
    def base_url(self) -> str | None:
        """``ws://host:port`` of the listener, None when it is not listening."""
        return self._url("ws")

    @property
    def http_base_url(self) -> str | None:
        """``http://host:port`` of the listener, None when it is not listening."""
        return self._url("http")

    def _url(self, scheme: str) -> str | None:
        port = self.port
        if port is None:
            return None
        host = self._advertised_host
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

    async def start(self) -> None:
        """Listen on the first free port; without one, log it and stay off (the proxy serves)."""
        sock = _bind(self._host, self._first_port, PORT_TRIES)
        if sock is None:
            logger.warning(
                "no free port in %d-%d for the direct WebSocket listener: "
                "event streams go through the API's port only",
                self._first_port,
                self._first_port + PORT_TRIES - 1,
            )
            return
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            # uvicorn's default logging config goes through dictConfig, which closes every
            # handler of the process: Serve's replica logs (access lines included) would stop.
            log_config=None,
            # The token may be in the query string: no access log, as on the proxy.
            access_log=False,
            log_level="warning",
            ws_ping_interval=None,  # the session pings on its own (serve.websocket)
            # Events are small JSON; compressing each for every client costs more than it saves.
            ws_per_message_deflate=False,
            ws_max_size=self._ws_max_size,
            # One frame's bytes written to every client of an event (serve._ws_protocol).
            ws=FrameWriterProtocol,
            timeout_graceful_shutdown=_SHUTDOWN_GRACE,
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        # Not Server.serve(): it takes over SIGTERM and SIGINT when run on the
        # main thread, and stopping the replica is Serve's business.
        await server.startup(sockets=[sock])
        self._server, self._socket = server, sock
        self._task = asyncio.create_task(self._run(server, sock), name="direct-ws")
        logger.info("direct WebSocket listener on %s", self.base_url)

    @staticmethod
    async def _run(server: uvicorn.Server, sock: socket.socket) -> None:
        await server.main_loop()
        await server.shutdown(sockets=[sock])

    async def stop(self) -> None:
        """Stop listening and close the open connections (they may reconnect elsewhere)."""
        server, task, sock = self._server, self._task, self._socket
        self._server = self._task = self._socket = None
        if server is None or task is None or sock is None:
            return
        server.should_exit = True
        try:
            await asyncio.wait_for(task, _SHUTDOWN_GRACE + 3.0)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
        except Exception:
            logger.exception("direct WebSocket listener stopped with an error")
        finally:
            with contextlib.suppress(OSError):
                sock.close()
