"""The registry: repositories, users, sandboxes and commits in SQLite."""

from studio.store.migrations import (
    MIGRATIONS,
    Migration,
    apply_migrations,
    schema_version,
)
from studio.store.records import (
    SANDBOX_FIELDS,
    SANDBOX_FIXED_FIELDS,
    commit_from_row,
    commit_record,
    from_text,
    repository_from_row,
    sandbox_columns,
    sandbox_from_row,
    to_text,
    user_from_row,
    validation_message,
)
from studio.store.registry import (
    SANDBOX_UPDATABLE_FIELDS,
    SQLITE_MAX_INTEGER,
    CommitRecord,
    Registry,
    RepositoryRecord,
    SandboxRecord,
    UserRecord,
    hash_token,
    utcnow,
)

__all__ = [
    "MIGRATIONS",
    "SANDBOX_FIELDS",
    "SANDBOX_FIXED_FIELDS",
    "SANDBOX_UPDATABLE_FIELDS",
    "SQLITE_MAX_INTEGER",
    "CommitRecord",
    "Migration",
    "Registry",
    "RepositoryRecord",
    "SandboxRecord",
    "UserRecord",
    "apply_migrations",
    "commit_from_row",
    "commit_record",
    "from_text",
    "hash_token",
    "repository_from_row",
    "sandbox_columns",
    "sandbox_from_row",
    "schema_version",
    "to_text",
    "user_from_row",
    "utcnow",
    "validation_message",
]
