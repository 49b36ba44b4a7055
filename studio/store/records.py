"""The registry's records and how they map to and from SQLite rows.

Records are frozen pydantic models: they cross Ray process boundaries and go
into API responses. Timestamps are timezone-aware UTC datetimes in and out,
stored as fixed-width ISO-8601 text so that text order is time order.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from studio.config import ComponentStudioConfig
from studio.errors import InvalidRequest
from studio.messages import PrepareStep
from studio.naming import SANDBOX_ID_PATTERN
from studio.state import SandboxState

__all__ = [
    "SANDBOX_FIELDS",
    "SANDBOX_FIXED_FIELDS",
    "SANDBOX_UPDATABLE_FIELDS",
    "CommitRecord",
    "NodePreparation",
    "RepositoryAccess",
    "RepositoryPreparation",
    "RepositoryRecord",
    "SandboxRecord",
    "UserRecord",
    "commit_from_row",
    "commit_record",
    "from_text",
    "hash_token",
    "preparation_from_row",
    "repository_from_row",
    "sandbox_columns",
    "sandbox_from_row",
    "to_text",
    "user_from_row",
    "utcnow",
    "validation_message",
]

GITHUB_REPO_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9-]*)/[A-Za-z0-9._-]+$"
COMMIT_HASH_PATTERN = r"^[0-9a-f]{4,64}$"
USER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
GROUP_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def utcnow() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# Naive datetimes are refused rather than guessed: a local time read as UTC
# would shift every idle-timeout decision by the machine's offset.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_as_utc)]


def to_text(value: datetime) -> str:
    """``value`` as stored: ISO-8601 in UTC, always with microseconds."""
    # Fixed width (microseconds always present, +00:00) keeps text order == time order.
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def from_text(value: str) -> datetime:
    """A stored timestamp back as an aware UTC datetime."""
    return datetime.fromisoformat(value)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a bearer token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NodePreparation(_Record):
    """A repository's preparation on one node (docs/preparation.md)."""

    node_id: str = Field(min_length=1, description="Ray node id.")
    state: Literal["preparing", "ready", "failed"]
    step: PrepareStep | None = Field(
        None, description="The step under way, or the one that failed (none once ready)."
    )
    started_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    error: str | None = Field(None, description="Why it failed.")
    output: list[str] = Field(
        default_factory=list, description="The failing tool's last lines of output."
    )
    stories: int | None = Field(None, ge=0, description="Stories its story index lists.")


class RepositoryPreparation(_Record):
    """A repository's preparation over the nodes: one state, and each node's.

    ``failed`` when it failed on any node (the step, error and output are that
    node's), else ``preparing`` while any node prepares it (that node's step),
    ``ready`` once every node that began is done, and ``pending`` before any
    node began (a node prepares it on its first sandbox at the latest).
    """

    state: Literal["pending", "preparing", "ready", "failed"] = "pending"
    step: PrepareStep | None = None
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    error: str | None = None
    output: list[str] = Field(default_factory=list)
    stories: int | None = Field(None, ge=0)
    nodes: list[NodePreparation] = Field(default_factory=list)

    @classmethod
    def of(cls, nodes: Sequence[NodePreparation]) -> RepositoryPreparation:
        """The summary of ``nodes`` (see the class docstring)."""
        if not nodes:
            return cls()
        for state in ("failed", "preparing"):
            first = next((n for n in nodes if n.state == state), None)
            if first is not None:
                return cls(
                    state=first.state,
                    step=first.step,
                    started_at=first.started_at,
                    finished_at=first.finished_at,
                    error=first.error,
                    output=first.output,
                    nodes=list(nodes),
                )
        finished = [n.finished_at for n in nodes if n.finished_at is not None]
        return cls(
            state="ready",
            started_at=min(n.started_at for n in nodes),
            finished_at=max(finished) if finished else None,
            stories=next((n.stories for n in nodes if n.stories is not None), None),
            nodes=list(nodes),
        )


class RepositoryAccess(_Record):
    """Who may use a repository besides the admins (docs/security.md, repository access)."""

    users: list[Annotated[str, Field(pattern=USER_NAME_PATTERN)]] = Field(
        default_factory=list, max_length=1000, description="Names of users granted it."
    )
    groups: list[Annotated[str, Field(pattern=GROUP_NAME_PATTERN)]] = Field(
        default_factory=list, max_length=1000, description="Groups whose users are granted it."
    )

    def allows(self, user: str, groups: Sequence[str]) -> bool:
        """Whether ``user`` (a member of ``groups``) is granted it."""
        return user in self.users or any(group in self.groups for group in groups)


class RepositoryRecord(_Record):
    """A registered repository sandboxes can be created on."""

    id: int = Field(ge=1, description="Registry id, assigned on registration.")
    name: str = Field(min_length=1, max_length=200, description="Unique name.")
    source: str = Field(min_length=1, description="Local path or clone URL.")
    github: str | None = Field(
        None, pattern=GITHUB_REPO_PATTERN, description="'owner/name' on GitHub, for PRs."
    )
    default_branch: str = Field("main", min_length=1, description="Branch sandboxes start from.")
    config: dict[str, Any] = Field(
        default_factory=dict, description="ComponentStudioConfig overrides for its sandboxes."
    )
    created_at: UtcDatetime
    preparation: RepositoryPreparation = Field(
        default_factory=RepositoryPreparation,
        description="Its preparation on the nodes: mirror, install, deps, story index.",
    )
    ready_sandboxes: int = Field(
        0,
        ge=0,
        description="Sandboxes set up ahead of need, waiting for a create to take one "
        "(docs/performance.md, ready sandboxes).",
    )
    access: RepositoryAccess | None = Field(
        None,
        description="Who may use it besides the admins; null: every user. Shown to admins.",
    )


class SandboxRecord(_Record):
    """What the registry knows of one sandbox, live or ended."""

    id: str = Field(pattern=SANDBOX_ID_PATTERN.pattern)
    owner: str = Field(min_length=1, description="Name of the user who created it.")
    repository_id: int = Field(ge=1)
    state: SandboxState = SandboxState.PENDING
    node_id: str | None = Field(None, description="Ray node id it runs on, once placed.")
    port: int | None = Field(None, ge=1, le=65535, description="Vite port, while it has one.")
    branch: str = Field(min_length=1)
    base_commit: str | None = Field(None, description="Commit the branch was created from.")
    config: ComponentStudioConfig = Field(
        default_factory=ComponentStudioConfig, description="The effective configuration."
    )
    created_at: UtcDatetime = Field(default_factory=utcnow)
    updated_at: UtcDatetime = Field(default_factory=utcnow)
    last_activity: UtcDatetime = Field(default_factory=utcnow)
    restarts: int = Field(0, ge=0)
    error: str | None = Field(None, description="Why it failed, when it did.")
    pr_url: str | None = None
    pr_number: int | None = Field(None, ge=1)
    last_seq: int = Field(0, ge=0, description="Event seq a restarted actor resumes from.")


class CommitRecord(_Record):
    """One commit of a sandbox's branch; ``seq`` orders them, 1 is the oldest."""

    sandbox_id: str = Field(pattern=SANDBOX_ID_PATTERN.pattern)
    seq: int = Field(ge=1)
    hash: str = Field(pattern=COMMIT_HASH_PATTERN)
    message: str
    timestamp: UtcDatetime


class UserRecord(_Record):
    """A user of the service. ``token_hash`` is for the registry; keep it out of responses."""

    name: str = Field(pattern=USER_NAME_PATTERN)
    is_admin: bool = False
    token_hash: str = Field(pattern=r"^[0-9a-f]{64}$", repr=False)
    created_at: UtcDatetime
    groups: list[Annotated[str, Field(pattern=GROUP_NAME_PATTERN)]] = Field(
        default_factory=list, max_length=100, description="Groups repository grants may name."
    )


SANDBOX_FIELDS = tuple(SandboxRecord.model_fields)
# Identity and provenance never change; updated_at is the registry's to set.
SANDBOX_FIXED_FIELDS = frozenset({"id", "owner", "repository_id", "created_at", "updated_at"})
SANDBOX_UPDATABLE_FIELDS = frozenset(SANDBOX_FIELDS) - SANDBOX_FIXED_FIELDS
_SANDBOX_DATETIMES = ("created_at", "updated_at", "last_activity")


def validation_message(exc: ValidationError) -> str:
    """A one-line ``field: problem; ...`` summary of a pydantic error."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "value"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def sandbox_columns(record: SandboxRecord) -> dict[str, Any]:
    """The ``sandboxes`` row of ``record``, column name to SQLite value."""
    columns: dict[str, Any] = {name: getattr(record, name) for name in SANDBOX_FIELDS}
    columns["state"] = record.state.value
    columns["config"] = record.config.model_dump_json()
    for name in _SANDBOX_DATETIMES:
        columns[name] = to_text(columns[name])
    return columns


def sandbox_from_row(row: sqlite3.Row) -> SandboxRecord:
    """The record of a ``sandboxes`` row."""
    values = {name: row[name] for name in SANDBOX_FIELDS}
    values["config"] = json.loads(values["config"])
    for name in _SANDBOX_DATETIMES:
        values[name] = from_text(values[name])
    return SandboxRecord.model_validate(values)


def repository_from_row(
    row: sqlite3.Row,
    preparations: Sequence[NodePreparation] = (),
    *,
    ready: int = 0,
    access: RepositoryAccess | None = None,
) -> RepositoryRecord:
    """The record of a ``repositories`` row, with its ``preparations`` rows' summary
    and its count of ``ready`` sandboxes."""
    return RepositoryRecord(
        id=row["id"],
        name=row["name"],
        source=row["source"],
        github=row["github"],
        default_branch=row["default_branch"],
        config=json.loads(row["config"]),
        created_at=from_text(row["created_at"]),
        preparation=RepositoryPreparation.of(preparations),
        ready_sandboxes=ready,
        access=access,
    )


def preparation_from_row(row: sqlite3.Row) -> NodePreparation:
    """The record of a ``preparations`` row."""
    finished = row["finished_at"]
    return NodePreparation(
        node_id=row["node_id"],
        state=row["state"],
        step=row["step"],
        started_at=from_text(row["started_at"]),
        finished_at=None if finished is None else from_text(finished),
        error=row["error"],
        output=json.loads(row["output"]),
        stories=row["stories"],
    )


def commit_from_row(row: sqlite3.Row) -> CommitRecord:
    """The record of a ``commits`` row."""
    return CommitRecord(
        sandbox_id=row["sandbox_id"],
        seq=row["seq"],
        hash=row["hash"],
        message=row["message"],
        timestamp=from_text(row["timestamp"]),
    )


def user_from_row(row: sqlite3.Row) -> UserRecord:
    """The record of a ``users`` row."""
    return UserRecord(
        name=row["name"],
        is_admin=bool(row["is_admin"]),
        token_hash=row["token_hash"],
        created_at=from_text(row["created_at"]),
        groups=json.loads(row["groups"]),
    )


def commit_record(
    sandbox_id: str, seq: int, commit_hash: str, message: str, timestamp: datetime
) -> CommitRecord:
    """A validated commit record; bad input is :class:`InvalidRequest`."""
    try:
        return CommitRecord(
            sandbox_id=sandbox_id, seq=seq, hash=commit_hash, message=message, timestamp=timestamp
        )
    except ValidationError as exc:
        raise InvalidRequest(f"invalid commit {commit_hash!r}: {validation_message(exc)}") from exc
