"""The local Ray's environment (pure); starting and stopping it is tested through `studio up`."""

from __future__ import annotations

from cli.local_ray import head_environment, use_token_auth


def test_the_interpreters_directory_comes_first_on_path() -> None:
    base = {"PATH": "/usr/bin:/opt/venv/bin:/bin", "RAY_ADDRESS": "10.0.0.1:6379", "HOME": "/h"}
    env = head_environment(base, "/opt/venv/bin/python")
    # Once, first; the rest in order; the interpreter's symlink not resolved.
    assert env["PATH"] == "/opt/venv/bin:/usr/bin:/bin"
    assert "RAY_ADDRESS" not in env  # the head is a cluster of its own
    assert env["HOME"] == "/h"
    assert env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] == "0"
    assert base["PATH"] == "/usr/bin:/opt/venv/bin:/bin"  # the caller's mapping is left alone


def test_token_auth_is_on_unless_a_mode_is_given() -> None:
    assert head_environment({}, "/v/bin/python")["RAY_AUTH_MODE"] == "token"
    env = {"RAY_AUTH_MODE": "disabled"}
    use_token_auth(env)
    assert env == {"RAY_AUTH_MODE": "disabled"}
    assert head_environment(env, "/v/bin/python")["RAY_AUTH_MODE"] == "disabled"


def test_the_services_tokens_stay_out_of_the_heads_environment() -> None:
    base = {
        "COMPONENT_STUDIO_ADMIN_TOKEN": "st_admin",
        "component_studio_github_token": "ghp_secret",
        "COMPONENT_STUDIO_VITE_STANDBY": "false",
    }
    env = head_environment(base, "/v/bin/python")
    # Workers read the other settings from it (the preload, the standby switch).
    assert env["COMPONENT_STUDIO_VITE_STANDBY"] == "false"
    assert not {"st_admin", "ghp_secret"} & set(env.values())
