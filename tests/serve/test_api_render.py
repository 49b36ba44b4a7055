"""``"wait": "render"`` through the API: the sandbox's actor asks its node's browser actor.

Real Ray, a real sandbox on examples/ui-kit, the node's real Chromium in its
browser actor. The kinds of edit are in tests/studio/test_render_verdict.py;
here the path through the service: execute and rollback, the verdict's commit,
the default immediate answer, and the browser actor's page for the sandbox.
"""

from __future__ import annotations

import time
from typing import Any

import psutil
import pytest
import ray

from actors.browser_actor import BROWSER_PREFIX
from studio.naming import ACTOR_NAMESPACE
from tests.serve.conftest import Api
from tests.support.browser import require_chromium

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.browser]

BUTTON = "src/components/Button/Button.tsx"
GOOD = """export function Button({ label = 'Click me' }: { label?: string }) {
  return <button type="button">{label}</button>;
}
"""
BROKEN = GOOD.replace("</button>", "</buttn>")


def _browser_actors() -> list[str]:
    return sorted(
        str(entry["name"])
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["namespace"] == ACTOR_NAMESPACE and str(entry["name"]).startswith(BROWSER_PREFIX)
    )


def _stats() -> dict[str, Any]:
    [name] = _browser_actors()
    stats: dict[str, Any] = ray.get(
        ray.get_actor(name, namespace=ACTOR_NAMESPACE).stats.remote(), timeout=30
    )
    return stats


def test_edits_and_rollbacks_answer_with_what_rendered(api: Api) -> None:
    require_chromium()
    alice = api.user("alice")
    headers = api.headers(alice)
    sandbox_id = api.create(alice)["sandbox_id"]
    execute = f"/api/v1/sandboxes/{sandbox_id}/execute"
    write = {"command": "write_file", "file_path": BUTTON}

    # the default answers at once, without a verdict
    reply = api.http.post(execute, json={**write, "content": GOOD}, headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["render"] is None

    reply = api.http.post(
        execute, json={**write, "content": BROKEN, "wait": "render"}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    broken = reply.json()
    render = broken["render"]
    assert render["commit"] == broken["commit_hash"]
    assert render["status"] == "compile_error", render
    [error] = render["compile_errors"]
    assert error["file"].endswith(BUTTON)
    assert (error["line"], error["kind"]) == (2, "compile")
    assert {"button--primary", "button--secondary"} <= {s["id"] for s in render["stories"]}

    reply = api.http.post(
        execute, json={**write, "content": GOOD, "wait": "render"}, headers=headers
    )
    fixed = reply.json()
    assert fixed["render"]["status"] == "ok", fixed["render"]
    assert fixed["render"]["commit"] == fixed["commit_hash"] != broken["commit_hash"]
    assert all(s["status"] == "ok" for s in fixed["render"]["stories"])

    # back to the broken commit, then forward again: each answered with its verdict
    rollback = f"/api/v1/sandboxes/{sandbox_id}/rollback"
    reply = api.http.post(rollback, json={"steps": 1, "wait": "render"}, headers=headers)
    assert reply.status_code == 200, reply.text
    back = reply.json()
    assert back["current_hash"] == broken["commit_hash"]
    assert back["render"]["commit"] == broken["commit_hash"]
    assert back["render"]["status"] == "compile_error", back["render"]
    reply = api.http.post(rollback, json={"undo": True, "wait": "render"}, headers=headers)
    assert reply.json()["render"]["status"] == "ok", reply.json()

    # the node's one browser holds a page for the sandbox, closed when the sandbox ends
    stats = _stats()
    assert sandbox_id in stats["pages"]
    # its memory by Chromium's process kinds sums to the whole; the page has a renderer
    kinds = stats["browser_pss_by_kind"]
    assert {"browser", "renderer"} <= set(kinds), kinds
    assert sum(kinds.values()) == stats["browser_pss"]

    # the browser actor's worker dies: Ray starts it again, its Chromium goes with the old one
    stats = _stats()
    worker = psutil.Process(stats["pid"])
    chromium = [p for p in worker.children(recursive=True) if "chrom" in p.name()]
    assert chromium
    worker.kill()
    _, alive = psutil.wait_procs(chromium, timeout=30)
    assert not alive, f"Chromium outlived its actor: {[p.pid for p in alive]}"
    reply = api.http.post(
        execute, json={**write, "content": GOOD + "\n", "wait": "render"}, headers=headers
    )
    assert reply.json()["render"]["status"] == "ok", reply.json()
    assert _stats()["pid"] != stats["pid"]
    reply = api.http.delete(f"/api/v1/sandboxes/{sandbox_id}", headers=headers)
    assert reply.status_code == 200, reply.text
    deadline = time.monotonic() + 30
    while sandbox_id in _stats()["pages"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sandbox_id not in _stats()["pages"]


def test_an_unknown_wait_is_refused_naming_the_field(api: Api) -> None:
    alice = api.user("alice")
    sandbox_id = api.create(alice)["sandbox_id"]
    reply = api.http.post(
        f"/api/v1/sandboxes/{sandbox_id}/execute",
        json={"command": "write_file", "file_path": BUTTON, "content": GOOD, "wait": "paint"},
        headers=api.headers(alice),
    )
    assert reply.status_code == 422, reply.text
    assert "wait" in reply.text
    reply = api.http.post(
        f"/api/v1/sandboxes/{sandbox_id}/rollback",
        json={"steps": 1, "wait": "paint"},
        headers=api.headers(alice),
    )
    assert reply.status_code == 422, reply.text
    assert "wait" in reply.text


def test_a_screenshot_is_a_png_of_the_current_commit_cached(api: Api) -> None:
    require_chromium()
    alice = api.user("alice")
    headers = api.headers(alice)
    sandbox_id = api.create(alice)["sandbox_id"]
    shot = f"/api/v1/sandboxes/{sandbox_id}/screenshot"
    params = {"story": "button--primary", "viewport": "320x240"}

    first = api.http.get(shot, params=params, headers=headers)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/png"
    assert first.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(first.content[16:20], "big") == 320
    assert first.headers["x-studio-cache"] == "miss"
    again = api.http.get(shot, params=params, headers=headers)
    assert again.headers["x-studio-cache"] == "hit"
    assert again.content == first.content

    # an edit is a new commit: a new picture
    reply = api.http.post(
        f"/api/v1/sandboxes/{sandbox_id}/execute",
        json={"command": "write_file", "file_path": BUTTON, "content": GOOD},
        headers=headers,
    )
    commit = reply.json()["commit_hash"]
    edited = api.http.get(shot, params=params, headers=headers)
    assert edited.headers["x-studio-commit"] == commit != first.headers["x-studio-commit"]
    assert edited.headers["x-studio-cache"] == "miss"

    missing = api.http.get(shot, params={"story": "button--nope"}, headers=headers)
    assert missing.status_code == 404, missing.text
    assert "button--nope" in missing.json()["error"]["message"]
    bad = api.http.get(
        shot, params={"story": "button--primary", "viewport": "huge"}, headers=headers
    )
    assert bad.status_code == 400, bad.text
    assert "WIDTHxHEIGHT" in bad.json()["error"]["message"]
    other = api.user("bob")
    hidden = api.http.get(shot, params=params, headers=api.headers(other))
    assert hidden.status_code == 404


def test_an_edit_waiting_for_screenshots_links_each_rendered_storys_picture(api: Api) -> None:
    require_chromium()
    alice = api.user("alice")
    headers = api.headers(alice)
    sandbox_id = api.create(alice)["sandbox_id"]
    execute = f"/api/v1/sandboxes/{sandbox_id}/execute"
    write = {"command": "write_file", "file_path": BUTTON}

    reply = api.http.post(
        execute, json={**write, "content": GOOD, "wait": "screenshot"}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    edited = reply.json()
    render = edited["render"]
    assert render["status"] == "ok", render
    assert len(render["stories"]) >= 2
    for story in render["stories"]:
        # taken on the verdict's own page: the link is served from the cache
        picture = api.http.get(story["screenshot_url"], headers=headers)
        assert picture.status_code == 200, picture.text
        assert picture.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(picture.content[16:20], "big") == 1024
        assert picture.headers["x-studio-cache"] == "hit"
        assert picture.headers["x-studio-commit"] == edited["commit_hash"]
        assert story["id"] in story["screenshot_url"]
    # another user cannot follow the link
    other = api.http.get(
        render["stories"][0]["screenshot_url"], headers=api.headers(api.user("bob"))
    )
    assert other.status_code == 404

    # nothing to picture where the module did not compile; "render" alone links nothing
    reply = api.http.post(
        execute, json={**write, "content": BROKEN, "wait": "screenshot"}, headers=headers
    )
    broken = reply.json()["render"]
    assert broken["status"] == "compile_error", broken
    assert all(s["screenshot_url"] is None for s in broken["stories"])
    reply = api.http.post(
        f"/api/v1/sandboxes/{sandbox_id}/rollback",
        json={"steps": 1, "wait": "screenshot"},
        headers=headers,
    )
    back = reply.json()["render"]
    assert back["status"] == "ok", back
    assert all(s["screenshot_url"] for s in back["stories"])
    reply = api.http.post(
        execute, json={**write, "content": GOOD + "\n", "wait": "render"}, headers=headers
    )
    assert all(s["screenshot_url"] is None for s in reply.json()["render"]["stories"])
