"""What a sandbox's creator may set: bounds for everyone, more for admins only."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from studio.config import MAX_TIMEOUT_HOURS, ComponentStudioConfig, StudioSettings
from studio.errors import PermissionDenied, QuotaExceeded
from studio.limits import check_sandbox_quota, check_user_overrides

SERVICE = ComponentStudioConfig(timeout_hours=4, ready_timeout=60, max_restarts=3)


def check(overrides: dict[str, Any]) -> None:
    check_user_overrides(SERVICE, SERVICE.with_overrides(overrides), overrides)


@pytest.mark.parametrize(
    ("field", "value", "bound"),
    [
        ("timeout_hours", 1000, "168"),
        ("ready_timeout", 3600, "600"),
        ("restart_backoff_max", 10_000, "300"),
        ("max_restarts", 1_000_000, "100"),
        ("health_check_interval", 86_400, "3600"),
    ],
)
def test_every_override_has_a_bound_that_holds_for_everyone(
    field: str, value: float, bound: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        SERVICE.with_overrides({field: value})
    error = refused.value.errors()[0]
    assert error["loc"] == (field,)
    assert bound in error["msg"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"timeout_hours": 1},
        {"timeout_hours": 4},
        {"ready_timeout": 0.01},
        {"max_restarts": 0},
        {"restart_backoff": 0.05, "restart_backoff_max": 0.2, "stable_start": 0.1},
        {"health_check_interval": 30},
        {"auto_commit": False, "commit_pattern": "{description}"},
    ],
)
def test_a_user_may_go_the_cheap_way(overrides: dict[str, Any]) -> None:
    check(overrides)


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"timeout_hours": 8}, "timeout_hours", "above this service's 4.0"),
        ({"ready_timeout": 120}, "ready_timeout", "above this service's 60.0"),
        ({"max_restarts": 10}, "max_restarts", "above this service's 3"),
        ({"restart_backoff_max": 60}, "restart_backoff_max", "above"),
        ({"health_check_interval": 0.5}, "health_check_interval", "below this service's 10.0"),
        ({"vite_port": 6000}, "vite_port", "only an admin may set vite_port"),
        ({"websocket_port": 9000}, "websocket_port", "only an admin may set websocket_port"),
    ],
)
def test_ports_and_longer_timeouts_are_for_admins(
    overrides: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(PermissionDenied, match=words) as refused:
        check(overrides)
    assert refused.value.details["field"] == field


def test_the_service_defaults_are_held_to_the_same_bounds() -> None:
    with pytest.raises(ValidationError, match="timeout_hours"):
        StudioSettings(timeout_hours=MAX_TIMEOUT_HOURS + 1)


def test_the_sandbox_quota_names_itself() -> None:
    check_sandbox_quota("ann", 1, 2)
    check_sandbox_quota("ann", 50, 0)
    with pytest.raises(QuotaExceeded, match=r"ann.*2 live sandboxes.*max_sandboxes_per_user"):
        check_sandbox_quota("ann", 2, 2)
