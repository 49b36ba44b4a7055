"""``/readyz`` (readiness) beside ``/healthz`` (liveness), on the real API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from ray import serve

from serve.app import build_app
from serve.replica import ServeOptions
from tests.serve.conftest import OPTIONS, Api

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def waiting(api: Api) -> Iterator[tuple[str, str]]:
    """A second application of the API that needs ui-kit and a repository nobody registered."""
    absent = f"absent-{uuid.uuid4().hex[:8]}"
    options = OPTIONS.model_copy(update={"ready_repositories": ("ui-kit", absent)})
    serve.run(build_app(api.settings, options), name="studio-waiting", route_prefix="/waiting")
    try:
        yield api.url + "/waiting", absent
    finally:
        serve.delete("studio-waiting")


def test_readyz_is_ready_when_the_manager_answers(api: Api) -> None:
    reply = api.http.get("/readyz")
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "status": "ready",
        "manager": "ok",
        "repositories": {},
        "waiting_for": [],
    }


def test_readyz_says_which_repository_it_waits_for(api: Api, waiting: tuple[str, str]) -> None:
    url, absent = waiting
    reply = api.http.get(f"{url}/readyz")
    assert reply.status_code == 503, reply.text
    assert reply.json() == {
        "status": "not_ready",
        "manager": "ok",
        "repositories": {"ui-kit": "registered", absent: "missing"},
        "waiting_for": [f"repository {absent!r} is not registered"],
    }
    # Liveness is another question: this replica answers.
    assert api.http.get(f"{url}/healthz").json() == {"status": "ok", "manager": "ok"}


def test_readyz_needs_no_token_and_is_documented(api: Api) -> None:
    paths = api.http.get("/openapi.json").json()["paths"]
    responses = paths["/readyz"]["get"]["responses"]
    assert {"200", "503"} <= set(responses)


def test_ready_repositories_are_a_serve_option() -> None:
    assert ServeOptions.model_validate({"ready_repositories": ["ui-kit"]}).ready_repositories == (
        "ui-kit",
    )
