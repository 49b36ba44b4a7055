"""Errors to HTTP answers, in one place.

Every route raises :class:`studio.errors.StudioError` subclasses (or lets
them through from an actor); this module decides the status from the class
alone and renders the one error shape of the API::

    {"error": {"code": "sandbox_not_found", "message": "no sandbox sb_x..."}}

FastAPI's own validation errors take the same shape (422, the message naming
the field), and so does anything unexpected (500, without internals).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from studio.errors import (
    Conflict,
    GitError,
    GitLocked,
    GitRemoteError,
    InvalidRequest,
    InvalidState,
    MissingBaseBranch,
    NotFound,
    PathNotAllowed,
    PayloadTooLarge,
    PermissionDenied,
    ProcessError,
    ProcessStartError,
    PullRequestError,
    RateLimited,
    RollbackOutOfRange,
    ServiceUnavailable,
    StudioError,
    Unauthenticated,
)

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "STATUS_BY_CLASS",
    "BodyTooLarge",
    "body_too_large",
    "error_body",
    "error_response",
    "install_error_handlers",
    "retry_after",
    "status_for",
    "validation_message",
]

logger = logging.getLogger(__name__)

# Seconds a client should wait when the manager is restarting (it takes ~1 s).
DEFAULT_RETRY_AFTER = 2

# Most specific first: the first class the error is an instance of decides.
STATUS_BY_CLASS: tuple[tuple[type[StudioError], int], ...] = (
    (PayloadTooLarge, 413),
    # Git errors the caller caused or can retry are not server faults.
    (RollbackOutOfRange, 400),
    (MissingBaseBranch, 400),
    (GitLocked, 409),
    # The repository's remote refused or could not be reached.
    (GitRemoteError, 502),
    (PathNotAllowed, 400),
    (NotFound, 404),
    (InvalidRequest, 400),
    (InvalidState, 409),
    (Conflict, 409),
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (RateLimited, 429),
    (ServiceUnavailable, 503),
    (PullRequestError, 502),
    # The sandbox's own upstream (Vite, npm) would not start: its output says why.
    (ProcessStartError, 502),
    (GitError, 500),
    (ProcessError, 500),
)


def status_for(error: StudioError) -> int:
    """The HTTP status of ``error``, from its class (500 for an unlisted one)."""
    for cls, status in STATUS_BY_CLASS:
        if isinstance(error, cls):
            return status
    return 500


def retry_after(error: StudioError) -> int | None:
    """Whole seconds for a ``Retry-After`` header, for 429 and 503 answers only."""
    if not isinstance(error, RateLimited | ServiceUnavailable):
        return None
    value = error.details.get("retry_after", DEFAULT_RETRY_AFTER)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = DEFAULT_RETRY_AFTER
    # Retry-After takes whole seconds; rounding down would invite an early retry.
    return max(1, math.ceil(seconds))


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The API's error JSON: ``{"error": {"code", "message", ...extra}}``."""
    return {"error": {"code": code, "message": message, **extra}}


# Details worth showing a client; others (paths, output) stay in the logs.
_PUBLIC_DETAILS = ("state", "retry_after", "limit", "size", "field", "quota", "preparation")


def error_response(error: StudioError) -> JSONResponse:
    """The JSON response for ``error``, with ``Retry-After`` where it applies."""
    status = status_for(error)
    extra = {k: error.details[k] for k in _PUBLIC_DETAILS if k in error.details}
    headers: dict[str, str] = {}
    wait = retry_after(error)
    if wait is not None:
        headers["Retry-After"] = str(wait)
        extra["retry_after"] = wait
    if status >= 500:
        logger.warning("request failed: %s: %s", error.code, error.message)
    return JSONResponse(
        error_body(error.code, error.message, **extra), status_code=status, headers=headers
    )


def validation_message(errors: Sequence[Any]) -> tuple[str, str | None]:
    """A one-line message naming the offending field(s), and the first field's name."""
    parts: list[str] = []
    first: str | None = None
    for detail in list(errors)[:3]:
        # "body" / "query" prefixes say where, not what: the field is the rest.
        loc = [str(p) for p in detail.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or "body"
        first = first or field
        parts.append(f"{field}: {detail.get('msg', 'invalid')}")
    more = len(errors) - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts) or "invalid request", first


async def _studio_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StudioError)
    return error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, field = validation_message(exc.errors())
    extra = {"field": field} if field else {}
    return JSONResponse(error_body("validation_error", message, **extra), status_code=422)


class BodyTooLarge(StarletteHTTPException):
    """Raised by a request's ``receive`` once its body passes ``limit`` bytes (serve.limits).

    An HTTPException, so that FastAPI, reading the body for a route, lets it
    through as it is rather than as a 400 "error parsing the body".
    """

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body over {limit} bytes")
        self.limit = limit


def body_too_large(limit: int | None) -> PayloadTooLarge:
    """A request body over ``limit`` bytes (``max_request_bytes``), refused unparsed."""
    shown = f"{limit} bytes" if limit is not None else "the limit"
    return PayloadTooLarge(
        f"the request body is larger than {shown} (max_request_bytes): send less, "
        "for example a write_files batch in several requests",
        limit=limit,
    )


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, BodyTooLarge):
        return error_response(body_too_large(exc.limit))
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        error_body(code, str(exc.detail)),
        status_code=exc.status_code,
        headers=dict(exc.headers or {}),
    )


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    # The message of an unexpected error may hold paths or internals: log it, say less.
    logger.exception("unexpected error", exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "internal error; the service log has the details"),
        status_code=500,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Make every error ``app`` answers take the API's error shape."""
    app.add_exception_handler(StudioError, _studio_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
