"""Names derived from sandbox ids."""

from __future__ import annotations

import pytest

from studio.errors import InvalidRequest
from studio.naming import (
    ACTOR_NAMESPACE,
    MANAGER_ACTOR_NAME,
    SANDBOX_ID_PATTERN,
    branch_name,
    new_sandbox_id,
    sandbox_actor_name,
    undo_ref_prefix,
    validate_sandbox_id,
)
from tests.support.gitrepo import git


def test_new_ids_are_well_formed_and_distinct() -> None:
    ids = {new_sandbox_id() for _ in range(2000)}
    assert len(ids) == 2000
    for sandbox_id in ids:
        assert SANDBOX_ID_PATTERN.fullmatch(sandbox_id)
        assert validate_sandbox_id(sandbox_id) == sandbox_id
        assert len(sandbox_id) == len("sb_") + 10


@pytest.mark.parametrize("sandbox_id", ["sb_abc123", "sb_000000", "sb_" + "z" * 32])
def test_valid_ids(sandbox_id: str) -> None:
    assert validate_sandbox_id(sandbox_id) == sandbox_id


@pytest.mark.parametrize(
    "sandbox_id",
    [
        "",
        "sb_",
        "sb_abc12",  # 5 characters
        "sb_" + "a" * 33,
        "abc123",
        "SB_abc123",
        "sb_ABC123",
        "sb-abc123",
        "sb_abc-123",
        "sb_abc_123",
        "sb_abc123\n",
        "sb_abc123 ",
        " sb_abc123",
        "sb_abc123/../x",
        "sb_abc123\x00",
        "sb_\uff41\uff42\uff43\uff11\uff12\uff13",  # full-width
        "sb_abc123;rm",
    ],
)
def test_malformed_ids_are_rejected(sandbox_id: str) -> None:
    with pytest.raises(InvalidRequest, match="malformed") as info:
        validate_sandbox_id(sandbox_id)
    assert "6-32 lowercase letters or digits" in str(info.value)
    for derive in (branch_name, sandbox_actor_name, undo_ref_prefix):
        with pytest.raises(InvalidRequest):
            derive(sandbox_id)


def test_non_string_id_is_rejected() -> None:
    with pytest.raises(InvalidRequest):
        validate_sandbox_id(None)  # type: ignore[arg-type]


def test_branch_name() -> None:
    assert branch_name("sb_abc123") == "design/studio-abc123"


def test_actor_names() -> None:
    assert sandbox_actor_name("sb_abc123") == "sandbox:sb_abc123"
    assert ACTOR_NAMESPACE == "component-studio"
    assert MANAGER_ACTOR_NAME == "studio-manager"


def test_undo_ref_prefix() -> None:
    assert undo_ref_prefix("sb_abc123") == "refs/studio/sb_abc123/undo/"


def test_names_are_valid_for_git(tmp_path) -> None:
    # git itself is the judge of what a branch or ref may be called.
    sandbox_id = new_sandbox_id()
    git(tmp_path, "init", "-q")
    git(tmp_path, "check-ref-format", "--branch", branch_name(sandbox_id))
    git(tmp_path, "check-ref-format", undo_ref_prefix(sandbox_id) + "1")
