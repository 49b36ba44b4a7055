"""A sandbox: its worktree, its Vite, its edits, its lifecycle."""

from studio.sandbox.files import (
    FSYNC_EDITS,
    FileChange,
    commit_message,
    read_command,
)
from studio.sandbox.lifecycle import (
    SandboxLifecycle,
)
from studio.sandbox.prepare import (
    SEED_TIMEOUT,
    Prepared,
    prepare_repository,
    prepare_repository_steps,
    prepare_template,
)
from studio.sandbox.push import (
    BATCH_SECONDS,
    BranchPusher,
)
from studio.sandbox.sandbox import (
    FLUSH_TIMEOUT,
    ComponentStudioSandbox,
)
from studio.sandbox.vite_supervisor import (
    SandboxStates,
    ViteOptions,
    ViteSupervisor,
    fetch_components,
)

__all__ = [
    "BATCH_SECONDS",
    "FLUSH_TIMEOUT",
    "FSYNC_EDITS",
    "SEED_TIMEOUT",
    "BranchPusher",
    "ComponentStudioSandbox",
    "FileChange",
    "Prepared",
    "SandboxLifecycle",
    "SandboxStates",
    "ViteOptions",
    "ViteSupervisor",
    "commit_message",
    "fetch_components",
    "prepare_repository",
    "prepare_repository_steps",
    "prepare_template",
    "read_command",
]
