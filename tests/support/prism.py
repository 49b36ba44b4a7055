"""GitHub without the internet: Prism mocking GitHub's REST API, and a recording front.

Prism (``@stoplight/prism-cli``) serves GitHub's own OpenAPI description
(``@octokit/openapi``) on loopback: it answers every documented route with the
spec's examples and validates requests against the spec (a POST /pulls without
``head`` gets 422). Both npm packages are pinned in ``tests/tools``
(``scripts/setup.sh`` runs ``npm ci`` there).

Prism does not echo what it was sent, and it does not check tokens. So tests
talk to a :class:`GitHubFront`, a small loopback HTTP proxy in front of Prism
that records every request (method, path, query, headers, JSON body) and plays
GitHub's authentication layer: a request without the expected token gets
GitHub's real 401 ``Bad credentials`` answer. For answers Prism cannot give
(GitHub's 422 "A pull request already exists" needs server state) a test may
register a canned answer, ask Prism for a status with its ``Prefer`` header, or
edit one field of Prism's answer; each of these is explicit in the test.

Fixtures: ``prism`` (session scope: Prism takes 8-20 s and ~300 MB to start, so
one serves the whole run) and ``github_front`` (per test, threads only).

The autouse leak check in ``tests/conftest.py`` snapshots child processes when
each test starts. pytest sets up session-scoped fixtures before function-scoped
ones, so Prism is already running in that snapshot of the first test that asks
for it, and Prism is one process that starts no children of its own. It is
stopped (SIGTERM to its process group, then SIGKILL) when the session ends.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from benchmarks._proc import free_port, kill_group, spawn_group

__all__ = [
    "GITHUB_SPEC",
    "PRISM_ENTRY",
    "TOOLS_DIR",
    "GitHubFront",
    "PrismServer",
    "RecordedRequest",
    "github_front",
    "prism",
    "run_prism",
]

ROOT = Path(__file__).resolve().parent.parent.parent
TOOLS_DIR = ROOT / "tests" / "tools"
PRISM_ENTRY = TOOLS_DIR / "node_modules" / "@stoplight" / "prism-cli" / "dist" / "index.js"
GITHUB_SPEC = (
    TOOLS_DIR / "node_modules" / "@octokit" / "openapi" / "generated" / "api.github.com.json"
)

# The token the front accepts; any other gets GitHub's 401.
VALID_TOKEN = "ghp_studioTestToken0123456789abcdefABCDEF"

BAD_CREDENTIALS = {
    "message": "Bad credentials",
    "documentation_url": "https://docs.github.com/rest",
    "status": "401",
}

# Hop-by-hop headers, and the ones the front recomputes (length) or must keep plain
# (encoding: an edited answer is re-serialized).
_NOT_FORWARDED = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "accept-encoding",
}


@dataclass(frozen=True)
class PrismServer:
    """A running Prism: where it answers, its pid (also its process group) and its log."""

    url: str
    pid: int
    log_path: Path


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2)
    try:
        # Any documented route will do; /zen needs no parameters.
        conn.request("GET", "/zen")
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def run_prism(log_dir: Path, *, ready_timeout: float = 180.0) -> Iterator[PrismServer]:
    """Start Prism on a free loopback port, wait until it answers, stop its group at exit."""
    for path in (PRISM_ENTRY, GITHUB_SPEC):
        if not path.is_file():
            pytest.fail(f"{path} is missing: run scripts/setup.sh (npm ci in tests/tools)")
    log_path = log_dir / "prism.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # A log file, not a pipe: Prism logs every request and a full pipe would block it.
    argv = ["node", str(PRISM_ENTRY), "mock", "-h", "127.0.0.1", "-p", str(port), str(GITHUB_SPEC)]
    proc = spawn_group(argv, TOOLS_DIR, log_path)
    try:
        deadline = time.monotonic() + ready_timeout
        while not _answers(url):
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"Prism exited with code {proc.returncode} while starting:\n{tail}")
            if time.monotonic() > deadline:
                pytest.fail(f"Prism did not answer on {url} within {ready_timeout} s")
            time.sleep(0.25)
        yield PrismServer(url=url, pid=proc.pid, log_path=log_path)
    finally:
        kill_group(proc, grace=10)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the front received it, before it went to Prism."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


@dataclass
class _Rules:
    answers: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    prefer: dict[tuple[str, str], str] = field(default_factory=dict)
    edits: dict[tuple[str, str], Callable[[Any], Any]] = field(default_factory=dict)


class GitHubFront:
    """A recording loopback proxy in front of Prism that checks tokens as GitHub does.

    ``requests`` lists what clients sent, in order. Rules are keyed by method and
    path (without query): :meth:`answer` replies without asking Prism,
    :meth:`prefer` adds Prism's ``Prefer`` header (e.g. ``code=422``), and
    :meth:`edit` passes Prism's JSON answer through a function.
    """

    def __init__(self, upstream: str, *, token: str | None = VALID_TOKEN) -> None:
        self.upstream = urlsplit(upstream)
        self.token = token
        self.requests: list[RecordedRequest] = []
        self._rules = _Rules()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="github-front", daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL to give PyGithub."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, method: str, path: str, status: int, body: Any) -> None:
        """Reply to ``method path`` with ``status`` and ``body`` instead of Prism.

        ``body`` is sent as JSON, or as an HTML page if it is ``bytes`` (what a
        proxy in front of GitHub answers when GitHub is down).
        """
        self._rules.answers[(method.upper(), path)] = (status, body)

    def prefer(self, method: str, path: str, value: str) -> None:
        """Send ``Prefer: value`` to Prism for ``method path`` (Prism picks that response)."""
        self._rules.prefer[(method.upper(), path)] = value

    def edit(self, method: str, path: str, change: Callable[[Any], Any]) -> None:
        """Replace Prism's JSON answer to ``method path`` by ``change(answer)``."""
        self._rules.edits[(method.upper(), path)] = change

    def sent(self, method: str, path: str) -> list[RecordedRequest]:
        """The recorded requests for ``method path``."""
        with self._lock:
            return [r for r in self.requests if r.method == method.upper() and r.path == path]

    def __enter__(self) -> GitHubFront:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.token is None:
            return True
        scheme, _, value = headers.get("authorization", "").partition(" ")
        return scheme.lower() in {"token", "bearer"} and value == self.token

    def _handle(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        request = RecordedRequest(
            method=handler.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers=headers,
            body=body,
        )
        with self._lock:
            self.requests.append(request)
        key = (request.method, request.path)
        json_type = {"Content-Type": "application/json; charset=utf-8"}
        if not self._authorized(headers):
            return 401, json_type, json.dumps(BAD_CREDENTIALS).encode()
        if key in self._rules.answers:
            status, answer = self._rules.answers[key]
            if isinstance(answer, bytes):
                return status, {"Content-Type": "text/html"}, answer
            return status, json_type, json.dumps(answer).encode()
        upstream_headers = {k: v for k, v in headers.items() if k not in _NOT_FORWARDED}
        if key in self._rules.prefer:
            upstream_headers["prefer"] = self._rules.prefer[key]
        conn = http.client.HTTPConnection(
            self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=30
        )
        try:
            conn.request(request.method, handler.path, body=body or None, headers=upstream_headers)
            response = conn.getresponse()
            status, data = response.status, response.read()
            reply_headers = {
                k: v for k, v in response.getheaders() if k.lower() not in _NOT_FORWARDED
            }
        finally:
            conn.close()
        if key in self._rules.edits:
            data = json.dumps(self._rules.edits[key](json.loads(data))).encode()
        return status, reply_headers, data

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1 keep-alive, as GitHub speaks it; every reply sets Content-Length.
            protocol_version = "HTTP/1.1"

            def _reply(self) -> None:
                status, headers, data = front._handle(self)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _reply

            def log_message(self, format: str, *args: Any) -> None:
                # Requests are recorded in front.requests; stderr noise helps nobody.
                return

        return Handler


@pytest.fixture(scope="session")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrismServer]:
    """One Prism for the whole session, serving GitHub's OpenAPI description."""
    with run_prism(tmp_path_factory.mktemp("prism")) as server:
        yield server


@pytest.fixture
def github_front(prism: PrismServer) -> Iterator[GitHubFront]:
    """A fresh recording front on Prism for one test; accepts only ``VALID_TOKEN``."""
    with GitHubFront(prism.url) as front:
        yield front
