"""A repository's preparation through the API, on the session's real Ray, git and npm.

Registering a repository prepares it on the node (mirror, install, deps,
stories); its record says where that stands. A create meanwhile waits for it
(its stream names the step) instead of preparing again; a failed install is
shown with npm's output, a create on it answers 409 with the same, and
``POST /repositories/{id}/prepare`` runs it again once the repository is fixed.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from studio.git import file_lock
from studio.layout import StateLayout
from studio.messages import PrepareStep
from tests.actors.conftest import UI_KIT
from tests.serve.conftest import Api
from tests.support.gitrepo import commit_all, repo_from_dir

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TIMEOUT = 180
# A package no registry has: npm ci fails on it with a 404.
MISSING = "component-studio-no-such-package-" + "0" * 8
ORDER = [step.value for step in PrepareStep]


def _lockfile(name: str, missing: bool = False) -> str:
    root: dict[str, Any] = {"name": name, "version": "0.1.0"}
    packages: dict[str, Any] = {"": root}
    if missing:
        root["dependencies"] = {MISSING: "1.0.0"}
        packages[f"node_modules/{MISSING}"] = {
            "version": "1.0.0",
            "resolved": f"https://registry.npmjs.org/{MISSING}/-/{MISSING}-1.0.0.tgz",
        }
    return json.dumps(
        {
            "name": name,
            "version": "0.1.0",
            "lockfileVersion": 3,
            "requires": True,
            "packages": packages,
        },
        indent=2,
    )


def _repository(api: Api, *, missing: bool = False) -> tuple[str, Path]:
    """ui-kit with a lockfile of its own (a new install-cache entry), under the allowed root."""
    name = f"prep-{uuid.uuid4().hex[:8]}"
    origin = repo_from_dir(UI_KIT, api.settings.state_dir.parent / name)
    manifest = json.loads((origin / "package.json").read_text())
    manifest["name"] = name
    # npm ci would want React (a peer) in the lockfile; the studio app brings its own.
    del manifest["peerDependencies"]
    if missing:
        manifest["dependencies"] = {MISSING: "1.0.0"}
    (origin / "package.json").write_text(json.dumps(manifest, indent=2))
    (origin / "package-lock.json").write_text(_lockfile(name, missing))
    commit_all(origin, "a lockfile of its own")
    return name, origin


def _register(api: Api, name: str, origin: Path) -> dict[str, Any]:
    reply = api.http.post(
        "/api/v1/repositories",
        json={"name": name, "path": str(origin)},
        headers=api.headers("admin"),
        timeout=TIMEOUT,
    )
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def _preparation_when(
    api: Api, repository_id: int, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The repository's ``preparation`` once ``done`` says so (polled)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        reply = api.http.get(f"/api/v1/repositories/{repository_id}", headers=api.headers("admin"))
        assert reply.status_code == 200, reply.text
        preparation: dict[str, Any] = reply.json()["preparation"]
        if done(preparation):
            return preparation
        assert time.monotonic() < deadline, f"preparation stuck at {preparation}"
        time.sleep(0.1)


def _create(api: Api, user: str, repository_id: int, *, wait: bool) -> Any:
    return api.http.post(
        "/api/v1/sandboxes",
        params={"wait": str(wait).lower()},
        json={"type": "component-studio", "repository_id": repository_id},
        headers=api.headers(user),
        timeout=TIMEOUT,
    )


def _events_until(
    api: Api, user: str, websocket_url: str, last: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """The stream's ``status`` and ``error`` messages from its start up to ``last``."""
    seen: list[dict[str, Any]] = []
    with connect(f"{websocket_url}?since=0", additional_headers=api.headers(user)) as ws:
        while True:
            message = json.loads(ws.recv(timeout=TIMEOUT))
            if message["type"] == "ping":
                ws.send(json.dumps({"type": "pong", "payload": message["payload"]}))
            elif message["type"] in ("status", "error"):
                seen.append(message)
                if last(message):
                    return seen


def _entries_of(cache: Path, lockfile: str) -> list[Path]:
    """The install-cache entries of ``lockfile``, and any build of it left half-way."""
    return [
        entry
        for entry in cache.iterdir()
        if (entry / "package-lock.json").is_file()
        and (entry / "package-lock.json").read_text() == lockfile
    ]


def _teardown(api: Api, user: str, sandbox_id: str) -> None:
    reply = api.http.delete(
        f"/api/v1/sandboxes/{sandbox_id}", headers=api.headers(user), timeout=TIMEOUT
    )
    assert reply.status_code == 200, reply.text


def test_a_create_while_the_repository_prepares_waits_for_it_and_shows_its_steps(
    api: Api,
) -> None:
    user = api.user("prep-wait")
    name, origin = _repository(api)
    layout = StateLayout(api.settings.state_dir)
    sandbox_id = None
    try:
        # The node's preparation goes past its mirror step only once this lock is let go.
        with file_lock(layout.locks / "prepare.lock"):
            record = _register(api, name, origin)
            assert record["preparation"]["state"] == "preparing"
            preparing = _preparation_when(api, record["id"], lambda p: p["step"] == "mirror")
            assert preparing["state"] == "preparing"
            [node] = preparing["nodes"]
            assert (node["state"], node["finished_at"]) == ("preparing", None)

            reply = _create(api, user, record["id"], wait=False)
            assert reply.status_code == 202, reply.text
            created = reply.json()
            sandbox_id = created["sandbox_id"]
            waiting = _events_until(
                api, user, created["websocket_url"], lambda m: "preparation" in m["payload"]
            )
            assert waiting[-1]["payload"]["preparation"] == "mirror"
            assert waiting[-1]["payload"]["status"] == "starting"

        events = _events_until(
            api,
            user,
            created["websocket_url"],
            lambda m: m["payload"].get("status") not in (None, "pending", "starting"),
        )
        assert events[-1]["payload"]["status"] == "running", [m["payload"] for m in events]
        shown = [m["payload"]["preparation"] for m in events if "preparation" in m["payload"]]
        # Each step once, in order, from the mirror on (a quick one may pass unseen).
        assert shown[0] == "mirror"
        assert shown == sorted(set(shown), key=ORDER.index)
        # All of it before the sandbox's own setup began.
        first_setup = min(m["seq"] for m in events if "step" in m["payload"])
        assert max(m["seq"] for m in events if "preparation" in m["payload"]) < first_setup

        ready = _preparation_when(api, record["id"], lambda p: p["state"] != "preparing")
        assert ready["state"] == "ready", ready
        [done] = ready["nodes"]
        # The same preparation, not one the create ran again.
        assert done["started_at"] == node["started_at"]
        assert done["finished_at"] is not None
        assert done["stories"] and done["stories"] > 0
        # npm ran once for the repository's lockfile: one cache entry, no build left.
        cache = layout.install_cache.resolve()
        lockfile = (origin / "package-lock.json").read_text()
        [entry] = _entries_of(cache, lockfile)
        assert not entry.name.startswith(".build-")
    finally:
        if sandbox_id is not None:
            _teardown(api, user, sandbox_id)
        shutil.rmtree(origin, ignore_errors=True)


def test_a_failed_install_is_shown_a_create_answers_it_and_a_retry_after_the_fix_works(
    api: Api,
) -> None:
    user = api.user("prep-fail")
    name, origin = _repository(api, missing=True)
    record = _register(api, name, origin)
    failed = _preparation_when(api, record["id"], lambda p: p["state"] != "preparing")
    assert failed["state"] == "failed", failed
    assert failed["step"] == "install"
    assert MISSING in failed["error"] or "npm" in failed["error"]
    # npm's own words: the registry has no such package.
    assert any("404" in line for line in failed["output"]), failed["output"]
    [node] = failed["nodes"]
    assert node["state"] == "failed"

    reply = _create(api, user, record["id"], wait=True)
    assert reply.status_code == 409, reply.text
    error = reply.json()["error"]
    assert error["code"] == "preparation_failed"
    assert f"/api/v1/repositories/{record['id']}/prepare" in error["message"]
    assert error["preparation"]["output"] == failed["output"]
    # No sandbox was made to fail.
    mine = api.http.get(
        "/api/v1/sandboxes", params={"include_ended": "true"}, headers=api.headers(user)
    ).json()
    assert mine == []

    # Only an admin retries.
    refused = api.http.post(
        f"/api/v1/repositories/{record['id']}/prepare", headers=api.headers(user)
    )
    assert refused.status_code == 403, refused.text

    manifest = json.loads((origin / "package.json").read_text())
    del manifest["dependencies"]
    (origin / "package.json").write_text(json.dumps(manifest, indent=2))
    (origin / "package-lock.json").write_text(_lockfile(name))
    commit_all(origin, "drop the dependency that does not exist")
    retried = api.http.post(
        f"/api/v1/repositories/{record['id']}/prepare", headers=api.headers("admin")
    )
    assert retried.status_code == 202, retried.text
    assert retried.json()["preparation"]["state"] in ("preparing", "ready")
    ready = _preparation_when(api, record["id"], lambda p: p["state"] != "preparing")
    assert ready["state"] == "ready", ready
    assert ready["output"] == [] and ready["error"] is None

    reply = _create(api, user, record["id"], wait=True)
    assert reply.status_code == 201, reply.text
    _teardown(api, user, reply.json()["sandbox_id"])
    shutil.rmtree(origin, ignore_errors=True)


def test_an_unknown_repository_has_no_preparation_to_show_or_retry(api: Api) -> None:
    for method, path in (("GET", ""), ("POST", "/prepare")):
        reply = api.http.request(
            method, f"/api/v1/repositories/999999{path}", headers=api.headers("admin")
        )
        assert reply.status_code == 404, reply.text
        assert reply.json()["error"]["code"] == "repository_not_found"
