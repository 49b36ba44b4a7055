"""A sandbox starts from the repository's branches, never from another user's sandbox branch."""

from __future__ import annotations

import pytest

from tests.serve.conftest import Api
from tests.support.gitrepo import git

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SECRET = "src/components/Secret/Secret.tsx"


def test_another_users_design_branch_is_refused_and_their_files_stay_theirs(api: Api) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    created = api.create(alice)
    sandbox_id, branch = created["sandbox_id"], created["branch"]
    try:
        written = api.http.post(
            f"/api/v1/sandboxes/{sandbox_id}/execute",
            json={"command": "write_file", "file_path": SECRET, "content": "alice's work\n"},
            headers=api.headers(alice),
        )
        assert written.status_code == 200, written.text
        # Durable commits: alice's branch is on the origin, where bob's create would look.
        assert git(api.origin, "rev-parse", f"refs/heads/{branch}") == written.json()["commit_hash"]
        git(api.origin, "branch", "unlisted-feature", "main")

        def create_as_bob(base: str) -> dict[str, str]:
            reply = api.http.post(
                "/api/v1/sandboxes",
                json={
                    "type": "component-studio",
                    "repository_id": api.repository_id,
                    "branch": base,
                },
                headers=api.headers(bob),
                timeout=60,
            )
            assert reply.status_code == 403, reply.text
            error: dict[str, str] = reply.json()["error"]
            assert error["code"] == "permission_denied"
            # Names what is allowed, lists none of the origin's other branches.
            assert "'main'" in error["message"]
            if base != "unlisted-feature":
                assert "unlisted-feature" not in error["message"]
            return error

        refused = create_as_bob(branch)
        assert "design/studio-* branches are sandboxes' own work" in refused["message"]
        # Spelled another way, it is still a sandbox branch.
        create_as_bob("refs/heads/" + branch.replace("design/studio-", "Design/Studio-"))
        unknown = create_as_bob("no-such-branch")
        assert "design/studio-" not in unknown["message"]
        create_as_bob("unlisted-feature")

        # Nor can bob read alice's files through her sandbox.
        read = api.http.post(
            f"/api/v1/sandboxes/{sandbox_id}/execute",
            json={"command": "read_file", "file_path": SECRET},
            headers=api.headers(bob),
        )
        assert read.status_code == 404, read.text
        assert "alice's work" not in read.text

        # The repository-only settings cannot be slipped in through a create either.
        for field, value in (
            ("editable_config_paths", ["postcss.config.cjs"]),
            ("allowed_branches", ["unlisted-feature"]),
        ):
            reply = api.http.post(
                "/api/v1/sandboxes",
                json={"type": "component-studio", "repository_id": api.repository_id, field: value},
                headers=api.headers(bob),
                timeout=60,
            )
            assert reply.status_code == 403, reply.text
            assert (
                f"{field} cannot be set when creating a sandbox" in reply.json()["error"]["message"]
            )
    finally:
        api.http.delete(f"/api/v1/sandboxes/{sandbox_id}", headers=api.headers(alice), timeout=120)
