"""The per-sandbox disk quota: what it counts, and a real sandbox's edits held to it."""

# The fixtures are imported from test_sandbox_fixtures, then requested by name.
# ruff: noqa: F811

from __future__ import annotations

from pathlib import Path

import pytest

from studio.commands import command_adapter
from studio.errors import QuotaExceeded
from studio.sandbox.disk import DiskQuota, tree_bytes
from tests.studio.test_sandbox_fixtures import (  # noqa: F401 (fixtures)
    SandboxFactory,
    install_cache,
    make_sandbox,
    origin,
    settings,
)
from tests.support.gitrepo import git


def test_the_count_is_the_users_files_only(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.tsx").write_bytes(b"x" * 100)
    (tmp_path / "README.md").write_bytes(b"x" * 10)
    for skipped in (".studio", "node_modules", "src/node_modules"):
        (tmp_path / skipped).mkdir(parents=True)
        (tmp_path / skipped / "big.js").write_bytes(b"x" * 10_000)
    (tmp_path / ".git").write_text("gitdir: /elsewhere\n")
    (tmp_path / "link").symlink_to(tmp_path / "src" / "a.tsx")
    assert tree_bytes(tmp_path) == 110


def test_a_change_past_the_quota_is_refused_and_shrinking_is_not(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 60)
    quota = DiskQuota(100)
    assert quota.plan(tmp_path, [(tmp_path / "b", 40)]) == 100
    with pytest.raises(QuotaExceeded, match="sandbox_disk_quota_bytes") as refused:
        quota.plan(tmp_path, [(tmp_path / "b", 41)])
    assert refused.value.details == {
        "quota": "sandbox_disk_quota_bytes",
        "limit": 100,
        "size": 101,
    }
    # Rewriting a file counts the difference; a tree already past the quota may shrink.
    assert quota.plan(tmp_path, [(tmp_path / "a", 100)]) == 100
    quota.settle(150)
    assert quota.plan(tmp_path, [(tmp_path / "a", 0)]) == 90
    assert DiskQuota(0).plan(tmp_path, [(tmp_path / "b", 10**12)]) is None


def execute(sandbox, **command):  # type: ignore[no-untyped-def]
    return sandbox.on_execute(command_adapter.validate_python(command))


def test_a_sandbox_refuses_a_write_past_its_disk_quota(
    make_sandbox: SandboxFactory, settings
) -> None:  # type: ignore[no-untyped-def]
    probe = make_sandbox("sb_diskprobe")
    probe.on_setup()
    base = tree_bytes(probe.worktree_path)
    probe.on_teardown()
    quota = base + 1000
    sandbox = make_sandbox(
        "sb_disk0001", node_settings=settings.model_copy(update={"sandbox_disk_quota_bytes": quota})
    )
    sandbox.on_setup()
    assert sandbox.disk.used == base
    first = execute(sandbox, command="write_file", file_path="src/notes/a.txt", content="a" * 600)
    with pytest.raises(QuotaExceeded, match=f"quota is {quota} bytes"):
        execute(sandbox, command="write_file", file_path="src/notes/b.txt", content="b" * 600)
    assert not (sandbox.worktree_path / "src/notes/b.txt").exists()
    head = git(sandbox.worktree_path, "rev-parse", "HEAD")
    assert head == first.commit_hash  # nothing committed
    # Room made by a delete (or a rollback) is room again.
    execute(sandbox, command="delete_file", file_path="src/notes/a.txt")
    execute(sandbox, command="write_file", file_path="src/notes/b.txt", content="b" * 600)
    sandbox.rollback(steps=2)  # back to the commit with a.txt
    assert sandbox.disk.used == base + 600
    sandbox.rollback(steps=1)
    assert sandbox.disk.used == base
    execute(
        sandbox,
        command="write_files",
        files=[
            {"file_path": "src/notes/c.txt", "content": "c" * 500},
            {"file_path": "src/notes/d.txt", "content": "d" * 500},
        ],
    )
    with pytest.raises(QuotaExceeded):
        execute(sandbox, command="write_file", file_path="src/notes/e.txt", content="e")
