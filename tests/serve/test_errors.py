"""Errors to statuses and the one error shape."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field

import studio.errors as errors_module
from serve.errors import error_response, install_error_handlers, retry_after, status_for
from studio import errors as e

EXPECTED = {
    e.NotFound: 404,
    e.SandboxNotFound: 404,
    e.RepositoryNotFound: 404,
    e.CommitNotFound: 404,
    e.InvalidRequest: 400,
    e.PathNotAllowed: 400,
    e.InvalidConfig: 400,
    e.PayloadTooLarge: 413,
    e.InvalidState: 409,
    e.Conflict: 409,
    e.BranchExists: 409,
    e.GitError: 500,
    e.GitLocked: 409,
    e.GitRemoteError: 502,
    e.RollbackOutOfRange: 400,
    e.MissingBaseBranch: 400,
    e.CorruptRepository: 500,
    e.ProcessError: 500,
    e.ProcessStartError: 502,
    e.ViteStartError: 502,
    e.PortInUse: 500,
    e.PreparationFailed: 409,
    e.RestartLimitExceeded: 500,
    e.Unauthenticated: 401,
    e.PermissionDenied: 403,
    e.QuotaExceeded: 403,
    e.RateLimited: 429,
    e.PullRequestError: 502,
    e.ServiceUnavailable: 503,
    e.StudioError: 500,
}


def test_every_class_of_the_tree_has_a_status() -> None:
    classes = {getattr(errors_module, n) for n in errors_module.__all__}
    assert classes == set(EXPECTED)
    for cls, status in EXPECTED.items():
        assert status_for(cls("x")) == status, cls.__name__


def test_retry_after_only_for_429_and_503_rounded_up() -> None:
    assert retry_after(e.RateLimited("slow down", retry_after=0.2)) == 1
    assert retry_after(e.RateLimited("slow down", retry_after=2.5)) == 3
    assert retry_after(e.ServiceUnavailable("restarting")) == 2
    assert retry_after(e.ServiceUnavailable("restarting", retry_after="soon")) == 2
    assert retry_after(e.Conflict("taken")) is None


def test_error_response_shape_and_headers() -> None:
    response = error_response(
        e.InvalidState("cannot execute: the sandbox is stopped", state="stopped", path="/x")
    )
    assert response.status_code == 409
    assert response.body == (
        b'{"error":{"code":"invalid_state","message":"cannot execute: the sandbox is stopped",'
        b'"state":"stopped"}}'
    )
    limited = error_response(e.RateLimited("too many requests", retry_after=1.5))
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"


class Body(BaseModel):
    name: str = Field(min_length=1)
    count: int


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/items")
    async def create(body: Body) -> dict[str, str]:
        return {"name": body.name}

    @app.get("/fail/{kind}")
    async def fail(kind: str) -> None:
        if kind == "studio":
            raise e.PathNotAllowed("'../x' escapes the worktree")
        raise RuntimeError("secret internals /home/x")

    return app


@pytest.fixture
async def client():
    transport = httpx.ASGITransport(app=make_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_validation_error_names_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/items", json={"name": "", "count": "many"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["field"] == "name"
    assert "name:" in error["message"]
    assert "count:" in error["message"]


async def test_studio_error_unknown_route_and_unexpected_error(client: httpx.AsyncClient) -> None:
    response = await client.get("/fail/studio")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "path_not_allowed"
    missing = await client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    crash = await client.get("/fail/crash")
    assert crash.status_code == 500
    assert crash.json()["error"]["code"] == "internal_error"
    assert "secret" not in crash.text
