"""Finalizing a sandbox of a GitHub repository opens a pull request, through the real service.

The manager and the sandbox run as Ray actors on the session's Ray; the
repository is a bare git repository served over smart HTTP on loopback
(tests/support/git_http.py), so the branch is really pushed, with the token as
a GitHub client sends it; the REST API is Prism serving GitHub's OpenAPI
description behind the recording front (tests/support/prism.py).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.handles import (
    sandbox_handle,
    start_manager,
)
from studio.naming import branch_name
from studio.state import SandboxState
from tests.actors.conftest import UI_KIT, get, node_settings, shut_down_studio
from tests.support.git_http import GitHttpServer, bare_repository, serve_git
from tests.support.gitrepo import git, repo_from_dir
from tests.support.prism import VALID_TOKEN, GitHubFront

pytestmark = pytest.mark.usefixtures("ray_session")

# Prism answers with the spec's example pull request, whatever was sent.
EXAMPLE_PR_URL = "https://github.com/octocat/Hello-World/pull/1347"
EXAMPLE_PR_NUMBER = 1347
OWNER = "alice"


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[GitHttpServer]:
    """examples/ui-kit as a bare repository ``hello.git`` served over smart HTTP."""
    source = repo_from_dir(UI_KIT, tmp_path / "ui-kit")
    bare_repository(tmp_path / "served", "hello.git", source)
    with serve_git(tmp_path / "served") as server:
        yield server


def _with_push_permission(repo: dict[str, Any]) -> dict[str, Any]:
    return {**repo, "permissions": {"admin": False, "push": True, "pull": True}}


def _assert_no_token(*answers: Any) -> None:
    for answer in answers:
        shown = answer.model_dump_json() if hasattr(answer, "model_dump_json") else repr(answer)
        assert VALID_TOKEN not in shown
        assert VALID_TOKEN not in repr(answer)


class CommandLineWatch:
    """Reads every process's command line, over and over, while a push runs."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.seen: list[str] = []
        self.reads = 0
        self.git_pushes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    raw = cmdline.read_bytes()
                except OSError:
                    continue  # the process ended between listing and reading
                self.reads += 1
                if b"git\0push" in raw or b"git-remote-http" in raw:
                    self.git_pushes += 1
                if self.secret in raw:
                    self.seen.append(raw.replace(b"\0", b" ").decode(errors="replace"))

    def __enter__(self) -> CommandLineWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def git_configs(root: Path) -> list[Path]:
    """Every git config file under ``root`` (links not followed: the install cache is not git's)."""
    found = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "node_modules"]
        found += [Path(directory) / f for f in files if f in ("config", "config.worktree")]
    return found


def test_finalize_pushes_the_branch_and_opens_the_pull_request(
    tmp_path: Path,
    install_cache: Path,
    github_front: GitHubFront,
    git_server: GitHttpServer,
) -> None:
    settings = node_settings(
        tmp_path / "state",
        install_cache,
        github_token=VALID_TOKEN,
        github_api_url=github_front.url,
    )
    bare = git_server.root / "hello.git"
    base = git(bare, "rev-parse", "refs/heads/main")
    github_front.edit("GET", "/repos/octo/hello", _with_push_permission)
    manager = start_manager(settings)
    try:
        record = get(
            manager.register_repository.remote(
                "hello", github="octo/hello", clone_url=f"{git_server.url}/hello.git"
            ),
            timeout=60,
        )
        info = get(manager.create_sandbox.remote(OWNER, record.id, {}), timeout=300)
        assert info.status is SandboxState.RUNNING
        branch = branch_name(info.id)
        assert branch.startswith("design/studio-")

        with CommandLineWatch(VALID_TOKEN) as watch:
            written = get(
                sandbox_handle(info.id).execute.remote(
                    {
                        "command": "write_file",
                        "file_path": "src/components/Button/Button.tsx",
                        "content": "export const Button = () => <button className='blue' />;\n",
                        "description": "Make the button blue",
                    }
                ),
                timeout=60,
            )
            commit = str(written.commit_hash)

            # Durable commits: the edit was pushed before execute answered.
            assert written.pushed is True
            configs = git_configs(settings.state_dir)
            assert any(p.parent.name.endswith(".git") for p in configs), configs
            result = get(
                manager.finalize_sandbox.remote(info.id, None, "Studio: blue button", "desc"),
                timeout=180,
            )
        # Two pushes ran (the edit's, finalize's) while every command line was read:
        # git's own and its https helper's held no token.
        assert watch.git_pushes > 0 and watch.reads > 0
        assert watch.seen == []
        for config in [*git_configs(settings.state_dir), *git_configs(git_server.root)]:
            assert VALID_TOKEN not in config.read_text(errors="replace"), config
        assert (result.pr_url, result.pr_number) == (EXAMPLE_PR_URL, EXAMPLE_PR_NUMBER)
        assert result.branch == branch
        assert result.commits == 1

        # GitHub was asked for exactly this pull request, with the service's token.
        [opened] = github_front.sent("POST", "/repos/octo/hello/pulls")
        assert opened.headers["authorization"].split(" ", 1)[1] == VALID_TOKEN
        sent = opened.json()
        assert (sent["head"], sent["base"]) == (branch, "main")
        assert sent["title"] == "Studio: blue button"
        assert sent["body"].startswith("desc\n")
        assert f"`{commit[:7]}` " in sent["body"]
        assert "Make the button blue" in sent["body"]

        # The branch really reached the repository, pushed as a GitHub client pushes.
        assert git(bare, "rev-parse", f"refs/heads/{branch}") == commit
        assert git(bare, "rev-parse", f"{commit}^") == base
        assert git(bare, "rev-parse", "refs/heads/main") == base
        pushes = git_server.pushes()
        assert pushes
        assert {(p.user, p.password) for p in pushes} == {("x-access-token", VALID_TOKEN)}

        ended = get(manager.get_sandbox.remote(info.id, OWNER), timeout=60)
        assert ended.status is SandboxState.FINALIZED

        # Finalizing again answers with the same pull request and asks GitHub nothing.
        again = get(manager.finalize_sandbox.remote(info.id, None, "again", ""), timeout=60)
        assert (again.pr_url, again.pr_number, again.commits) == (
            EXAMPLE_PR_URL,
            EXAMPLE_PR_NUMBER,
            1,
        )
        assert len(github_front.sent("POST", "/repos/octo/hello/pulls")) == 1

        listed = get(manager.list_sandboxes.remote(None, True), timeout=60)
        _assert_no_token(record, info, written, result, ended, again, *listed)
    finally:
        # A failed finalize leaves the sandbox running: end it through the manager.
        shut_down_studio(settings.state_dir)
