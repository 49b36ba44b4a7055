"""Finalize with pictures: the orphan commit, the one push, the body, and refusals survived.

Real git repositories and a real sandbox (Vite on examples/ui-kit); the
pictures are handed in as the actor would (the browser's part is the Ray test,
tests/actors/test_finalize_images.py).
"""

from __future__ import annotations

import stat
from pathlib import Path

from studio.pr import LocalProvider, PullRequestInfo
from studio.pr_images import Picture, PullRequestImages, StoryImages, screenshots_ref
from studio.state import SandboxState
from tests.studio.test_pr_images import png
from tests.studio.test_sandbox import execute
from tests.studio.test_sandbox_fixtures import SandboxFactory
from tests.support.gitrepo import git, make_repo

SANDBOX = "sb_test0001"
REF = screenshots_ref(SANDBOX)


class RecordingLocal(LocalProvider):
    """The local provider, keeping the body it was given (a local origin shows it nowhere)."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def open_pull_request(
        self, repository: str, *, head: str, base: str, title: str, body: str
    ) -> PullRequestInfo:
        self.bodies.append(body)
        return super().open_pull_request(repository, head=head, base=base, title=title, body=body)


def test_an_orphan_commit_goes_out_in_the_same_push_as_the_branch(tmp_path: Path) -> None:
    from studio.git.command import DEFAULT_IDENTITY
    from studio.git.orphan import orphan_commit

    work = make_repo(tmp_path / "work", {"a.txt": "a\n"})
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    index_before = (work / ".git" / "index").read_bytes()
    head = git(work, "rev-parse", "HEAD")

    commit = orphan_commit(
        work, {"01-x.before.png": png(), "01-x.after.png": png(4)}, "pictures", DEFAULT_IDENTITY
    )
    # No parent, only the pictures; the checkout, its index and HEAD did not move.
    assert git(work, "rev-list", "--parents", "-n", "1", commit) == commit
    assert git(work, "ls-tree", "--name-only", commit).split() == [
        "01-x.after.png",
        "01-x.before.png",
    ]
    assert (work / ".git" / "index").read_bytes() == index_before
    assert git(work, "rev-parse", "HEAD") == head
    assert git(work, "status", "--porcelain") == ""

    git(work, "push", "-q", str(bare), "main:refs/heads/main", f"+{commit}:{REF}")
    assert git(bare, "rev-parse", REF) == commit
    assert git(bare, "cat-file", "-s", f"{commit}:01-x.after.png") == str(len(png(4)))


def pictures(base: str, head: str) -> PullRequestImages:
    return PullRequestImages(
        base=base,
        head=head,
        viewport="1024x768",
        stories=[
            StoryImages(
                component="Button",
                story="button--primary",
                status="ok",
                before=Picture(png=png()),
                after=Picture(png=png(5)),
            ),
            StoryImages(
                component="Button",
                story="button--new",
                status="runtime_error",
                error="boom",
                before=Picture(reason="not in the base commit (a new story)"),
                after=Picture(png=png(6)),
            ),
        ],
    )


def test_finalize_pushes_the_pictures_to_their_own_ref_and_the_body_names_them(
    make_sandbox: SandboxFactory, origin: Path
) -> None:
    sandbox = make_sandbox(SANDBOX)
    sandbox.on_setup()
    execute(sandbox, command="write_file", file_path="src/shade.ts", content="export {}\n")
    base, head = str(sandbox.base_commit), sandbox.head()
    provider = RecordingLocal()
    result = sandbox.finalize("Shade", "Adds a shade", provider, pictures(base, head))

    assert sandbox.state is SandboxState.FINALIZED
    assert result.screenshots_ref == REF
    shots = str(result.screenshots_commit)
    assert git(origin, "rev-parse", REF) == shots
    assert git(origin, "rev-list", "--parents", "-n", "1", shots) == shots
    assert git(origin, "ls-tree", "--name-only", shots).split() == [
        "01-button--primary.after.png",
        "01-button--primary.before.png",
        "02-button--new.after.png",
    ]
    # The design branch and what it adds to main hold no picture.
    branch = f"refs/heads/{result.branch}"
    assert git(origin, "rev-parse", branch) == head
    assert ".png" not in git(origin, "diff", "--name-only", f"{base}..{head}")
    [body] = provider.bodies
    assert body.startswith("Adds a shade\n\n## Screenshots\n")
    assert f"`studio-screenshots/{SANDBOX}` at `{shots[:12]}`" in body
    assert "`01-button--primary.before.png`" in body
    assert "_no picture: not in the base commit (a new story)_" in body
    assert "❌ `runtime_error`: boom" in body
    assert body.index("## Screenshots") < body.index("## Commits")


def test_a_refused_pictures_ref_still_pushes_the_branch_and_opens_the_pull_request(
    make_sandbox: SandboxFactory, origin: Path
) -> None:
    hook = origin / ".git" / "hooks" / "update"
    hook.write_text(
        '#!/bin/sh\ncase "$1" in refs/heads/studio-screenshots/*) '
        'echo "pictures are not welcome here" >&2; exit 1;; esac\nexit 0\n'
    )
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    sandbox = make_sandbox(SANDBOX)
    sandbox.on_setup()
    execute(sandbox, command="write_file", file_path="src/shade.ts", content="export {}\n")
    base, head = str(sandbox.base_commit), sandbox.head()
    provider = RecordingLocal()
    result = sandbox.finalize("Shade", "", provider, pictures(base, head))

    assert sandbox.state is SandboxState.FINALIZED
    assert (result.screenshots_ref, result.screenshots_commit) == (None, None)
    assert git(origin, "rev-parse", f"refs/heads/{result.branch}") == head
    assert git(origin, "for-each-ref", "refs/heads/studio-screenshots/") == ""
    [body] = provider.bodies
    assert "The pictures could not be published: the push of their ref was refused" in body
    assert "pictures are not welcome here" in body
    assert "_taken, not published_" in body


def test_finalize_without_pictures_pushes_no_pictures_ref(
    make_sandbox: SandboxFactory, origin: Path
) -> None:
    sandbox = make_sandbox(SANDBOX)
    sandbox.on_setup()
    execute(sandbox, command="write_file", file_path="src/shade.ts", content="export {}\n")
    base, head = str(sandbox.base_commit), sandbox.head()
    provider = RecordingLocal()
    none_taken = PullRequestImages(
        base=base, head=head, viewport="1024x768", note="no story renders the changed files"
    )
    result = sandbox.finalize("Shade", "", provider, none_taken)
    assert result.screenshots_commit is None
    assert git(origin, "for-each-ref", "refs/heads/studio-screenshots/") == ""
    assert "No pictures: no story renders the changed files." in provider.bodies[0]
