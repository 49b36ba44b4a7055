"""Renderer tickets and cookies: signed, kind- and sandbox-bound, expiring (serve.renderer_auth)."""

from __future__ import annotations

import pytest

from serve.renderer_auth import CredentialKind, check_credential, issue_credential
from studio.errors import InvalidRequest, Unauthenticated

A = "sb_aaaaaaaaaa"
B = "sb_bbbbbbbbbb"
SECRET = "s3cret"
T, C = CredentialKind.TICKET, CredentialKind.COOKIE


def test_a_credential_checks_for_its_sandbox_and_kind_until_it_expires() -> None:
    ticket = issue_credential(SECRET, A, T, 300, now=1000)
    check_credential(SECRET, A, T, ticket, now=1299)
    with pytest.raises(Unauthenticated, match="expired"):
        check_credential(SECRET, A, T, ticket, now=1300)


@pytest.mark.parametrize(
    ("secret", "sandbox", "kind", "why"),
    [
        ("other", A, T, "not valid"),
        (SECRET, B, T, "not one of sandbox"),
        (SECRET, A, C, "not one of sandbox"),
        ("", A, T, "not valid"),
    ],
)
def test_another_secret_sandbox_or_kind_is_refused(
    secret: str, sandbox: str, kind: CredentialKind, why: str
) -> None:
    ticket = issue_credential(SECRET, A, T, 300, now=1000)
    with pytest.raises(Unauthenticated, match=why):
        check_credential(secret, sandbox, kind, ticket, now=1001)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda v: v[:-1] + ("A" if v[-1] != "A" else "B"),  # signature
        lambda v: v.replace(".1300.", ".9999999999."),  # expiry pushed back
        lambda v: v.replace(f"t.{A}", f"c.{A}"),  # kind changed, signature kept
        lambda v: v.replace(A, B),  # sandbox changed, signature kept
        lambda v: v + ".x",
        lambda v: "",
        lambda v: "t.sb_x.notanumber.sig",
    ],
)
def test_a_tampered_credential_is_refused(mangle: object) -> None:
    ticket = issue_credential(SECRET, A, T, 300, now=1000)
    forged = mangle(ticket)  # type: ignore[operator]
    with pytest.raises(Unauthenticated):
        check_credential(SECRET, A, T, forged, now=1001)


def test_issuing_needs_a_secret_and_a_valid_sandbox_id() -> None:
    with pytest.raises(ValueError, match="secret"):
        issue_credential("", A, T, 300)
    with pytest.raises(InvalidRequest):
        issue_credential(SECRET, "../etc", T, 300)
