"""Every validation rule of the configuration, with the message a user would read."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from studio.config import (
    COMMIT_PLACEHOLDERS,
    RAY_WORKER_PORT_MIN,
    ComponentStudioConfig,
    StudioSettings,
    commit_pattern_placeholders,
    format_commit_message,
    load_settings,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No COMPONENT_STUDIO_* variable of the machine leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("COMPONENT_STUDIO_"):
            monkeypatch.delenv(name)
    yield


def error_text(excinfo: pytest.ExceptionInfo[ValidationError]) -> str:
    return str(excinfo.value)


# --- ComponentStudioConfig ----------------------------------------------------


def test_defaults_are_the_plans() -> None:
    config = ComponentStudioConfig()
    assert config.repository == ""
    assert config.branch == "main"
    assert config.auto_commit is True
    assert config.commit_pattern == "AI: {description} - {timestamp}"
    assert config.vite_port == 5173
    assert config.websocket_port == 8080
    assert config.health_check_interval == 10.0
    assert config.timeout_hours == 4.0
    assert config.max_restarts == 3
    assert config.restart_backoff <= config.restart_backoff_max
    assert config.unhealthy_threshold >= 1
    assert config.wrapper_component is None


def test_every_field_is_described() -> None:
    for model in (ComponentStudioConfig, StudioSettings):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


@pytest.mark.parametrize("port", [0, 80, 1023, RAY_WORKER_PORT_MIN, 10002, 20000, 65535, -1])
def test_vite_ports_out_of_range(port: int) -> None:
    with pytest.raises(ValidationError) as info:
        ComponentStudioConfig(vite_port=port)
    text = error_text(info)
    assert "vite_port must be between 1024 and 10001" in text
    assert "Ray's workers" in text
    assert f"got {port}" in text


@pytest.mark.parametrize(
    ("port", "problem"),
    [
        (80, "below 1024"),
        (RAY_WORKER_PORT_MIN, "inside Ray's worker port range 10002-19999"),
        (19999, "inside Ray's worker port range 10002-19999"),
        (65536, "above 65535"),
    ],
)
def test_websocket_ports_out_of_range(port: int, problem: str) -> None:
    with pytest.raises(ValidationError) as info:
        ComponentStudioConfig(websocket_port=port)
    assert f"{problem}; choose a port from 1024 to 10001 or from 20000 to 65535" in (
        error_text(info)
    )


@pytest.mark.parametrize("field", ["vite_port", "websocket_port"])
@pytest.mark.parametrize("port", [1024, 5173, 8080, 10001])
def test_ports_in_range(field: str, port: int) -> None:
    assert getattr(ComponentStudioConfig(**{field: port}), field) == port


@pytest.mark.parametrize("port", [20000, 36009, 65535])
def test_service_ports_above_rays_worker_range(port: int) -> None:
    assert ComponentStudioConfig(websocket_port=port).websocket_port == port
    settings = StudioSettings(ws_port=port, ws_direct_port=port)
    assert (settings.ws_port, settings.ws_direct_port) == (port, port)


@pytest.mark.parametrize(
    "field",
    [
        "health_check_interval",
        "timeout_hours",
        "restart_backoff",
        "restart_backoff_max",
        "stable_start",
        "ready_timeout",
    ],
)
@pytest.mark.parametrize("value", [0, -1, -0.001])
def test_intervals_must_be_positive(field: str, value: float) -> None:
    overrides: dict[str, float] = {field: value}
    with pytest.raises(ValidationError) as info:
        ComponentStudioConfig.model_validate(overrides)
    assert field in error_text(info)
    assert "greater than 0" in error_text(info)


def test_small_intervals_for_tests_are_fine() -> None:
    config = ComponentStudioConfig(
        health_check_interval=0.05, restart_backoff=0.01, restart_backoff_max=0.02
    )
    assert config.health_check_interval == 0.05


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_restarts", -1, "greater than or equal to 0"),
        ("unhealthy_threshold", 0, "greater than or equal to 1"),
        ("branch", "", "at least 1 character"),
        ("commit_pattern", "", "at least 1 character"),
        ("component_glob", "", "at least 1 character"),
    ],
)
def test_other_bounds(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ComponentStudioConfig.model_validate({field: value})
    assert field in error_text(info)
    assert message in error_text(info)


def test_zero_restarts_allowed() -> None:
    assert ComponentStudioConfig(max_restarts=0).max_restarts == 0


def test_unknown_placeholder_is_named() -> None:
    with pytest.raises(ValidationError) as info:
        ComponentStudioConfig(commit_pattern="AI: {descripton} by {author}")
    text = error_text(info)
    assert "unknown placeholder {author}, {descripton}" in text
    assert "known: {action}, {description}, {file}, {sandbox}, {timestamp}" in text


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("AI: {description", "is malformed"),
        ("AI: description}", "is malformed"),
        ("AI: {}", "plain named placeholders"),
        ("AI: {description!r}", "plain named placeholders"),
        ("AI: {description:>20}", "plain named placeholders"),
        ("AI: {0}", "unknown placeholder {0}"),
        ("AI: {description.__class__}", "unknown placeholder"),
        ("AI: {description[0]}", "unknown placeholder"),
    ],
)
def test_malformed_patterns(pattern: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ComponentStudioConfig(commit_pattern=pattern)
    assert "commit_pattern" in error_text(info)
    assert message in error_text(info)


def test_every_placeholder_is_accepted() -> None:
    pattern = " ".join("{" + name + "}" for name in sorted(COMMIT_PLACEHOLDERS))
    assert ComponentStudioConfig(commit_pattern=pattern).commit_pattern == pattern
    assert commit_pattern_placeholders(pattern) == set(COMMIT_PLACEHOLDERS)
    assert commit_pattern_placeholders("no placeholders, {{literal}}") == set()


def test_backoff_order() -> None:
    with pytest.raises(ValidationError) as info:
        ComponentStudioConfig(restart_backoff=5, restart_backoff_max=2)
    assert "restart_backoff (5.0) must not exceed restart_backoff_max (2.0)" in error_text(info)
    equal = ComponentStudioConfig(restart_backoff=2, restart_backoff_max=2)
    assert equal.restart_backoff == equal.restart_backoff_max


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        ComponentStudioConfig.model_validate({"vite_prot": 5173})
    assert "vite_prot" in error_text(info)
    assert "Extra inputs are not permitted" in error_text(info)


def test_config_is_frozen() -> None:
    config = ComponentStudioConfig()
    with pytest.raises(ValidationError, match="frozen"):
        config.branch = "dev"  # type: ignore[misc]


def test_with_overrides() -> None:
    base = ComponentStudioConfig(repository="ui", branch="develop")
    assert base.with_overrides(None) is base
    assert base.with_overrides({}) is base
    changed = base.with_overrides({"auto_commit": False, "max_restarts": 5})
    assert changed.auto_commit is False
    assert changed.max_restarts == 5
    assert changed.repository == "ui" and changed.branch == "develop"
    assert base.auto_commit is True  # the original is untouched


def test_with_overrides_rejects_unknown_and_invalid_fields() -> None:
    base = ComponentStudioConfig()
    with pytest.raises(ValidationError) as info:
        base.with_overrides({"colour": "red"})
    assert "colour" in error_text(info)
    assert "Extra inputs are not permitted" in error_text(info)
    with pytest.raises(ValidationError, match="vite_port must be between"):
        base.with_overrides({"vite_port": 20000})
    with pytest.raises(ValidationError, match="must not exceed restart_backoff_max"):
        base.with_overrides({"restart_backoff": 100})


def test_config_round_trips_through_json() -> None:
    config = ComponentStudioConfig(repository="ui", wrapper_component="src/Providers.tsx")
    assert ComponentStudioConfig.model_validate_json(config.model_dump_json()) == config


# --- format_commit_message ------------------------------------------------------


def test_format_commit_message() -> None:
    message = format_commit_message(
        "AI: {description} - {timestamp}",
        description="Updated Button border-radius",
        timestamp="2025-12-28 14:30",
    )
    assert message == "AI: Updated Button border-radius - 2025-12-28 14:30"


def test_format_commit_message_missing_values_and_extras() -> None:
    assert format_commit_message("{action} {file}", file="src/A.tsx", unused="x") == "src/A.tsx"


def test_format_commit_message_never_empty() -> None:
    assert format_commit_message("{description}") == "Component Studio edit"
    assert format_commit_message("  {description}  ", description="  ") == "Component Studio edit"


def test_format_commit_message_values_are_not_reinterpreted() -> None:
    # Braces inside a value are text, not placeholders.
    message = format_commit_message("AI: {description}", description="{sandbox} {0} {{x}}")
    assert message == "AI: {sandbox} {0} {{x}}"
    assert format_commit_message("{{literal}} {file}", file="a") == "{literal} a"


# --- StudioSettings -------------------------------------------------------------


def test_settings_defaults() -> None:
    settings = StudioSettings()
    assert settings.vite_port == 5173
    assert settings.ws_port == 8000
    assert settings.host == "127.0.0.1"
    assert settings.repo_roots == []
    assert settings.state_dir == Path.home() / ".component-studio"
    assert settings.template_dir.name == "studio-template"
    assert settings.github_token is None
    assert settings.max_file_bytes == 1_048_576


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COMPONENT_STUDIO_TEMPLATE_DIR", str(tmp_path / "template"))
    monkeypatch.setenv("COMPONENT_STUDIO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("COMPONENT_STUDIO_VITE_PORT", "6000")
    monkeypatch.setenv("COMPONENT_STUDIO_VITE_PORT_COUNT", "10")
    monkeypatch.setenv("COMPONENT_STUDIO_WS_PORT", "8080")
    monkeypatch.setenv("COMPONENT_STUDIO_TIMEOUT_HOURS", "0.5")
    monkeypatch.setenv("COMPONENT_STUDIO_MAX_RESTARTS", "7")
    monkeypatch.setenv("COMPONENT_STUDIO_HEALTH_CHECK_INTERVAL", "0.25")
    monkeypatch.setenv("COMPONENT_STUDIO_GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("COMPONENT_STUDIO_GITHUB_API_URL", "http://127.0.0.1:4010")
    monkeypatch.setenv("COMPONENT_STUDIO_ADMIN_TOKEN", "admin-token")
    monkeypatch.setenv("COMPONENT_STUDIO_MAX_FILE_BYTES", "2048")
    monkeypatch.setenv("COMPONENT_STUDIO_PUBLIC_HOST", "studio.example")
    monkeypatch.setenv("COMPONENT_STUDIO_RATE_LIMIT_PER_MINUTE", "30")
    monkeypatch.setenv("COMPONENT_STUDIO_RATE_LIMIT_BURST", "5")
    settings = load_settings()
    assert settings.template_dir == tmp_path / "template"
    assert settings.state_dir == tmp_path / "state"
    assert settings.vite_port == 6000
    assert settings.vite_port_count == 10
    assert settings.ws_port == 8080
    assert settings.timeout_hours == 0.5
    assert settings.max_restarts == 7
    assert settings.health_check_interval == 0.25
    assert settings.github_token == "ghp_secret"
    assert settings.github_api_url == "http://127.0.0.1:4010"
    assert settings.admin_token == "admin-token"
    assert settings.max_file_bytes == 2048
    assert settings.public_host == "studio.example"
    assert settings.rate_limit_per_minute == 30
    assert settings.rate_limit_burst == 5


def test_env_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("component_studio_vite_port", "6001")
    assert StudioSettings().vite_port == 6001


def test_inprocess_commits_is_on_unless_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPONENT_STUDIO_INPROCESS_COMMITS", raising=False)
    assert StudioSettings().inprocess_commits is True
    monkeypatch.setenv("COMPONENT_STUDIO_INPROCESS_COMMITS", "false")
    assert StudioSettings().inprocess_commits is False
    monkeypatch.setenv("COMPONENT_STUDIO_INPROCESS_COMMITS", "sometimes")
    with pytest.raises(ValidationError, match="inprocess_commits"):
        StudioSettings()


def test_repo_roots_comma_list(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COMPONENT_STUDIO_REPO_ROOTS", f"{tmp_path}/a, ~/b ,,{tmp_path}/c,")
    assert StudioSettings().repo_roots == [
        tmp_path / "a",
        tmp_path / "home" / "b",
        tmp_path / "c",
    ]


@pytest.mark.parametrize("value", ["", " ", ",", " , "])
def test_repo_roots_empty(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("COMPONENT_STUDIO_REPO_ROOTS", value)
    assert StudioSettings().repo_roots == []


def test_repo_roots_as_keyword(tmp_path: Path) -> None:
    assert load_settings(repo_roots=[tmp_path]).repo_roots == [tmp_path]
    assert load_settings(repo_roots=f"{tmp_path}/x,{tmp_path}/y").repo_roots == [
        tmp_path / "x",
        tmp_path / "y",
    ]


def test_keyword_overrides_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPONENT_STUDIO_VITE_PORT", "6000")
    assert load_settings(vite_port=7000).vite_port == 7000


@pytest.mark.parametrize("port", ["80", "10002", "65000"])
def test_settings_vite_port_out_of_range(monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.setenv("COMPONENT_STUDIO_VITE_PORT", port)
    with pytest.raises(ValidationError) as info:
        StudioSettings()
    assert "vite_port must be between 1024 and 10001" in error_text(info)


@pytest.mark.parametrize("name", ["WS_PORT", "WS_DIRECT_PORT"])
@pytest.mark.parametrize("port", ["80", "10002", "19999", "65536"])
def test_settings_service_ports_out_of_range(
    monkeypatch: pytest.MonkeyPatch, name: str, port: str
) -> None:
    monkeypatch.setenv(f"COMPONENT_STUDIO_{name}", port)
    with pytest.raises(ValidationError) as info:
        StudioSettings()
    assert "choose a port from 1024 to 10001 or from 20000 to 65535" in error_text(info)


def test_vite_range_must_end_below_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPONENT_STUDIO_VITE_PORT", "9800")
    with pytest.raises(ValidationError) as info:
        StudioSettings()
    assert "the Vite port range 9800-10199 reaches Ray's worker ports (10002 and up)" in (
        error_text(info)
    )
    # The last port of the range may be 10001 exactly.
    assert StudioSettings(vite_port_count=202).vite_port == 9800


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("VITE_PORT", "five", "valid integer"),
        ("VITE_PORT_COUNT", "0", "greater than or equal to 1"),
        ("TIMEOUT_HOURS", "0", "greater than 0"),
        ("HEALTH_CHECK_INTERVAL", "-1", "greater than 0"),
        ("MAX_RESTARTS", "-1", "greater than or equal to 0"),
        ("MAX_FILE_BYTES", "0", "greater than or equal to 1"),
        ("RATE_LIMIT_PER_MINUTE", "0", "greater than or equal to 1"),
        ("RATE_LIMIT_BURST", "0", "greater than or equal to 1"),
    ],
)
def test_settings_invalid_values(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"COMPONENT_STUDIO_{name}", value)
    with pytest.raises(ValidationError) as info:
        StudioSettings()
    assert name.lower() in error_text(info)
    assert message in error_text(info)


def test_unknown_environment_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPONENT_STUDIO_NOT_A_SETTING", "x")
    assert StudioSettings().vite_port == 5173


def test_default_config_follows_settings() -> None:
    settings = load_settings(
        vite_port=6000, ws_port=8100, timeout_hours=1, max_restarts=9, health_check_interval=2
    )
    config = settings.default_config()
    assert config.vite_port == 6000
    assert config.websocket_port == 8100
    assert config.timeout_hours == 1
    assert config.max_restarts == 9
    assert config.health_check_interval == 2


def test_a_setup_command_string_is_split_like_a_shell_and_a_list_kept() -> None:
    split = ComponentStudioConfig(
        setup_command="node_modules/.bin/postcss 'src/a b.css' -o out.css"
    )
    assert split.setup_command == ("node_modules/.bin/postcss", "src/a b.css", "-o", "out.css")
    # No shell runs it: a pipe or a variable is an argument like any other.
    assert ComponentStudioConfig(setup_command="gen | tee $OUT").setup_command == (
        "gen",
        "|",
        "tee",
        "$OUT",
    )
    assert ComponentStudioConfig(setup_command=["panda", "codegen"]).setup_command == (
        "panda",
        "codegen",
    )
    assert ComponentStudioConfig(setup_command="").setup_command == ()
    assert ComponentStudioConfig().setup_timeout == 300.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("node 'unclosed", "cannot be split: No closing quotation"),
        (["node"] * 65, "65 arguments; at most 64"),
        (["node", "x" * 4096], "longer than 4096 characters"),
        (["node", "a\0b"], "NUL character"),
        ([" ", "x"], "program (its first argument) is empty"),
        ([1, 2], "Input should be a valid string"),
    ],
)
def test_bad_setup_commands(value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        ComponentStudioConfig(setup_command=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1, 1801])
def test_setup_timeout_bounds(value: float) -> None:
    with pytest.raises(ValidationError, match="setup_timeout"):
        ComponentStudioConfig(setup_timeout=value)
