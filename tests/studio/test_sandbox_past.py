"""A sandbox's past-commit renderer: a detached worktree and a Vite of its own.

Real git, real Vite on examples/ui-kit (inside the OS boundary when bwrap
runs here), through the sandbox (no Ray, no browser: the tests read what
Vite serves of a module). The pictures themselves are in
tests/serve/test_api_pictures.py.
"""

# The fixtures are imported from test_sandbox_fixtures, then requested by name.
# ruff: noqa: F811

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import psutil
import pytest

from studio.commands import WriteFile
from studio.errors import CommitNotFound, InvalidState
from studio.sandbox import ComponentStudioSandbox
from studio.sandbox.past import needs_fresh_start
from studio.vite import renderer_url
from tests.studio.test_sandbox_fixtures import (  # noqa: F401 (fixtures)
    SandboxFactory,
    install_cache,
    make_sandbox,
    origin,
    settings,
)
from tests.studio.test_sandbox_recovery import die

BUTTON = "src/components/Button/Button.tsx"


def _module(sandbox: ComponentStudioSandbox, port: int, root: Path) -> str:
    """What the renderer on ``port`` (of the worktree ``root``) serves of the Button
    module: Vite's transform of it, by its path (the studio app is Vite's root)."""
    base = renderer_url(sandbox.settings.host, port, sandbox.renderer_base)
    url = f"{base}@fs{root / BUTTON}"
    reply = httpx.get(url, headers=sandbox.proxy_headers(), timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.text


def _edit(sandbox: ComponentStudioSandbox, content: str) -> str:
    result = sandbox.on_execute(
        WriteFile(command="write_file", file_path=BUTTON, content=content, description="edit")
    )
    assert result.commit_hash is not None
    return result.commit_hash


def test_past_commits_render_beside_the_live_sandbox(make_sandbox: SandboxFactory) -> None:
    # Behind the API's proxy: Vite under /r/<id>/, answering the proxy's secret only.
    sandbox = make_sandbox(viewer_token="proxy-secret-of-the-test")
    sandbox.on_setup()
    base = sandbox.head()
    original = (sandbox.worktree_path / BUTTON).read_text()
    first = _edit(sandbox, original.replace("Click me", "First edit"))
    second = _edit(sandbox, original.replace("Click me", "Second edit"))

    assert sandbox.resolve_commit(None) == (second, True)
    assert sandbox.resolve_commit(first[:8]) == (first, False)
    port = sandbox.show_past(base)
    assert port != sandbox.port
    served = _module(sandbox, port, sandbox.past.path)
    assert "Click me" in served and "edit" not in served
    past = sandbox.past
    server = past.server
    assert server is not None and server.pid is not None
    if sandbox.settings.boundary().enforced:
        assert psutil.Process(server.pid).cmdline()[0] == "bwrap"
    # The live sandbox is where the designer left it.
    assert sandbox.head() == second
    assert "Second edit" in _module(sandbox, sandbox.port or 0, sandbox.worktree_path)
    assert (sandbox.worktree_path / BUTTON).read_text().count("Second edit") == 1

    # Another past commit: the same Vite follows the worktree to it.
    pid = server.pid
    sandbox.release_past()
    assert sandbox.show_past(first) == port
    assert "First edit" in _module(sandbox, port, sandbox.past.path)
    assert (past.starts, past.moves, server.pid) == (1, 1, pid)
    sandbox.release_past()

    # Not a commit of this sandbox: refused, nothing moves.
    with pytest.raises(CommitNotFound, match="does not exist"):
        sandbox.resolve_commit("0123456789abcdef")
    with pytest.raises(CommitNotFound, match="is not a commit hash"):
        sandbox.resolve_commit("HEAD~1")
    assert past.commit == first

    # Idle: the monitor pass stops it and removes its worktree; asked again, it starts again.
    past.idle_seconds = 0.0
    sandbox.on_monitor()
    assert past.server is None and not past.path.exists()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    past.idle_seconds = 300.0
    port = sandbox.show_past(base)
    assert "Click me" in _module(sandbox, port, sandbox.past.path)
    assert past.starts == 2
    # Leased (a picture being taken): an idle check leaves it running.
    past.idle_seconds = 0.0
    sandbox.on_monitor()
    assert past.server is not None
    sandbox.release_past()
    restarted = past.server.pid
    mirror = sandbox._mirror
    assert mirror is not None

    # The sandbox's end stops it too, and nothing starts it after.
    sandbox.on_teardown()
    assert past.server is None and not past.path.exists()
    with pytest.raises(InvalidState, match="ended"):
        past.show(mirror, base)
    assert not past.path.exists()
    assert restarted is not None
    assert not psutil.pid_exists(restarted) or (
        psutil.Process(restarted).status() == psutil.STATUS_ZOMBIE
    )


def test_what_a_move_between_commits_cannot_follow_starts_afresh() -> None:
    assert not needs_fresh_start(["src/components/Button/Button.tsx", "README.md"])
    for setup in (
        "package.json",
        "packages/ui/package-lock.json",
        "pnpm-lock.yaml",
        "vite.config.ts",
        "tailwind.config.js",
        "tsconfig.json",
        ".storybook/main.ts",
    ):
        assert needs_fresh_start(["src/a.tsx", setup]), setup


def test_a_recovered_sandbox_reaps_the_past_renderer_its_predecessor_left(
    make_sandbox: SandboxFactory,
) -> None:
    first = make_sandbox()
    first.on_setup()
    base = first.head()
    _edit(first, (first.worktree_path / BUTTON).read_text().replace("Click me", "Edited"))
    first.show_past(base)
    first.release_past()
    server = first.past.server
    assert server is not None and server.pid is not None
    left = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    # The actor died (its objects with it); its Vites and worktrees stay behind.
    die(first)
    second = make_sandbox(start_seq=first.events.last_seq + 1)
    second.on_setup(recover=True)
    _, alive = psutil.wait_procs(left, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    assert not second.past.path.exists()
    # and it renders past commits again, from a worktree of its own
    assert "Click me" in _module(second, second.show_past(base), second.past.path)
    second.release_past()
    second.on_teardown()
    assert not second.past.path.exists()


def test_a_past_renderer_whose_vite_died_starts_again(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox()
    sandbox.on_setup()
    base = sandbox.head()
    original = (sandbox.worktree_path / BUTTON).read_text()
    edited = _edit(sandbox, original.replace("Click", "Tap"))
    _edit(sandbox, original.replace("Click", "Press"))
    sandbox.show_past(base)
    sandbox.release_past()
    server = sandbox.past.server
    assert server is not None and server.pid is not None
    group = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    os.killpg(server.pid, signal.SIGKILL)
    psutil.wait_procs(group, timeout=10)
    # Asked for another commit: not a move of a dead Vite, a fresh start at that commit.
    port = sandbox.show_past(edited)
    sandbox.release_past()
    assert sandbox.past.starts == 2 and sandbox.past.moves == 0
    assert "Tap me" in _module(sandbox, port, sandbox.past.path)
