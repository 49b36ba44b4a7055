"""A repository's setup_command through the API, on the session's real Ray, git and Vite.

Only an admin sets it, at registration (400 with the reason for a bad one,
403 for anyone else), never a create's overrides (403); a sandbox of a
repository with one reports how it went (``setup``) in its status.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.serve.conftest import Api
from tests.support.gitrepo import repo_from_dir
from tests.template.pages import FIXTURES

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CREATE_TIMEOUT = 300


def _fixture(api: Api) -> tuple[str, Path]:
    """A fresh git copy of the generated-css fixture under the API's allowed root."""
    name = f"generated-css-{uuid.uuid4().hex[:8]}"
    return name, repo_from_dir(FIXTURES / "generated-css", api.settings.state_dir.parent / name)


def _register(api: Api, user: str, name: str, origin: Path, **fields: Any) -> Any:
    return api.http.post(
        "/api/v1/repositories",
        json={"name": name, "path": str(origin), **fields},
        headers=api.headers(user),
    )


def _names(api: Api) -> list[str]:
    reply = api.http.get("/api/v1/repositories", headers=api.headers("admin"))
    assert reply.status_code == 200, reply.text
    return [repository["name"] for repository in reply.json()]


def test_bad_setup_commands_are_refused_and_only_admins_set_one(api: Api) -> None:
    name, origin = _fixture(api)
    before = _names(api)
    for value, reason in (
        ("node 'scripts/gen.mjs", "cannot be split: No closing quotation"),
        (["node"] * 65, "setup_command has 65 arguments; at most 64"),
        (["node", "x" * 5000], "setup_command is longer than 4096 characters"),
        (["", "gen"], "setup_command's program (its first argument) is empty"),
    ):
        reply = _register(api, "admin", name, origin, setup_command=value)
        assert reply.status_code == 400, (value, reply.text)
        assert reason in reply.json()["error"]["message"], reply.text
    for timeout in (0, 3600):
        reply = _register(api, "admin", name, origin, setup_command="node x", setup_timeout=timeout)
        assert reply.status_code == 400, reply.text
        assert "setup_timeout" in reply.json()["error"]["message"]
    reply = _register(api, "admin", name, origin, setup_command={"argv": ["node"]})
    assert reply.status_code == 422, reply.text
    reply = _register(api, api.user("mallory"), name, origin, setup_command="node scripts/gen.mjs")
    assert reply.status_code == 403, reply.text
    assert _names(api) == before


def test_a_create_may_not_set_it_and_a_sandbox_reports_how_it_went(api: Api) -> None:
    name, origin = _fixture(api)
    registered = _register(api, "admin", name, origin, setup_command="node scripts/gen.mjs")
    assert registered.status_code == 201, registered.text
    record = registered.json()
    assert record["config"]["setup_command"] == ["node", "scripts/gen.mjs"]
    user = api.user("dana")
    create = {"type": "component-studio", "repository_id": record["id"]}
    for field, value in (("setup_command", "node -e 1"), ("setup_timeout", 5)):
        reply = api.http.post(
            "/api/v1/sandboxes", json={**create, field: value}, headers=api.headers(user)
        )
        assert reply.status_code == 403, reply.text
        assert f"{field} cannot be set when creating a sandbox" in reply.json()["error"]["message"]
    reply = api.http.post(
        "/api/v1/sandboxes", json=create, headers=api.headers(user), timeout=CREATE_TIMEOUT
    )
    assert reply.status_code == 201, reply.text
    sandbox_id = reply.json()["sandbox_id"]
    try:
        status = api.http.get(f"/api/v1/sandboxes/{sandbox_id}", headers=api.headers(user))
        assert status.status_code == 200, status.text
        setup = status.json()["setup"]
        assert setup["status"] == "ok" and setup["exit_code"] == 0, setup
        assert setup["command"] == ["node", "scripts/gen.mjs"]
        assert setup["output"] == ["gen: wrote src/generated/tokens.css"]
        assert setup["outputs"] == ["src/generated/"]
    finally:
        with contextlib.suppress(Exception):
            api.http.delete(
                f"/api/v1/sandboxes/{sandbox_id}", headers=api.headers(user), timeout=120
            )
