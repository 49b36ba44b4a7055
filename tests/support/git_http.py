"""Bare git repositories over smart HTTP on loopback, as a forge serves them.

:func:`serve_git` runs a :class:`~http.server.ThreadingHTTPServer` whose
handler hands every request to ``git http-backend`` (a CGI program, run as a
child process per request), so clones, fetches and pushes speak git's real
smart HTTP protocol. Like GitHub for a public repository, fetching needs no
credentials and pushing does: a receive-pack request without an
``Authorization`` header gets a 401 Basic challenge (git only sends the user
and password of a URL after one). Any user and password are then accepted,
and what arrived is recorded in :attr:`GitHttpServer.requests`, so a test can
check what a client sent (e.g. ``x-access-token:<token>``).

:func:`bare_repository` makes a pushable bare repository under the served root.
The standard library's ``cgi`` module and ``CGIHTTPRequestHandler`` are
deprecated (and pytest turns warnings into errors), hence the small CGI
gateway here.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["GitHttpServer", "GitRequest", "bare_repository", "serve_git"]

# Long enough for a push of a small repository on a loaded 2-core machine.
BACKEND_TIMEOUT = 120.0
# Request headers git http-backend reads from the CGI environment.
_CGI_HEADERS = {"content-encoding", "git-protocol", "accept", "user-agent"}


@dataclass(frozen=True)
class GitRequest:
    """One HTTP request as the server received it (credentials as sent)."""

    method: str
    path: str
    service: str | None
    user: str | None
    password: str | None
    status: int


def _service(method: str, path: str, query: str) -> str | None:
    """``git-upload-pack`` (fetch) or ``git-receive-pack`` (push), when the request is one."""
    if method == "GET" and path.endswith("/info/refs"):
        return parse_qs(query).get("service", [None])[0]
    name = path.rsplit("/", 1)[-1]
    return name if name in {"git-upload-pack", "git-receive-pack"} else None


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, _, password = decoded.partition(":")
    return user, password


def _parse_cgi(output: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of a CGI program's stdout (headers end at a blank line)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = output.partition(separator)
        if found:
            break
    else:
        return 502, [("Content-Type", "text/plain")], b"git http-backend gave no headers\n"
    status = 200
    headers: list[tuple[str, str]] = []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "status":
            status = int(value.strip().split(" ", 1)[0])
        elif name.strip():
            headers.append((name.strip(), value.strip()))
    return status, headers, body


class GitHttpServer:
    """A running smart HTTP git server on 127.0.0.1 serving the bare repositories under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[GitRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        # Non-daemon handler threads, so server_close() joins them: none outlives the server.
        self._server.daemon_threads = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="git-http", daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL; a repository ``<root>/hello.git`` is at ``<url>/hello.git``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def pushes(self) -> list[GitRequest]:
        """The receive-pack requests that reached git (credentials present)."""
        with self._lock:
            return [r for r in self.requests if r.service == "git-receive-pack" and r.status != 401]

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and wait for every request in flight to finish."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()

    def _record(self, request: GitRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _environment(
        self, handler: BaseHTTPRequestHandler, user: str | None, length: int
    ) -> dict[str, str]:
        parts = urlsplit(handler.path)
        # Only PATH and HOME from ours: a GIT_DIR or GIT_CONFIG of the test run must not leak in.
        env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
        env.update(
            GIT_PROJECT_ROOT=str(self.root),
            GIT_HTTP_EXPORT_ALL="1",
            GATEWAY_INTERFACE="CGI/1.1",
            SERVER_PROTOCOL=handler.request_version,
            SERVER_NAME="127.0.0.1",
            SERVER_PORT=str(self._server.server_address[1]),
            REQUEST_METHOD=handler.command,
            PATH_INFO=unquote(parts.path),
            QUERY_STRING=parts.query,
            CONTENT_TYPE=handler.headers.get("Content-Type", ""),
            CONTENT_LENGTH=str(length),
            REMOTE_ADDR=str(handler.client_address[0]),
        )
        if user:
            env["REMOTE_USER"] = user
        for name, value in handler.headers.items():
            if name.lower() in _CGI_HEADERS:
                env["HTTP_" + name.upper().replace("-", "_")] = value
        return env

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        served = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.0: one request per connection, so no handler thread waits on
            # an idle keep-alive connection and server_close() joins promptly.
            protocol_version = "HTTP/1.0"
            # A client that stops sending must not hold a thread forever.
            timeout = 60

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline().strip():
                        pass  # trailers
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                service = _service(self.command, parts.path, parts.query)
                user, password = _basic_credentials(self.headers.get("Authorization"))
                if self.headers.get("Expect", "").lower() == "100-continue":
                    self.send_response_only(100)
                    self.end_headers()
                body = self._body()
                if service == "git-receive-pack" and user is None:
                    status, headers, reply = (
                        401,
                        [("WWW-Authenticate", 'Basic realm="git"')],
                        b"pushing needs credentials\n",
                    )
                else:
                    result = subprocess.run(
                        ["git", "http-backend"],
                        input=body,
                        env=served._environment(self, user, len(body)),
                        capture_output=True,
                        timeout=BACKEND_TIMEOUT,
                        check=False,
                    )
                    status, headers, reply = _parse_cgi(result.stdout)
                    if result.returncode != 0 and status == 200:
                        status, reply = 500, result.stderr
                served._record(
                    GitRequest(self.command, parts.path, service, user, password, status)
                )
                self._send(status, headers, reply)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                # Requests are recorded in served.requests; stderr noise helps nobody.
                return

        return Handler


def bare_repository(root: Path, name: str, source: Path) -> Path:
    """``<root>/<name>``: a bare clone of ``source`` that accepts pushes over HTTP."""
    target = root / name
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["git", "clone", "--quiet", "--bare", str(source), str(target)],
        check=True,
        capture_output=True,
    )
    # http-backend refuses receive-pack to anonymous users unless this is set;
    # the server itself decides who must authenticate.
    subprocess.run(
        ["git", "config", "http.receivepack", "true"], cwd=target, check=True, capture_output=True
    )
    return target


@contextlib.contextmanager
def serve_git(root: Path) -> Iterator[GitHttpServer]:
    """Serve the bare repositories under ``root`` over smart HTTP until the block ends."""
    server = GitHttpServer(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
