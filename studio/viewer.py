"""Viewer tokens: what lets a sandbox's own studio page join its event stream.

The studio page runs in a browser that holds no user token, yet it must open
the sandbox's WebSocket (status banner, reload, shared selection). The manager
gives each sandbox a token derived from a service secret and the sandbox id;
the sandbox puts it in the page's WebSocket URL, and the API accepts it for
that sandbox's stream only, never for any HTTP route or another sandbox.
Derived, not stored: a replica checks it with the secret alone, and a
recreated sandbox actor gets the same token back.
"""

from __future__ import annotations

import hashlib
import hmac

from studio.naming import validate_sandbox_id

__all__ = ["VIEWER_PREFIX", "is_viewer_token", "viewer_token"]

# Tells a viewer token from a user token at a glance (and in a leaked URL).
VIEWER_PREFIX = "sv_"


def viewer_token(secret: str, sandbox_id: str) -> str:
    """The viewer token of ``sandbox_id`` under the service's ``secret``."""
    if not secret:
        raise ValueError("a viewer token needs a non-empty secret")
    digest = hmac.new(
        secret.encode("utf-8"), validate_sandbox_id(sandbox_id).encode("ascii"), hashlib.sha256
    )
    return VIEWER_PREFIX + digest.hexdigest()[:40]


def is_viewer_token(secret: str, sandbox_id: str, token: str) -> bool:
    """Whether ``token`` is the viewer token of exactly ``sandbox_id``."""
    if not secret or not token.startswith(VIEWER_PREFIX):
        return False
    return hmac.compare_digest(viewer_token(secret, sandbox_id), token)
