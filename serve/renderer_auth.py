"""Who may see a sandbox's renderer: tickets from the API, cookies from the proxy.

The renderer (the sandbox's Vite, behind ``serve.renderer_proxy``) is opened
by a browser, which holds no API token and cannot send one with the page's
module and WebSocket requests. So the owner gets a *ticket* from the API (in
``renderer_url``: ``/r/<id>/?ticket=...``), valid for ``TICKET_TTL`` seconds;
the proxy exchanges it for a *cookie* scoped to ``/r/<id>/`` (HttpOnly, so no
script of the page can read it), valid for ``COOKIE_TTL`` seconds, which every
later request of the page carries by itself.

Both are signed, not stored: ``<kind>.<sandbox id>.<expiry>.<HMAC>``, the
HMAC (SHA-256) of the rest under the service's secret (the one viewer tokens
derive from, held by the manager; each replica asks for it once). Any replica
checks them alone, a ticket is no cookie and a cookie no ticket (the kind is
signed), and neither opens another sandbox. A ticket may be used more than
once within its lifetime: it is short so that a leaked URL (a browser
history, a log) soon opens nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from enum import StrEnum

from studio.errors import Unauthenticated
from studio.naming import validate_sandbox_id

__all__ = [
    "COOKIE_NAME",
    "COOKIE_TTL",
    "TICKET_PARAM",
    "TICKET_TTL",
    "CredentialKind",
    "check_credential",
    "issue_credential",
]

# Seconds a ticket from the API may wait before it is exchanged.
TICKET_TTL = 300
# Seconds a renderer cookie lasts; then the owner asks the API for a new renderer_url.
COOKIE_TTL = 8 * 3600
TICKET_PARAM = "ticket"
COOKIE_NAME = "studio_renderer"


class CredentialKind(StrEnum):
    """What a signed credential is: it is signed with it, so one never passes for the other."""

    TICKET = "t"
    COOKIE = "c"


def _signature(secret: str, payload: str) -> str:
    digest = hmac.new(
        secret.encode("utf-8"), f"renderer:{payload}".encode("ascii"), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def issue_credential(
    secret: str, sandbox_id: str, kind: CredentialKind, ttl: float, now: float | None = None
) -> str:
    """A ``kind`` credential for ``sandbox_id``'s renderer, valid ``ttl`` seconds from ``now``."""
    if not secret:
        raise ValueError("a renderer credential needs a non-empty secret")
    expiry = int((time.time() if now is None else now) + ttl)
    payload = f"{kind.value}.{validate_sandbox_id(sandbox_id)}.{expiry}"
    return f"{payload}.{_signature(secret, payload)}"


def check_credential(
    secret: str, sandbox_id: str, kind: CredentialKind, value: str, now: float | None = None
) -> None:
    """Nothing when ``value`` is a valid ``kind`` credential of ``sandbox_id``; Unauthenticated
    (saying why: malformed, another sandbox's, expired) otherwise."""
    what = "ticket" if kind is CredentialKind.TICKET else "renderer cookie"
    parts = value.split(".")
    if len(parts) != 4:
        raise Unauthenticated(f"the {what} is malformed")
    payload, signature = ".".join(parts[:3]), parts[3]
    if not secret or not hmac.compare_digest(_signature(secret, payload), signature):
        raise Unauthenticated(f"the {what} is not valid (not signed by this service)")
    if parts[0] != kind.value or parts[1] != sandbox_id:
        raise Unauthenticated(f"the {what} is not one of sandbox {sandbox_id}'s renderer")
    try:
        expiry = int(parts[2])
    except ValueError:
        raise Unauthenticated(f"the {what} is malformed") from None
    if (time.time() if now is None else now) >= expiry:
        raise Unauthenticated(
            f"the {what} expired: get a new renderer_url from GET /api/v1/sandboxes/{sandbox_id}"
        )
