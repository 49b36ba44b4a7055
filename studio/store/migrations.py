"""The registry's schema, as an ordered list of migrations.

The schema version lives in ``PRAGMA user_version``: version N means the first
N migrations have been applied. Each migration runs in its own transaction
together with the ``user_version`` bump, so a database is always at a whole
version (SQLite DDL is transactional). Migrations are append-only: a released
one is never edited, a change is a new migration, so a registry written by an
older version of the service upgrades in place when the new one opens it.

- v1: repositories and sandboxes.
- v2: sandbox node, restart count and event seq; commits; users and tokens.
- v3: each repository's preparation on each node (state, step, times, error, output).
- v4: repository access (restricted flag, grants to users and groups); user groups.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from studio.errors import StudioError

__all__ = ["MIGRATIONS", "Migration", "apply_migrations", "schema_version"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """One step of the schema: the SQL statements that take it to ``version``."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "repositories and sandboxes",
        (
            """
            CREATE TABLE repositories (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL UNIQUE,
                source TEXT NOT NULL,
                github TEXT,
                default_branch TEXT NOT NULL DEFAULT 'main',
                config TEXT NOT NULL DEFAULT '{}',
                created_at TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE sandboxes (
                id TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                repository_id INTEGER NOT NULL REFERENCES repositories(id),
                state TEXT NOT NULL,
                port INTEGER,
                branch TEXT NOT NULL,
                base_commit TEXT,
                config TEXT NOT NULL DEFAULT '{}',
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                last_activity TEXT NOT NULL,
                error TEXT,
                pr_url TEXT,
                pr_number INTEGER
            )
            """,
            "CREATE INDEX sandboxes_owner ON sandboxes(owner)",
        ),
    ),
    Migration(
        2,
        "sandbox node/restarts/last_seq, commits, users",
        (
            # Sandboxes from v1 predate multi-node scheduling: no node is known
            # for them, and they have not restarted or published anything yet.
            "ALTER TABLE sandboxes ADD COLUMN node_id TEXT",
            "ALTER TABLE sandboxes ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE sandboxes ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0",
            "CREATE INDEX sandboxes_state ON sandboxes(state)",
            "CREATE INDEX sandboxes_node ON sandboxes(node_id)",
            """
            CREATE TABLE commits (
                sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
                seq INTEGER NOT NULL,
                hash TEXT NOT NULL,
                message TEXT NOT NULL,
                timestamp TEXT NOT NULL,
                PRIMARY KEY (sandbox_id, seq),
                UNIQUE (sandbox_id, hash)
            )
            """,
            """
            CREATE TABLE users (
                name TEXT PRIMARY KEY,
                is_admin INTEGER NOT NULL DEFAULT 0,
                token_hash TEXT NOT NULL UNIQUE,
                created_at TEXT NOT NULL
            )
            """,
        ),
    ),
    Migration(
        3,
        "repository preparations per node",
        (
            # A table of its own, not columns of repositories: one row per node, and
            # registrations (other columns of repositories) change independently.
            """
            CREATE TABLE preparations (
                repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
                node_id TEXT NOT NULL,
                state TEXT NOT NULL,
                step TEXT,
                started_at TEXT NOT NULL,
                finished_at TEXT,
                error TEXT,
                output TEXT NOT NULL DEFAULT '[]',
                stories INTEGER,
                PRIMARY KEY (repository_id, node_id)
            )
            """,
        ),
    ),
    Migration(
        4,
        "repository access grants; user groups",
        (
            # 0: every user may use the repository (as before grants existed); 1: only
            # admins and the users and groups of its grants.
            "ALTER TABLE repositories ADD COLUMN restricted INTEGER NOT NULL DEFAULT 0",
            """
            CREATE TABLE repository_grants (
                repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
                kind TEXT NOT NULL CHECK (kind IN ('user', 'group')),
                name TEXT NOT NULL,
                PRIMARY KEY (repository_id, kind, name)
            )
            """,
            "ALTER TABLE users ADD COLUMN groups TEXT NOT NULL DEFAULT '[]'",
        ),
    ),
)


def schema_version(conn: sqlite3.Connection) -> int:
    """The version the database at ``conn`` is at (0 for a new, empty one)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    return int(version)


def apply_migrations(
    conn: sqlite3.Connection,
    migrations: Sequence[Migration] = MIGRATIONS,
    *,
    up_to: int | None = None,
) -> int:
    """Bring the database at ``conn`` to version ``up_to`` (default: the last one).

    ``conn`` must be in autocommit mode (``isolation_level=None``): each
    migration opens and ends its own transaction. A failing migration is rolled
    back whole and its error re-raised; the database stays at the version
    before it. A database newer than ``migrations`` knows is refused, since
    this code would misread it. Returns the resulting version.
    """
    for index, migration in enumerate(migrations, start=1):
        if migration.version != index:
            raise ValueError(f"migration {migration.version} is listed at position {index}")
    latest = len(migrations)
    target = latest if up_to is None else up_to
    if not 0 <= target <= latest:
        raise ValueError(f"cannot migrate to version {target}: versions are 0-{latest}")
    current = schema_version(conn)
    if current > latest:
        raise StudioError(
            f"the registry is at schema version {current}, newer than this Component "
            f"Studio knows ({latest}); upgrade Component Studio or use another state_dir",
            version=current,
            supported=latest,
        )
    for migration in migrations[:target]:
        # IMMEDIATE takes the write lock before the version is read, so two
        # openers of the same file never both apply one migration.
        conn.execute("BEGIN IMMEDIATE")
        try:
            applied = schema_version(conn) < migration.version
            if applied:
                for statement in migration.statements:
                    conn.execute(statement)
                # PRAGMA takes no parameters; the version is an int from our own table.
                conn.execute(f"PRAGMA user_version = {int(migration.version)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if applied:
            logger.info(
                "registry migrated to schema v%d (%s)",
                migration.version,
                migration.description,
                extra={"schema_version": migration.version},
            )
    return schema_version(conn)
