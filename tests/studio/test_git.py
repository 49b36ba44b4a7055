"""studio.git against real repositories: mirrors, worktrees, commits, rollback, push."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from studio.config import format_commit_message
from studio.errors import (
    BranchExists,
    CommitNotFound,
    CorruptRepository,
    GitError,
    GitLocked,
    GitRemoteError,
    InvalidRequest,
    InvalidState,
    MissingBaseBranch,
    PermissionDenied,
    RollbackOutOfRange,
)
from studio.git import GitIdentity, Mirror, Worktree, redact
from studio.git.command import (
    classify_failure,
    clean_message,
    exclude_pattern,
    is_protected,
    next_ref_index,
    parse_status,
    parse_worktree_list,
    select_paths,
    wip_ref_prefix,
)
from studio.layout import StateLayout
from studio.naming import branch_name, undo_ref_prefix
from tests.support.gitrepo import commit_all, git

SB = "sb_test01"
OTHER = "sb_other02"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def layout(tmp_path: Path) -> StateLayout:
    return StateLayout(tmp_path / "state")


@pytest.fixture
def mirror(simple_repo: Path, layout: StateLayout) -> Mirror:
    return Mirror.ensure(layout.mirror("sample"), str(simple_repo))


@pytest.fixture
def worktree(mirror: Mirror, layout: StateLayout, request: pytest.FixtureRequest) -> Worktree:
    inprocess = getattr(request, "param", True)
    return mirror.add_worktree(SB, layout.worktree(SB), "main", inprocess_commits=inprocess)


# Named files are committed in-process (libgit2) or, with the setting off, through git:
# the same behaviour either way.
BOTH_COMMIT_PATHS = pytest.mark.parametrize(
    "worktree", [True, False], ids=["inprocess", "git-cli"], indirect=True
)


@pytest.fixture
def stalled_remote() -> Iterator[str]:
    """An HTTP git URL whose server takes connections and never answers (a stalled network)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield f"http://127.0.0.1:{server.getsockname()[1]}/acme/ui.git"


def write(wt: Worktree, name: str, text: str) -> Path:
    target = wt.path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def refs(repo: Path, prefix: str) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", prefix)
    return dict(line.split() for line in out.splitlines())


def porcelain(wt: Worktree) -> list[str]:
    """`git status --porcelain` lines, leading spaces kept (the helper `git` strips them)."""
    out = subprocess.run(
        ["git", "status", "--porcelain"], cwd=wt.path, capture_output=True, text=True, check=True
    ).stdout
    return sorted(out.splitlines())


def changed_files(wt: Worktree, commit: str) -> set[str]:
    out = git(wt.path, "show", "--name-status", "--format=", commit)
    return {line.replace("\t", " ") for line in out.splitlines()}


# ---------------------------------------------------------------- mirror


def test_ensure_clones_a_bare_mirror_with_origin_branches(mirror: Mirror, simple_repo: Path):
    assert git(mirror.path, "rev-parse", "--is-bare-repository") == "true"
    origin_main = git(simple_repo, "rev-parse", "main")
    assert refs(mirror.path, "refs/remotes/origin/") == {"refs/remotes/origin/main": origin_main}
    assert refs(mirror.path, "refs/heads/") == {}  # local heads are for sandboxes only
    exclude = (mirror.path / "info" / "exclude").read_text().splitlines()
    assert ".studio/" in exclude and "node_modules/" in exclude
    assert mirror.remote_branches() == ["main"]
    assert mirror.resolve("refs/remotes/origin/main") == origin_main


def test_ensure_again_fetches_new_origin_commits(mirror: Mirror, simple_repo: Path):
    (simple_repo / "NEW.md").write_text("new\n")
    first = commit_all(simple_repo, "origin moves on")
    again = Mirror.ensure(mirror.path, mirror.source)
    assert again.resolve("refs/remotes/origin/main") == first
    (simple_repo / "NEW.md").write_text("newer\n")
    second = commit_all(simple_repo, "and again")
    git(simple_repo, "branch", "feature/x")
    mirror.fetch()
    assert mirror.resolve("refs/remotes/origin/main") == second
    assert mirror.remote_branches() == ["feature/x", "main"]
    exclude = (mirror.path / "info" / "exclude").read_text().splitlines()
    assert exclude.count(".studio/") == 1  # ensure is idempotent


def test_ensure_follows_a_changed_source_url(mirror: Mirror, simple_repo: Path, tmp_path: Path):
    moved = tmp_path / "moved-origin"
    simple_repo.rename(moved)
    Mirror.ensure(mirror.path, str(moved))
    assert git(mirror.path, "config", "--get", "remote.origin.url") == str(moved)


def test_concurrent_ensure_from_threads_and_processes(simple_repo: Path, layout: StateLayout):
    path = layout.mirror("shared")
    script = (
        "import sys, pathlib; from studio.git import Mirror; "
        "Mirror.ensure(pathlib.Path(sys.argv[1]), sys.argv[2])"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), str(simple_repo)], cwd=ROOT)
        for _ in range(2)
    ]
    try:
        with ThreadPoolExecutor(4) as pool:
            mirrors = list(pool.map(lambda _: Mirror.ensure(path, str(simple_repo)), range(4)))
    finally:
        codes = [p.wait(timeout=60) for p in procs]
    assert codes == [0, 0]
    assert {m.resolve("refs/remotes/origin/main") for m in mirrors} == {
        git(simple_repo, "rev-parse", "main")
    }
    assert not list(layout.mirrors.glob("*.corrupt-*"))


def test_ensure_of_unreachable_source_is_a_remote_error(layout: StateLayout, tmp_path: Path):
    with pytest.raises(GitRemoteError, match="cloning"):
        Mirror.ensure(layout.mirror("gone"), str(tmp_path / "no-such-repo"))


def test_a_failing_clone_is_a_remote_error_without_its_credentials(layout: StateLayout, caplog):
    url = "https://user:s3cr3tT0ken@127.0.0.1:9/acme/ui.git"
    with caplog.at_level(logging.DEBUG), pytest.raises(GitRemoteError, match="cloning") as info:
        Mirror.ensure(layout.mirror("private"), url)
    assert "https://***@127.0.0.1:9/acme/ui.git" in str(info.value)
    # Nor in GitPython's own log of the commands it ran.
    assert "s3cr3tT0ken" not in str(info.value) + repr(info.value.details) + caplog.text
    assert not layout.mirror("private").exists()


def test_a_stalled_clone_is_killed_and_leaves_no_mirror(
    layout: StateLayout, stalled_remote: str, simple_repo: Path
):
    path = layout.mirror("sample")
    with pytest.raises(GitRemoteError, match=r"git clone did not finish within 1s and was killed"):
        Mirror.ensure(path, stalled_remote, network_timeout=1)
    # Half a clone would pass for a healthy mirror without branches: nothing is left.
    assert sorted(p.name for p in layout.mirrors.iterdir()) == ["sample.git.lock"]
    mirror = Mirror.ensure(path, str(simple_repo))
    assert mirror.remote_branches() == ["main"]


def test_corrupt_mirror_is_reported_and_recreated_by_ensure(mirror: Mirror, simple_repo: Path):
    with (mirror.path / "config").open("a") as handle:
        handle.write("[broken\n")
    with pytest.raises(CorruptRepository, match=r"Mirror\.ensure clones it again"):
        mirror.resolve("refs/remotes/origin/main")
    repaired = Mirror.ensure(mirror.path, str(simple_repo))
    assert repaired.resolve("refs/remotes/origin/main") == git(simple_repo, "rev-parse", "main")
    assert len(list(mirror.path.parent.glob("sample.git.corrupt-*"))) == 1  # kept for rescue


def test_ensure_recreates_a_mirror_whose_head_is_garbage(mirror: Mirror, simple_repo: Path):
    (mirror.path / "HEAD").write_text("garbage\n")
    repaired = Mirror.ensure(mirror.path, str(simple_repo))
    assert repaired.remote_branches() == ["main"]


def test_branch_exists_and_resolve_follow_the_mirror(mirror: Mirror):
    git(mirror.path, "branch", "--no-track", "scratch", "refs/remotes/origin/main")
    sha = git(mirror.path, "rev-parse", "refs/remotes/origin/main")
    assert mirror.branch_exists("scratch") and mirror.resolve("scratch") == sha
    git(mirror.path, "branch", "-D", "scratch")
    assert not mirror.branch_exists("scratch")
    with pytest.raises(CommitNotFound):
        mirror.resolve("scratch")


# ---------------------------------------------------------------- worktrees


def test_add_worktree_branches_off_the_base(worktree: Worktree, mirror: Mirror, simple_repo: Path):
    assert (worktree.path / "src" / "Button.tsx").exists()
    assert worktree.branch == branch_name(SB) == "design/studio-test01"
    assert worktree.current_branch() == worktree.branch
    assert worktree.base_commit == worktree.head() == git(simple_repo, "rev-parse", "main")
    assert mirror.branch_exists(worktree.branch)
    assert worktree.path in mirror.list_worktrees()
    recorded = git(mirror.path, "config", "--get", f"branch.{worktree.branch}.studioBase")
    assert recorded == worktree.base_commit
    # No upstream: a bare `git push` can never land on the base branch.
    with pytest.raises(subprocess.CalledProcessError):
        git(worktree.path, "config", "--get", f"branch.{worktree.branch}.merge")


def test_remove_worktree_keeps_the_branch(worktree: Worktree, mirror: Mirror):
    mirror.remove_worktree(worktree.path)
    assert not worktree.path.exists()
    assert mirror.list_worktrees() == []
    assert mirror.branch_exists(worktree.branch)


def test_remove_worktree_whose_directory_is_gone(worktree: Worktree, mirror: Mirror):
    git(worktree.path, "rev-parse", "HEAD")
    subprocess.run(["rm", "-rf", str(worktree.path)], check=True)
    mirror.remove_worktree(worktree.path)
    assert mirror.list_worktrees() == []
    mirror.remove_worktree(worktree.path)  # twice is fine


def test_a_vanished_worktree_fails_instead_of_using_another_repository(worktree: Worktree):
    subprocess.run(["rm", "-rf", str(worktree.path)], check=True)
    # This test runs inside a repository of its own: git must not fall back to it.
    with pytest.raises(GitError, match="cannot change to"):
        worktree.head()


def test_remove_worktree_of_a_locked_entry(worktree: Worktree, mirror: Mirror):
    git(mirror.path, "worktree", "lock", "--reason", "crashed", str(worktree.path))
    mirror.remove_worktree(worktree.path)
    assert not worktree.path.exists() and mirror.list_worktrees() == []


def test_remove_leaves_a_foreign_directory_alone(mirror: Mirror, tmp_path: Path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    mirror.remove_worktree(foreign)
    assert foreign.exists()


def test_prune_forgets_missing_and_crash_locked_worktrees(worktree: Worktree, mirror: Mirror):
    admin = Path(git(worktree.path, "rev-parse", "--absolute-git-dir"))
    (admin / "locked").write_text("initializing")  # what a crash inside `worktree add` leaves
    subprocess.run(["rm", "-rf", str(worktree.path)], check=True)
    mirror.prune()
    assert mirror.list_worktrees() == [] and not admin.exists()


def test_branch_collision_is_branch_exists(worktree: Worktree, mirror: Mirror, layout: StateLayout):
    before = worktree.head()
    with pytest.raises(BranchExists, match="never overwritten"):
        mirror.add_worktree(SB, layout.worktrees / "second", "main")
    assert mirror.resolve(worktree.branch) == before
    assert not (layout.worktrees / "second").exists()


def test_branch_only_on_origin_is_a_collision(
    simple_repo: Path, mirror: Mirror, layout: StateLayout
):
    git(simple_repo, "branch", branch_name(OTHER))
    mirror.fetch()
    with pytest.raises(BranchExists):
        mirror.add_worktree(OTHER, layout.worktree(OTHER), "main")


def test_missing_base_branch_lists_no_branches(
    simple_repo: Path, mirror: Mirror, layout: StateLayout
):
    git(simple_repo, "branch", branch_name(OTHER))
    mirror.fetch()
    with pytest.raises(MissingBaseBranch, match=r"'develop'") as info:
        mirror.add_worktree(SB, layout.worktree(SB), "develop")
    # The origin holds other sandboxes' branches: an error does not enumerate them.
    assert "design/studio-" not in info.value.message
    assert "main" not in info.value.message
    assert info.value.details["base"] == "develop"
    assert not mirror.branch_exists(branch_name(SB))


def test_another_sandboxs_branch_is_never_a_base(
    simple_repo: Path, mirror: Mirror, layout: StateLayout
):
    git(simple_repo, "branch", branch_name(OTHER))
    mirror.fetch()
    for base in (branch_name(OTHER), branch_name(OTHER).upper()):
        with pytest.raises(PermissionDenied, match="is a sandbox's branch"):
            mirror.add_worktree(SB, layout.worktree(SB), base)
    assert not mirror.branch_exists(branch_name(SB))
    assert not layout.worktree(SB).exists()


# ---------------------------------------------------------------- auto_commit


def test_auto_commit_new_modified_and_deleted_files(worktree: Worktree):
    write(worktree, "src/Card.tsx", "export const Card = 1;\n")
    write(worktree, "README.md", "# changed\n")
    (worktree.path / "src" / "Button.tsx").unlink()
    result = worktree.auto_commit("edit three files")
    assert result.committed and result.hash == worktree.head()
    assert result.files == ("README.md", "src/Button.tsx", "src/Card.tsx")
    assert changed_files(worktree, result.hash) == {
        "M README.md",
        "D src/Button.tsx",
        "A src/Card.tsx",
    }
    assert porcelain(worktree) == []
    assert (
        git(worktree.path, "log", "-1", "--format=%an <%ae>")
        == "Component Studio <studio@localhost>"
    )


def test_studio_and_node_modules_are_never_committed(worktree: Worktree):
    write(worktree, ".studio/vite.config.ts", "export default {};\n")
    write(worktree, "node_modules/react/index.js", "x\n")
    write(worktree, "packages/ui/node_modules/dep/index.js", "x\n")
    write(worktree, "src/Real.tsx", "export const Real = 1;\n")
    result = worktree.auto_commit("one real file")
    assert result.files == ("src/Real.tsx",)
    nothing = worktree.auto_commit("only studio files", paths=[".studio/vite.config.ts"])
    assert not nothing.committed
    tracked = git(worktree.path, "ls-files").splitlines()
    assert not [p for p in tracked if p.startswith(".studio") or "node_modules" in p]
    assert porcelain(worktree) == []  # excluded, not just unstaged


def test_nothing_to_commit_is_a_clean_result(worktree: Worktree):
    head = worktree.head()
    result = worktree.auto_commit("nothing")
    assert (result.committed, result.hash, result.files) == (False, None, ())
    assert result.message == "nothing"
    write(worktree, "README.md", "# sample\n")  # rewritten with the same content
    assert not worktree.auto_commit("same content").committed
    assert worktree.head() == head


def test_auto_commit_with_paths_commits_only_those(worktree: Worktree):
    write(worktree, "src/A.tsx", "a\n")
    write(worktree, "src/deep/B.tsx", "b\n")
    write(worktree, "README.md", "# other\n")
    result = worktree.auto_commit("only src/deep and A", paths=["./src/deep", "src/A.tsx"])
    assert result.files == ("src/A.tsx", "src/deep/B.tsx")
    assert porcelain(worktree) == [" M README.md"]
    everything = worktree.auto_commit("the rest", paths=["."])
    assert everything.files == ("README.md",)


def test_auto_commit_leaves_other_staged_changes_staged(worktree: Worktree):
    write(worktree, "staged.txt", "someone staged this\n")
    git(worktree.path, "add", "staged.txt")
    write(worktree, "mine.txt", "mine\n")
    result = worktree.auto_commit("mine only", paths=["mine.txt"])
    assert result.files == ("mine.txt",)
    assert porcelain(worktree) == ["A  staged.txt"]


def test_commit_message_from_the_pattern_and_identity(mirror: Mirror, layout: StateLayout):
    identity = GitIdentity("Ada Designer", "ada@example.com")
    wt = mirror.add_worktree(OTHER, layout.worktree(OTHER), "main", identity=identity)
    message = format_commit_message(
        "AI: {description} - {timestamp}",
        description="Rounder button",
        timestamp="2026-11-25 14:30",
    )
    write(wt, "src/Button.tsx", "export const Button = 2;\n")
    result = wt.auto_commit(message)
    assert result.message == "AI: Rounder button - 2026-11-25 14:30"
    assert git(wt.path, "log", "-1", "--format=%B") == result.message
    assert git(wt.path, "log", "-1", "--format=%an <%ae>|%cn <%ce>") == (
        "Ada Designer <ada@example.com>|Ada Designer <ada@example.com>"
    )
    with pytest.raises(InvalidRequest):
        wt.auto_commit("   ")


def test_concurrent_auto_commits_lose_nothing(worktree: Worktree):
    start = threading.Barrier(8)

    def edit(n: int):
        write(worktree, f"src/File{n}.tsx", f"export const N = {n};\n")
        start.wait(timeout=30)
        return worktree.auto_commit(f"file {n}")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(edit, range(8)))
    committed = [r for r in results if r.committed]
    assert committed  # at least one; the others may have found their file already taken
    assert sorted(f for r in committed for f in r.files) == [f"src/File{n}.tsx" for n in range(8)]
    assert len(worktree.history(50)) == len(committed) + 1  # + the base
    assert porcelain(worktree) == []


def test_detached_head_is_refused_with_the_branch_to_check_out(worktree: Worktree):
    git(worktree.path, "checkout", "-q", "--detach")
    write(worktree, "x.txt", "x\n")
    with pytest.raises(GitError, match=f"detached HEAD; check out {worktree.branch}"):
        worktree.auto_commit("on a detached head")
    with pytest.raises(GitError, match="detached HEAD"):
        worktree.current_branch()
    with pytest.raises(GitError, match="detached HEAD"):
        worktree.rollback_steps(1)
    git(worktree.path, "checkout", "-q", worktree.branch)
    assert worktree.auto_commit("back on the branch").committed


# ---------------------------------------------------------------- named files (both paths)


@BOTH_COMMIT_PATHS
def test_named_files_new_modified_deleted_like_git(worktree: Worktree):
    write(worktree, "src/Card.tsx", "export const Card = 1;\n")
    write(worktree, "README.md", "# changed\n")
    (worktree.path / "src" / "Button.tsx").unlink()
    paths = ["src/Card.tsx", "./README.md", "src/Button.tsx"]
    result = worktree.auto_commit("edit three files\n\n", paths=paths)
    assert result.committed and result.hash == worktree.head()
    assert result.files == ("README.md", "src/Button.tsx", "src/Card.tsx")
    assert changed_files(worktree, result.hash) == {
        "M README.md",
        "D src/Button.tsx",
        "A src/Card.tsx",
    }
    assert porcelain(worktree) == []  # the index matches the worktree
    assert git(worktree.path, "log", "-1", "--format=%B") == "edit three files"
    assert git(worktree.path, "log", "-1", "--format=%an <%ae>|%cn <%ce>") == (
        "Component Studio <studio@localhost>|Component Studio <studio@localhost>"
    )
    assert git(worktree.path, "rev-parse", f"{result.hash}^") == worktree.base_commit
    assert git(worktree.path, "fsck", "--no-progress") == ""


@BOTH_COMMIT_PATHS
def test_named_files_unchanged_protected_or_ignored_commit_nothing(worktree: Worktree):
    head = worktree.head()
    write(worktree, "README.md", "# sample\n")  # the same content again
    write(worktree, ".studio/x.ts", "x\n")
    write(worktree, "node_modules/a/index.js", "x\n")
    (worktree.path / ".gitignore").write_text("*.log\n")
    git(worktree.path, "add", ".gitignore")
    git(worktree.path, "commit", "-q", "-m", "ignore logs")
    head = worktree.head()
    write(worktree, "debug.log", "noise\n")
    paths = ["README.md", ".studio/x.ts", "node_modules/a/index.js", "debug.log", "gone.txt"]
    result = worktree.auto_commit("nothing", paths=paths)
    assert (result.committed, result.hash, result.files) == (False, None, ())
    assert worktree.head() == head
    assert "debug.log" not in git(worktree.path, "ls-files")


@BOTH_COMMIT_PATHS
def test_named_files_leave_other_staged_changes_staged(worktree: Worktree):
    write(worktree, "staged.txt", "someone staged this\n")
    git(worktree.path, "add", "staged.txt")
    write(worktree, "mine.txt", "mine\n")
    write(worktree, "README.md", "# not named\n")
    result = worktree.auto_commit("mine only", paths=["mine.txt"])
    assert result.files == ("mine.txt",)
    assert porcelain(worktree) == [" M README.md", "A  staged.txt"]


@BOTH_COMMIT_PATHS
def test_named_executable_and_symlink_keep_their_modes(worktree: Worktree):
    script = write(worktree, "run.sh", "#!/bin/sh\n")
    script.chmod(0o755)
    (worktree.path / "link").symlink_to("run.sh")
    result = worktree.auto_commit("modes", paths=["run.sh", "link"])
    assert result.committed
    tree = git(worktree.path, "ls-tree", "HEAD", "run.sh", "link").splitlines()
    assert sorted(line.split()[0] for line in tree) == ["100755", "120000"]
    assert porcelain(worktree) == []


@BOTH_COMMIT_PATHS
def test_named_directory_or_removed_directory_goes_through_git(worktree: Worktree):
    write(worktree, "src/deep/B.tsx", "b\n")
    write(worktree, "src/deep/C.tsx", "c\n")
    first = worktree.auto_commit("a directory", paths=["src/deep"])
    assert first.files == ("src/deep/B.tsx", "src/deep/C.tsx")
    for name in ("B.tsx", "C.tsx"):
        (worktree.path / "src" / "deep" / name).unlink()
    (worktree.path / "src" / "deep").rmdir()
    gone = worktree.auto_commit("a directory removed", paths=["src/deep"])
    assert gone.files == ("src/deep/B.tsx", "src/deep/C.tsx")
    assert porcelain(worktree) == []


@BOTH_COMMIT_PATHS
def test_named_files_after_rollback_and_undo(worktree: Worktree):
    write(worktree, "src/A.tsx", "1\n")
    one = worktree.auto_commit("one", paths=["src/A.tsx"]).hash
    write(worktree, "src/A.tsx", "2\n")
    worktree.auto_commit("two", paths=["src/A.tsx"])
    worktree.rollback_to(str(one))  # the CLI rewrites index and branch meanwhile
    write(worktree, "src/A.tsx", "3\n")
    three = worktree.auto_commit("three", paths=["src/A.tsx"])
    assert three.committed and git(worktree.path, "rev-parse", f"{three.hash}^") == one
    assert porcelain(worktree) == []


@BOTH_COMMIT_PATHS
def test_named_files_on_a_fresh_lock_are_git_locked(worktree: Worktree):
    lock = index_lock(worktree)
    lock.write_text("")
    write(worktree, "src/After.tsx", "x\n")
    with pytest.raises(GitLocked):
        worktree.auto_commit("while another git runs", paths=["src/After.tsx"])
    lock.unlink()
    assert worktree.auto_commit("after it", paths=["src/After.tsx"]).committed


@BOTH_COMMIT_PATHS
def test_named_files_on_a_detached_head_are_refused(worktree: Worktree):
    git(worktree.path, "checkout", "-q", "--detach")
    write(worktree, "x.txt", "x\n")
    with pytest.raises(GitError, match="detached HEAD"):
        worktree.auto_commit("on a detached head", paths=["x.txt"])


def test_clean_message_is_gits_whitespace_cleanup():
    assert clean_message("\n\nsubject  \n\n\n\nbody\t\n\n") == "subject\n\nbody\n"
    assert clean_message("# kept\n") == "# kept\n"
    assert clean_message("  \n") == ""


# ---------------------------------------------------------------- history


def make_commits(wt: Worktree, count: int) -> list[str]:
    hashes = []
    for n in range(count):
        write(wt, "src/Button.tsx", f"export const Button = {n};\n")
        result = wt.auto_commit(f"edit {n}")
        assert result.hash is not None
        hashes.append(result.hash)
    return hashes


def test_history_is_newest_first_with_aware_timestamps(worktree: Worktree):
    hashes = make_commits(worktree, 3)
    history = worktree.history()
    assert [c.hash for c in history] == [*reversed(hashes), worktree.base_commit]
    assert [c.message for c in history[:3]] == ["edit 2", "edit 1", "edit 0"]
    assert [c.is_base for c in history] == [False, False, False, True]
    assert all(c.timestamp.utcoffset() is not None for c in history)
    assert [c.hash for c in worktree.history(2)] == list(reversed(hashes))[:2]
    assert worktree.history(0) == []


# ---------------------------------------------------------------- rollback


def test_rollback_to_a_commit(worktree: Worktree, mirror: Mirror):
    c1, _, c3 = make_commits(worktree, 3)
    assert worktree.rollback_to(c1[:10]) == c1
    assert worktree.head() == c1
    assert (worktree.path / "src/Button.tsx").read_text() == "export const Button = 0;\n"
    assert [c.hash for c in worktree.history()] == [c1, worktree.base_commit]
    assert refs(mirror.path, undo_ref_prefix(SB)) == {undo_ref_prefix(SB) + "1": c3}
    assert worktree.rollback_to(worktree.base_commit) == worktree.base_commit  # base included


def test_rollback_steps(worktree: Worktree):
    c2 = make_commits(worktree, 3)[1]
    assert worktree.rollback_steps(1) == c2
    assert worktree.rollback_steps(2) == worktree.base_commit
    assert (worktree.path / "src/Button.tsx").read_text().startswith("export function Button")


def assert_unchanged(wt: Worktree, head: str, mirror: Mirror):
    assert wt.head() == head
    assert (wt.path / "src/Button.tsx").read_text() == "dirty\n"
    assert (wt.path / "untracked.txt").exists()
    assert refs(mirror.path, "refs/studio/") == {}


@pytest.mark.parametrize("steps", [0, -1, 3, 99])
def test_rollback_steps_out_of_range_changes_nothing(
    worktree: Worktree, mirror: Mirror, steps: int
):
    make_commits(worktree, 2)
    head = worktree.head()
    write(worktree, "src/Button.tsx", "dirty\n")
    write(worktree, "untracked.txt", "u\n")
    with pytest.raises(RollbackOutOfRange, match="use 1 to 2"):
        worktree.rollback_steps(steps)
    assert_unchanged(worktree, head, mirror)


def test_rollback_beyond_base_foreign_or_unknown_changes_nothing(
    simple_repo: Path, layout: StateLayout
):
    older = git(simple_repo, "rev-parse", "main")
    (simple_repo / "README.md").write_text("# second\n")
    commit_all(simple_repo, "second origin commit")
    mirror = Mirror.ensure(layout.mirror("sample"), str(simple_repo))
    wt = mirror.add_worktree(SB, layout.worktree(SB), "main")
    other = mirror.add_worktree(OTHER, layout.worktree(OTHER), "main")
    write(other, "src/Other.tsx", "another sandbox's file\n")
    foreign = other.auto_commit("another sandbox").hash
    assert foreign is not None
    make_commits(wt, 1)
    head = wt.head()
    write(wt, "src/Button.tsx", "dirty\n")
    write(wt, "untracked.txt", "u\n")
    with pytest.raises(RollbackOutOfRange, match="older than the sandbox's base"):
        wt.rollback_to(older)
    with pytest.raises(CommitNotFound, match="not on design/studio-test01"):
        wt.rollback_to(foreign)
    with pytest.raises(CommitNotFound, match="does not exist"):
        wt.rollback_to("deadbeef" * 5)
    with pytest.raises(CommitNotFound, match="not a commit hash"):
        wt.rollback_to("HEAD~1")
    assert_unchanged(wt, head, mirror)


def test_undo_rollback_recovers_head_and_uncommitted_work(worktree: Worktree, mirror: Mirror):
    c1, c2 = make_commits(worktree, 2)
    write(worktree, "src/Button.tsx", "uncommitted edit\n")
    write(worktree, "src/New.tsx", "brand new, never committed\n")
    (worktree.path / "README.md").unlink()
    write(worktree, ".studio/keep.txt", "renderer state\n")

    worktree.rollback_to(c1)
    assert worktree.head() == c1
    assert porcelain(worktree) == []
    assert (worktree.path / ".studio/keep.txt").exists()  # ignored files are not touched

    assert worktree.undo_rollback() == c2
    assert worktree.head() == c2
    assert (worktree.path / "src/Button.tsx").read_text() == "uncommitted edit\n"
    assert (worktree.path / "src/New.tsx").read_text() == "brand new, never committed\n"
    assert not (worktree.path / "README.md").exists()
    assert porcelain(worktree) == [
        " D README.md",
        " M src/Button.tsx",
        "?? src/New.tsx",
    ]
    # The undo was recorded too: undoing again returns to the rolled-back state.
    assert worktree.undo_rollback() == c1
    assert porcelain(worktree) == []
    assert len(refs(mirror.path, undo_ref_prefix(SB))) == 3


def test_undo_without_rollback_is_invalid_state(worktree: Worktree):
    with pytest.raises(InvalidState, match="no rollback to undo"):
        worktree.undo_rollback()


# ---------------------------------------------------------------- locks


def index_lock(wt: Worktree) -> Path:
    return Path(git(wt.path, "rev-parse", "--absolute-git-dir")) / "index.lock"


def test_stale_index_lock_is_removed_and_the_commit_retried(worktree: Worktree, caplog):
    lock = index_lock(worktree)
    lock.write_text("")
    os.utime(lock, (1_000_000_000, 1_000_000_000))  # a crash long ago
    write(worktree, "src/After.tsx", "after a crash\n")
    with caplog.at_level(logging.WARNING, logger="studio.git"):
        assert worktree.auto_commit("after the crash").committed
    assert not lock.exists()
    assert "stale git lock" in caplog.text


def test_fresh_index_lock_is_git_locked(worktree: Worktree):
    lock = index_lock(worktree)
    lock.write_text("")
    write(worktree, "src/After.tsx", "x\n")
    with pytest.raises(GitLocked, match=r"index\.lock") as info:
        worktree.auto_commit("while another git runs")
    assert "delete" in str(info.value)
    assert lock.exists()


def test_old_lock_held_by_a_live_git_process_is_left_alone(worktree: Worktree):
    lock = index_lock(worktree)
    lock.write_text("")
    os.utime(lock, (1_000_000_000, 1_000_000_000))
    # A real, long-running git in the worktree: it waits on stdin for object names.
    holder = subprocess.Popen(
        ["git", "cat-file", "--batch"], cwd=worktree.path, stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        write(worktree, "src/After.tsx", "x\n")
        with pytest.raises(GitLocked):
            worktree.auto_commit("while git runs")
        assert lock.exists()
    finally:
        holder.communicate(b"", timeout=30)


def test_attach_recovers_a_crash_locked_worktree(worktree: Worktree, mirror: Mirror):
    commit = make_commits(worktree, 1)[0]
    admin = Path(git(worktree.path, "rev-parse", "--absolute-git-dir"))
    (admin / "locked").write_text("initializing")
    (worktree.path / "src" / "Button.tsx").unlink()  # as if the checkout never finished
    again = mirror.attach_worktree(SB, worktree.path)
    assert again.head() == commit
    assert (again.path / "src" / "Button.tsx").exists()
    assert porcelain(again) == []
    assert not (Path(git(again.path, "rev-parse", "--absolute-git-dir")) / "locked").exists()


def test_attach_removes_fresh_locks_a_dead_owner_left(worktree: Worktree, mirror: Mirror):
    make_commits(worktree, 1)
    index = index_lock(worktree)
    branch_lock = mirror.path / "refs" / "heads" / f"{worktree.branch}.lock"
    index.write_text("")  # as if the actor died inside an in-process commit, just now
    branch_lock.write_text("")
    again = mirror.attach_worktree(SB, worktree.path)
    assert not index.exists() and not branch_lock.exists()
    write(again, "src/After.tsx", "after\n")
    assert again.auto_commit("after the crash", paths=["src/After.tsx"]).committed
    assert porcelain(again) == []


def test_attach_a_missing_locked_worktree(worktree: Worktree, mirror: Mirror):
    admin = Path(git(worktree.path, "rev-parse", "--absolute-git-dir"))
    (admin / "locked").write_text("initializing")
    subprocess.run(["rm", "-rf", str(worktree.path)], check=True)
    again = mirror.attach_worktree(SB, worktree.path)
    assert (again.path / "README.md").exists()


# ---------------------------------------------------------------- attach


def test_attach_reuses_a_valid_worktree(worktree: Worktree, mirror: Mirror):
    write(worktree, "scratch.txt", "uncommitted\n")
    again = mirror.attach_worktree(SB, worktree.path)
    assert (again.path / "scratch.txt").read_text() == "uncommitted\n"
    assert again.base_commit == worktree.base_commit  # from the mirror's config


def test_attach_after_removal_uses_the_recorded_base(worktree: Worktree, mirror: Mirror):
    c1 = make_commits(worktree, 1)[0]
    mirror.remove_worktree(worktree.path)
    again = mirror.attach_worktree(SB, worktree.path)
    assert again.head() == c1 and again.base_commit == worktree.base_commit
    assert [c.hash for c in again.history()] == [c1, worktree.base_commit]


def test_attach_refuses_a_worktree_on_another_branch(worktree: Worktree, mirror: Mirror):
    git(worktree.path, "checkout", "-q", "-b", "elsewhere")
    with pytest.raises(GitError, match="not on design/studio-test01"):
        mirror.attach_worktree(SB, worktree.path)


def test_attach_refuses_a_non_empty_foreign_directory(mirror: Mirror, worktree: Worktree, tmp_path):
    mirror.remove_worktree(worktree.path)
    foreign = tmp_path / "occupied"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me\n")
    with pytest.raises(GitError, match="move it away"):
        mirror.attach_worktree(SB, foreign)
    assert (foreign / "precious.txt").exists()


def test_attach_without_any_branch_says_so(mirror: Mirror, layout: StateLayout):
    with pytest.raises(GitError, match="neither in"):
        mirror.attach_worktree(OTHER, layout.worktree(OTHER))


def test_attach_on_a_new_node_from_origin(simple_repo: Path, tmp_path: Path):
    node_a, node_b = StateLayout(tmp_path / "node-a"), StateLayout(tmp_path / "node-b")
    (simple_repo / "README.md").write_text("# origin advanced before the sandbox\n")
    commit_all(simple_repo, "second origin commit")
    mirror_a = Mirror.ensure(node_a.mirror("sample"), str(simple_repo))
    wt_a = mirror_a.add_worktree(SB, node_a.worktree(SB), "main")
    hashes = make_commits(wt_a, 2)
    wt_a.push()
    # Origin moves on after the sandbox started; the base must still be found.
    (simple_repo / "LATER.md").write_text("later\n")
    commit_all(simple_repo, "origin after the sandbox")

    mirror_b = Mirror.ensure(node_b.mirror("sample"), str(simple_repo))
    assert not mirror_b.branch_exists(wt_a.branch)
    wt_b = mirror_b.attach_worktree(SB, node_b.worktree(SB))
    assert wt_b.head() == hashes[-1]
    assert wt_b.base_commit == wt_a.base_commit
    assert [c.hash for c in wt_b.history()] == [*reversed(hashes), wt_a.base_commit]
    write(wt_b, "src/FromB.tsx", "b\n")
    assert wt_b.auto_commit("continued on node b").committed
    wt_b.push()

    # Back on node A (its worktree gone): it takes the newer pushed branch, not its old one.
    mirror_a.remove_worktree(wt_a.path)
    mirror_a.fetch()
    again = mirror_a.attach_worktree(SB, wt_a.path)
    assert again.head() == wt_b.head()


def test_attach_with_an_explicit_base_commit(worktree: Worktree, mirror: Mirror, layout):
    make_commits(worktree, 1)
    worktree.push()
    other_node = Mirror.ensure(layout.root.parent / "other" / "m.git", mirror.source)
    wt = other_node.attach_worktree(
        SB, layout.root.parent / "other" / "wt", worktree.base_commit[:12]
    )
    assert wt.base_commit == worktree.base_commit


# ---------------------------------------------------------------- push


def test_push_to_a_bare_remote_by_path_and_force_after_rollback(worktree: Worktree, tmp_path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    c1, c2 = make_commits(worktree, 2)
    worktree.push(str(remote))
    assert git(remote, "rev-parse", worktree.branch) == c2
    worktree.rollback_steps(1)
    with pytest.raises(GitRemoteError, match="force=True"):
        worktree.push(str(remote))
    worktree.push(str(remote), force=True)
    assert git(remote, "rev-parse", worktree.branch) == c1


def test_push_to_origin_makes_the_commit_durable(worktree: Worktree, mirror: Mirror, simple_repo):
    commit = make_commits(worktree, 1)[0]
    worktree.push()
    assert git(simple_repo, "rev-parse", worktree.branch) == commit
    assert mirror.resolve(f"refs/remotes/origin/{worktree.branch}") == commit


@pytest.mark.parametrize(
    "url",
    ["https://user:s3cr3tT0ken@127.0.0.1:9/o/r.git", "https://s3cr3tT0ken@127.0.0.1:9/o/r.git"],
)
def test_token_in_a_remote_url_never_reaches_errors_or_logs(worktree: Worktree, url: str, caplog):
    with caplog.at_level(logging.DEBUG), pytest.raises(GitRemoteError) as info:
        worktree.push(url)
    assert "s3cr3tT0ken" not in str(info.value)
    assert "s3cr3tT0ken" not in repr(info.value.details)
    assert "https://***@127.0.0.1:9/o/r.git" in str(info.value)
    assert "s3cr3tT0ken" not in caplog.text


def test_a_stalled_push_is_killed_after_the_network_timeout(
    simple_repo: Path, layout: StateLayout, stalled_remote: str
):
    mirror = Mirror.ensure(layout.mirror("sample"), str(simple_repo), network_timeout=1)
    wt = mirror.add_worktree(SB, layout.worktree(SB), "main")
    make_commits(wt, 1)
    with pytest.raises(GitRemoteError, match="git push did not finish within 1s") as info:
        wt.push(stalled_remote)
    assert info.value.details["remote"] == f"pushing {wt.branch} to {stalled_remote}"
    # Killed with its remote helper (the leak check fails the test otherwise); the
    # branch is still there to push once the remote answers.
    wt.push()
    assert git(simple_repo, "rev-parse", wt.branch) == wt.head()


def test_push_refuses_an_option_as_remote(worktree: Worktree):
    with pytest.raises(InvalidRequest):
        worktree.push("--mirror")


def test_old_lock_held_open_by_a_git_process_elsewhere_is_left_alone(
    worktree: Worktree, tmp_path: Path
):
    lock = index_lock(worktree)
    lock.write_text("")
    os.utime(lock, (1_000_000_000, 1_000_000_000))
    # A fake "git" (python under that name) holding the lock open from another directory.
    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    fake.symlink_to(sys.executable)
    holder = subprocess.Popen(
        [str(fake), "-c", f"f = open({str(lock)!r}); print('ready', flush=True); input()"],
        cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        write(worktree, "src/After.tsx", "x\n")
        with pytest.raises(GitLocked):
            worktree.auto_commit("while the lock is held")
        assert lock.exists()
    finally:
        holder.communicate("\n", timeout=30)


# ---------------------------------------------------------------- pure decisions


def test_redact_masks_credentials_in_urls():
    assert redact("fatal: https://x-access-token:ghp_abc@github.com/o/r.git") == (
        "fatal: https://***@github.com/o/r.git"
    )
    assert redact("push https://ghp_abc@github.com/o/r") == "push https://***@github.com/o/r"
    assert (
        redact("git@github.com:o/r.git and /local/path") == "git@github.com:o/r.git and /local/path"
    )


def test_parse_status_records():
    output = "\0".join(
        [
            "# branch.oid abc",
            "# branch.head design/studio-x",
            "1 .M N... 100644 100644 100644 aaa bbb src/with space.tsx",
            "u UU N... 100644 100644 100644 100644 aaa bbb ccc conflicted.txt",
            "? new file.txt",
            "",
        ]
    )
    assert parse_status(output) == (
        "design/studio-x",
        ["src/with space.tsx", "conflicted.txt", "new file.txt"],
    )
    assert parse_status("# branch.head (detached)\0")[0] is None


def test_parse_worktree_list():
    output = "\0".join(
        ["worktree /m.git", "bare", "", "worktree /w/a", "HEAD abc", "branch refs/heads/x", "",
         "worktree /w/b", "HEAD def", "detached", "locked initializing", "", ""]
    )  # fmt: skip
    bare, a, b = parse_worktree_list(output)
    assert bare.bare and bare.path == Path("/m.git")
    assert (a.path, a.head, a.branch, a.locked) == (Path("/w/a"), "abc", "refs/heads/x", False)
    assert b.detached and b.locked and b.branch is None


def test_select_paths_and_protection():
    changed = ["src/A.tsx", ".studio/x", "pkg/node_modules/y", "srcfile", "src/b/C.tsx"]
    assert select_paths(changed, None) == ["src/A.tsx", "srcfile", "src/b/C.tsx"]
    assert select_paths(changed, ["src"]) == ["src/A.tsx", "src/b/C.tsx"]
    assert select_paths(changed, ["./src/b/", ".studio"]) == ["src/b/C.tsx"]
    assert is_protected("node_modules/a") and is_protected(".studio") and not is_protected("studio")


def test_next_ref_index_and_ref_names():
    prefix = undo_ref_prefix(SB)
    assert next_ref_index([], prefix) == 1
    assert (
        next_ref_index([prefix + "2", prefix + "10", prefix + "x", "refs/other/99"], prefix) == 11
    )
    assert wip_ref_prefix(SB) == "refs/studio/sb_test01/wip/"


def test_classify_failure():
    assert classify_failure("fatal: Unable to create '/r/index.lock': File exists.") is GitLocked
    assert classify_failure("fatal: '/w' is a missing but locked worktree;") is GitLocked
    assert classify_failure("fatal: bad object refs/heads/x") is CorruptRepository
    assert classify_failure("fatal: a branch named 'x' already exists") is BranchExists
    assert classify_failure("error: pathspec 'x' did not match") is GitError


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("styled-system/", "/styled-system/"),
        ("src/styles/index.css", "/src/styles/index.css"),
        ("gen/a*b?[1].css", "/gen/a\\*b\\?\\[1].css"),
        ("!important.css", "/!important.css"),
        ("trailing ", "/trailing\\ "),
    ],
)
def test_an_exclude_pattern_matches_exactly_its_path(
    path: str, pattern: str, tmp_path: Path
) -> None:
    assert exclude_pattern(path) == pattern
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    made = repo / path / "made.css" if path.endswith("/") else repo / path
    made.parent.mkdir(parents=True, exist_ok=True)
    made.write_text("generated\n")
    # A neighbour the pattern must not catch: the same name one directory down.
    neighbour = repo / "sub" / path.rstrip("/")
    neighbour.parent.mkdir(parents=True, exist_ok=True)
    neighbour.write_text("mine\n")
    (repo / ".git" / "info" / "exclude").write_text(pattern + "\n")
    status = subprocess.run(
        ["git", "status", "--porcelain", "-z", "--untracked-files=all"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [entry[3:] for entry in status.split("\0") if entry] == [f"sub/{path.rstrip('/')}"]
