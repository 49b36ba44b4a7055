"""A package inside a monorepo through the API, on the session's real Ray, git and pnpm.

``tests/fixtures/repos/pnpm-monorepo`` is registered with
``package_dir: "packages/ui"``; a sandbox of it installs the workspace with
pnpm at its root (the install cache) and runs Vite in the package, whose
renderer serves the package's own story catalog. A ``package_dir`` that is
not a directory of the base branch, or leaves the repository, is refused with
400 and the reason, and nothing is registered.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from pathlib import Path

import pytest

from tests.serve.conftest import Api, open_renderer
from tests.support.gitrepo import repo_from_dir
from tests.template.pages import FIXTURES

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# The first sandbox installs the workspace with pnpm (or waits for the node's preparation).
CREATE_TIMEOUT = 300


def _monorepo(api: Api) -> tuple[str, Path]:
    """A fresh git copy of the pnpm fixture under the API's allowed root, and a unique name."""
    name = f"monorepo-{uuid.uuid4().hex[:8]}"
    return name, repo_from_dir(FIXTURES / "pnpm-monorepo", api.settings.state_dir.parent / name)


def _names(api: Api) -> list[str]:
    reply = api.http.get("/api/v1/repositories", headers=api.headers("admin"))
    assert reply.status_code == 200, reply.text
    return [repository["name"] for repository in reply.json()]


def test_a_bad_package_dir_is_refused_and_registers_nothing(api: Api) -> None:
    name, origin = _monorepo(api)
    before = _names(api)
    for package_dir, reason in (
        ("packages/nope", "'packages/nope' is not a directory on branch 'main'"),
        # A file of the branch is no package directory either.
        ("packages/ui/package.json", "is not a directory on branch 'main'"),
        ("../elsewhere", "package_dir must be a directory relative to the repository root"),
        ("/etc", "package_dir must be a directory relative to the repository root"),
    ):
        reply = api.http.post(
            "/api/v1/repositories",
            json={"name": name, "path": str(origin), "package_dir": package_dir},
            headers=api.headers("admin"),
        )
        assert reply.status_code == 400, (package_dir, reply.text)
        assert reason in reply.json()["error"]["message"], reply.text
    assert _names(api) == before
    # The name is still free: none of the refused registrations kept it.
    reply = api.http.post(
        "/api/v1/repositories",
        json={"name": name, "path": str(origin), "package_dir": "./packages//ui/"},
        headers=api.headers("admin"),
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["config"]["package_dir"] == "packages/ui"


def test_a_sandbox_renders_the_packages_stories(api: Api) -> None:
    name, origin = _monorepo(api)
    reply = api.http.post(
        "/api/v1/repositories",
        json={"name": name, "path": str(origin), "package_dir": "packages/ui"},
        headers=api.headers("admin"),
    )
    assert reply.status_code == 201, reply.text
    repository_id = reply.json()["id"]

    alice = api.user("alice")
    headers = api.headers(alice)
    reply = api.http.post(
        "/api/v1/sandboxes",
        json={"type": "component-studio", "repository_id": repository_id},
        headers=headers,
        timeout=CREATE_TIMEOUT,
    )
    assert reply.status_code == 201, reply.text
    created = reply.json()
    sandbox_id = created["sandbox_id"]
    opened = contextlib.ExitStack()
    try:
        assert created["status"] == "running"
        # The renderer is Vite in the package: its catalog is the package's, paths relative to it.
        renderer = opened.enter_context(open_renderer(created["renderer_url"]))
        catalog = renderer.get("__studio/components.json")
        assert catalog.status_code == 200, catalog.text
        components = {c["id"]: c for c in catalog.json()["components"]}
        assert set(components) == {"Badge"}
        badge = components["Badge"]
        assert badge["module"] == "src/components/Badge/Badge.tsx"
        assert badge["storiesModule"] == "src/components/Badge/Badge.stories.tsx"
        assert [s["exportName"] for s in badge["stories"]] == ["Brand", "OutlinedWarning"]
        # The API's own view of the same index.
        reply = api.http.get(f"/api/v1/sandboxes/{sandbox_id}/components", headers=headers)
        assert reply.status_code == 200, reply.text
        assert [c["id"] for c in reply.json()["components"]] == ["Badge"]
        # The sibling workspace package resolves (pnpm's link) to its sources in the worktree,
        # outside Vite's root, and Vite serves them compiled.
        # The page names where the package's files are served: /r/<id>/@fs<worktree>/packages/ui/.
        page = renderer.get("")
        fs_base = re.search(r'"(/r/[^/"]+/@fs/[^"]+/packages/ui/)"', page.text)
        assert fs_base is not None, page.text[:1000]
        # Absolute paths on the renderer's origin, where its cookie goes.
        origin = str(renderer.base_url.copy_with(path="/", query=None)).rstrip("/")
        module = renderer.get(origin + fs_base.group(1) + badge["module"])
        assert module.status_code == 200, module.text[:500]
        sibling = re.search(
            r'from "(/r/[^/"]+/@fs/[^"]+/packages/tokens/src/index\.ts)"', module.text
        )
        assert sibling is not None, module.text[:1000]
        tokens = renderer.get(origin + sibling.group(1))
        assert tokens.status_code == 200, tokens.text[:500]
        assert "toneClass" in tokens.text and "/packages/tokens/src/Swatch.tsx" in tokens.text
    finally:
        opened.close()
        reply = api.http.delete(f"/api/v1/sandboxes/{sandbox_id}", headers=headers, timeout=120)
        assert reply.status_code == 200, reply.text
