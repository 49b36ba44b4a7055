"""Viewer tokens: the per-sandbox secret the API's renderer proxy shows the sandbox's Vite.

A sandbox's Vite answers only requests carrying its viewer token in
``x-studio-proxy-secret`` (the template's proxy guard), which the renderer
proxy (serve.renderer_proxy) adds; the sandbox writes the token into
``.studio/studio.config.json`` for Vite, which never serves that file. The
token opens nothing of the API. It is derived from a service secret and the
sandbox id, not stored: a replica computes it with the secret alone, and a
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
