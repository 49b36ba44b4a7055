"""What the layers hand each other: the sandbox's answers, as plain models.

These cross Ray process boundaries (sandbox actor -> manager -> Serve) and end
up, field for field, in API responses, so they are pydantic models with only
JSON-friendly values. The registry's own records live in ``studio.store``;
these are the live views.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from studio.render.models import RenderVerdict
from studio.state import SandboxState

__all__ = [
    "CommitInfo",
    "FinalizeResult",
    "MonitorReport",
    "RepositorySource",
    "RollbackResult",
    "SandboxInfo",
    "SetupCommandReport",
    "UserInfo",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class RepositorySource(_Model):
    """What a sandbox needs to know of its repository."""

    name: str = Field(description="The repository's registered name.")
    source: str = Field(description="Local path or clone URL the node mirrors.")
    default_branch: str = Field("main", description="Branch sandboxes start from.")
    github: str | None = Field(None, description="'owner/name' on GitHub, for pull requests.")


class CommitInfo(_Model):
    """One commit of a sandbox's branch, as the API's ``git_commits`` lists it."""

    hash: str
    message: str
    timestamp: datetime
    is_base: bool = Field(False, description="The commit the sandbox started from.")


class SetupCommandReport(_Model):
    """How the repository's setup command went in this sandbox (``setup_command``)."""

    command: list[str] = Field(description="The argv that ran, in the package directory.")
    status: Literal["ok", "failed", "timeout"] = Field(
        description="ok: exited 0. failed: exited non-zero or could not start. timeout: "
        "killed after setup_timeout. The sandbox starts either way; what the command did "
        "not make shows as the stories' errors."
    )
    exit_code: int | None = Field(None, description="Its exit code (None: it did not exit).")
    seconds: float = Field(ge=0, description="How long it ran.")
    output: list[str] = Field(
        default_factory=list, description="The last lines of its stdout and stderr."
    )
    outputs: list[str] = Field(
        default_factory=list,
        description="The untracked paths it made that the repository's .gitignore does not "
        "cover: kept out of commits and rollbacks by the mirror's info/exclude.",
    )
    reused: bool = Field(
        False,
        description="True: not run here; what it made in an earlier sandbox of the same "
        "base commit on this node was copied in (output and outputs are that run's).",
    )


class SandboxInfo(_Model):
    """A sandbox's status as the API shows it."""

    id: str
    owner: str
    repository_id: int | None = None
    status: SandboxState
    renderer_url: str | None = None
    websocket_url: str | None = None
    branch: str
    base_commit: str | None = None
    git_commits: list[CommitInfo] = Field(default_factory=list)
    last_activity: datetime
    restarts: int = 0
    node: str | None = None
    port: int | None = None
    error: str | None = None
    last_seq: int = 0
    pr_url: str | None = None
    pr_number: int | None = None
    setup: SetupCommandReport | None = Field(
        None, description="The repository's setup command in this sandbox; None without one."
    )


class MonitorReport(_Model):
    """One on_monitor pass: what it saw and what it did."""

    state: SandboxState
    healthy: bool
    restarted: bool = False
    idle_seconds: float
    idle_expired: bool = Field(
        False, description="Inactive past timeout_hours: the caller tears it down."
    )
    error: str | None = None


class RollbackResult(_Model):
    """The API's rollback response (``success``, ``current_hash``) plus the head it left."""

    success: bool
    current_hash: str
    previous_hash: str
    pushed: bool | None = None
    """With ``durable_commits``: whether the moved branch is on the origin too."""
    render: RenderVerdict | None = None
    """With ``"wait": "render"``: what the commit the branch is now on rendered."""


class FinalizeResult(_Model):
    """The API's finalize response: ``pr_url``/``pr_number`` are None without a forge."""

    pr_url: str | None
    pr_number: int | None
    branch: str
    pushed_to: str
    message: str
    commits: int
    screenshots_ref: str | None = None
    """The ref holding the pull request's before/after pictures (None: none were pushed)."""
    screenshots_commit: str | None = None
    """The orphan commit on ``screenshots_ref`` the body's picture links name."""


class UserInfo(_Model):
    """A user as the API shows it (never with a token or its hash)."""

    name: str
    is_admin: bool = False
    created_at: datetime | None = None
    groups: list[str] = Field(
        default_factory=list, description="Groups a repository's access may grant."
    )
