"""``studio create``'s progress: the sandbox's setup steps as they happen.

The CLI asks for the sandbox with ``wait=false`` (202 at once), then reads the
sandbox's event stream from its start (the WebSocket with ``since=0``) and
shows each setup step the sandbox announces (``mirror``, ``worktree``,
``install``, ``vite``: ``status`` events carrying a ``step``) with how long it
took, until the sandbox is running or has failed. Before the first step the
actor itself is starting (a Ray worker on the chosen node): that wait is shown
as ``actor``. A create that waits for its repository's preparation on the
node shows those steps first (``prepare:install``...). When the stream cannot
be read (a proxy that does not pass WebSockets, a stream that ends early) the
sandbox's status is polled instead, so the command still ends with the right
answer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect

from cli.http import ApiClient, CliError
from studio.messages import MessageType, PrepareStep, SetupStep
from studio.state import SandboxState

__all__ = ["SetupOutcome", "StepDisplay", "follow_setup"]

# The wait before the sandbox's first own event: Ray starting its actor.
ACTOR_STEP = "actor"
_POLL_INTERVAL = 0.5
_STARTING = frozenset({SandboxState.PENDING.value, SandboxState.STARTING.value})
_STEPS = frozenset(step.value for step in SetupStep)
_PREPARE_STEPS = frozenset(step.value for step in PrepareStep)


@dataclass
class SetupOutcome:
    """How a setup ended: the sandbox's status, and why when it failed."""

    status: str
    error: str | None = None
    output: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """The sandbox is running (Vite serves its page)."""
        return self.status == SandboxState.RUNNING.value


class StepDisplay:
    """One line per finished step (``  mirror     0.31s``), then the total.

    Plain lines, so a terminal and a log read the same; a step's line is
    written when it ends, and the step under way is announced when it begins
    on a terminal only (it is overwritten by its own result).
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.steps: list[tuple[str, float]] = []
        self._current: str | None = None
        self._since = self.started
        self._tty = bool(getattr(stream, "isatty", lambda: False)())

    def begin(self, step: str) -> None:
        """``step`` is under way; the one before it has ended."""
        if step == self._current:
            return
        self._end_current()
        self._current, self._since = step, time.monotonic()
        if self._tty:
            self.stream.write(f"  {step:<9}...")
            self.stream.flush()

    def _end_current(self) -> None:
        if self._current is None:
            return
        seconds = time.monotonic() - self._since
        self.steps.append((self._current, seconds))
        prefix = "\r\x1b[K" if self._tty else ""
        self.stream.write(f"{prefix}  {self._current:<9}{seconds:6.2f}s\n")
        self.stream.flush()
        self._current = None

    def finish(self, outcome: str) -> None:
        """The setup ended with ``outcome`` (``running``, ``failed``...)."""
        self._end_current()
        total = time.monotonic() - self.started
        self.stream.write(f"{outcome} in {total:.1f}s\n")
        self.stream.flush()


def follow_setup(
    client: ApiClient,
    sandbox_id: str,
    websocket_url: str,
    display: StepDisplay,
    *,
    timeout: float,
) -> SetupOutcome:
    """Show the setup of ``sandbox_id`` until it is running or ended; how it ended."""
    deadline = time.monotonic() + timeout
    display.begin(ACTOR_STEP)
    outcome: SetupOutcome | None = None
    try:
        outcome = _follow_stream(client, websocket_url, display, deadline)
    except (OSError, InvalidHandshake, InvalidURI, ConnectionClosed, TimeoutError):
        outcome = None
    if outcome is None:
        # No stream, or it ended before the setup did: the status answers.
        outcome = _poll(client, sandbox_id, deadline)
    if outcome.status in _STARTING:
        raise CliError(
            f"sandbox {sandbox_id} was still starting after {timeout:.0f}s; "
            f"`studio show {sandbox_id}` tells how it went",
            exit_code=2,
        )
    if outcome.error is None and not outcome.ready:
        # The stream said failed; the registry keeps the reason.
        outcome.error = _status(client, sandbox_id).get("error")
    display.finish(outcome.status)
    return outcome


def _follow_stream(
    client: ApiClient, websocket_url: str, display: StepDisplay, deadline: float
) -> SetupOutcome | None:
    headers = {"Authorization": f"Bearer {client.token}"} if client.token else None
    separator = "&" if "?" in websocket_url else "?"
    url = f"{websocket_url}{separator}since=0"
    error: str | None = None
    output: list[str] = []
    with connect(url, additional_headers=headers, open_timeout=10, close_timeout=2) as ws:
        while (remaining := deadline - time.monotonic()) > 0:
            message = json.loads(ws.recv(timeout=remaining))
            kind, payload = message.get("type"), message.get("payload") or {}
            if kind == MessageType.PING:
                ws.send(json.dumps({"type": MessageType.PONG, "payload": payload}))
            elif kind == MessageType.ERROR:
                error = payload.get("message")
                output = list(payload.get("output") or [])
            elif kind == MessageType.STATUS:
                status = str(payload.get("status"))
                step = payload.get("step")
                preparation = payload.get("preparation")
                if step in _STEPS:
                    display.begin(step)
                elif preparation in _PREPARE_STEPS:
                    display.begin(f"prepare:{preparation}")
                elif status not in _STARTING:
                    return SetupOutcome(status=status, error=error, output=output)
    return None


def _status(client: ApiClient, sandbox_id: str) -> dict[str, Any]:
    answer = client.request("GET", f"/sandboxes/{sandbox_id}")
    return answer if isinstance(answer, dict) else {}


def _poll(client: ApiClient, sandbox_id: str, deadline: float) -> SetupOutcome:
    while True:
        sandbox = _status(client, sandbox_id)
        status = str(sandbox.get("status", ""))
        if status not in _STARTING or time.monotonic() >= deadline:
            return SetupOutcome(status=status, error=sandbox.get("error"))
        time.sleep(_POLL_INTERVAL)
