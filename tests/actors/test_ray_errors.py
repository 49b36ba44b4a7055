"""One translation of Ray's call failures (actors.ray_errors): each kind, then real Ray's."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import ray
from ray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    ActorUnschedulableError,
    GetTimeoutError,
    RayActorError,
    RayTaskError,
    TaskCancelledError,
)

from actors.ray_errors import (
    GONE,
    ActorGone,
    ActorUnresponsive,
    ActorUnschedulable,
    CallFailure,
    classify,
    error_inside,
    to_actor_error,
    to_studio_error,
)
from studio.errors import InvalidRequest, InvalidState, ServiceUnavailable

SANDBOX = "sb_abc123"


def raised_inside(cause: BaseException) -> RayTaskError:
    """What awaiting a call whose method raised ``cause`` raises: Ray's dual-class wrapper."""
    wrapped: RayTaskError = RayTaskError("execute", "Traceback ...", cause).as_instanceof_cause()
    return wrapped


KINDS: list[tuple[BaseException, CallFailure | None]] = [
    (GetTimeoutError("Get timed out"), CallFailure.NO_ANSWER),
    (TimeoutError(), CallFailure.NO_ANSWER),  # asyncio.wait_for's
    (raised_inside(InvalidRequest("bad command")), CallFailure.RAISED),
    (raised_inside(ValueError("a bug")), CallFailure.RAISED),
    (ActorUnavailableError("restarting", None), CallFailure.RESTARTING),
    (ActorUnschedulableError("pinned to a dead node"), CallFailure.UNSCHEDULABLE),
    (ActorDiedError(), CallFailure.DIED),
    (RayActorError(), CallFailure.DIED),
    (TaskCancelledError(), CallFailure.CANCELLED),
    (InvalidState("stopped", state="stopped"), None),
    (ValueError("x"), None),
]


@pytest.mark.parametrize(("exc", "kind"), KINDS, ids=lambda v: type(v).__name__)
def test_each_ray_failure_has_one_kind(exc: BaseException, kind: CallFailure | None) -> None:
    assert classify(exc) is kind


def test_a_timeout_raised_inside_a_method_is_no_answer_and_a_dead_callee_inside_is_raised() -> None:
    # The dual classes derive from the cause's class too: the caller's wait ended either way,
    # but an actor whose method met a dead actor did answer.
    assert classify(raised_inside(TimeoutError())) is CallFailure.NO_ANSWER
    assert classify(raised_inside(ActorDiedError())) is CallFailure.RAISED


def test_only_a_dead_or_unschedulable_actor_makes_a_handle_stale() -> None:
    assert {CallFailure.DIED, CallFailure.UNSCHEDULABLE} == GONE
    assert CallFailure.RESTARTING not in GONE  # the same actor comes back under the handle


def test_the_studio_error_inside_comes_out_as_itself() -> None:
    cause = InvalidRequest("unknown command 'format_disk'", field="command")
    wrapped = raised_inside(cause)
    inside = error_inside(wrapped)
    assert isinstance(inside, InvalidRequest)
    assert inside.details == {"field": "command"}
    assert error_inside(raised_inside(ValueError("a bug"))) is None
    assert error_inside(cause) is None  # not from an actor


def test_the_managers_backend_sees_gone_unschedulable_unresponsive_or_the_studio_error() -> None:
    def translated(exc: BaseException) -> BaseException:
        return to_actor_error(exc, SANDBOX, "ping")

    assert isinstance(translated(ActorDiedError()), ActorGone)
    unschedulable = translated(ActorUnschedulableError("pinned to a dead node"))
    assert isinstance(unschedulable, ActorUnschedulable)
    assert str(unschedulable).startswith(f"the actor of sandbox {SANDBOX} cannot be scheduled")
    for slow in (GetTimeoutError(), TimeoutError(), ActorUnavailableError("restarting", None)):
        unresponsive = translated(slow)
        assert isinstance(unresponsive, ActorUnresponsive)
        assert str(unresponsive) == f"sandbox {SANDBOX} did not answer ping"
    assert isinstance(translated(raised_inside(InvalidRequest("bad"))), InvalidRequest)
    for unchanged in (raised_inside(ValueError("a bug")), TaskCancelledError(), KeyError("k")):
        assert translated(unchanged) is unchanged


def test_the_api_sees_the_studio_error_inside_or_service_unavailable() -> None:
    assert isinstance(to_studio_error(raised_inside(InvalidRequest("bad"))), InvalidRequest)
    for dead in (ActorDiedError(), ActorUnschedulableError("gone"), GetTimeoutError()):
        error = to_studio_error(dead)
        assert isinstance(error, ServiceUnavailable)
        assert error.message == (
            f"a Component Studio actor is unavailable ({type(dead).__name__}); retry shortly"
        )
    for unchanged in (
        raised_inside(ValueError("a bug")),
        TaskCancelledError(),
        InvalidState("stopped"),
        ValueError("x"),
    ):
        assert to_studio_error(unchanged) is unchanged


def test_the_caller_words_a_slow_or_restarting_actor() -> None:
    wording = {"no_answer": "sandbox sb_x did not answer execute in time"}
    slow = to_studio_error(TimeoutError(), **wording, restarting="sandbox sb_x is restarting")
    assert isinstance(slow, ServiceUnavailable)
    assert slow.message == "sandbox sb_x did not answer execute in time; retry shortly"
    assert slow.details == {"retry_after": 2}
    restarting = to_studio_error(
        ActorUnavailableError("restarting", None), restarting="sandbox sb_x is restarting"
    )
    assert isinstance(restarting, ServiceUnavailable)
    assert restarting.message == "sandbox sb_x is restarting; retry shortly"
    # Unworded, a restarting actor says what Ray said.
    unworded = to_studio_error(ActorUnavailableError("restarting", None), **wording)
    assert isinstance(unworded, ServiceUnavailable)
    assert "(ActorUnavailableError)" in unworded.message


# -- real Ray -----------------------------------------------------------------


@ray.remote(num_cpus=0, max_restarts=0)
class Callee:
    """An actor whose methods fail the ways a sandbox's can."""

    def __init__(self) -> None:
        self._release = threading.Event()

    def ok(self) -> str:
        return "ok"

    def refuse(self) -> None:
        raise InvalidRequest("unknown command 'format_disk'", field="command")

    def block(self) -> None:
        self._release.wait()

    def release(self) -> None:
        self._release.set()


@ray.remote(num_cpus=0, max_restarts=0)
class AsyncCallee:
    async def wait_forever(self) -> None:
        await asyncio.Event().wait()


@pytest.fixture
def callee(ray_session: None) -> Any:
    actor = Callee.options(max_concurrency=2).remote()  # type: ignore[attr-defined]
    assert ray.get(actor.ok.remote(), timeout=60) == "ok"
    yield actor
    ray.kill(actor, no_restart=True)


@pytest.mark.ray
def test_a_call_on_a_killed_actor_is_a_dead_actor(callee: Any) -> None:
    ray.kill(callee, no_restart=True)
    # The kill is asynchronous: a call sent before it reached the actor is still answered.
    deadline = time.monotonic() + 60
    while True:
        try:
            ray.get(callee.ok.remote(), timeout=60)
        except RayActorError as exc:
            died = exc
            break
        assert time.monotonic() < deadline, "the killed actor kept answering"
        time.sleep(0.1)
    assert classify(died) is CallFailure.DIED
    assert isinstance(to_actor_error(died, SANDBOX, "ok"), ActorGone)
    assert isinstance(to_studio_error(died), ServiceUnavailable)


@pytest.mark.ray
def test_a_call_without_an_answer_in_time_is_no_answer(callee: Any) -> None:
    blocked = callee.block.remote()
    try:
        with pytest.raises(GetTimeoutError) as caught:
            ray.get(blocked, timeout=0.5)
    finally:
        ray.get(callee.release.remote(), timeout=60)
    assert classify(caught.value) is CallFailure.NO_ANSWER
    assert isinstance(to_actor_error(caught.value, SANDBOX, "block"), ActorUnresponsive)


@pytest.mark.ray
async def test_an_awaited_call_past_its_wait_is_no_answer(callee: Any) -> None:
    blocked = callee.block.remote()
    try:
        with pytest.raises(TimeoutError) as caught:
            await asyncio.wait_for(blocked, 0.5)
    finally:
        ray.get(callee.release.remote(), timeout=60)
    error = to_studio_error(caught.value, no_answer="sandbox sb_x did not answer block in time")
    assert isinstance(error, ServiceUnavailable)


@pytest.mark.ray
def test_a_studio_error_raised_in_a_real_actor_comes_out_as_itself(callee: Any) -> None:
    with pytest.raises(RayTaskError) as caught:
        ray.get(callee.refuse.remote(), timeout=60)
    assert classify(caught.value) is CallFailure.RAISED
    for error in (to_studio_error(caught.value), to_actor_error(caught.value, SANDBOX, "refuse")):
        assert isinstance(error, InvalidRequest)
        assert error.details == {"field": "command"}


@pytest.mark.ray
def test_a_cancelled_call_is_cancelled_and_left_to_its_caller(ray_session: None) -> None:
    actor = AsyncCallee.remote()  # type: ignore[attr-defined]
    try:
        waiting = actor.wait_forever.remote()
        ray.cancel(waiting)
        with pytest.raises(TaskCancelledError) as caught:
            ray.get(waiting, timeout=60)
        assert classify(caught.value) is CallFailure.CANCELLED
        assert to_studio_error(caught.value) is caught.value
    finally:
        ray.kill(actor, no_restart=True)
