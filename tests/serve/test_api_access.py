"""Repository access: an admin restricts a repository to users and groups; others get 403.

Real Serve app on loopback, real manager and registry; a second copy of ui-kit
registered here, so the package's shared repository stays open to every test.
"""

from __future__ import annotations

import uuid

import pytest

from tests.actors.conftest import UI_KIT
from tests.serve.conftest import Api
from tests.support.gitrepo import repo_from_dir

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _listed(api: Api, user: str) -> dict[int, dict[str, object]]:
    reply = api.http.get("/api/v1/repositories", headers=api.headers(user))
    assert reply.status_code == 200, reply.text
    return {int(r["id"]): r for r in reply.json()}


def test_a_restricted_repository_is_seen_and_used_only_by_its_grants(api: Api) -> None:
    name = f"restricted-{uuid.uuid4().hex[:6]}"
    origin = repo_from_dir(UI_KIT, api.origin.parent / name)
    registered = api.http.post(
        "/api/v1/repositories",
        json={"name": name, "path": str(origin)},
        headers=api.headers("admin"),
    )
    assert registered.status_code == 201, registered.text
    repository_id = int(registered.json()["id"])
    ann, bob = api.user("ann"), api.user("bob")
    carol = f"carol-{uuid.uuid4().hex[:6]}"
    made = api.http.post(
        "/api/v1/users",
        json={"name": carol, "groups": ["design"]},
        headers=api.headers("admin"),
    )
    assert made.status_code == 201 and made.json()["groups"] == ["design"], made.text
    api.tokens[carol] = made.json()["token"]

    # Open to every user until an admin restricts it; its source is the admins' to see.
    assert _listed(api, ann)[repository_id]["source"] is None
    assert _listed(api, "admin")[repository_id]["source"] == str(origin)
    assert _listed(api, "admin")[repository_id]["access"] is None

    restricted = api.http.put(
        f"/api/v1/repositories/{repository_id}/access",
        json={"users": [bob], "groups": ["design"]},
        headers=api.headers("admin"),
    )
    assert restricted.status_code == 200, restricted.text
    assert restricted.json()["access"] == {"users": [bob], "groups": ["design"]}

    # ann has no grant: not listed, 403 saying which grant to ask for, nothing created.
    assert repository_id not in _listed(api, ann)
    shown = api.http.get(f"/api/v1/repositories/{repository_id}", headers=api.headers(ann))
    assert shown.status_code == 403, shown.text
    error = shown.json()["error"]
    assert error["code"] == "permission_denied"
    assert f"PUT /api/v1/repositories/{repository_id}/access" in error["message"]
    refused = api.http.post(
        "/api/v1/sandboxes",
        json={"type": "component-studio", "repository_id": repository_id},
        headers=api.headers(ann),
        timeout=60,
    )
    assert refused.status_code == 403, refused.text
    assert "no access to repository" in refused.json()["error"]["message"]
    assert api.http.get("/api/v1/sandboxes", headers=api.headers(ann)).json() == []

    # carol through her group; her view has no source and no grants.
    seen = api.http.get(f"/api/v1/repositories/{repository_id}", headers=api.headers(carol))
    assert seen.status_code == 200, seen.text
    assert seen.json()["source"] is None and seen.json()["access"] is None

    # bob by name: his create works.
    created = api.http.post(
        "/api/v1/sandboxes",
        json={"type": "component-studio", "repository_id": repository_id},
        headers=api.headers(bob),
        timeout=180,
    )
    assert created.status_code == 201, created.text
    sandbox_id = created.json()["sandbox_id"]
    deleted = api.http.delete(f"/api/v1/sandboxes/{sandbox_id}", headers=api.headers(bob))
    assert deleted.status_code in (200, 204), deleted.text

    # Giving ann the group gives her the repository, at once (her cached login too).
    grouped = api.http.put(
        f"/api/v1/users/{ann}/groups", json={"groups": ["design"]}, headers=api.headers("admin")
    )
    assert grouped.status_code == 200 and grouped.json()["groups"] == ["design"], grouped.text
    assert repository_id in _listed(api, ann)

    # Opened again: every user.
    opened = api.http.delete(
        f"/api/v1/repositories/{repository_id}/access", headers=api.headers("admin")
    )
    assert opened.status_code == 200 and opened.json()["access"] is None, opened.text
    assert repository_id in _listed(api, api.user("dave"))


def test_access_changes_are_for_admins_and_bad_input_changes_nothing(api: Api) -> None:
    ann = api.user("ann")
    path = f"/api/v1/repositories/{api.repository_id}/access"
    by_user = api.http.put(path, json={"users": [ann]}, headers=api.headers(ann))
    assert by_user.status_code == 403, by_user.text
    bad_group = api.http.put(path, json={"groups": ["not a group!"]}, headers=api.headers("admin"))
    assert bad_group.status_code == 400, bad_group.text
    assert "groups" in bad_group.json()["error"]["message"]
    unknown_field = api.http.put(path, json={"teams": ["x"]}, headers=api.headers("admin"))
    assert unknown_field.status_code == 422, unknown_field.text
    missing = api.http.put(
        "/api/v1/repositories/999999/access", json={"users": []}, headers=api.headers("admin")
    )
    assert missing.status_code == 404, missing.text
    # None of it restricted the shared repository.
    assert _listed(api, "admin")[api.repository_id]["access"] is None
    bad_groups = api.http.put(
        f"/api/v1/users/{ann}/groups", json={"groups": ["x y"]}, headers=api.headers("admin")
    )
    assert bad_groups.status_code == 400, bad_groups.text
    no_user = api.http.put(
        "/api/v1/users/nobody-here/groups", json={"groups": []}, headers=api.headers("admin")
    )
    assert no_user.status_code == 404, no_user.text
