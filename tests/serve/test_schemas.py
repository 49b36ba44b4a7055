"""Request bodies and the route helpers that need no Ray."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from starlette.requests import Request

from serve.replica import Replica, ServeOptions
from serve.routes import check_sizes, websocket_url
from serve.schemas import CreateSandboxRequest, RegisterRepositoryRequest, RollbackRequest
from studio.commands import command_adapter
from studio.config import StudioSettings
from studio.errors import PayloadTooLarge


def test_create_request_keeps_extra_fields_as_overrides() -> None:
    body = CreateSandboxRequest.model_validate(
        {"type": "component-studio", "repository_id": 3, "timeout_hours": 1}
    )
    assert body.repository_id == 3
    assert body.overrides == {"timeout_hours": 1}
    with pytest.raises(ValidationError, match="type"):
        CreateSandboxRequest.model_validate({"type": "jupyter", "repository_id": 3})


@pytest.mark.parametrize(
    "body",
    [{}, {"commit_hash": "abc1234", "steps": 1}, {"undo": False}, {"steps": 1, "undo": True}],
)
def test_rollback_needs_exactly_one_target(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        RollbackRequest.model_validate(body)


@pytest.mark.parametrize("body", [{"commit_hash": "abc1234"}, {"steps": 2}, {"undo": True}])
def test_rollback_targets(body: dict[str, object]) -> None:
    RollbackRequest.model_validate(body)


def test_rollback_hash_must_be_hex() -> None:
    with pytest.raises(ValidationError, match="commit_hash"):
        RollbackRequest.model_validate({"commit_hash": "HEAD~1; rm -rf /"})


def test_repository_needs_one_source() -> None:
    RegisterRepositoryRequest.model_validate({"name": "a", "path": "/srv/repos/a"})
    RegisterRepositoryRequest.model_validate(
        {"name": "a", "github": "owner/a", "clone_url": "https://github.com/owner/a.git"}
    )
    for body in ({"name": "a"}, {"name": "a", "path": "/x", "github": "o/a"}):
        with pytest.raises(ValidationError, match="either"):
            RegisterRepositoryRequest.model_validate(body)


def test_content_size_limit_applies_to_every_written_file() -> None:
    small = command_adapter.validate_python(
        {"command": "write_files", "files": [{"file_path": "a", "content": "1234"}]}
    )
    check_sizes(small, 4)
    big = command_adapter.validate_python(
        {
            "command": "write_files",
            "files": [{"file_path": "a", "content": "1"}, {"file_path": "b", "content": "é" * 3}],
        }
    )
    with pytest.raises(PayloadTooLarge, match="b: content of 6 bytes exceeds the limit of 4"):
        check_sizes(big, 4)
    check_sizes(command_adapter.validate_python({"command": "read_file", "file_path": "a"}), 1)


def make_request(headers: dict[str, str], scheme: str = "http") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "scheme": scheme, "headers": raw, "path": "/", "query_string": b""}
    return Request(scope)


def test_websocket_url_follows_the_host_and_scheme_the_client_used() -> None:
    replica = Replica(StudioSettings(public_host="studio.test", ws_port=8000), ServeOptions())
    sid = "sb_abc123"
    assert websocket_url(make_request({"Host": "api.test:9000"}), replica, sid) == (
        "ws://api.test:9000/api/v1/sandboxes/sb_abc123/ws"
    )
    behind_tls = make_request({"Host": "api.test", "X-Forwarded-Proto": "https"})
    assert websocket_url(behind_tls, replica, sid).startswith("wss://api.test/")
    assert websocket_url(make_request({}), replica, sid) == (
        "ws://studio.test:8000/api/v1/sandboxes/sb_abc123/ws"
    )


def test_serve_options_refuse_unknown_knobs() -> None:
    assert ServeOptions.model_validate({"ping_interval": "0.5"}).ping_interval == 0.5
    with pytest.raises(ValidationError):
        ServeOptions.model_validate({"ping_intervall": 1})


@pytest.mark.parametrize("bad", ["ui\ud800", "ui\x00kit"], ids=["lone-surrogate", "nul"])
@pytest.mark.parametrize("field", ["path", "name", "package_dir", "default_branch"])
def test_a_lone_surrogate_or_a_nul_in_a_string_field_is_refused_by_name(
    field: str, bad: str
) -> None:
    body = {"name": "kit", "path": "/srv/kit", field: bad}
    with pytest.raises(ValidationError) as refused:
        RegisterRepositoryRequest.model_validate(body)
    (error,) = refused.value.errors()
    assert error["loc"] == (field,)
