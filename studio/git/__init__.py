"""The git layer: a node-local bare mirror per repository, one worktree per sandbox.

::

    <state>/mirrors/<repo>.git      bare clone of the source. The source's branches are
                                    refs/remotes/origin/*; sandbox branches are refs/heads/*
    <state>/mirrors/<repo>.git.lock file lock for clone, fetch and worktree changes
    <state>/worktrees/<sandbox_id>  `git worktree add -b design/studio-<id>` off the mirror
    refs/studio/<id>/undo/<n>       the head before the n-th rollback (kept, never deleted)
    refs/studio/<id>/wip/<n>        uncommitted work at that moment, as a commit on that head
    branch.<branch>.studioBase      (mirror config) the commit the sandbox started from

- ``mirror``: :class:`Mirror`, the node's bare clone of a repository;
- ``worktree``: :class:`Worktree`, a sandbox's checkout (commits, history, rollback, push);
- ``inprocess``: commits of named files made in this process with pygit2 (the
  execute path, unless ``inprocess_commits`` is off) and pushes to a local origin;
- ``runner``: :class:`GitRunner`, git run through GitPython, and the lock handling;
- ``command``: the pure decisions (parsing, naming, which error a failure is).
"""

from studio.git.command import (
    LOG_FORMAT,
    base_config_key,
    classify_failure,
    clean_message,
    identity_env,
    is_protected,
    lock_path,
    next_ref_index,
    parse_log,
    parse_status,
    parse_worktree_list,
    select_paths,
    wip_ref_prefix,
)
from studio.git.inprocess import (
    InProcessCommitter,
    push_to_local_origin,
)
from studio.git.mirror import (
    DEFAULT_IDENTITY,
    EXCLUDE_PATTERNS,
    STALE_LOCK_SECONDS,
    Commit,
    CommitResult,
    GitIdentity,
    Mirror,
    Worktree,
    WorktreeEntry,
    local_remote_path,
    redact,
    source_head,
)
from studio.git.runner import (
    NETWORK_TIMEOUT_SECONDS,
    GitRunner,
    file_lock,
    git_status,
    remove_orphaned_locks,
)

__all__ = [
    "DEFAULT_IDENTITY",
    "EXCLUDE_PATTERNS",
    "LOG_FORMAT",
    "NETWORK_TIMEOUT_SECONDS",
    "STALE_LOCK_SECONDS",
    "Commit",
    "CommitResult",
    "GitIdentity",
    "GitRunner",
    "InProcessCommitter",
    "Mirror",
    "Worktree",
    "WorktreeEntry",
    "base_config_key",
    "classify_failure",
    "clean_message",
    "file_lock",
    "git_status",
    "identity_env",
    "is_protected",
    "local_remote_path",
    "lock_path",
    "next_ref_index",
    "parse_log",
    "parse_status",
    "parse_worktree_list",
    "push_to_local_origin",
    "redact",
    "remove_orphaned_locks",
    "select_paths",
    "source_head",
    "wip_ref_prefix",
]
