"""Pushes to a local origin in-process (libgit2), and when they leave it to the git CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.git.inprocess import local_remote_path, push_to_local_origin
from tests.support.gitrepo import git, make_repo


@pytest.fixture
def clone(tmp_path: Path) -> tuple[Path, Path]:
    origin = make_repo(tmp_path / "origin", {"a.txt": "a\n"})
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(origin), str(work))
    git(work, "checkout", "-q", "-b", "design/studio-x")
    return origin, work


def commit(work: Path, name: str) -> str:
    (work / name).write_text(name + "\n")
    git(work, "add", name)
    git(work, "commit", "-q", "-m", name)
    return git(work, "rev-parse", "HEAD")


REFSPEC = "refs/heads/design/studio-x:refs/heads/design/studio-x"


def test_a_local_origin_gets_the_branch_in_process(clone: tuple[Path, Path]) -> None:
    origin, work = clone
    head = commit(work, "b.txt")
    assert push_to_local_origin(work / ".git", REFSPEC)
    assert git(origin, "rev-parse", "design/studio-x") == head
    # The objects came along: the origin can read the commit's file.
    assert git(origin, "show", f"{head}:b.txt") == "b.txt"
    # As after `git push`, the pusher's view of origin follows.
    assert git(work, "rev-parse", "refs/remotes/origin/design/studio-x") == head


def loose(repo_dir: Path, sha: str) -> Path:
    return repo_dir / "objects" / sha[:2] / sha[2:]


def test_new_loose_objects_are_linked_into_the_origin_not_written_again(
    clone: tuple[Path, Path],
) -> None:
    origin, work = clone
    head = commit(work, "b.txt")
    assert push_to_local_origin(work / ".git", REFSPEC)
    # One file for both repositories, as `git clone --local` shares them.
    assert loose(origin / ".git", head).stat().st_ino == loose(work / ".git", head).stat().st_ino
    assert git(origin, "fsck", "--strict", "--no-dangling") == ""


def test_packed_objects_are_copied_into_the_origin(clone: tuple[Path, Path]) -> None:
    origin, work = clone
    head = commit(work, "b.txt")
    git(work, "repack", "-q", "-a", "-d")
    assert not loose(work / ".git", head).exists()
    assert push_to_local_origin(work / ".git", REFSPEC)
    assert git(origin, "show", f"{head}:b.txt") == "b.txt"
    assert git(origin, "fsck", "--strict", "--no-dangling") == ""


def test_a_rewritten_branch_needs_force_and_a_refusal_is_not_success(
    clone: tuple[Path, Path],
) -> None:
    origin, work = clone
    commit(work, "b.txt")
    assert push_to_local_origin(work / ".git", REFSPEC)
    git(work, "reset", "-q", "--hard", "HEAD~1")
    rewritten = commit(work, "c.txt")
    # Not a fast-forward: refused, and the caller falls back to the CLI (which reports it).
    assert not push_to_local_origin(work / ".git", REFSPEC)
    assert git(origin, "rev-parse", "design/studio-x") != rewritten
    assert push_to_local_origin(work / ".git", "+" + REFSPEC)
    assert git(origin, "rev-parse", "design/studio-x") == rewritten


def test_a_network_or_missing_origin_is_left_to_the_cli(clone: tuple[Path, Path]) -> None:
    origin, work = clone
    commit(work, "b.txt")
    git(work, "remote", "set-url", "origin", "https://github.com/acme/ui.git")
    assert not push_to_local_origin(work / ".git", REFSPEC)
    git(work, "remote", "set-url", "origin", str(origin) + "-gone")
    assert not push_to_local_origin(work / ".git", REFSPEC)


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("/srv/git/ui", "/srv/git/ui"),
        ("file:///srv/git/ui", "/srv/git/ui"),
        ("relative/ui", "relative/ui"),
        ("https://github.com/acme/ui.git", None),
        ("ssh://git@host/ui.git", None),
        ("git@github.com:acme/ui.git", None),
        ("-upload-pack=evil", None),
        ("file://", None),
    ],
)
def test_which_remote_urls_are_local(url: str, local: str | None) -> None:
    assert local_remote_path(url) == local


def test_the_branch_a_non_bare_origin_has_checked_out_is_never_moved(
    clone: tuple[Path, Path],
) -> None:
    origin, work = clone
    commit(work, "b.txt")
    assert push_to_local_origin(work / ".git", REFSPEC)
    git(origin, "checkout", "-q", "design/studio-x")
    before = git(origin, "rev-parse", "HEAD")
    commit(work, "c.txt")
    # git push refuses this too (receive.denyCurrentBranch): the CLI path reports it.
    assert not push_to_local_origin(work / ".git", "+" + REFSPEC)
    assert git(origin, "rev-parse", "HEAD") == before
    assert git(origin, "status", "--porcelain") == ""


def test_every_object_of_the_new_commits_reaches_the_origin_and_nothing_more(
    clone: tuple[Path, Path],
) -> None:
    origin, work = clone
    commit(work, "b.txt")
    assert push_to_local_origin(work / ".git", REFSPEC)
    # Several commits at once, new directories, and a merge of a side branch.
    (work / "src" / "deep").mkdir(parents=True)
    (work / "src" / "deep" / "c.txt").write_text("c\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "deep")
    git(work, "checkout", "-q", "-b", "side", "HEAD~1")
    commit(work, "side.txt")
    git(work, "checkout", "-q", "design/studio-x")
    git(work, "merge", "-q", "--no-edit", "side")
    head = commit(work, "d.txt")
    loose_before = int(git(origin, "count-objects").split()[0])
    assert push_to_local_origin(work / ".git", REFSPEC)
    assert git(origin, "rev-parse", "design/studio-x") == head
    # The origin's repository is whole: every object of the history is there.
    git(origin, "fsck", "--strict", "--no-dangling")
    assert git(origin, "show", f"{head}:src/deep/c.txt") == "c"
    assert git(origin, "show", f"{head}:side.txt") == "side.txt"
    # Only what it lacked: 4 commits, 4 root trees, 2 subtrees, 3 blobs.
    assert int(git(origin, "count-objects").split()[0]) - loose_before == 13
