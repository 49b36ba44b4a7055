"""What a create's overrides may not change: base branches and the repository-only fields."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from studio.config import ComponentStudioConfig
from studio.errors import PermissionDenied
from studio.sandbox_overrides import allowed_base_branches, check_overrides


def check(overrides: dict[str, Any], config: dict[str, Any] | None = None) -> None:
    check_overrides(
        overrides, repository="ui", default_branch="main", repository_config=config or {}
    )


def test_the_default_branch_and_the_listed_ones_are_allowed() -> None:
    config = {"branch": "trunk", "allowed_branches": ["release/1.x", "main"]}
    assert allowed_base_branches("main", config) == ["main", "trunk", "release/1.x"]
    for branch in ("main", "trunk", "release/1.x"):
        check({"branch": branch}, config)
    check({"timeout_hours": 1})
    check({})


@pytest.mark.parametrize(
    "branch", ["design/studio-abc123", "Design/Studio-abc123", "refs/heads/design/studio-x"]
)
def test_a_sandbox_branch_is_refused_even_when_listed(branch: str) -> None:
    with pytest.raises(PermissionDenied, match="sandboxes' own work") as info:
        check({"branch": branch}, {"allowed_branches": []})
    assert info.value.details["field"] == "branch"
    assert "'main'" in info.value.message


def test_an_unlisted_branch_is_refused_naming_only_the_allowed_ones() -> None:
    with pytest.raises(PermissionDenied) as info:
        check({"branch": "feature"}, {"allowed_branches": ["release"]})
    message = info.value.message
    assert "'main', 'release'" in message and "allowed_branches" in message
    with pytest.raises(PermissionDenied):
        check({"branch": ["main"]})


@pytest.mark.parametrize(
    "field",
    [
        "editable_config_paths",
        "allowed_branches",
        "install_scripts",
        "setup_command",
        "setup_timeout",
    ],
)
def test_repository_only_fields_cannot_be_overridden(field: str) -> None:
    with pytest.raises(PermissionDenied, match=f"{field} cannot be set when creating"):
        check({field: []})


def test_the_repository_config_may_not_list_a_sandbox_branch() -> None:
    with pytest.raises(ValidationError, match="may not list 'design/studio-abc'"):
        ComponentStudioConfig(allowed_branches=("release", "design/studio-abc"))
    with pytest.raises(ValidationError, match=r"'\.\.' components"):
        ComponentStudioConfig(editable_config_paths=("../package.json",))
