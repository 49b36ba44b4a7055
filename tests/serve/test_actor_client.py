"""What the API answers when a sandbox's actor is slow or raises (serve.backend.ActorClient).

Real actors under sandbox names on the session's Ray; the answers go through
the API's one error renderer, so the status, code, message and Retry-After are
what a client sees.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from actors import handles
from serve.backend import ActorClient
from serve.errors import error_response
from studio.errors import InvalidRequest, ServiceUnavailable, StudioError
from studio.naming import ACTOR_NAMESPACE, new_sandbox_id, sandbox_actor_name

pytestmark = [pytest.mark.ray]


@ray.remote(num_cpus=0, max_restarts=0)
class FakeSandboxActor:
    """Answers like a sandbox actor that is stuck, or that refuses a command."""

    def __init__(self) -> None:
        self._release = threading.Event()

    def ping(self) -> None:
        self._release.wait()

    def execute(self, _command: dict[str, Any]) -> None:
        raise InvalidRequest("unknown command 'format_disk'", field="command")

    def release(self) -> None:
        self._release.set()


@pytest.fixture
def sandbox(ray_session: None) -> Iterator[tuple[str, Any]]:
    sandbox_id = new_sandbox_id()
    actor = FakeSandboxActor.options(  # type: ignore[attr-defined]
        name=sandbox_actor_name(sandbox_id), namespace=ACTOR_NAMESPACE, max_concurrency=4
    ).remote()
    try:
        yield sandbox_id, actor
    finally:
        ray.get(actor.release.remote(), timeout=60)
        ray.kill(actor, no_restart=True)
        handles.forget_sandbox_handle(sandbox_id)


def answer(error: BaseException) -> tuple[int, dict[str, Any], str | None]:
    assert isinstance(error, StudioError)
    response = error_response(error)
    body = json.loads(bytes(response.body))
    return response.status_code, body, response.headers.get("Retry-After")


async def test_a_sandbox_that_does_not_answer_in_time_is_503_retry(sandbox) -> None:
    sandbox_id, _actor = sandbox
    client = ActorClient(sandbox_timeout=0.5)
    with pytest.raises(ServiceUnavailable) as caught:
        await client.sandbox(sandbox_id, "ping")
    status, body, retry = answer(caught.value)
    assert status == 503 and retry == "2"
    assert body == {
        "error": {
            "code": "service_unavailable",
            "message": f"sandbox {sandbox_id} did not answer ping in time; retry shortly",
            "retry_after": 2,
        }
    }


async def test_an_error_raised_in_the_sandbox_is_answered_as_itself(sandbox) -> None:
    sandbox_id, _actor = sandbox
    client = ActorClient(sandbox_timeout=60)
    with pytest.raises(InvalidRequest) as caught:
        await client.sandbox(sandbox_id, "execute", {"command": "format_disk"})
    status, body, retry = answer(caught.value)
    assert status == 400 and retry is None
    assert body == {
        "error": {
            "code": "invalid_request",
            "message": "unknown command 'format_disk'",
            "field": "command",
        }
    }
