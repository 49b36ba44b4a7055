"""Screenshots at any commit of a sandbox, with globals, and visual diffs, through the API.

Real Ray, a real sandbox on examples/ui-kit (and one on the storybook10
fixture for globals), the node's real Chromium in its browser actor. A past
commit is rendered by the sandbox's past renderer (a detached worktree and a
Vite of its own, studio/sandbox/past.py): its pictures must equal what the
live sandbox draws for the same files, and the live sandbox must not notice.
"""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from studio.layout import StateLayout
from studio.naming import branch_name
from studio.render.diff import compare
from tests.serve.conftest import Api
from tests.support.browser import require_chromium
from tests.support.gitrepo import repo_from_dir
from tests.template.pages import FIXTURES

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.browser]

BUTTON = "src/components/Button/Button.tsx"
STORY = "button--primary"


def _git(path: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(path), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


class _Sandbox:
    """One sandbox of the API, seen by its owner."""

    def __init__(self, api: Api, user: str, sandbox_id: str) -> None:
        self.api, self.id = api, sandbox_id
        self.headers = api.headers(user)
        self.prefix = f"/api/v1/sandboxes/{sandbox_id}"
        self.layout = StateLayout(api.settings.state_dir)

    def get(self, what: str, **params: str) -> httpx.Response:
        return self.api.http.get(f"{self.prefix}/{what}", params=params, headers=self.headers)

    def shot(self, **params: str) -> httpx.Response:
        reply = self.get("screenshot", **{"story": STORY, **params})
        assert reply.status_code == 200, reply.text
        return reply

    def diff(self, **params: str) -> dict[str, Any]:
        reply = self.get("diff", **{"story": STORY, **params})
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    def write(self, path: str, content: str) -> str:
        reply = self.api.http.post(
            f"{self.prefix}/execute",
            json={"command": "write_file", "file_path": path, "content": content},
            headers=self.headers,
        )
        assert reply.status_code == 200, reply.text
        return str(reply.json()["commit_hash"])

    def story(self, component: str, export: str) -> str:
        """The catalog's id of ``component``'s story ``export``."""
        reply = self.get("components")
        assert reply.status_code == 200, reply.text
        for entry in reply.json()["components"]:
            for story in entry["stories"] if entry["id"] == component else []:
                if story["exportName"] == export:
                    return str(story["id"])
        raise AssertionError(f"no story {component}/{export}: {reply.text[:2000]}")

    def error(self, what: str, status: int, **params: str) -> str:
        reply = self.get(what, **params)
        assert reply.status_code == status, (params, reply.text)
        return str(reply.json()["error"]["message"])


def test_past_commits_are_drawn_from_their_tree_and_diffed(api: Api) -> None:
    require_chromium()
    alice = api.user("alice")
    box = _Sandbox(api, alice, api.create(alice)["sandbox_id"])
    live = box.layout.worktree(box.id)
    base = _git(live, "rev-parse", "HEAD")
    original = (live / BUTTON).read_text()
    red = original.replace('type="button"', "type=\"button\" style={{ background: 'red' }}")
    assert red != original
    c1 = box.write(BUTTON, red)

    # The past renderer starts (cold) while the designer keeps editing the live sandbox.
    past: dict[str, httpx.Response] = {}
    worker = threading.Thread(
        target=lambda: past.update(base=box.shot(commit=base[:10], viewport="320x240"))
    )
    worker.start()
    c2 = box.write("NOTES.md", "the designer keeps editing\n")
    worker.join(timeout=180)
    assert not worker.is_alive()
    before = past["base"]
    assert before.headers["x-studio-commit"] == base
    assert before.headers["x-studio-cache"] == "miss"
    # The live sandbox did not notice: its branch, HEAD and files are the designer's.
    assert _git(live, "rev-parse", "HEAD") == c2
    assert _git(live, "symbolic-ref", "--short", "HEAD") == branch_name(box.id)
    assert _git(live, "status", "--porcelain") == ""
    assert (live / BUTTON).read_text() == red
    past_tree = box.layout.past_worktree(box.id)
    assert _git(past_tree, "rev-parse", "HEAD") == base
    assert (past_tree / BUTTON).read_text() == original

    now = box.shot(viewport="320x240")
    assert now.headers["x-studio-commit"] == c2
    assert now.content != before.content
    changed = box.diff(viewport="320x240")
    assert (changed["from"], changed["to"], changed["story"]) == (base, c2, STORY)
    assert changed["total_pixels"] == 320 * 240 == changed["width"] * changed["height"]
    assert 0 < changed["changed_pixels"] < changed["total_pixels"]
    assert changed["ratio"] == changed["changed_pixels"] / changed["total_pixels"]
    picture = api.http.get(changed["diff_url"], headers=box.headers)
    assert picture.status_code == 200, picture.text
    assert picture.headers["content-type"] == "image/png"
    assert compare(picture.content, now.content).total_pixels == 320 * 240
    assert int(picture.headers["x-studio-changed-pixels"]) == changed["changed_pixels"]

    # The button's own file back as it was: the live Vite draws what the past one drew.
    c3 = box.write(BUTTON, original)
    again = box.shot(viewport="320x240")
    assert (again.headers["x-studio-commit"], again.headers["x-studio-cache"]) == (c3, "miss")
    same = box.diff(**{"from": base, "to": c3, "viewport": "320x240"})
    assert same["changed_pixels"] == 0, same
    assert compare(again.content, before.content).changed_pixels == 0

    # Warm: the past renderer moves to another commit (no new Vite), then back.
    reply = api.http.post(f"{box.prefix}/rollback", json={"commit_hash": c2}, headers=box.headers)
    assert reply.status_code == 200, reply.text
    assert _git(live, "rev-parse", "HEAD") == c2
    moved = box.diff(**{"from": c1, "viewport": "400x300"})
    # c1 and c2 differ by NOTES.md alone: the past c1 and the live c2 draw the same.
    assert (moved["from"], moved["to"], moved["changed_pixels"]) == (c1, c2, 0)
    back = box.diff(**{"from": base, "to": c1, "viewport": "400x300"})
    assert back["changed_pixels"] > 0
    assert _git(past_tree, "rev-parse", "HEAD") == base
    assert (live / BUTTON).read_text() == red

    # Bad input: clear refusals, nothing changes.
    assert "'zz9' is not a commit hash" in box.error("screenshot", 404, story=STORY, commit="zz9")
    assert "deadbeef0" in box.error("screenshot", 404, story=STORY, commit="deadbeef0")
    # c3 left the branch with the rollback: not one of its commits any more.
    message = box.error("diff", 404, story=STORY, to=c3)
    assert c3 in message and "not one of sandbox" in message
    assert "globals" in box.error("screenshot", 400, story=STORY, globals="theme:<b>")
    assert "WIDTHxHEIGHT" in box.error("diff", 400, story=STORY, viewport="big")
    assert "button--nope" in box.error("diff", 404, story="button--nope")
    assert _git(live, "rev-parse", "HEAD") == c2
    # A component younger than the commit asked for: not found there, saying so.
    fresh = "export function Fresh() {\n  return <p>fresh</p>;\n}\n"
    box.write("src/components/Fresh/Fresh.tsx", fresh)
    assert box.get("screenshot", story="Fresh").status_code == 200
    message = box.error("diff", 404, story="Fresh")
    assert f"no story 'Fresh' at commit {base[:12]}" in message

    # The sandbox's end stops its past renderer and removes its worktree.
    record = json.loads(box.layout.pid_file(f"vite-{box.id}-past").read_text())
    vite = psutil.Process(int(record["pid"]))
    reply = api.http.delete(box.prefix, headers=box.headers)
    assert reply.status_code == 200, reply.text
    assert not vite.is_running() or vite.status() == psutil.STATUS_ZOMBIE
    assert not past_tree.exists()
    other = api.user("bob")
    hidden = api.http.get(f"{box.prefix}/diff", params={"story": STORY}, headers=api.headers(other))
    assert hidden.status_code == 404


def test_globals_change_what_is_drawn(api: Api) -> None:
    """storybook10's preview: withThemeByClassName (dark by default) and a locale decorator."""
    require_chromium()
    name = f"storybook10-{uuid.uuid4().hex[:8]}"
    origin = repo_from_dir(FIXTURES / "storybook10", api.settings.state_dir.parent / name)
    reply = api.http.post(
        "/api/v1/repositories",
        json={"name": name, "path": str(origin)},
        headers=api.headers("admin"),
    )
    assert reply.status_code == 201, reply.text
    alice = api.user("alice")
    reply = api.http.post(
        "/api/v1/sandboxes",
        json={"type": "component-studio", "repository_id": reply.json()["id"]},
        headers=api.headers(alice),
        timeout=600,
    )
    assert reply.status_code == 201, reply.text
    box = _Sandbox(api, alice, reply.json()["sandbox_id"])
    try:
        panel = {"story": box.story("Panel", "Default"), "viewport": "320x200"}
        plain = box.get("screenshot", **panel)
        assert plain.status_code == 200, plain.text
        dark = box.get("screenshot", **panel, globals="theme:dark")
        light = box.get("screenshot", **panel, globals="theme:light")
        assert dark.headers["x-studio-cache"] == light.headers["x-studio-cache"] == "miss"
        # Dark is the decorator's default; light paints the panel white.
        assert compare(plain.content, dark.content).changed_pixels == 0
        assert compare(dark.content, light.content).changed_pixels > 1000

        greeting = {"story": box.story("Greeting", "Default"), "viewport": "320x200"}
        french = box.get("screenshot", **greeting)
        english = box.get("screenshot", **greeting, globals="locale:en;theme:light")
        assert compare(french.content, english.content).changed_pixels > 0
        # The same globals in another order are the same picture, from the cache.
        reordered = box.get("screenshot", **greeting, globals="theme:light;locale:en")
        assert reordered.headers["x-studio-cache"] == "hit"
        assert reordered.content == english.content

        message = box.error("screenshot", 400, **greeting, globals="locale")
        assert "'locale' is not name:value" in message
        found = box.diff(**panel, globals="theme:light")
        assert (found["globals"], found["changed_pixels"]) == ("theme:light", 0)
    finally:
        reply = api.http.delete(box.prefix, headers=box.headers)
        assert reply.status_code == 200, reply.text
