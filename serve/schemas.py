"""Request and response bodies of the HTTP API.

Field names are the API contract's (docs/api.md) (``sandbox_id``,
``renderer_url``, ``git_commits``, ``commit_hash``, ``current_hash``,
``pr_url``...); the extra fields a client of such a service expects come
after them. Requests forbid unknown fields, except the create request, whose
extra fields are the sandbox's configuration overrides.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from studio.models import CommitInfo, SandboxInfo, SetupCommandReport
from studio.render import WaitFor
from studio.state import SandboxState
from studio.store import RepositoryRecord

__all__ = [
    "CommitEntry",
    "CreateSandboxRequest",
    "CreateSandboxResponse",
    "CreateUserRequest",
    "CreatedUser",
    "FinalizeRequest",
    "HealthResponse",
    "LogsResponse",
    "ReadinessResponse",
    "RegisterRepositoryRequest",
    "RollbackRequest",
    "SandboxStatus",
]

_HASH = r"^[0-9a-fA-F]{4,64}$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _encodable(cls, value: Any) -> Any:
        # JSON can carry a lone surrogate ("\ud800") or a NUL ("\u0000"). Pydantic
        # refuses a lone surrogate in a plain ``str`` field but lets it through a
        # ``str | None`` one, and lets a NUL through both; no path, git ref or
        # command line can hold either (the OS stops a path at a NUL), so they are
        # refused here (422) instead of failing deep inside (a 500).
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("not valid Unicode (it holds a lone surrogate)") from None
            if "\x00" in value:
                raise ValueError("holds a NUL character (\\u0000)")
        return value


class CreateSandboxRequest(BaseModel):
    """``{"type": "component-studio", "repository_id": 123, ...config overrides}``."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [{"type": "component-studio", "repository_id": 1}],
            "additionalProperties": True,
        },
    )

    type: Literal["component-studio"] = Field(
        "component-studio", description="The sandbox type; only component-studio exists."
    )
    repository_id: int = Field(ge=1, le=2**63 - 1, description="Id of a registered repository.")

    @property
    def overrides(self) -> dict[str, Any]:
        """The extra fields: ComponentStudioConfig overrides (validated by the manager)."""
        return dict(self.model_extra or {})


class CreateSandboxResponse(BaseModel):
    """The create answer (201)."""

    sandbox_id: str
    renderer_url: str | None
    websocket_url: str
    execute_url: str = Field(
        description="Where to POST the sandbox's edits: the answering replica's own "
        "listener (no proxy between), or the API's port."
    )
    branch: str
    status: SandboxState


class CommitEntry(BaseModel):
    """One of ``git_commits``: hash, message, timestamp."""

    hash: str
    message: str
    timestamp: datetime

    @classmethod
    def of(cls, commit: CommitInfo) -> CommitEntry:
        """From the sandbox's commit."""
        return cls(hash=commit.hash, message=commit.message, timestamp=commit.timestamp)


class SandboxStatus(BaseModel):
    """The status answer: the contract's fields, then the URLs, branch, restarts and node."""

    id: str
    status: SandboxState
    renderer_url: str | None
    git_commits: list[CommitEntry]
    last_activity: datetime
    websocket_url: str | None
    execute_url: str | None = None
    branch: str
    restarts: int
    node: str | None
    repository_id: int | None = None
    error: str | None = None
    pr_url: str | None = None
    pr_number: int | None = None
    setup: SetupCommandReport | None = Field(
        None,
        description="How the repository's setup_command went in this sandbox (status, exit "
        "code, seconds, the tool's last lines); absent without one or once it has ended.",
    )

    @classmethod
    def of(
        cls,
        info: SandboxInfo,
        websocket_url: str | None,
        execute_url: str | None = None,
        renderer_url: str | None = None,
    ) -> SandboxStatus:
        """From the manager's view of the sandbox; ``renderer_url`` is the proxy's, with a
        ticket for the caller (the sandbox's own is where the proxy reaches Vite)."""
        return cls(
            id=info.id,
            status=info.status,
            renderer_url=renderer_url,
            git_commits=[CommitEntry.of(c) for c in info.git_commits],
            last_activity=info.last_activity,
            websocket_url=websocket_url,
            execute_url=execute_url,
            branch=info.branch,
            restarts=info.restarts,
            node=info.node,
            repository_id=info.repository_id,
            error=info.error,
            pr_url=info.pr_url,
            pr_number=info.pr_number,
            setup=info.setup,
        )


class RollbackRequest(_Request):
    """Exactly one of ``commit_hash``, ``steps`` or ``undo: true``."""

    commit_hash: str | None = Field(None, pattern=_HASH, description="Commit to move back to.")
    steps: int | None = Field(None, ge=1, le=10_000, description="Commits to step back.")
    undo: bool = Field(False, description="Undo the last rollback.")
    wait: WaitFor = Field(
        "commit",
        description='"commit" answers once the branch moved; "render" once the stories the '
        'changed files touch re-rendered, with their verdict in `render`; "screenshot" as '
        '"render", each rendered story with the `screenshot_url` of its picture.',
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> RollbackRequest:
        given = [self.commit_hash is not None, self.steps is not None, self.undo]
        if sum(given) != 1:
            raise ValueError('give exactly one of commit_hash, steps or "undo": true')
        return self


class FinalizeRequest(_Request):
    """The pull request's title and description, and whether it shows pictures."""

    title: str = Field(min_length=1, max_length=256)
    description: str = Field("", max_length=65_536)
    images: bool = Field(
        True,
        description="Show the stories the change touches before and after, with their "
        "render status, in the pull request body (pictures pushed to "
        "studio-screenshots/<sandbox id>).",
    )


class RegisterRepositoryRequest(_Request):
    """A local repository (``path``) or a GitHub one (``github`` + ``clone_url``)."""

    name: str = Field(min_length=1, max_length=200)
    path: str | None = Field(None, min_length=1, description="Local git repository path.")
    github: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", description="'owner/name'."
    )
    clone_url: str | None = Field(None, min_length=1)
    default_branch: str | None = Field(None, min_length=1)
    config: dict[str, Any] | None = Field(None, description="Config overrides for its sandboxes.")
    package_dir: str | None = Field(
        None,
        description="The package to render inside a monorepo, relative to the repository root "
        "(like 'packages/ui'); it must exist on the base branch. Dependencies are installed at "
        "the workspace root (the lockfile's directory).",
    )
    install_scripts: bool | None = Field(
        None,
        description="Let dependencies' install scripts run (off by default: only those the "
        "repository's own configuration allows, such as pnpm's onlyBuiltDependencies).",
    )

    setup_command: str | list[str] | None = Field(
        None,
        description="The repository's own setup step (codegen, a CSS build) that its stories "
        "need, run in each sandbox before its Vite starts, inside the sandbox's OS boundary: "
        "a list of arguments or one string split as a shell would (no shell runs it), like "
        "'node_modules/.bin/panda codegen' or 'npm run build:css'.",
    )
    setup_timeout: float | None = Field(
        None, description="Seconds the setup command may run (default 300)."
    )

    def sandbox_config(self) -> dict[str, Any] | None:
        """``config`` with ``package_dir``, ``install_scripts`` and the setup command folded in."""
        fields = {
            name: value
            for name, value in (
                ("package_dir", self.package_dir),
                ("install_scripts", self.install_scripts),
                ("setup_command", self.setup_command),
                ("setup_timeout", self.setup_timeout),
            )
            if value is not None
        }
        if not fields:
            return self.config
        return {**(self.config or {}), **fields}

    @model_validator(mode="after")
    def _one_source(self) -> RegisterRepositoryRequest:
        if (self.path is None) == (self.github is None and self.clone_url is None):
            raise ValueError('give either "path", or "github" (with "clone_url")')
        return self


class CreateUserRequest(_Request):
    """A new user; the answer carries its token, once."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    is_admin: bool = False
    groups: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Groups a repository's access may grant (letters, digits, . _ -).",
    )


class UserGroupsRequest(_Request):
    """A user's groups, replaced whole."""

    groups: list[str] = Field(max_length=100)


class RepositoryAccessRequest(_Request):
    """Who may use a repository besides the admins: these users and the users of these
    groups. Replaces the grants whole; DELETE on the same path opens it to every user."""

    users: list[str] = Field(default_factory=list, max_length=1000)
    groups: list[str] = Field(default_factory=list, max_length=1000)


class RepositoryView(RepositoryRecord):
    """A repository as the API shows it: ``source`` (a server path or clone URL) and
    ``access`` only to admins."""

    source: str | None = Field(  # type: ignore[assignment]
        None, description="Local path or clone URL; shown to admins only."
    )

    @classmethod
    def of(cls, record: RepositoryRecord, *, is_admin: bool) -> RepositoryView:
        shown = record.model_dump()
        if not is_admin:
            shown.update(source=None, access=None)
        return cls.model_validate(shown)


class CreatedUser(BaseModel):
    """The new user and its bearer token (shown this once only)."""

    name: str
    is_admin: bool
    created_at: datetime | None
    groups: list[str] = Field(default_factory=list)
    token: str


class LogsResponse(BaseModel):
    """The tail of the sandbox's Vite output."""

    lines: list[str]


class ReadinessResponse(BaseModel):
    """``/readyz``: whether the service takes work (200) or not yet (503), and what it waits for."""

    status: Literal["ready", "not_ready"]
    manager: Literal["ok", "unavailable"]
    repositories: dict[str, Literal["registered", "missing", "unknown"]] = Field(
        default_factory=dict,
        description="Each repository the service needs registered, and whether it is.",
    )
    waiting_for: list[str] = Field(
        default_factory=list, description="What is not ready yet, in words; empty when ready."
    )

    @classmethod
    def of(cls, needed: Sequence[str], registered: Collection[str] | None) -> ReadinessResponse:
        """Readiness given the repositories ``needed`` and those ``registered`` (None: the
        manager did not answer)."""
        if registered is None:
            return cls(
                status="not_ready",
                manager="unavailable",
                repositories=dict.fromkeys(needed, "unknown"),
                waiting_for=["the manager does not answer"],
            )
        missing = [name for name in needed if name not in registered]
        return cls(
            status="not_ready" if missing else "ready",
            manager="ok",
            repositories={n: "missing" if n in missing else "registered" for n in needed},
            waiting_for=[f"repository {name!r} is not registered" for name in missing],
        )


class HealthResponse(BaseModel):
    """``/healthz``: this replica answers; whether the manager does."""

    status: Literal["ok"] = "ok"
    manager: Literal["ok", "unavailable"]
