"""The registry: repositories, sandboxes, their commits and the users, in SQLite.

The manager actor is the registry's single writer; it holds one
:class:`Registry`, whose one connection is guarded by a lock so the actor's
threads (the reconcile loop, concurrent API calls) can share it. Every write is
one transaction. The file is in WAL mode, so a reader in another process (the
CLI, the cleanup job) never blocks the manager. The schema is versioned and
migrated in place on open (see :mod:`studio.store.migrations`).

The records (:class:`RepositoryRecord`, :class:`SandboxRecord`,
:class:`CommitRecord`, :class:`UserRecord`) are frozen pydantic models defined
in :mod:`studio.store.records` and exported from here. Timestamps are
timezone-aware UTC datetimes in and out.

Tokens are never stored: a user row keeps the SHA-256 of the bearer token.

A sandbox's stored state moves only along the transition table of
:mod:`studio.state`: a new sandbox is added PENDING, and every change of state
is checked against the state the row holds inside the transaction that writes
it, so a concurrent writer cannot slip between the check and the write. A
refused change is :class:`InvalidState` and writes nothing. Each step is logged
(``sandbox_id``, ``previous_state``, ``state``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import ValidationError

from studio.config import ComponentStudioConfig
from studio.errors import (
    Conflict,
    InvalidConfig,
    InvalidRequest,
    InvalidState,
    NotFound,
    RepositoryNotFound,
    SandboxNotFound,
    ServiceUnavailable,
    StudioError,
)
from studio.limits import QUOTA_STATES, check_sandbox_quota
from studio.naming import READY_OWNER
from studio.state import SandboxState, check_transition, transition_path
from studio.store.migrations import apply_migrations
from studio.store.records import (
    SANDBOX_FIELDS,
    SANDBOX_FIXED_FIELDS,
    SANDBOX_UPDATABLE_FIELDS,
    CommitRecord,
    NodePreparation,
    RepositoryAccess,
    RepositoryRecord,
    SandboxRecord,
    UserRecord,
    commit_from_row,
    commit_record,
    hash_token,
    preparation_from_row,
    repository_from_row,
    sandbox_columns,
    sandbox_from_row,
    to_text,
    user_from_row,
    utcnow,
    validation_message,
)

__all__ = [
    "SANDBOX_UPDATABLE_FIELDS",
    "SQLITE_MAX_INTEGER",
    "CommitRecord",
    "Registry",
    "RepositoryRecord",
    "SandboxRecord",
    "UserRecord",
    "hash_token",
    "utcnow",
]

logger = logging.getLogger(__name__)

# How long a write waits for another process holding the file's write lock
# (only a migration by a second opener, in practice) before it fails.
BUSY_TIMEOUT_MS = 10_000


SQLITE_MAX_INTEGER = 2**63 - 1


class Registry:
    """The SQLite registry at ``path``; created, or migrated to the current schema, on open."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.RLock()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT),
        # never the sqlite3 module's implicit ones, which skip DDL.
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StudioError(
                    f"the registry at {self._path} cannot use WAL mode (got {mode!r}); "
                    "put the state_dir on a local filesystem",
                    path=str(self._path),
                    journal_mode=mode,
                )
            self._version = apply_migrations(conn)
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn
        logger.debug("registry opened", extra={"path": str(self._path)})

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def schema_version(self) -> int:
        """The schema version of the open database (``PRAGMA user_version``)."""
        return self._version

    def close(self) -> None:
        """Close the connection; later calls raise :class:`ServiceUnavailable`. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ServiceUnavailable(f"the registry at {self._path} is closed")
        return self._conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._connection()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # SQLite may already have rolled back (an I/O error does that).
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @staticmethod
    def _exists(conn: sqlite3.Connection, sql: str, *params: Any) -> bool:
        return conn.execute(sql, params).fetchone() is not None

    @staticmethod
    def _sandbox_row(conn: sqlite3.Connection, sandbox_id: str) -> sqlite3.Row:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM sandboxes WHERE id = ?", (sandbox_id,)
        ).fetchone()
        if row is None:
            raise SandboxNotFound(f"no sandbox {sandbox_id!r}", sandbox_id=sandbox_id)
        return row

    # -- repositories -----------------------------------------------------

    def add_repository(
        self,
        name: str,
        source: str,
        *,
        github: str | None = None,
        default_branch: str = "main",
        config: dict[str, Any] | None = None,
    ) -> RepositoryRecord:
        """Register a repository; a taken ``name`` is a :class:`Conflict`.

        ``config`` overrides are checked against :class:`ComponentStudioConfig`
        (unknown or invalid fields are :class:`InvalidConfig`) and stored as
        the validated values.
        """
        overrides = dict(config or {})
        try:
            checked = ComponentStudioConfig().with_overrides(overrides)
        except ValidationError as exc:
            raise InvalidConfig(
                f"repository {name!r}: invalid config overrides: {validation_message(exc)}"
            ) from exc
        stored = checked.model_dump(mode="json", include=set(overrides))
        with self._write() as conn:
            if self._exists(conn, "SELECT 1 FROM repositories WHERE name = ?", name):
                raise Conflict(f"a repository named {name!r} is already registered", name=name)
            cursor = conn.execute(
                "INSERT INTO repositories (name, source, github, default_branch, config, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (name, source, github, default_branch, json.dumps(stored), to_text(utcnow())),
            )
            row = conn.execute(
                "SELECT * FROM repositories WHERE id = ?", (cursor.lastrowid,)
            ).fetchone()
            # Validating the stored row inside the transaction rolls back bad input.
            try:
                record = self._repository(conn, row)
            except ValidationError as exc:
                raise InvalidRequest(
                    f"invalid repository {name!r}: {validation_message(exc)}"
                ) from exc
        logger.info("repository registered", extra={"repository": name, "id": record.id})
        return record

    def get_repository(self, repository_id: int) -> RepositoryRecord:
        """The repository with that id; :class:`RepositoryNotFound` if none."""
        # SQLite integers are 64-bit: a larger id names no row (and would overflow).
        record: RepositoryRecord | None = None
        if 1 <= repository_id <= SQLITE_MAX_INTEGER:
            with self._read() as conn:
                row = conn.execute(
                    "SELECT * FROM repositories WHERE id = ?", (repository_id,)
                ).fetchone()
                record = None if row is None else self._repository(conn, row)
        if record is None:
            raise RepositoryNotFound(
                f"no repository with id {repository_id}", repository_id=repository_id
            )
        return record

    def find_repository(self, name: str) -> RepositoryRecord | None:
        """The repository registered under ``name``, or None."""
        with self._read() as conn:
            row = conn.execute("SELECT * FROM repositories WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            return self._repository(conn, row)

    def list_repositories(self) -> list[RepositoryRecord]:
        """Every registered repository, in registration order."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM repositories ORDER BY id").fetchall()
            return [self._repository(conn, row) for row in rows]

    # -- preparations -----------------------------------------------------

    @classmethod
    def _repository(cls, conn: sqlite3.Connection, row: sqlite3.Row) -> RepositoryRecord:
        """The record of a ``repositories`` row: its preparations and ready sandboxes."""
        ready = conn.execute(
            "SELECT COUNT(*) FROM sandboxes WHERE repository_id = ? AND owner = ? AND state = ?",
            (row["id"], READY_OWNER, SandboxState.RUNNING.value),
        ).fetchone()[0]
        access = None
        if row["restricted"]:
            grants = conn.execute(
                "SELECT kind, name FROM repository_grants WHERE repository_id = ? "
                "ORDER BY kind, name",
                (row["id"],),
            ).fetchall()
            access = RepositoryAccess(
                users=[g["name"] for g in grants if g["kind"] == "user"],
                groups=[g["name"] for g in grants if g["kind"] == "group"],
            )
        return repository_from_row(
            row, cls._preparations(conn, row["id"]), ready=int(ready), access=access
        )

    def set_repository_access(
        self, repository_id: int, access: RepositoryAccess | None
    ) -> RepositoryRecord:
        """Restrict a repository to ``access`` (besides the admins), or open it to every
        user (None); the grants are replaced whole. Returns the new record."""
        self.get_repository(repository_id)  # RepositoryNotFound before anything is written
        with self._write() as conn:
            conn.execute("DELETE FROM repository_grants WHERE repository_id = ?", (repository_id,))
            conn.execute(
                "UPDATE repositories SET restricted = ? WHERE id = ?",
                (int(access is not None), repository_id),
            )
            if access is not None:
                conn.executemany(
                    "INSERT INTO repository_grants (repository_id, kind, name) VALUES (?, ?, ?)",
                    [(repository_id, "user", name) for name in sorted(set(access.users))]
                    + [(repository_id, "group", name) for name in sorted(set(access.groups))],
                )
        logger.info(
            "repository access set",
            extra={"repository_id": repository_id, "restricted": access is not None},
        )
        return self.get_repository(repository_id)

    @staticmethod
    def _preparations(conn: sqlite3.Connection, repository_id: int) -> list[NodePreparation]:
        rows = conn.execute(
            "SELECT * FROM preparations WHERE repository_id = ? ORDER BY started_at, node_id",
            (repository_id,),
        ).fetchall()
        return [preparation_from_row(row) for row in rows]

    def save_preparation(self, repository_id: int, preparation: NodePreparation) -> None:
        """Record where a repository's preparation on ``preparation.node_id`` stands."""
        with self._write() as conn:
            if not self._exists(conn, "SELECT 1 FROM repositories WHERE id = ?", repository_id):
                raise RepositoryNotFound(
                    f"no repository with id {repository_id}", repository_id=repository_id
                )
            conn.execute(
                "INSERT OR REPLACE INTO preparations (repository_id, node_id, state, step, "
                "started_at, finished_at, error, output, stories) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    repository_id,
                    preparation.node_id,
                    preparation.state,
                    None if preparation.step is None else preparation.step.value,
                    to_text(preparation.started_at),
                    None if preparation.finished_at is None else to_text(preparation.finished_at),
                    preparation.error,
                    json.dumps(preparation.output),
                    preparation.stories,
                ),
            )

    def list_preparations(self) -> list[tuple[int, NodePreparation]]:
        """Every repository's preparation on every node: ``(repository_id, preparation)``."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT * FROM preparations ORDER BY repository_id, started_at, node_id"
            ).fetchall()
        return [(int(row["repository_id"]), preparation_from_row(row)) for row in rows]

    def forget_preparations(
        self, *, repository_id: int | None = None, states: Collection[str] | None = None
    ) -> int:
        """Remove preparation rows (of one repository, in some states); how many went."""
        clauses: list[str] = []
        params: list[Any] = []
        if repository_id is not None:
            clauses.append("repository_id = ?")
            params.append(repository_id)
        if states is not None:
            wanted = sorted(states)
            if not wanted:
                return 0
            clauses.append(f"state IN ({', '.join('?' for _ in wanted)})")
            params.extend(wanted)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._write() as conn:
            return int(conn.execute(f"DELETE FROM preparations{where}", params).rowcount)

    # -- sandboxes --------------------------------------------------------

    def add_sandbox(self, record: SandboxRecord, *, owner_quota: int = 0) -> None:
        """Record a new sandbox; a taken id is a :class:`Conflict`.

        A sandbox starts PENDING; any other state is :class:`InvalidState` (it
        gets there through :meth:`update_sandbox`, by the transition table).
        With ``owner_quota`` (0: none), an owner who already has that many live
        sandboxes gets :class:`QuotaExceeded`: counted in the transaction that
        inserts, so two creates at once cannot both take the last place.
        """
        if record.state is not SandboxState.PENDING:
            raise InvalidState(
                f"sandbox {record.id} cannot be added {record.state.value}: a new sandbox "
                "starts pending",
                state=record.state.value,
                sandbox_id=record.id,
            )
        columns = sandbox_columns(record)
        with self._write() as conn:
            if self._exists(conn, "SELECT 1 FROM sandboxes WHERE id = ?", record.id):
                raise Conflict(f"sandbox {record.id!r} already exists", sandbox_id=record.id)
            if not self._exists(
                conn, "SELECT 1 FROM repositories WHERE id = ?", record.repository_id
            ):
                raise RepositoryNotFound(
                    f"no repository with id {record.repository_id}",
                    repository_id=record.repository_id,
                )
            if owner_quota:
                live = sorted(state.value for state in QUOTA_STATES)
                marks = ", ".join("?" for _ in live)
                count = conn.execute(
                    f"SELECT COUNT(*) FROM sandboxes WHERE owner = ? AND state IN ({marks})",
                    (record.owner, *live),
                ).fetchone()[0]
                check_sandbox_quota(record.owner, int(count), owner_quota)
            names = ", ".join(columns)
            marks = ", ".join("?" for _ in columns)
            conn.execute(
                f"INSERT INTO sandboxes ({names}) VALUES ({marks})", tuple(columns.values())
            )

    def claim_sandbox(
        self, sandbox_id: str, holder: str, owner: str, *, owner_quota: int = 0
    ) -> SandboxRecord | None:
        """Give ``owner`` a RUNNING sandbox ``holder`` has; None when it is no longer there.

        The ready sandboxes (:mod:`actors._ready`) are held by a name no user
        can have; a create takes one over: owner, ``created_at`` and
        ``last_activity`` become the create's. Checked and written in one
        transaction, so two creates cannot take the same sandbox, and the
        quota is counted as :meth:`add_sandbox` counts it.
        """
        stamp = to_text(utcnow())
        with self._write() as conn:
            if owner_quota:
                live = sorted(state.value for state in QUOTA_STATES)
                marks = ", ".join("?" for _ in live)
                count = conn.execute(
                    f"SELECT COUNT(*) FROM sandboxes WHERE owner = ? AND state IN ({marks})",
                    (owner, *live),
                ).fetchone()[0]
                check_sandbox_quota(owner, int(count), owner_quota)
            taken = conn.execute(
                "UPDATE sandboxes SET owner = ?, created_at = ?, updated_at = ?, "
                "last_activity = ? WHERE id = ? AND owner = ? AND state = ?",
                (
                    owner,
                    stamp,
                    stamp,
                    stamp,
                    sandbox_id,
                    holder,
                    SandboxState.RUNNING.value,
                ),
            ).rowcount
            if not taken:
                return None
            row = self._sandbox_row(conn, sandbox_id)
        return sandbox_from_row(row)

    def get_sandbox(self, sandbox_id: str) -> SandboxRecord:
        """The sandbox with that id; :class:`SandboxNotFound` if none."""
        with self._read() as conn:
            row = self._sandbox_row(conn, sandbox_id)
        return sandbox_from_row(row)

    def update_sandbox(self, sandbox_id: str, **fields: Any) -> SandboxRecord:
        """Change some fields of a sandbox, bump ``updated_at``, return the new record.

        Only :data:`SANDBOX_UPDATABLE_FIELDS` may change; any other name, or a
        value that does not validate, is :class:`InvalidRequest`. A new
        ``state`` must be one step of the transition table from the stored one
        (the same state is no change), else :class:`InvalidState` naming both;
        either way nothing is written.
        """
        return self._update(sandbox_id, fields, path=False)

    def move_sandbox(self, sandbox_id: str, state: SandboxState, **fields: Any) -> SandboxRecord:
        """Take a sandbox to ``state`` by the shortest path the table allows, with ``fields``.

        For a state reported from further on (an actor whose teardown ran while
        its row says RUNNING: RUNNING -> STOPPING -> STOPPED). Every step is
        checked and logged and the row ends at ``state`` with ``fields``, in one
        transaction. No path (``state`` lies behind the stored one, or the
        sandbox has ended) is :class:`InvalidState`, and nothing is written.
        """
        return self._update(sandbox_id, {**fields, "state": state}, path=True)

    def _update(self, sandbox_id: str, fields: dict[str, Any], *, path: bool) -> SandboxRecord:
        unknown = sorted(set(fields) - set(SANDBOX_FIELDS))
        if unknown:
            raise InvalidRequest(
                f"sandboxes have no field {', '.join(unknown)}; updatable: "
                + ", ".join(sorted(SANDBOX_UPDATABLE_FIELDS)),
                fields=unknown,
            )
        fixed = sorted(set(fields) & SANDBOX_FIXED_FIELDS)
        if fixed:
            raise InvalidRequest(
                f"the {', '.join(fixed)} of a sandbox cannot be changed", fields=fixed
            )
        with self._write() as conn:
            current = sandbox_from_row(self._sandbox_row(conn, sandbox_id))
            try:
                updated = SandboxRecord.model_validate(
                    {**dict(current), **fields, "updated_at": utcnow()}
                )
            except ValidationError as exc:
                raise InvalidRequest(
                    f"invalid update of sandbox {sandbox_id!r}: {validation_message(exc)}",
                    sandbox_id=sandbox_id,
                ) from exc
            steps = self._steps(sandbox_id, current.state, updated.state, path=path)
            columns = sandbox_columns(updated)
            # Names come from the model's own field list, never from the caller.
            names = [*fields, "updated_at"]
            assignments = ", ".join(f"{name} = ?" for name in names)
            conn.execute(
                f"UPDATE sandboxes SET {assignments} WHERE id = ?",
                (*(columns[name] for name in names), sandbox_id),
            )
        previous = current.state
        for step in steps:
            logger.info(
                "sandbox %s: %s -> %s",
                sandbox_id,
                previous.value,
                step.value,
                extra={
                    "sandbox_id": sandbox_id,
                    "previous_state": previous.value,
                    "state": step.value,
                },
            )
            previous = step
        return updated

    @staticmethod
    def _steps(
        sandbox_id: str, current: SandboxState, target: SandboxState, *, path: bool
    ) -> tuple[SandboxState, ...]:
        """The transitions a write from ``current`` to ``target`` makes; raises if illegal."""
        if path:
            return transition_path(current, target, sandbox_id=sandbox_id)
        if target is current:
            return ()
        check_transition(current, target, sandbox_id=sandbox_id)
        return (target,)

    def list_sandboxes(
        self,
        *,
        owner: str | None = None,
        states: Collection[str] | None = None,
        node_id: str | None = None,
    ) -> list[SandboxRecord]:
        """Sandboxes matching every filter given, oldest first.

        ``states`` are state names (``"running"``, a :class:`SandboxState`);
        an unknown name is :class:`InvalidRequest`, an empty collection matches
        nothing.
        """
        clauses: list[str] = []
        params: list[Any] = []
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        if node_id is not None:
            clauses.append("node_id = ?")
            params.append(node_id)
        if states is not None:
            try:
                wanted = sorted({SandboxState(state).value for state in states})
            except ValueError as exc:
                known = ", ".join(state.value for state in SandboxState)
                raise InvalidRequest(
                    f"unknown sandbox state in {list(states)}; known: {known}"
                ) from exc
            if not wanted:
                return []
            clauses.append(f"state IN ({', '.join('?' for _ in wanted)})")
            params.extend(wanted)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT * FROM sandboxes{where} ORDER BY created_at, id", params
            ).fetchall()
        return [sandbox_from_row(row) for row in rows]

    # -- commits ----------------------------------------------------------

    def list_commits(self, sandbox_id: str, limit: int | None = None) -> list[CommitRecord]:
        """A sandbox's commits, newest first, at most ``limit`` of them."""
        if limit is not None and limit < 0:
            raise InvalidRequest(f"limit must not be negative, got {limit}")
        with self._read() as conn:
            self._sandbox_row(conn, sandbox_id)
            rows = conn.execute(
                "SELECT * FROM commits WHERE sandbox_id = ? ORDER BY seq DESC LIMIT ?",
                # SQLite reads a negative LIMIT as "no limit".
                (sandbox_id, -1 if limit is None else limit),
            ).fetchall()
        return [commit_from_row(row) for row in rows]

    def replace_commits(
        self, sandbox_id: str, commits: Sequence[tuple[str, str, datetime]]
    ) -> None:
        """Make a sandbox's history exactly ``commits``: ``(hash, message, timestamp)``,
        oldest first (the order of ``git log --reverse``), as git has it after a rollback.
        """
        records = [
            commit_record(sandbox_id, seq, commit_hash, message, timestamp)
            for seq, (commit_hash, message, timestamp) in enumerate(commits, start=1)
        ]
        hashes = [record.hash for record in records]
        if len(set(hashes)) != len(hashes):
            raise InvalidRequest(f"the history of {sandbox_id!r} lists a commit twice")
        with self._write() as conn:
            self._sandbox_row(conn, sandbox_id)
            conn.execute("DELETE FROM commits WHERE sandbox_id = ?", (sandbox_id,))
            for record in records:
                self._insert_commit(conn, record)

    @staticmethod
    def _insert_commit(conn: sqlite3.Connection, record: CommitRecord) -> None:
        conn.execute(
            "INSERT INTO commits (sandbox_id, seq, hash, message, timestamp) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                record.sandbox_id,
                record.seq,
                record.hash,
                record.message,
                to_text(record.timestamp),
            ),
        )

    # -- users ------------------------------------------------------------

    def add_user(
        self, name: str, token: str, *, is_admin: bool = False, groups: Sequence[str] = ()
    ) -> UserRecord:
        """Add a user whose bearer token is ``token``; only its SHA-256 is stored.

        A taken name, or a token another user already has, is a :class:`Conflict`.
        """
        if not token:
            raise InvalidRequest(f"user {name!r} needs a non-empty token")
        try:
            record = UserRecord(
                name=name,
                is_admin=is_admin,
                token_hash=hash_token(token),
                created_at=utcnow(),
                groups=sorted(set(groups)),
            )
        except ValidationError as exc:
            raise InvalidRequest(f"invalid user {name!r}: {validation_message(exc)}") from exc
        with self._write() as conn:
            if self._exists(conn, "SELECT 1 FROM users WHERE name = ?", name):
                raise Conflict(f"a user named {name!r} already exists", name=name)
            if self._exists(conn, "SELECT 1 FROM users WHERE token_hash = ?", record.token_hash):
                raise Conflict(f"user {name!r}: that token already belongs to another user")
            conn.execute(
                "INSERT INTO users (name, is_admin, token_hash, created_at, groups) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    record.name,
                    int(record.is_admin),
                    record.token_hash,
                    to_text(record.created_at),
                    json.dumps(record.groups),
                ),
            )
        logger.info("user added", extra={"user": name, "is_admin": is_admin})
        return record

    def user_for_token(self, token: str) -> UserRecord | None:
        """The user whose token is ``token``, or None: one lookup on the hash's index.

        ``token_hash`` is UNIQUE, so SQLite keeps an index on it (since schema
        v2): a token costs one B-tree search however many users there are, and
        a random token no more than a known one. What a search's timing could
        tell is how near the token's SHA-256 falls to a stored one in the
        index's order, which says nothing about any token (finding a token
        from its hash's neighbourhood is a preimage search).
        """
        if not token:
            return None
        with self._read() as conn:
            row = conn.execute(
                "SELECT * FROM users WHERE token_hash = ?", (hash_token(token),)
            ).fetchone()
        return None if row is None else user_from_row(row)

    def get_user(self, name: str) -> UserRecord | None:
        """The user named ``name``, or None."""
        with self._read() as conn:
            row = conn.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else user_from_row(row)

    def set_user_groups(self, name: str, groups: Sequence[str]) -> UserRecord:
        """Replace the groups of a user; :class:`NotFound` if there is none."""
        try:
            checked = UserRecord.model_validate(
                {
                    "name": name,
                    "token_hash": "0" * 64,
                    "created_at": utcnow(),
                    "groups": sorted(set(groups)),
                }
            ).groups
        except ValidationError as exc:
            raise InvalidRequest(f"invalid groups: {validation_message(exc)}") from exc
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE users SET groups = ? WHERE name = ?", (json.dumps(checked), name)
            ).rowcount
            if changed == 0:
                raise NotFound(f"no user named {name!r}", name=name)
        user = self.get_user(name)
        assert user is not None
        return user

    def list_users(self) -> list[UserRecord]:
        """Every user, by name."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM users ORDER BY name").fetchall()
        return [user_from_row(row) for row in rows]

    def remove_user(self, name: str) -> None:
        """Remove a user (their sandboxes stay); :class:`NotFound` if there is none."""
        with self._write() as conn:
            deleted = conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount
            if deleted == 0:
                raise NotFound(f"no user named {name!r}", name=name)
        logger.info("user removed", extra={"user": name})
