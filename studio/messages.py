"""The messages of a sandbox's event stream, as sent over its WebSocket.

Every message is an envelope with a ``type``, a sequence number, a UTC
timestamp, the sandbox's id and a typed ``payload``::

    {"type": "status", "seq": 12, "ts": "2026-11-25T14:30:00Z",
     "sandbox_id": "sb_k3v9q2m1xa", "payload": {"status": "running"}}

The models are a pydantic union discriminated on ``type``; JSON is always made
by pydantic (:func:`encode`), so quotes, newlines and any Unicode in an error
text or a log line stay valid JSON. Optional payload fields that are unset are
left out of the JSON.

A client may send only ``component-selected``, ``ping`` and ``pong``
(:func:`parse_client_message`); the envelope fields are optional there, since
the server assigns its own sequence number when it rebroadcasts a selection.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeAlias

import pydantic_core
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
)

from studio import __version__
from studio.errors import InvalidRequest, PayloadTooLarge
from studio.naming import SANDBOX_ID_PATTERN

__all__ = [
    "CLIENT_MESSAGE_TYPES",
    "MAX_CLIENT_MESSAGE_BYTES",
    "PAYLOAD_MODELS",
    "ClientComponentSelected",
    "ClientMessage",
    "ClientPing",
    "ClientPong",
    "CommitMessage",
    "CommitPayload",
    "ComponentSelectedMessage",
    "ComponentSelectedPayload",
    "ErrorMessage",
    "ErrorPayload",
    "HelloMessage",
    "HelloPayload",
    "LogMessage",
    "LogPayload",
    "Message",
    "MessageType",
    "PingMessage",
    "PingPayload",
    "PongMessage",
    "PongPayload",
    "PrepareStep",
    "ReloadMessage",
    "ReloadPayload",
    "RollbackMessage",
    "RollbackPayload",
    "SetupStep",
    "StatusMessage",
    "StatusPayload",
    "encode",
    "format_timestamp",
    "make_message",
    "parse_client_message",
    "parse_message",
]

# A selection or a ping is tiny; anything near this is a client gone wrong.
MAX_CLIENT_MESSAGE_BYTES = 64 * 1024
PROTOCOL_VERSION = 1


class MessageType(StrEnum):
    """The ``type`` of a message."""

    HELLO = "hello"
    STATUS = "status"
    ERROR = "error"
    RELOAD = "reload"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    COMPONENT_SELECTED = "component-selected"
    LOG = "log"
    PING = "ping"
    PONG = "pong"


class SetupStep(StrEnum):
    """The steps of a sandbox's setup, in order, as ``status`` events name them."""

    MIRROR = "mirror"
    """Fetching the repository into the node's bare mirror (cloning it the first time)."""
    WORKTREE = "worktree"
    """Adding the worktree on ``design/studio-<id>`` (or reattaching it on recovery)."""
    INSTALL = "install"
    """Generating the studio app and linking its dependencies from the install cache."""
    SETUP = "setup"
    """Running the repository's setup command (its ``setup_command``; only when it has one)."""
    VITE = "vite"
    """Starting Vite and waiting until it serves."""


class PrepareStep(StrEnum):
    """The steps of a repository's preparation on a node, in order (docs/preparation.md)."""

    MIRROR = "mirror"
    """Fetching the repository into the node's bare mirror (cloning it the first time)."""
    INSTALL = "install"
    """Installing its dependencies into the node's install cache, linking the studio app."""
    SETUP = "setup"
    """Running its setup command once, kept for the node's sandboxes (only when it has one)."""
    DEPS = "deps"
    """Vite's pre-bundle of the dependencies, published as the node's deps seed."""
    STORIES = "stories"
    """Reading the repository's story index (components and their stories)."""


CLIENT_MESSAGE_TYPES = frozenset(
    {MessageType.COMPONENT_SELECTED, MessageType.PING, MessageType.PONG}
)


def _as_utc(value: datetime) -> datetime:
    # A naive time is taken to be UTC already: every clock of the service is UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """``value`` in UTC as ``2026-11-25T14:30:00Z`` (with ``.123`` when it has milliseconds)."""
    value = _as_utc(value)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    millis = value.microsecond // 1000
    if millis:
        text += f".{millis:03d}"
    return text + "Z"


UtcDatetime = Annotated[
    datetime,
    AfterValidator(_as_utc),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
]
SandboxId = Annotated[str, Field(pattern=SANDBOX_ID_PATTERN.pattern)]
Seq = Annotated[int, Field(ge=0)]
ShortText = Annotated[str, Field(max_length=1024)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- payloads ---------------------------------------------------------------


class HelloPayload(_Model):
    """First message on a connection: where the stream stands and who is serving it."""

    status: str = Field(min_length=1, description="The sandbox's state, e.g. 'running'.")
    last_seq: Seq = Field(description="Sequence number of the newest event so far.")
    oldest_seq: Seq | None = Field(
        None, description="Oldest sequence number the server can still replay."
    )
    server: str = Field("component-studio", description="Name of the serving software.")
    version: str = Field(__version__, description="Its version.")
    protocol: int = Field(PROTOCOL_VERSION, description="Version of this message protocol.")


class StatusPayload(_Model):
    """A lifecycle transition of the sandbox."""

    status: str = Field(min_length=1, description="The new state, e.g. 'running', 'failed'.")
    detail: str | None = Field(None, description="Why, for people.")
    restarts: int | None = Field(None, ge=0, description="Vite restarts so far.")
    recovered: bool | None = Field(
        None, description="True when the sandbox came back after its actor restarted."
    )
    step: SetupStep | None = Field(
        None,
        description="While starting: the setup step now under way (mirror, worktree, "
        "install, setup, vite), one event per step.",
    )
    preparation: PrepareStep | None = Field(
        None,
        description="While starting: the step of the repository's preparation on the "
        "sandbox's node that the create waits for (mirror, install, deps, stories).",
    )


class ErrorPayload(_Model):
    """Something went wrong; ``output`` carries the last lines of a failed process."""

    message: str = Field(min_length=1)
    code: str | None = Field(None, description="The error's stable code, as in the HTTP API.")
    output: list[str] | None = None


class ReloadPayload(_Model):
    """The client should reload (files changed, or it missed events it cannot replay)."""

    reason: str | None = None
    files: list[str] | None = None


class CommitPayload(_Model):
    """A commit was made on the sandbox's branch."""

    hash: str = Field(min_length=4, max_length=64, pattern=r"^[0-9a-f]+$")
    message: str
    files: list[str] = Field(default_factory=list)
    timestamp: UtcDatetime


class RollbackPayload(_Model):
    """The branch was moved back; ``undo_ref`` keeps the old head for undoing it."""

    current_hash: str = Field(min_length=4, max_length=64, pattern=r"^[0-9a-f]+$")
    previous_hash: str = Field(min_length=4, max_length=64, pattern=r"^[0-9a-f]+$")
    undo_ref: str | None = None


class ComponentSelectedPayload(_Model):
    """A studio page selected a component (rebroadcast to the other pages)."""

    component: str = Field(min_length=1, max_length=1024)
    story: ShortText | None = None
    client_id: Annotated[str, Field(max_length=128)] | None = None


class LogPayload(_Model):
    """One line of Vite's output."""

    stream: Literal["stdout", "stderr"]
    line: str


class PingPayload(_Model):
    """Keep-alive; the other side answers with a ``pong`` carrying the same nonce."""

    nonce: Annotated[str, Field(max_length=128)] | None = None


class PongPayload(_Model):
    """Answer to a ``ping``."""

    nonce: Annotated[str, Field(max_length=128)] | None = None


# --- server messages --------------------------------------------------------


class _Envelope(_Model):
    # Declared here, narrowed by each subclass, so that "type" comes first in the JSON.
    type: MessageType
    seq: Seq
    ts: UtcDatetime
    sandbox_id: SandboxId
    payload: BaseModel


class HelloMessage(_Envelope):
    """Sent once per connection, before anything else."""

    type: Literal[MessageType.HELLO] = MessageType.HELLO
    payload: HelloPayload


class StatusMessage(_Envelope):
    """See :class:`StatusPayload`."""

    type: Literal[MessageType.STATUS] = MessageType.STATUS
    payload: StatusPayload


class ErrorMessage(_Envelope):
    """See :class:`ErrorPayload`."""

    type: Literal[MessageType.ERROR] = MessageType.ERROR
    payload: ErrorPayload


class ReloadMessage(_Envelope):
    """See :class:`ReloadPayload`."""

    type: Literal[MessageType.RELOAD] = MessageType.RELOAD
    payload: ReloadPayload = ReloadPayload()


class CommitMessage(_Envelope):
    """See :class:`CommitPayload`."""

    type: Literal[MessageType.COMMIT] = MessageType.COMMIT
    payload: CommitPayload


class RollbackMessage(_Envelope):
    """See :class:`RollbackPayload`."""

    type: Literal[MessageType.ROLLBACK] = MessageType.ROLLBACK
    payload: RollbackPayload


class ComponentSelectedMessage(_Envelope):
    """See :class:`ComponentSelectedPayload`."""

    type: Literal[MessageType.COMPONENT_SELECTED] = MessageType.COMPONENT_SELECTED
    payload: ComponentSelectedPayload


class LogMessage(_Envelope):
    """See :class:`LogPayload`."""

    type: Literal[MessageType.LOG] = MessageType.LOG
    payload: LogPayload


class PingMessage(_Envelope):
    """See :class:`PingPayload`."""

    type: Literal[MessageType.PING] = MessageType.PING
    payload: PingPayload = PingPayload()


class PongMessage(_Envelope):
    """See :class:`PongPayload`."""

    type: Literal[MessageType.PONG] = MessageType.PONG
    payload: PongPayload = PongPayload()


Message: TypeAlias = Annotated[
    HelloMessage
    | StatusMessage
    | ErrorMessage
    | ReloadMessage
    | CommitMessage
    | RollbackMessage
    | ComponentSelectedMessage
    | LogMessage
    | PingMessage
    | PongMessage,
    Field(discriminator="type"),
]

PAYLOAD_MODELS: dict[MessageType, type[BaseModel]] = {
    MessageType.HELLO: HelloPayload,
    MessageType.STATUS: StatusPayload,
    MessageType.ERROR: ErrorPayload,
    MessageType.RELOAD: ReloadPayload,
    MessageType.COMMIT: CommitPayload,
    MessageType.ROLLBACK: RollbackPayload,
    MessageType.COMPONENT_SELECTED: ComponentSelectedPayload,
    MessageType.LOG: LogPayload,
    MessageType.PING: PingPayload,
    MessageType.PONG: PongPayload,
}

_MESSAGE_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)


# --- client messages --------------------------------------------------------


class _ClientEnvelope(_Model):
    type: MessageType
    # Clients may echo envelope fields; the server ignores them and assigns its own.
    seq: Seq | None = None
    ts: UtcDatetime | None = None
    sandbox_id: SandboxId | None = None


class ClientComponentSelected(_ClientEnvelope):
    """A studio page tells the others which component it shows."""

    type: Literal[MessageType.COMPONENT_SELECTED] = MessageType.COMPONENT_SELECTED
    payload: ComponentSelectedPayload


class ClientPing(_ClientEnvelope):
    """A client's keep-alive; answered with a ``pong``."""

    type: Literal[MessageType.PING] = MessageType.PING
    payload: PingPayload = PingPayload()


class ClientPong(_ClientEnvelope):
    """A client's answer to the server's ``ping``."""

    type: Literal[MessageType.PONG] = MessageType.PONG
    payload: PongPayload = PongPayload()


ClientMessage: TypeAlias = Annotated[
    ClientComponentSelected | ClientPing | ClientPong, Field(discriminator="type")
]

_CLIENT_ADAPTER: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


# --- functions --------------------------------------------------------------


def make_message(
    type: MessageType | str,
    *,
    seq: int,
    sandbox_id: str,
    payload: BaseModel | dict[str, Any],
    ts: datetime | None = None,
) -> Message:
    """A validated message of ``type``; ``ts`` defaults to now (UTC).

    ``payload`` is the type's payload model or a dict of its fields. Raises
    ``ValueError`` for an unknown type, ``TypeError`` for another type's payload
    model and :class:`pydantic.ValidationError` (a ``ValueError``) when a field
    does not fit.
    """
    kind = MessageType(type)
    if isinstance(payload, BaseModel):
        expected = PAYLOAD_MODELS[kind]
        if not isinstance(payload, expected):
            # Said plainly here; pydantic's answer would list the whole union.
            raise TypeError(
                f"a {kind.value} message takes a {expected.__name__}, "
                f"not a {payload.__class__.__name__}"
            )
    return _MESSAGE_ADAPTER.validate_python(
        {
            "type": kind,
            "seq": seq,
            "ts": ts if ts is not None else datetime.now(UTC),
            "sandbox_id": sandbox_id,
            "payload": payload,
        }
    )


def encode(message: BaseModel) -> str:
    """The JSON text of ``message`` (unset optional fields left out)."""
    return message.model_dump_json(exclude_none=True)


def parse_message(raw: str | bytes) -> Message:
    """Any message from its JSON (what a client of the stream receives).

    Raises :class:`InvalidRequest` when it is not a valid message.
    """
    try:
        return _MESSAGE_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise InvalidRequest(f"not a valid message: {_describe(exc)}") from None


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """The message a client sent; only ``component-selected``, ``ping`` and ``pong``.

    Raises :class:`PayloadTooLarge` past :data:`MAX_CLIENT_MESSAGE_BYTES` and
    :class:`InvalidRequest` for anything that is not one of those messages.
    """
    size = len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)
    if size > MAX_CLIENT_MESSAGE_BYTES:
        raise PayloadTooLarge(
            f"message of {size} bytes exceeds the limit of {MAX_CLIENT_MESSAGE_BYTES} bytes",
            size=size,
            limit=MAX_CLIENT_MESSAGE_BYTES,
        )
    try:
        data = pydantic_core.from_json(raw)
    except ValueError as exc:
        raise InvalidRequest(f"message is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"message must be a JSON object with a 'type', not {_json_kind(data)}")
    allowed = ", ".join(sorted(t.value for t in CLIENT_MESSAGE_TYPES))
    kind = data.get("type")
    if not isinstance(kind, str):
        raise InvalidRequest(f"message has no 'type'; a client may send: {allowed}")
    if kind not in CLIENT_MESSAGE_TYPES:
        known = kind in {t.value for t in MessageType}
        what = "is sent by the server only" if known else "is not a message type"
        raise InvalidRequest(f"{kind[:64]!r} {what}; a client may send: {allowed}")
    try:
        return _CLIENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise InvalidRequest(f"invalid {kind} message: {_describe(exc)}") from None


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _describe(error: ValidationError) -> str:
    parts = []
    for detail in error.errors(include_url=False, include_input=False)[:3]:
        location = ".".join(str(part) for part in detail["loc"]) or "message"
        parts.append(f"{location}: {detail['msg']}")
    more = error.error_count() - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)
