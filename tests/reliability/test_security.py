"""Security of the running service: who gets in, what they see, where tokens end up.

The route table comes from the service's own OpenAPI schema, so a route added
later is covered without editing this file. This module runs last in the
package (alphabetically), so the token scan sees every token the package made.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
import websockets

from studio.layout import StateLayout
from studio.vite import read_studio_config
from tests.reliability.conftest import BUTTON, execute
from tests.serve.conftest import Api
from tests.serve.test_api import tight  # noqa: F401 (fixture)
from tests.serve.test_api_ws import ws_url
from tests.support.gitrepo import make_repo

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# Every answer the tests below received, for the token scan at the end.
SEEN: list[str] = []

# Routes anyone may call (liveness probes and the API's own description).
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
}


@pytest.fixture(scope="module")
def alice(api: Api) -> Iterator[tuple[str, str, str]]:
    """Alice, her running sandbox with one commit, and the commit's hash."""
    user = api.user("alice")
    sandbox_id = api.create(user)["sandbox_id"]
    reply = execute(
        api, user, sandbox_id, command="write_file", file_path="src/secret.txt", content="s3cr3t\n"
    )
    assert reply.status_code == 200, reply.text
    try:
        yield user, sandbox_id, reply.json()["commit_hash"]
    finally:
        api.http.delete(f"/api/v1/sandboxes/{sandbox_id}", headers=api.headers(user), timeout=120)


def routes(api: Api) -> list[tuple[str, str]]:
    """(method, path template) of every HTTP operation the service documents."""
    schema = api.http.get("/openapi.json").json()
    return sorted(
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    )


def viewer_token_of(api: Api, sandbox_id: str) -> str:
    """The sandbox's viewer token: the secret the renderer proxy shows its Vite."""
    studio_dir = StateLayout(api.settings.state_dir).worktree(sandbox_id) / ".studio"
    return str(read_studio_config(studio_dir)["proxySecret"])


def body_for(method: str, path: str, sandbox_id: str) -> dict[str, Any] | None:
    """A well-formed body, so that only the caller's identity can make it fail."""
    if method not in ("POST", "PUT", "PATCH"):
        return None
    if path.endswith("/execute"):
        return {"command": "write_file", "file_path": BUTTON, "content": "pwned"}
    if path.endswith("/rollback"):
        return {"steps": 1}
    if path.endswith("/finalize"):
        return {"title": "stolen"}
    if path.endswith("/users"):
        return {"name": "intruder"}
    if path.endswith("/repositories"):
        return {"name": "intruder", "path": "/etc"}
    if path.endswith("/sandboxes"):
        # An unknown repository: a stranger must not get a sandbox made for this test.
        return {"type": "component-studio", "repository_id": 999_999}
    return {}


def test_every_route_refuses_strangers_and_never_shows_another_users_data(
    api: Api, alice: tuple[str, str, str]
) -> None:
    owner, sandbox_id, commit = alice
    bob = api.user("bob")
    table = routes(api)
    assert len(table) >= 12, table
    secrets = [sandbox_id.removeprefix("sb_"), commit, commit[:12], owner]
    # The secret the renderer proxy shows the sandbox's Vite opens nothing of the API.
    viewer = viewer_token_of(api, sandbox_id)
    before = api.http.get(f"/api/v1/sandboxes/{sandbox_id}", headers=api.headers(owner)).json()
    for method, template in table:
        path = template.replace("{sandbox_id}", sandbox_id).replace("{name}", owner)
        if template.endswith(("/screenshot", "/diff", "/diff.png")):
            path += "?story=Button"  # its required query: only the identity may fail it
        body = body_for(method, template, sandbox_id)
        for who, headers in (
            ("no token", {}),
            ("wrong token", {"Authorization": "Bearer " + "x" * 43}),
            ("malformed", {"Authorization": "Token abc"}),
            ("viewer", {"Authorization": f"Bearer {viewer}"}),
            ("bob", api.headers(bob)),
        ):
            reply = api.http.request(method, path, json=body, headers=headers, timeout=120)
            SEEN.append(reply.text)
            case = f"{method} {template} as {who}: {reply.status_code} {reply.text[:200]}"
            if (method, template) in PUBLIC:
                assert reply.status_code == 200, case
                continue
            if who != "bob":
                assert reply.status_code == 401, case
                assert reply.json()["error"]["code"] == "unauthenticated", case
                continue
            if "{sandbox_id}" in template:
                # Worded exactly as an unknown sandbox, so ids cannot be probed.
                assert reply.status_code == 404, case
                assert reply.json()["error"]["code"] == "sandbox_not_found", case
            elif template.startswith("/api/v1/users") or (method, template) == (
                "POST",
                "/api/v1/repositories",
            ):
                assert reply.status_code == 403, case
            else:
                assert reply.status_code < 500, case
            # Alice's id may be echoed back only inside the "no sandbox" message.
            text = reply.text.replace(f"no sandbox {sandbox_id!r}", "")
            leaked = [s for s in secrets if s in text]
            assert not leaked, case
    after = api.http.get(f"/api/v1/sandboxes/{sandbox_id}", headers=api.headers(owner)).json()
    assert after["git_commits"] == before["git_commits"]
    assert after["status"] == "running"
    # Bob's own listing is his own: empty.
    assert api.http.get("/api/v1/sandboxes", headers=api.headers(bob)).json() == []


async def test_websocket_refuses_strangers(api: Api, alice: tuple[str, str, str]) -> None:
    _, sandbox_id, _ = alice
    bob = api.user("wsbob")
    cases = [
        ({}, {}, 4401),
        ({}, {"token": "wrong"}, 4401),
        ({"Authorization": "Bearer wrong"}, {}, 4401),
        (api.headers(bob), {}, 4404),
        ({}, {"token": api.tokens[bob]}, 4404),
    ]
    for headers, query, code in cases:
        url = ws_url(api, sandbox_id, **query)
        async with websockets.connect(url, additional_headers=headers) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    frame = await asyncio.wait_for(ws.recv(), 30)
                    # Nothing of the sandbox's stream reaches a stranger.
                    raise AssertionError(f"a stranger received {frame!r}")
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == code, (headers, query)
        SEEN.append(closed.value.rcvd.reason)


def test_repository_registration_outside_the_roots_is_refused(
    api: Api, tmp_path_factory: pytest.TempPathFactory
) -> None:
    admin = api.headers("admin")
    root = Path(api.settings.repo_roots[0])
    outside = tmp_path_factory.mktemp("outside-roots")
    (outside / ".git").mkdir()
    link = root / f"link-{os.getpid()}"
    link.symlink_to(outside, target_is_directory=True)
    try:
        for n, path in enumerate(
            [
                str(outside),
                str(root / ".." / outside.name),
                f"{root}/../../{outside.relative_to(outside.anchor)}",
                str(link),
                "/etc",
                "relative/path",
            ]
        ):
            reply = api.http.post(
                "/api/v1/repositories", json={"name": f"evil{n}", "path": path}, headers=admin
            )
            SEEN.append(reply.text)
            assert reply.status_code in (400, 403, 404), (path, reply.text)
            assert reply.json()["error"]["message"], path
    finally:
        link.unlink()
    names = [r["name"] for r in api.http.get("/api/v1/repositories", headers=admin).json()]
    assert not [n for n in names if n.startswith("evil")], names


def test_clone_url_cannot_reach_around_the_roots(
    api: Api, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A local repository outside the roots, named as a clone URL instead of a path."""
    admin = api.headers("admin")
    outside = make_repo(tmp_path_factory.mktemp("outside-clone") / "repo", {"a.txt": "a\n"})
    for n, url in enumerate([str(outside), f"file://{outside}", f"{outside}/.git"]):
        reply = api.http.post(
            "/api/v1/repositories",
            json={"name": f"around{n}", "clone_url": url},
            headers=admin,
            timeout=120,
        )
        SEEN.append(reply.text)
        assert reply.status_code in (400, 403), (url, reply.text)
    names = [r["name"] for r in api.http.get("/api/v1/repositories", headers=admin).json()]
    assert not [n for n in names if n.startswith("around")], names


async def test_rate_limited_user_gets_429_while_another_is_unaffected(
    api: Api,
    tight: str,  # noqa: F811
) -> None:
    greedy, other = api.user("greedy"), api.user("other")
    async with httpx.AsyncClient(base_url=tight, timeout=60) as client:
        burst = [client.get("/api/v1/sandboxes", headers=api.headers(greedy)) for _ in range(40)]
        # The other user's requests go out in the middle of the burst, within its own bucket.
        calm = [client.get("/api/v1/sandboxes", headers=api.headers(other)) for _ in range(3)]
        replies = await asyncio.gather(*burst[:20], *calm, *burst[20:])
    greedy_replies = replies[:20] + replies[23:]
    other_replies = replies[20:23]
    assert [r.status_code for r in other_replies] == [200, 200, 200]
    statuses = [r.status_code for r in greedy_replies]
    assert statuses.count(429) >= 1 and set(statuses) <= {200, 429}, statuses
    for reply in greedy_replies:
        SEEN.append(reply.text)
        if reply.status_code == 429:
            assert int(reply.headers["Retry-After"]) >= 1
            assert reply.json()["error"]["code"] == "rate_limited"


def _files_under(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path


def test_tokens_never_in_logs_errors_or_answers(
    api: Api, alice: tuple[str, str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    owner, sandbox_id, _ = alice
    # A few more answers and errors that mention users: none may carry a token.
    admin = api.headers("admin")
    SEEN.append(api.http.get("/api/v1/users", headers=admin).text)
    SEEN.append(api.http.get(f"/api/v1/sandboxes/{sandbox_id}", headers=admin).text)
    SEEN.append(api.http.delete("/api/v1/users/nobody-here", headers=admin).text)
    SEEN.append(api.http.get("/api/v1/sandboxes", headers=api.headers(owner)).text)
    SEEN.append(api.http.post("/api/v1/users", json={"name": owner}, headers=admin).text)
    for token in list(api.tokens.values()):
        SEEN.append(api.http.get("/api/v1/sandboxes/sb_x", headers={"Authorization": token}).text)
    tokens = [t for t in api.tokens.values() if t] + [viewer_token_of(api, sandbox_id)]
    assert len(tokens) >= 3
    captured = capfd.readouterr()
    node: Any = ray._private.worker._global_node
    session = Path(node.get_session_dir_path())
    found: list[str] = []
    for path in _files_under(session / "logs"):
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        found.extend(f"{path.name}: {t[:6]}..." for t in tokens if t in text)
    for name, text in (("answers", "\n".join(SEEN)), ("output", captured.out + captured.err)):
        found.extend(f"{name}: {t[:6]}..." for t in tokens if t in text)
    assert not found, found
    # The scan looked at real logs: the service's own lines are in there.
    logged = "\n".join(
        p.read_text(errors="replace") for p in (session / "logs").glob("worker-*.err")
    )
    assert re.search(r"sandbox|manager|serve", logged, re.IGNORECASE)
    assert json.loads(api.http.get("/api/v1/users", headers=admin).text)
