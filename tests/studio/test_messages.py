"""WebSocket message models: shape, JSON, and what a client may send."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from studio.errors import InvalidRequest, PayloadTooLarge
from studio.messages import (
    CLIENT_MESSAGE_TYPES,
    MAX_CLIENT_MESSAGE_BYTES,
    PAYLOAD_MODELS,
    ClientComponentSelected,
    ClientPing,
    ClientPong,
    CommitMessage,
    CommitPayload,
    ErrorPayload,
    HelloMessage,
    HelloPayload,
    MessageType,
    PingPayload,
    PongPayload,
    ReloadMessage,
    StatusMessage,
    StatusPayload,
    encode,
    format_timestamp,
    make_message,
    parse_client_message,
    parse_message,
)

SB = "sb_test123abc"
TS = datetime(2026, 11, 25, 14, 30, 0, tzinfo=UTC)

# One valid payload per type; every type must appear.
PAYLOADS: dict[MessageType, dict[str, Any]] = {
    MessageType.HELLO: {"status": "running", "last_seq": 41, "oldest_seq": 1},
    MessageType.STATUS: {"status": "running", "detail": "ready", "restarts": 1, "recovered": True},
    MessageType.ERROR: {"message": "Vite exited", "code": "vite_start_error", "output": ["a"]},
    MessageType.RELOAD: {"reason": "missed events", "files": ["src/Button.tsx"]},
    MessageType.COMMIT: {
        "hash": "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2",
        "message": "AI: Updated Button - 2026-11-25 14:30",
        "files": ["src/Button.tsx"],
        "timestamp": "2026-11-25T14:30:00Z",
    },
    MessageType.ROLLBACK: {
        "current_hash": "a1b2c3d",
        "previous_hash": "b2c3d4e",
        "undo_ref": "refs/studio/sb_test123abc/undo/1",
    },
    MessageType.COMPONENT_SELECTED: {
        "component": "src/Button.tsx#Button",
        "story": "Primary",
        "client_id": "c1",
    },
    MessageType.LOG: {"stream": "stderr", "line": "  VITE v8.3 ready"},
    MessageType.PING: {"nonce": "n1"},
    MessageType.PONG: {"nonce": "n1"},
}


def test_every_type_has_a_payload_model() -> None:
    assert set(PAYLOAD_MODELS) == set(MessageType) == set(PAYLOADS)
    assert {t.value for t in MessageType} == {
        "hello",
        "status",
        "error",
        "reload",
        "commit",
        "rollback",
        "component-selected",
        "log",
        "ping",
        "pong",
    }


@pytest.mark.parametrize("kind", list(MessageType))
def test_round_trip_every_type(kind: MessageType) -> None:
    message = make_message(kind, seq=7, sandbox_id=SB, payload=PAYLOADS[kind], ts=TS)
    assert message.type == kind
    assert isinstance(message.payload, PAYLOAD_MODELS[kind])
    text = encode(message)
    data = json.loads(text)
    assert list(data) == ["type", "seq", "ts", "sandbox_id", "payload"]
    assert data["type"] == kind.value
    assert data["seq"] == 7
    assert data["ts"] == "2026-11-25T14:30:00Z"
    assert data["sandbox_id"] == SB
    assert parse_message(text) == message
    assert parse_message(text.encode()) == message
    assert pickle.loads(pickle.dumps(message)) == message


def test_status_example_from_the_design() -> None:
    message = make_message("status", seq=12, sandbox_id=SB, payload={"status": "running"}, ts=TS)
    assert encode(message) == (
        '{"type":"status","seq":12,"ts":"2026-11-25T14:30:00Z",'
        '"sandbox_id":"sb_test123abc","payload":{"status":"running"}}'
    )


def test_payload_model_instance_accepted() -> None:
    payload = StatusPayload(status="starting")
    message = make_message(MessageType.STATUS, seq=1, sandbox_id=SB, payload=payload)
    assert isinstance(message, StatusMessage)
    assert message.payload == payload


def test_payload_of_another_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="a ping message takes a PingPayload, not a PongPayload"):
        make_message("ping", seq=1, sandbox_id=SB, payload=PongPayload())


def test_unknown_type_and_bad_fields() -> None:
    with pytest.raises(ValueError, match="'shout' is not a valid MessageType"):
        make_message("shout", seq=1, sandbox_id=SB, payload={})
    with pytest.raises(ValidationError, match="status"):
        make_message("status", seq=1, sandbox_id=SB, payload={})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        make_message("status", seq=1, sandbox_id=SB, payload={"status": "x", "colour": "red"})
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        make_message("status", seq=-1, sandbox_id=SB, payload={"status": "x"})
    with pytest.raises(ValidationError, match="sandbox_id"):
        make_message("status", seq=1, sandbox_id="not-an-id", payload={"status": "x"})
    with pytest.raises(ValidationError, match="stream"):
        make_message("log", seq=1, sandbox_id=SB, payload={"stream": "stdin", "line": "x"})
    with pytest.raises(ValidationError, match="hash"):
        make_message(
            "commit",
            seq=1,
            sandbox_id=SB,
            payload={"hash": "zz; rm -rf", "message": "m", "timestamp": TS},
        )


def test_messages_are_frozen() -> None:
    message = make_message("ping", seq=1, sandbox_id=SB, payload={})
    with pytest.raises(ValidationError, match="frozen"):
        message.seq = 2  # type: ignore[misc]


def test_ts_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC)
    message = make_message("ping", seq=1, sandbox_id=SB, payload={})
    after = datetime.now(UTC)
    assert message.ts.tzinfo is UTC
    assert before <= message.ts <= after
    assert json.loads(encode(message))["ts"].endswith("Z")


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (datetime(2026, 11, 25, 14, 30, tzinfo=UTC), "2026-11-25T14:30:00Z"),
        (datetime(2026, 11, 25, 14, 30), "2026-11-25T14:30:00Z"),  # naive is UTC
        (
            datetime(2026, 11, 25, 16, 30, tzinfo=timezone(timedelta(hours=2))),
            "2026-11-25T14:30:00Z",
        ),
        (datetime(2026, 11, 25, 14, 30, 0, 123456, tzinfo=UTC), "2026-11-25T14:30:00.123Z"),
        (datetime(2026, 11, 25, 14, 30, 0, 999, tzinfo=UTC), "2026-11-25T14:30:00Z"),
    ],
)
def test_timestamp_format(ts: datetime, text: str) -> None:
    assert format_timestamp(ts) == text
    message = make_message("ping", seq=1, sandbox_id=SB, payload={}, ts=ts)
    assert json.loads(encode(message))["ts"] == text
    assert message.ts.utcoffset() == timedelta(0)


def test_timestamp_parsed_from_offset_is_utc() -> None:
    raw = json.dumps(
        {
            "type": "ping",
            "seq": 1,
            "ts": "2026-11-25T16:30:00+02:00",
            "sandbox_id": SB,
            "payload": {},
        }
    )
    assert parse_message(raw).ts == TS
    assert encode(parse_message(raw)).count("2026-11-25T14:30:00Z") == 1


def test_commit_timestamp_serialised_in_utc() -> None:
    payload = CommitPayload(
        hash="abcdef1",
        message="m",
        timestamp=datetime(2026, 11, 25, 15, 30, tzinfo=timezone(timedelta(hours=1))),
    )
    message = make_message("commit", seq=3, sandbox_id=SB, payload=payload, ts=TS)
    assert isinstance(message, CommitMessage)
    assert json.loads(encode(message))["payload"] == {
        "hash": "abcdef1",
        "message": "m",
        "files": [],
        "timestamp": "2026-11-25T14:30:00Z",
    }


def test_unset_optional_fields_are_left_out() -> None:
    message = make_message("error", seq=1, sandbox_id=SB, payload={"message": "boom"}, ts=TS)
    assert json.loads(encode(message))["payload"] == {"message": "boom"}
    reload = make_message("reload", seq=2, sandbox_id=SB, payload={}, ts=TS)
    assert isinstance(reload, ReloadMessage)
    assert json.loads(encode(reload))["payload"] == {}


def test_hello_carries_server_info() -> None:
    message = make_message(
        "hello", seq=0, sandbox_id=SB, payload=HelloPayload(status="running", last_seq=5)
    )
    assert isinstance(message, HelloMessage)
    payload = json.loads(encode(message))["payload"]
    assert payload["server"] == "component-studio"
    assert payload["protocol"] == 1
    assert payload["last_seq"] == 5
    assert isinstance(payload["version"], str)


NASTY = [
    'quote " and backslash \\ and {"json": true}',
    "new\nline\r\nand\ttab",
    "nul \x00 and bell \x07 and escape \x1b[31m",
    "unicode é ü 日本語 💥 and line separator \u2028 \u2029",
    "</script><script>alert(1)</script>",
    "",
]


@pytest.mark.parametrize("text", NASTY)
def test_error_text_stays_valid_json(text: str) -> None:
    payload = ErrorPayload(message=text or "x", output=[text, text + "2"])
    message = make_message("error", seq=1, sandbox_id=SB, payload=payload, ts=TS)
    data = json.loads(encode(message))
    assert data["payload"]["message"] == (text or "x")
    assert data["payload"]["output"] == [text, text + "2"]
    log = make_message("log", seq=2, sandbox_id=SB, payload={"stream": "stdout", "line": text})
    assert json.loads(encode(log))["payload"]["line"] == text


@settings(max_examples=200, deadline=None)
@given(text=st.text(), files=st.lists(st.text(), max_size=4))
def test_any_text_round_trips(text: str, files: list[str]) -> None:
    # Lone surrogates cannot be UTF-8 and are not valid in JSON text: skip them.
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text + "".join(files)):
        return
    message = make_message(
        "reload", seq=1, sandbox_id=SB, payload={"reason": text, "files": files}, ts=TS
    )
    assert parse_message(encode(message)) == message
    assert json.loads(encode(message))["payload"]["reason"] == text


# --- client messages ----------------------------------------------------------


def test_client_types() -> None:
    assert {t.value for t in CLIENT_MESSAGE_TYPES} == {"component-selected", "ping", "pong"}


def test_parse_bare_client_messages() -> None:
    ping = parse_client_message('{"type": "ping"}')
    assert isinstance(ping, ClientPing)
    assert ping.payload == PingPayload()
    assert ping.seq is None and ping.ts is None and ping.sandbox_id is None
    pong = parse_client_message(b'{"type": "pong", "payload": {"nonce": "n7"}}')
    assert isinstance(pong, ClientPong)
    assert pong.payload.nonce == "n7"
    selected = parse_client_message(
        json.dumps({"type": "component-selected", "payload": {"component": "Button"}})
    )
    assert isinstance(selected, ClientComponentSelected)
    assert selected.payload.component == "Button"
    assert selected.payload.story is None


def test_client_may_echo_the_envelope() -> None:
    raw = json.dumps(
        {
            "type": "component-selected",
            "seq": 3,
            "ts": "2026-11-25T14:30:00Z",
            "sandbox_id": SB,
            "payload": {"component": "Card", "story": "Default", "client_id": "tab-1"},
        }
    )
    message = parse_client_message(raw)
    assert message.seq == 3 and message.ts == TS and message.sandbox_id == SB
    # The payload is what the server rebroadcasts, under its own number.
    rebroadcast = make_message(
        message.type, seq=99, sandbox_id=SB, payload=message.payload.model_dump()
    )
    assert rebroadcast.payload == message.payload


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "not valid JSON"),
        ("not json", "not valid JSON"),
        ("{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ("[1, 2]", "not an array"),
        ('"ping"', "not a string"),
        ("42", "not a number"),
        ("true", "not a boolean"),
        ("null", "not null"),
        ("{}", "has no 'type'"),
        ('{"type": 5}', "has no 'type'"),
        ('{"type": "commit", "payload": {}}', "'commit' is sent by the server only"),
        ('{"type": "status"}', "'status' is sent by the server only"),
        ('{"type": "hello"}', "'hello' is sent by the server only"),
        ('{"type": "shout"}', "'shout' is not a message type"),
        ('{"type": "component-selected"}', "payload: Field required"),
        ('{"type": "component-selected", "payload": {}}', "payload.component: Field required"),
        (
            '{"type": "component-selected", "payload": {"component": ""}}',
            "at least 1 character",
        ),
        ('{"type": "ping", "payload": {"nonce": 5}}', "payload.nonce"),
        ('{"type": "ping", "admin": true}', "admin: Extra inputs are not permitted"),
        ('{"type": "ping", "payload": {"evil": 1}}', "payload.evil: Extra inputs"),
        ('{"type": "ping", "seq": -1}', "seq: Input should be greater than or equal to 0"),
        ('{"type": "ping", "sandbox_id": "../etc"}', "sandbox_id"),
        ('{"type": "ping", "payload": []}', "payload: Input should be"),
    ],
)
def test_client_garbage_is_invalid_request(raw: str | bytes, expected: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_client_message(raw)
    assert expected in str(info.value)
    assert info.value.code == "invalid_request"


def test_many_errors_are_summarised() -> None:
    raw = json.dumps(
        {"type": "ping", "seq": -1, "ts": "x", "sandbox_id": "x", "a": 1, "b": 2, "c": 3}
    )
    with pytest.raises(InvalidRequest, match=r"and \d+ more"):
        parse_client_message(raw)


def test_long_unknown_type_is_cut_in_the_message() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_client_message(json.dumps({"type": "x" * 5000}))
    assert len(str(info.value)) < 300


def test_client_message_size_limit() -> None:
    nonce_room = MAX_CLIENT_MESSAGE_BYTES - len('{"type":"ping","payload":{"nonce":""}}')
    with pytest.raises(InvalidRequest, match=r"payload\.nonce"):
        # Right at the limit the message is parsed (and its field checked).
        parse_client_message('{"type":"ping","payload":{"nonce":"' + "n" * nonce_room + '"}}')
    too_big = '{"type":"ping","payload":{"nonce":"' + "n" * (nonce_room + 1) + '"}}'
    with pytest.raises(PayloadTooLarge, match=f"limit of {MAX_CLIENT_MESSAGE_BYTES} bytes"):
        parse_client_message(too_big)
    with pytest.raises(PayloadTooLarge):
        parse_client_message(too_big.encode())
    # Multi-byte characters count in bytes.
    with pytest.raises(PayloadTooLarge):
        parse_client_message('{"type":"ping","x":"' + "é" * (MAX_CLIENT_MESSAGE_BYTES // 2) + '"}')


def test_deep_nesting_is_refused_cleanly() -> None:
    raw = '{"type": "ping", "payload": ' + "[" * 20_000 + "]" * 20_000 + "}"
    with pytest.raises(InvalidRequest):
        parse_client_message(raw)


def test_parse_message_rejects_garbage() -> None:
    with pytest.raises(InvalidRequest, match="not a valid message"):
        parse_message("{}")
    with pytest.raises(InvalidRequest, match="not a valid message"):
        parse_message("nope")


@settings(max_examples=300, deadline=None)
@given(
    raw=st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["type", "payload", "seq", "component", "nonce", "x"]),
                    children,
                    max_size=4,
                )
            ),
            max_leaves=12,
        ).map(json.dumps),
    )
)
def test_fuzz_client_parser_only_raises_invalid_request(raw: str | bytes) -> None:
    try:
        message = parse_client_message(raw)
    except InvalidRequest:
        return
    assert message.type in CLIENT_MESSAGE_TYPES
