"""The MCP server at /mcp, driven by the SDK's own client against the running service.

Real Ray and Serve on loopback, a real sandbox of examples/ui-kit, the node's
real Chromium for verdicts and screenshots, finalize against Prism (conftest).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from mcp.types import CallToolResult, ImageContent, TextContent

from tests.mcp.conftest import GITHUB_REPO, Service, mcp_session
from tests.support.browser import require_chromium

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TOOLS = {
    "list_repositories",
    "create_sandbox",
    "list_components",
    "list_files",
    "read_file",
    "write_files",
    "delete_file",
    "rollback",
    "history",
    "screenshot",
    "diff",
    "finalize",
    "delete_sandbox",
}
BUTTON = "src/components/Button/Button.tsx"
GOOD = """export function Button({ label = 'Click me' }: { label?: string }) {
  return <button type="button">{label}</button>;
}
"""
BROKEN = GOOD.replace("</button>", "</buttn>")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Prism answers with the spec's example pull request, whatever was sent.
EXAMPLE_PR_URL = "https://github.com/octocat/Hello-World/pull/1347"


def _data(result: CallToolResult) -> dict[str, Any]:
    """A tool's answer: its JSON text, which is also its structured content."""
    assert not result.is_error, result.content
    text = result.content[0]
    assert isinstance(text, TextContent)
    data: dict[str, Any] = json.loads(text.text)
    assert result.structured_content == data
    return data


def _error(result: CallToolResult) -> str:
    assert result.is_error, result.content
    [text] = result.content
    assert isinstance(text, TextContent)
    return text.text


def _pngs(result: CallToolResult) -> list[bytes]:
    images = [c for c in result.content if isinstance(c, ImageContent)]
    assert all(i.mime_type == "image/png" for i in images)
    pngs = [base64.b64decode(i.data) for i in images]
    assert all(p[:8] == PNG_SIGNATURE for p in pngs)
    return pngs


def _width(png: bytes) -> int:
    return int.from_bytes(png[16:20], "big")


async def test_the_tools_are_listed_with_descriptions_for_an_agent(service: Service) -> None:
    async with mcp_session(service.mcp_url, service.user("agent")) as session:
        assert "create_sandbox" in ((await session.initialize()).instructions or "")
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == TOOLS
        for tool in tools.values():
            assert tool.description and len(tool.description) > 60, tool.name
        write = tools["write_files"].input_schema
        assert set(write["required"]) == {"sandbox_id", "files"}
        assert "render" in (tools["write_files"].description or "")
        assert tools["screenshot"].annotations is not None
        assert tools["screenshot"].annotations.read_only_hint is True

        [repository] = _data(await session.call_tool("list_repositories"))["repositories"]
        assert repository["id"] == service.repository_id
        # the server's path or clone URL is an admin's to see, as over REST
        assert repository["source"] is None


async def test_a_request_without_a_valid_token_is_refused(service: Service) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "curl", "version": "0"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream"}
    for token in (None, "wrong"):
        sent = {**headers, **({"Authorization": f"Bearer {token}"} if token else {})}
        reply = service.http.post("/mcp", json=initialize, headers=sent)
        assert reply.status_code == 401, reply.text
        # a JSON-RPC error, which an MCP client shows; the REST API's error under data
        error = reply.json()["error"]
        assert error["data"]["code"] == "unauthenticated"
        assert error["message"] == f"401 unauthenticated: {error['data']['message']}"
    # the same request with a user's token is answered by the MCP server
    sent = {**headers, "Authorization": f"Bearer {service.user('curl')}"}
    reply = service.http.post("/mcp", json=initialize, headers=sent)
    assert reply.status_code == 200, reply.text
    assert reply.json()["result"]["serverInfo"]["name"] == "component-studio"

    # the SDK's client gets no session, and says why
    with pytest.raises(Exception) as refused:  # the SDK's own error (group)
        async with mcp_session(service.mcp_url, "wrong"):
            pass
    assert "401 unauthenticated: the bearer token matches no user" in repr(refused.value)


async def test_a_user_sees_and_acts_on_only_their_own_sandboxes(service: Service) -> None:
    require_chromium()
    alice, bob = service.user("alice"), service.user("bob")
    async with mcp_session(service.mcp_url, alice) as mine:
        created = _data(
            await mine.call_tool("create_sandbox", {"repository_id": service.repository_id})
        )
        sandbox_id = created["sandbox_id"]
        assert created["status"] == "running"
        async with mcp_session(service.mcp_url, bob) as theirs:
            for tool, arguments in (
                ("list_components", {}),
                ("list_files", {}),
                ("read_file", {"path": BUTTON}),
                ("write_files", {"files": [{"file_path": BUTTON, "content": GOOD}]}),
                ("history", {}),
                ("rollback", {"steps": 1}),
                ("screenshot", {"story": "button--primary"}),
                ("diff", {"story": "button--primary"}),
                ("finalize", {"title": "not mine"}),
                ("delete_sandbox", {}),
            ):
                result = await theirs.call_tool(tool, {"sandbox_id": sandbox_id, **arguments})
                # worded as for an unknown id, so ids cannot be probed
                assert _error(result) == f"404 sandbox_not_found: no sandbox {sandbox_id!r}", tool
        # nothing of bob's reached the sandbox
        [base] = _data(await mine.call_tool("history", {"sandbox_id": sandbox_id}))["commits"]
        assert base["is_base"] is True

        # bad arguments are tool errors with the API's words
        bad = await mine.call_tool("rollback", {"sandbox_id": sandbox_id, "steps": 1, "undo": True})
        assert _error(bad).startswith("422 validation_error:")
        assert "exactly one of" in _error(bad)
        missing = await mine.call_tool(
            "screenshot", {"sandbox_id": sandbox_id, "story": "button--nope"}
        )
        assert _error(missing).startswith("404 ")
        assert "button--nope" in _error(missing)
        outside = await mine.call_tool("read_file", {"sandbox_id": sandbox_id, "path": "../x"})
        assert _error(outside).startswith("400 ")
        # refused before anything is committed
        wide = await mine.call_tool(
            "write_files",
            {
                "sandbox_id": sandbox_id,
                "files": [{"file_path": BUTTON, "content": GOOD}],
                "viewport": "wide",
            },
        )
        assert _error(wide).startswith("400 invalid_request: viewport 'wide' is not WIDTHxHEIGHT")
        limit = service.settings.max_file_bytes
        huge = await mine.call_tool(
            "write_files",
            {
                "sandbox_id": sandbox_id,
                "files": [{"file_path": "a.txt", "content": "x" * (limit + 1)}],
            },
        )
        assert _error(huge) == (
            f"413 payload_too_large: a.txt: content of {limit + 1} bytes "
            f"exceeds the limit of {limit} bytes"
        )

        [still_base] = _data(await mine.call_tool("history", {"sandbox_id": sandbox_id}))["commits"]
        assert still_base == base
        deleted = _data(await mine.call_tool("delete_sandbox", {"sandbox_id": sandbox_id}))
        assert deleted["sandbox_id"] == sandbox_id
        assert deleted["status"] == "stopped"
        gone = await mine.call_tool("list_files", {"sandbox_id": sandbox_id})
        assert _error(gone).startswith("409 ")


async def test_the_agent_loop_end_to_end(service: Service) -> None:
    require_chromium()
    async with mcp_session(service.mcp_url, service.user("agent")) as session:

        async def call(tool: str, **arguments: Any) -> CallToolResult:
            return await session.call_tool(tool, arguments)

        created = _data(await call("create_sandbox", repository_id=service.repository_id))
        sandbox_id = created["sandbox_id"]
        mine = {"sandbox_id": sandbox_id}
        # the live page for a person, through the API's renderer proxy with its ticket
        assert f"/r/{sandbox_id}/?ticket=" in created["renderer_url"]

        index = _data(await call("list_components", **mine))
        button = next(c for c in index["components"] if c["name"] == "Button")
        assert button["module"] == BUTTON
        stories = {s["id"]: s for s in button["stories"]}
        assert "button--primary" in stories
        assert isinstance(stories["button--primary"]["args"], dict)
        assert BUTTON in _data(await call("list_files", **mine, directory="src"))["files"]
        original = _data(await call("read_file", **mine, path=BUTTON))["content"]
        assert "export" in original

        # a broken component: committed, and the verdict says where it broke
        written = await call(
            "write_files",
            **mine,
            files=[{"file_path": BUTTON, "content": BROKEN}],
            description="Break the button",
        )
        broken = _data(written)
        render = broken["render"]
        assert render["commit"] == broken["commit_hash"]
        assert render["status"] == "compile_error", render
        [error] = render["compile_errors"]
        assert error["file"].endswith(BUTTON)
        assert error["line"] == 2
        # no picture of a module that did not load: the verdict says where it broke
        assert broken["screenshot"] == {
            "story": render["stories"][0]["id"],
            "reason": "a compile error: the verdict says where",
        }
        assert _pngs(written) == []

        # the fix: ok, with the first affected story's picture
        written = await call(
            "write_files",
            **mine,
            files=[{"file_path": BUTTON, "content": GOOD}],
            description="Fix the button",
            viewport="400x300",
        )
        fixed = _data(written)
        assert fixed["render"]["status"] == "ok", fixed["render"]
        assert fixed["commit_hash"] != broken["commit_hash"]
        [picture] = _pngs(written)
        assert _width(picture) == 400
        assert fixed["screenshot"] == {
            "story": fixed["render"]["stories"][0]["id"],
            "commit": fixed["commit_hash"],
        }

        shot = await call("screenshot", **mine, story="button--primary", viewport="320x240")
        [png] = _pngs(shot)
        assert _width(png) == 320
        assert _data(shot)["commit"] == fixed["commit_hash"]

        commits = _data(await call("history", **mine))["commits"]
        assert [c["hash"] for c in commits[:2]] == [fixed["commit_hash"], broken["commit_hash"]]
        assert [c["is_base"] for c in commits] == [False, False, True]
        base = commits[-1]["hash"]

        # the base commit's picture, rendered from its own tree beside the sandbox
        before = await call("screenshot", **mine, story="button--primary", commit=base[:8])
        assert _data(before)["commit"] == base
        assert len(_pngs(before)) == 1
        # what the sandbox changed in the story, and an edit that changed nothing
        changed = await call("diff", **mine, story="button--primary")
        found = _data(changed)
        assert (found["from"], found["to"]) == (base, fixed["commit_hash"])
        assert found["changed_pixels"] > 0
        assert len(_pngs(changed)) == 1
        same = _data(
            await call(
                "diff",
                **mine,
                story="button--primary",
                from_commit=fixed["commit_hash"],
                to_commit=fixed["commit_hash"],
            )
        )
        assert same["changed_pixels"] == 0
        unknown = await call("diff", **mine, story="button--primary", from_commit="abcdef12")
        assert _error(unknown).startswith("404 ")

        stepped = await call("rollback", **mine, steps=1)
        back = _data(stepped)
        assert back["current_hash"] == broken["commit_hash"]
        assert back["render"]["status"] == "compile_error", back["render"]
        assert _pngs(stepped) == []
        forward = await call("rollback", **mine, undo=True)
        assert _data(forward)["current_hash"] == fixed["commit_hash"]
        assert _data(forward)["render"]["status"] == "ok"
        assert len(_pngs(forward)) == 1

        final = _data(
            await call("finalize", **mine, title="Studio: a fixed button", description="By MCP")
        )
        assert final["pr_url"] == EXAMPLE_PR_URL
        assert final["commits"] == 2
        [opened] = service.github.sent("POST", f"/repos/{GITHUB_REPO}/pulls")
        sent = opened.json()
        assert sent["title"] == "Studio: a fixed button"
        assert sent["head"] == final["branch"]
        assert "Fix the button" in sent["body"]

        ended = await call("list_files", **mine)
        assert _error(ended).startswith("409 ")
        assert "finalized" in _error(ended)


def test_mcp_answers_only_at_its_path(service: Service) -> None:
    headers = {"Authorization": f"Bearer {service.user('probe')}"}
    reply = service.http.post("/mcp/extra", headers=headers, json={})
    assert reply.status_code == 404
    # a GET asks for a server stream, a DELETE ends a session: a stateless server has neither
    for method in ("GET", "DELETE"):
        reply = service.http.request(
            method, "/mcp", headers={**headers, "Accept": "text/event-stream"}
        )
        assert reply.status_code == 405, reply.text
        assert reply.headers["allow"] == "POST"
