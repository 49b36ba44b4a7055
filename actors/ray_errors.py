"""What a call on a Ray actor failed with, in the project's own terms: one translation.

Awaiting an actor call can raise one of Ray's exceptions; each says something
different about the actor, and :func:`classify` names it (:class:`CallFailure`):

- ``TimeoutError`` (Ray's ``GetTimeoutError`` is one, so is what
  ``asyncio.wait_for`` raises): no answer in time; the actor may be busy,
  restarting or on a node that is gone;
- ``RayTaskError``: the method ran and raised; the actor itself is fine. A
  :class:`~studio.errors.StudioError` raised inside comes out as itself
  (:func:`error_inside`);
- ``ActorUnavailableError``: Ray is restarting the actor, or cannot reach it
  now; the same actor (and handle) may answer again;
- ``ActorUnschedulableError``: the actor is pinned to a node that is gone and
  can never run again (it is not a ``RayActorError``);
- ``ActorDiedError`` / ``RayActorError``: the actor is dead; the manager may
  recreate it under the same name, so a cached handle must go;
- ``TaskCancelledError``: the call was cancelled (by its caller).

Two vocabularies are built on that one classification:

- the manager's, whose reconcile logic must not see Ray
  (:func:`to_actor_error`): :class:`ActorGone`, :class:`ActorUnschedulable`,
  :class:`ActorUnresponsive`, or the StudioError raised inside;
- the API's (:func:`to_studio_error`): the StudioError raised inside, or
  :class:`~studio.errors.ServiceUnavailable` (503, retry) for an actor that
  is dead, restarting or too slow.

Anything that is not one of Ray's call failures comes back unchanged.
"""

from __future__ import annotations

from enum import StrEnum

from ray.exceptions import (
    ActorUnavailableError,
    ActorUnschedulableError,
    RayActorError,
    RayTaskError,
    TaskCancelledError,
)

from studio.errors import ServiceUnavailable, StudioError

__all__ = [
    "GONE",
    "ActorGone",
    "ActorUnresponsive",
    "ActorUnschedulable",
    "CallFailure",
    "classify",
    "error_inside",
    "to_actor_error",
    "to_studio_error",
]

# Seconds a client should wait before retrying a call on a slow or restarting actor.
_RETRY_AFTER = 2


class ActorGone(Exception):
    """No actor by that name exists, or it died and will not be restarted."""


class ActorUnschedulable(ActorGone):
    """The actor is pinned to a node that is gone: it can never run there again."""


class ActorUnresponsive(Exception):
    """The actor did not answer in time (it may be restarting, or its node is gone)."""


class CallFailure(StrEnum):
    """How a call on an actor failed (see the module docstring)."""

    NO_ANSWER = "no_answer"
    RAISED = "raised"
    RESTARTING = "restarting"
    UNSCHEDULABLE = "unschedulable"
    DIED = "died"
    CANCELLED = "cancelled"


# The failures after which a handle to the actor is stale: drop it, look the name up again.
GONE = frozenset({CallFailure.DIED, CallFailure.UNSCHEDULABLE})


def classify(exc: BaseException) -> CallFailure | None:
    """How the call that raised ``exc`` failed; None when ``exc`` is no Ray call failure.

    Ray raises an error from inside a method as a class deriving from both
    ``RayTaskError`` and the error's own class, so the order matters: a
    timeout first (the caller's wait ended, whatever raised it), then an error
    raised inside (the actor answered), then the actor's own state.
    """
    if isinstance(exc, TimeoutError):
        return CallFailure.NO_ANSWER
    if isinstance(exc, RayTaskError):
        return CallFailure.RAISED
    if isinstance(exc, ActorUnavailableError):  # a RayActorError, not a dead actor
        return CallFailure.RESTARTING
    if isinstance(exc, ActorUnschedulableError):
        return CallFailure.UNSCHEDULABLE
    if isinstance(exc, RayActorError):
        return CallFailure.DIED
    if isinstance(exc, TaskCancelledError):
        return CallFailure.CANCELLED
    return None


def error_inside(exc: BaseException) -> StudioError | None:
    """The StudioError an actor's method raised, when ``exc`` carries one."""
    if isinstance(exc, RayTaskError) and isinstance(exc.cause, StudioError):
        return exc.cause
    return None


def to_actor_error(exc: BaseException, sandbox_id: str, method: str) -> BaseException:
    """What the manager's backend raises for ``exc`` from ``method`` on ``sandbox_id``'s actor.

    A slow or restarting actor is :class:`ActorUnresponsive` (it may answer
    the next ping); an unschedulable one :class:`ActorUnschedulable`; a dead
    one :class:`ActorGone`; the StudioError raised inside comes out as itself.
    """
    failure = classify(exc)
    if failure in (CallFailure.NO_ANSWER, CallFailure.RESTARTING):
        return ActorUnresponsive(f"sandbox {sandbox_id} did not answer {method}")
    if failure is CallFailure.RAISED:
        return error_inside(exc) or exc
    if failure is CallFailure.UNSCHEDULABLE:
        return ActorUnschedulable(f"the actor of sandbox {sandbox_id} cannot be scheduled: {exc}")
    if failure is CallFailure.DIED:
        return ActorGone(f"the actor of sandbox {sandbox_id} died: {exc}")
    return exc


def to_studio_error(
    exc: BaseException, *, no_answer: str | None = None, restarting: str | None = None
) -> BaseException:
    """The error an API answers with for ``exc``: a StudioError, or ``exc`` itself.

    The StudioError raised inside an actor comes out as itself; a slow, dead,
    restarting or unschedulable actor is :class:`ServiceUnavailable`.
    ``no_answer`` and ``restarting`` word those two failures for the actor the
    caller knows ("sandbox sb_x did not answer execute in time"); otherwise
    the message names the failure. A cancelled call and anything else come
    back unchanged.
    """
    failure = classify(exc)
    if failure is None or failure is CallFailure.CANCELLED:
        return exc
    if failure is CallFailure.RAISED:
        return error_inside(exc) or exc
    if failure is CallFailure.NO_ANSWER and no_answer is not None:
        return ServiceUnavailable(f"{no_answer}; retry shortly", retry_after=_RETRY_AFTER)
    if failure is CallFailure.RESTARTING and restarting is not None:
        return ServiceUnavailable(f"{restarting}; retry shortly", retry_after=_RETRY_AFTER)
    return ServiceUnavailable(
        f"a Component Studio actor is unavailable ({type(exc).__name__}); retry shortly"
    )
