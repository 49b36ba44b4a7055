"""Finalize's pictures through the real service: sandbox actor, the node's browser, GitHub mock.

The manager and the sandbox run as Ray actors; the node's browser actor takes
the pictures from the sandbox's own Vite; the repository is a bare repository
served over smart HTTP (tests/support/git_http.py) and GitHub's REST API is
Prism behind the recording front (tests/support/prism.py). What is asserted is
what a reviewer would get: a ``studio-screenshots/<id>`` branch holding the
PNGs in a commit of their own, a body linking them by that commit, the render
status of each story, and a design branch free of images.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.handles import sandbox_handle, start_manager
from studio.pr_images import MAX_IMAGES, screenshots_ref
from studio.state import SandboxState
from tests.actors.conftest import UI_KIT, get, node_settings, shut_down_studio
from tests.support.git_http import GitHttpServer, bare_repository, serve_git
from tests.support.gitrepo import git, repo_from_dir
from tests.support.prism import VALID_TOKEN, GitHubFront

pytestmark = pytest.mark.usefixtures("ray_session")

OWNER = "alice"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BUTTON = "src/components/Button/Button.tsx"
BLUE_BUTTON = """\
type Props = { label?: string; variant?: string; size?: string };
export function Button({ label = 'Click me' }: Props) {
  return <button type="button" style={{ background: 'blue', color: 'white' }}>{label}</button>;
}
"""
STORIES = "src/components/Button/Button.stories.tsx"
# A story this change adds: it has no "before".
TINY_STORY = "\nexport const Tiny = { args: { label: 'tiny' } };\n"
THROWING_BUTTON = """\
export function Button(_props: { label?: string; variant?: string; size?: string }): never {
  throw new Error('no button today');
}
"""


@pytest.fixture
def hello(tmp_path: Path) -> Iterator[GitHttpServer]:
    """examples/ui-kit as a bare repository ``hello.git`` served over smart HTTP."""
    source = repo_from_dir(UI_KIT, tmp_path / "ui-kit")
    bare_repository(tmp_path / "served", "hello.git", source)
    with serve_git(tmp_path / "served") as server:
        yield server


def _with_push_permission(repo: dict[str, Any]) -> dict[str, Any]:
    return {**repo, "permissions": {"admin": False, "push": True, "pull": True}}


def _blob(bare: Path, commit: str, path: str) -> bytes:
    import subprocess

    return subprocess.run(
        ["git", "-C", str(bare), "cat-file", "blob", f"{commit}:{path}"],
        check=True,
        capture_output=True,
    ).stdout


def _finalize(manager: Any, record_id: int, files: dict[str, str], title: str) -> tuple[str, Any]:
    info = get(manager.create_sandbox.remote(OWNER, record_id, {}), timeout=300)
    assert info.status is SandboxState.RUNNING
    written = [{"file_path": path, "content": content} for path, content in files.items()]
    get(
        sandbox_handle(info.id).execute.remote({"command": "write_files", "files": written}),
        timeout=60,
    )
    result = get(manager.finalize_sandbox.remote(info.id, None, title, "why"), timeout=400)
    return str(info.id), result


def test_the_pull_request_shows_the_touched_stories_before_and_after(
    tmp_path: Path, install_cache: Path, github_front: GitHubFront, hello: GitHttpServer
) -> None:
    settings = node_settings(
        tmp_path / "state", install_cache, github_token=VALID_TOKEN, github_api_url=github_front.url
    )
    bare = hello.root / "hello.git"
    base = git(bare, "rev-parse", "refs/heads/main")
    github_front.edit("GET", "/repos/octo/hello", _with_push_permission)
    manager = start_manager(settings)
    try:
        record = get(
            manager.register_repository.remote(
                "hello", github="octo/hello", clone_url=f"{hello.url}/hello.git"
            ),
            timeout=60,
        )
        stories = (UI_KIT / STORIES).read_text() + TINY_STORY
        sandbox_id, result = _finalize(
            manager, record.id, {BUTTON: BLUE_BUTTON, STORIES: stories}, "Blue button"
        )

        # The pictures: an orphan commit on their own branch, PNGs only.
        ref = screenshots_ref(sandbox_id)
        assert result.screenshots_ref == ref
        shots = str(result.screenshots_commit)
        assert git(bare, "rev-parse", ref) == shots
        assert git(bare, "rev-list", "--parents", "-n", "1", shots) == shots
        files = git(bare, "ls-tree", "--name-only", shots).split()
        assert files and all(name.endswith(".png") for name in files)
        assert len(files) <= MAX_IMAGES
        for name in files:
            assert _blob(bare, shots, name).startswith(PNG_SIGNATURE), name
        # Every story pictured has its picture before and after the change; the new one after.
        stems = {name.rsplit(".", 2)[0] for name in files}
        [tiny] = [stem for stem in stems if stem.endswith("button--tiny")]
        assert files == sorted(
            f"{stem}.{side}.png"
            for stem in stems
            for side in ("after", "before")
            if (stem, side) != (tiny, "before")
        )
        assert any("button--primary" in stem for stem in stems)

        # The design branch holds no image, and neither does what it adds to main.
        head = git(bare, "rev-parse", f"refs/heads/{result.branch}")
        assert sorted(git(bare, "diff", "--name-only", f"{base}..{head}").split()) == sorted(
            [BUTTON, STORIES]
        )
        assert ".png" not in git(bare, "ls-tree", "-r", "--name-only", head)

        # The body links each picture by the commit holding it, with the render status.
        [opened] = github_front.sent("POST", "/repos/octo/hello/pulls")
        body = opened.json()["body"]
        assert body.startswith("why\n\n## Screenshots\n")
        linked = set(
            re.findall(rf'src="{re.escape(hello.url)}/hello/blob/{shots}/([^"?]+)\?raw=true"', body)
        )
        assert linked == set(files)
        assert (
            "| `button--tiny` | ✅ `ok` | _no picture: not in the base commit (a new story)_ |"
            in (body)
        )
        assert "### Button\n" in body
        assert "| `button--primary` | ✅ `ok` |" in body
        if len(stems) == MAX_IMAGES // 2:
            assert "more touched stor" in body
        ended = get(manager.get_sandbox.remote(sandbox_id, OWNER), timeout=60)
        assert ended.status is SandboxState.FINALIZED

        # A story that throws: its status says so, and the pull request opens all the same.
        broken_id, broken = _finalize(
            manager, record.id, {BUTTON: THROWING_BUTTON}, "Broken button"
        )
        _first, opened = github_front.sent("POST", "/repos/octo/hello/pulls")
        body = opened.json()["body"]
        assert broken.pr_number is not None
        assert "❌ `runtime_error`: Error: no button today" in body, body
        rows = [line for line in body.splitlines() if line.startswith("| `button--")]
        assert rows
        for row in rows:
            # Each side is a picture linked by commit, or says why there is none.
            assert row.count("?raw=true") + row.count("_no picture: ") == 2, row
        assert get(manager.get_sandbox.remote(broken_id, OWNER), timeout=60).status is (
            SandboxState.FINALIZED
        )
    finally:
        shut_down_studio(settings.state_dir)
