"""Viewer tokens: one per sandbox, checked with the secret alone."""

from __future__ import annotations

import pytest

from studio.errors import InvalidRequest
from studio.viewer import VIEWER_PREFIX, is_viewer_token, viewer_token

A, B = "sb_aaaaaaaaaa", "sb_bbbbbbbbbb"


def test_a_token_opens_its_own_sandbox_only() -> None:
    token = viewer_token("s3cret", A)
    assert token.startswith(VIEWER_PREFIX)
    assert is_viewer_token("s3cret", A, token)
    assert not is_viewer_token("s3cret", B, token)
    assert not is_viewer_token("other", A, token)


def test_the_token_is_stable_for_a_recreated_actor() -> None:
    assert viewer_token("s3cret", A) == viewer_token("s3cret", A)
    assert viewer_token("s3cret", A) != viewer_token("s3cret", B)


@pytest.mark.parametrize("token", ["", "sv_", "sv_" + "0" * 40, "Bearer x", "x" * 1000])
def test_anything_else_is_refused(token: str) -> None:
    assert not is_viewer_token("s3cret", A, token)


def test_no_secret_no_token() -> None:
    with pytest.raises(ValueError, match="secret"):
        viewer_token("", A)
    assert not is_viewer_token("", A, viewer_token("s3cret", A))


def test_the_sandbox_id_is_validated() -> None:
    with pytest.raises(InvalidRequest):
        viewer_token("s3cret", "../etc")
