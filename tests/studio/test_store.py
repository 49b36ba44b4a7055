"""The SQLite registry, on real database files in a tmp dir."""

from __future__ import annotations

import contextlib
import pickle
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from studio.config import ComponentStudioConfig
from studio.errors import (
    Conflict,
    InvalidConfig,
    InvalidRequest,
    InvalidState,
    NotFound,
    QuotaExceeded,
    RepositoryNotFound,
    SandboxNotFound,
    ServiceUnavailable,
    StudioError,
)
from studio.state import SandboxState, transition_path
from studio.store import (
    SANDBOX_UPDATABLE_FIELDS,
    CommitRecord,
    NodePreparation,
    Registry,
    RepositoryRecord,
    SandboxRecord,
    UserRecord,
    hash_token,
    migrations,
    utcnow,
)
from tests.support.state_log import record_states, states_written

T0 = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "registry.sqlite"


@pytest.fixture
def registry(db_path: Path) -> Iterator[Registry]:
    with Registry(db_path) as reg:
        yield reg


@pytest.fixture
def repo(registry: Registry) -> RepositoryRecord:
    return registry.add_repository("ui", "/srv/repos/ui", github="acme/ui")


# The schema version a registry opens at (the last migration's).
LATEST = len(migrations.MIGRATIONS)


def sandbox(repository_id: int, n: int = 0, **fields: object) -> SandboxRecord:
    sandbox_id = f"sb_test{n:06d}"
    values: dict[str, object] = {
        "id": sandbox_id,
        "owner": "alice",
        "repository_id": repository_id,
        "branch": f"design/studio-test{n:06d}",
        **fields,
    }
    return SandboxRecord.model_validate(values)


def added(registry: Registry, record: SandboxRecord, **fields: object) -> SandboxRecord:
    """``record`` added (pending, as every new sandbox) and then taken to its state.

    The state is written one legal step at a time; ``fields`` with the last one.
    """
    registry.add_sandbox(record.model_copy(update={"state": SandboxState.PENDING}))
    current = registry.get_sandbox(record.id)
    for step in transition_path(SandboxState.PENDING, record.state):
        current = registry.update_sandbox(record.id, state=step)
    return registry.update_sandbox(record.id, **fields) if fields else current


def sha(n: int) -> str:
    return f"{n:040x}"


# -- opening, schema, pragmas ------------------------------------------------


def test_new_database_is_at_latest_schema_in_wal_mode(registry: Registry, db_path: Path) -> None:
    assert registry.path == db_path
    assert registry.schema_version == len(migrations.MIGRATIONS) == LATEST
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST
    finally:
        raw.close()


def test_foreign_keys_are_enforced(registry: Registry) -> None:
    with pytest.raises(RepositoryNotFound):
        registry.add_sandbox(sandbox(repository_id=99))
    # The constraint itself is on, not only the explicit check in add_sandbox.
    conn = registry._connection()
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        conn.execute(
            "INSERT INTO commits (sandbox_id, seq, hash, message, timestamp) "
            "VALUES ('sb_nothere', 1, 'abcd', 'm', 't')"
        )


def test_reopen_keeps_data(db_path: Path) -> None:
    with Registry(db_path) as first:
        repo = first.add_repository("ui", "/srv/ui", config={"max_restarts": 5})
        added(first, sandbox(repo.id, state="running"), node_id="n1", port=5173)
        first.replace_commits("sb_test000000", [(sha(1), "first", T0)])
        first.add_user("alice", "tok-alice")
    with Registry(db_path) as second:
        assert second.schema_version == LATEST
        assert second.get_repository(repo.id) == repo
        got = second.get_sandbox("sb_test000000")
        assert (got.state, got.node_id, got.port) == (SandboxState.RUNNING, "n1", 5173)
        assert [c.hash for c in second.list_commits("sb_test000000")] == [sha(1)]
        user = second.user_for_token("tok-alice")
        assert user is not None
        assert user.name == "alice"


def test_closed_registry_refuses_calls_and_close_is_idempotent(db_path: Path) -> None:
    reg = Registry(db_path)
    reg.close()
    reg.close()
    with pytest.raises(ServiceUnavailable):
        reg.list_repositories()
    with pytest.raises(ServiceUnavailable):
        reg.add_repository("ui", "/srv/ui")


def test_database_without_wal_is_refused() -> None:
    # An in-memory database cannot be in WAL mode, like a file on a filesystem
    # without shared memory; the registry must say so rather than run without.
    with pytest.raises(StudioError, match="WAL"):
        Registry(Path(":memory:"))


def test_database_from_a_newer_version_is_refused(db_path: Path) -> None:
    Registry(db_path).close()
    raw = sqlite3.connect(db_path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(StudioError, match="newer") as info:
        Registry(db_path)
    assert info.value.details == {"version": 99, "supported": LATEST}


# -- migrations --------------------------------------------------------------


def _raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def test_v1_database_with_data_upgrades_in_place(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = _raw(db_path)
    try:
        assert migrations.apply_migrations(conn, up_to=1) == 1
        conn.execute(
            "INSERT INTO repositories (name, source, github, default_branch, config, created_at) "
            "VALUES ('ui', '/srv/ui', 'acme/ui', 'develop', '{\"max_restarts\": 7}', ?)",
            ("2026-01-02T03:04:05.000000+00:00",),
        )
        conn.execute(
            "INSERT INTO sandboxes (id, owner, repository_id, state, port, branch, base_commit, "
            "config, created_at, updated_at, last_activity, error, pr_url, pr_number) "
            "VALUES ('sb_old000001', 'bob', 1, 'running', 5200, 'design/studio-old000001', "
            "?, '{}', ?, ?, ?, NULL, NULL, NULL)",
            (sha(7), *["2026-01-02T03:04:05.000000+00:00"] * 3),
        )
        # v1 has neither the v2 columns nor the v2 tables.
        columns = {row[1] for row in conn.execute("PRAGMA table_info(sandboxes)")}
        assert "node_id" not in columns
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "commits" not in tables
    finally:
        conn.close()

    with Registry(db_path) as reg:
        assert reg.schema_version == LATEST
        repo = reg.get_repository(1)
        assert (repo.name, repo.github, repo.default_branch) == ("ui", "acme/ui", "develop")
        assert repo.config == {"max_restarts": 7}
        old = reg.get_sandbox("sb_old000001")
        assert old.owner == "bob"
        assert old.state is SandboxState.RUNNING
        assert old.port == 5200
        assert old.base_commit == sha(7)
        assert old.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        # The new columns got their defaults.
        assert (old.node_id, old.restarts, old.last_seq) == (None, 0, 0)
        assert old.config == ComponentStudioConfig()
        # And the new tables work with the old rows.
        reg.replace_commits("sb_old000001", [(sha(8), "after upgrade", T0)])
        assert [c.message for c in reg.list_commits("sb_old000001")] == ["after upgrade"]
        reg.update_sandbox("sb_old000001", node_id="node-2", restarts=1)
        assert reg.list_sandboxes(node_id="node-2")[0].id == "sb_old000001"


def test_failing_migration_is_rolled_back_whole(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    broken = (
        *migrations.MIGRATIONS,
        migrations.Migration(
            LATEST + 1,
            "half of this would apply without a transaction",
            ("ALTER TABLE sandboxes ADD COLUMN extra TEXT", "THIS IS NOT SQL"),
        ),
    )
    conn = _raw(db_path)
    try:
        with pytest.raises(sqlite3.OperationalError):
            migrations.apply_migrations(conn, broken)
        assert migrations.schema_version(conn) == LATEST
        columns = {row[1] for row in conn.execute("PRAGMA table_info(sandboxes)")}
        assert "extra" not in columns
    finally:
        conn.close()
    with Registry(db_path) as reg:
        assert reg.schema_version == LATEST


def test_migrations_never_downgrade_and_check_their_targets(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = _raw(db_path)
    try:
        assert migrations.apply_migrations(conn) == LATEST
        assert migrations.apply_migrations(conn, up_to=1) == LATEST
        with pytest.raises(ValueError, match=f"versions are 0-{LATEST}"):
            migrations.apply_migrations(conn, up_to=LATEST + 1)
        misordered = (migrations.MIGRATIONS[1], migrations.MIGRATIONS[0])
        with pytest.raises(ValueError, match="position 1"):
            migrations.apply_migrations(conn, misordered)
    finally:
        conn.close()


# -- repositories ------------------------------------------------------------


def test_repository_crud(registry: Registry) -> None:
    before = utcnow()
    repo = registry.add_repository(
        "ui",
        "https://github.com/acme/ui.git",
        github="acme/ui",
        default_branch="develop",
        config={"max_restarts": "5", "commit_pattern": "{description}"},
    )
    assert repo.id >= 1
    assert repo.created_at.tzinfo is UTC
    assert before <= repo.created_at <= utcnow()
    # Overrides are stored as validated values, not as given.
    assert repo.config == {"max_restarts": 5, "commit_pattern": "{description}"}
    other = registry.add_repository("docs", "/srv/docs")
    assert (other.github, other.default_branch, other.config) == (None, "main", {})

    assert registry.get_repository(repo.id) == repo
    assert registry.find_repository("docs") == other
    assert registry.find_repository("nope") is None
    assert registry.list_repositories() == [repo, other]


def test_repository_errors(registry: Registry, repo: RepositoryRecord) -> None:
    with pytest.raises(Conflict, match="'ui'"):
        registry.add_repository("ui", "/elsewhere")
    with pytest.raises(RepositoryNotFound) as info:
        registry.get_repository(repo.id + 100)
    assert info.value.details == {"repository_id": repo.id + 100}
    with pytest.raises(InvalidConfig, match="no_such_field"):
        registry.add_repository("x", "/srv/x", config={"no_such_field": 1})
    with pytest.raises(InvalidConfig, match="vite_port"):
        registry.add_repository("x", "/srv/x", config={"vite_port": 12000})
    with pytest.raises(InvalidRequest, match="github"):
        registry.add_repository("x", "/srv/x", github="not a repo")
    with pytest.raises(InvalidRequest, match="source"):
        registry.add_repository("x", "")
    # A refused registration left nothing behind.
    assert registry.list_repositories() == [repo]


# -- sandboxes ---------------------------------------------------------------


def test_sandbox_crud(registry: Registry, repo: RepositoryRecord) -> None:
    config = ComponentStudioConfig(max_restarts=1, commit_pattern="{description}")
    record = sandbox(repo.id, config=config, base_commit=sha(1))
    registry.add_sandbox(record)
    got = registry.get_sandbox(record.id)
    assert got == record
    assert got.state is SandboxState.PENDING
    assert got.config == config

    updated = registry.update_sandbox(
        record.id,
        state="starting",
        node_id="node-a",
        port=5180,
        restarts=2,
        last_seq=41,
        last_activity=T0,
    )
    assert updated.state is SandboxState.STARTING
    assert updated.updated_at > record.updated_at
    assert updated.created_at == record.created_at
    assert registry.get_sandbox(record.id) == updated

    finished = registry.move_sandbox(
        record.id,
        SandboxState.FINALIZED,
        port=None,
        pr_url="https://github.com/acme/ui/pull/3",
        pr_number=3,
        error=None,
        config={"max_restarts": 0},
    )
    assert finished.port is None
    assert finished.config.max_restarts == 0
    assert finished.last_seq == 41
    assert registry.get_sandbox(record.id) == finished


def test_sandbox_timestamps_are_utc_in_and_out(registry: Registry, repo: RepositoryRecord) -> None:
    paris = timezone(timedelta(hours=1))
    local = datetime(2026, 11, 25, 15, 30, 0, 123, tzinfo=paris)
    registry.add_sandbox(sandbox(repo.id, last_activity=local))
    got = registry.get_sandbox("sb_test000000")
    assert got.last_activity == local
    assert got.last_activity.tzinfo is UTC
    assert got.last_activity.hour == 14
    with pytest.raises(InvalidRequest, match="last_activity"):
        registry.update_sandbox("sb_test000000", last_activity=datetime(2026, 1, 1))


def test_sandbox_errors(registry: Registry, repo: RepositoryRecord) -> None:
    registry.add_sandbox(sandbox(repo.id))
    with pytest.raises(Conflict, match="sb_test000000"):
        registry.add_sandbox(sandbox(repo.id, owner="mallory"))
    assert registry.get_sandbox("sb_test000000").owner == "alice"
    with pytest.raises(SandboxNotFound):
        registry.get_sandbox("sb_missing1")
    with pytest.raises(SandboxNotFound):
        registry.update_sandbox("sb_missing1", port=5174)


def test_update_of_unknown_or_fixed_fields_is_refused(
    registry: Registry, repo: RepositoryRecord
) -> None:
    record = sandbox(repo.id)
    registry.add_sandbox(record)
    with pytest.raises(InvalidRequest, match="no field colour") as info:
        registry.update_sandbox(record.id, colour="red", port=5174)
    assert info.value.details["fields"] == ["colour"]
    for fixed in ("id", "owner", "repository_id", "created_at", "updated_at"):
        assert fixed not in SANDBOX_UPDATABLE_FIELDS
        with pytest.raises(InvalidRequest, match="cannot be changed"):
            registry.update_sandbox(record.id, **{fixed: getattr(record, fixed)})
    with pytest.raises(InvalidRequest, match="state"):
        registry.update_sandbox(record.id, state="sleeping")
    with pytest.raises(InvalidRequest, match="port"):
        registry.update_sandbox(record.id, port=70000)
    # Nothing of the refused updates was written.
    assert registry.get_sandbox(record.id) == record


def test_a_new_sandbox_is_added_pending_only(registry: Registry, repo: RepositoryRecord) -> None:
    with pytest.raises(InvalidState, match="sb_test000000 cannot be added running") as refused:
        registry.add_sandbox(sandbox(repo.id, state="running"))
    assert refused.value.details == {"state": "running", "sandbox_id": "sb_test000000"}
    assert registry.list_sandboxes() == []


@pytest.mark.parametrize(
    ("start", "target"),
    [
        ("running", "stopped"),  # a teardown skipping STOPPING
        ("running", "finalized"),
        ("pending", "running"),  # a create skipping STARTING
        ("stopped", "starting"),  # an ended sandbox set up again
        ("finalized", "stopping"),
        ("failed", "running"),
        ("stopping", "running"),
    ],
)
def test_a_state_change_the_table_does_not_allow_is_refused_and_writes_nothing(
    registry: Registry, repo: RepositoryRecord, start: str, target: str
) -> None:
    before = added(registry, sandbox(repo.id, state=start), port=None, error="as it was")
    with pytest.raises(InvalidState) as refused:
        registry.update_sandbox(before.id, state=target, port=5190, error=None, restarts=3)
    message = str(refused.value)
    assert f"sandbox {before.id} cannot go from {start} to {target}" in message
    assert refused.value.details == {"state": start, "target": target, "sandbox_id": before.id}
    # Neither the state nor the fields written with it changed, nor updated_at.
    assert registry.get_sandbox(before.id) == before


def test_a_state_change_the_table_allows_is_written(
    registry: Registry, repo: RepositoryRecord, caplog: pytest.LogCaptureFixture
) -> None:
    record_states(caplog)
    record = sandbox(repo.id)
    registry.add_sandbox(record)
    for state in ("starting", "running", "restarting", "running", "stopping", "stopped"):
        assert registry.update_sandbox(record.id, state=state).state == state
    assert states_written(caplog, record.id) == [
        "pending",
        "starting",
        "running",
        "restarting",
        "running",
        "stopping",
        "stopped",
    ]


def test_writing_the_state_a_sandbox_is_in_is_no_transition(
    registry: Registry, repo: RepositoryRecord, caplog: pytest.LogCaptureFixture
) -> None:
    record = added(registry, sandbox(repo.id, state="stopped"))
    record_states(caplog)
    # An ended sandbox has no way out, but restating its end changes no state.
    again = registry.update_sandbox(record.id, state="stopped", error="noted")
    assert again.state is SandboxState.STOPPED and again.error == "noted"
    assert registry.move_sandbox(record.id, SandboxState.STOPPED).state is SandboxState.STOPPED
    assert states_written(caplog, record.id) == []


def test_move_sandbox_writes_each_step_of_the_path_and_the_fields(
    registry: Registry, repo: RepositoryRecord, caplog: pytest.LogCaptureFixture
) -> None:
    record = added(registry, sandbox(repo.id, state="running"), port=5190)
    record_states(caplog)
    moved = registry.move_sandbox(
        record.id, SandboxState.FINALIZED, port=None, pr_url="https://x/pull/4", pr_number=4
    )
    assert (moved.state, moved.port, moved.pr_number) == (SandboxState.FINALIZED, None, 4)
    assert registry.get_sandbox(record.id) == moved
    assert states_written(caplog, record.id) == ["running", "stopping", "finalized"]


@pytest.mark.parametrize(
    ("start", "target"),
    [
        ("starting", "pending"),
        ("stopped", "running"),
        ("finalized", "stopped"),
        ("stopping", "running"),
    ],
)
def test_move_sandbox_refuses_a_state_it_cannot_reach_and_writes_nothing(
    registry: Registry, repo: RepositoryRecord, start: str, target: str
) -> None:
    before = added(registry, sandbox(repo.id, state=start))
    with pytest.raises(InvalidState, match=f"{before.id} cannot get from {start} to {target}"):
        registry.move_sandbox(before.id, SandboxState(target), port=5190, last_seq=9)
    assert registry.get_sandbox(before.id) == before


def test_concurrent_writers_cannot_both_end_a_sandbox(db_path: Path) -> None:
    # Two registries on one file (two connections, two locks): only SQLite's
    # transaction keeps a check and its write together.
    with Registry(db_path) as first, Registry(db_path) as second:
        repo = first.add_repository("ui", "/srv/ui")
        rounds = 20
        for n in range(rounds):
            added(first, sandbox(repo.id, n, state="stopping"))
        outcomes: dict[str, list[str]] = {"stopped": [], "finalized": []}
        errors: list[BaseException] = []
        start = threading.Barrier(4)

        def end(registry: Registry, state: str) -> None:
            try:
                start.wait(timeout=30)
                for n in range(rounds):
                    try:
                        registry.update_sandbox(f"sb_test{n:06d}", state=state, port=None)
                    except InvalidState:
                        continue
                    outcomes[state].append(f"sb_test{n:06d}")
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=end, args=(registry, state))
            for registry in (first, second)
            for state in ("stopped", "finalized")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        for n in range(rounds):
            sandbox_id = f"sb_test{n:06d}"
            final = first.get_sandbox(sandbox_id).state.value
            # Whoever ended it first decided its end; the other end was refused, never
            # written over it (restating the same end is no change and is allowed).
            assert sandbox_id in outcomes[final]
            other = "finalized" if final == "stopped" else "stopped"
            assert sandbox_id not in outcomes[other]


def test_list_sandboxes_filters(registry: Registry, repo: RepositoryRecord) -> None:
    specs = [
        ("alice", "running", "n1"),
        ("alice", "stopped", None),
        ("bob", "running", "n2"),
        ("bob", "failed", "n1"),
        ("carol", "restarting", "n1"),
    ]
    for n, (owner, state, node) in enumerate(specs):
        created = T0 + timedelta(minutes=n)
        added(
            registry,
            sandbox(repo.id, n, owner=owner, state=state, created_at=created),
            node_id=node,
        )

    def ids(records: list[SandboxRecord]) -> list[int]:
        return [int(r.id.removeprefix("sb_test")) for r in records]

    assert ids(registry.list_sandboxes()) == [0, 1, 2, 3, 4]
    assert ids(registry.list_sandboxes(owner="alice")) == [0, 1]
    assert ids(registry.list_sandboxes(states=["running"])) == [0, 2]
    assert ids(registry.list_sandboxes(states={SandboxState.RUNNING, "restarting"})) == [0, 2, 4]
    assert ids(registry.list_sandboxes(node_id="n1")) == [0, 3, 4]
    assert ids(registry.list_sandboxes(owner="bob", states=["failed", "running"])) == [2, 3]
    assert ids(registry.list_sandboxes(owner="bob", node_id="n1", states=["running"])) == []
    assert registry.list_sandboxes(states=[]) == []
    assert registry.list_sandboxes(owner="nobody") == []
    with pytest.raises(InvalidRequest, match="unknown sandbox state"):
        registry.list_sandboxes(states=["runing"])


# -- commits -----------------------------------------------------------------


def test_commits_are_listed_newest_first(registry: Registry, repo: RepositoryRecord) -> None:
    registry.add_sandbox(sandbox(repo.id))
    sid = "sb_test000000"
    assert registry.list_commits(sid) == []
    registry.replace_commits(
        sid, [(sha(n), f"edit {n}", T0 + timedelta(seconds=n)) for n in range(1, 5)]
    )

    commits = registry.list_commits(sid)
    assert [c.hash for c in commits] == [sha(4), sha(3), sha(2), sha(1)]
    assert [c.seq for c in commits] == [4, 3, 2, 1]
    assert commits[2] == CommitRecord(
        sandbox_id=sid, seq=2, hash=sha(2), message="edit 2", timestamp=T0 + timedelta(seconds=2)
    )
    assert [c.hash for c in registry.list_commits(sid, limit=2)] == [sha(4), sha(3)]
    assert registry.list_commits(sid, limit=0) == []


def test_replace_commits_after_rollback(registry: Registry, repo: RepositoryRecord) -> None:
    registry.add_sandbox(sandbox(repo.id, 0))
    registry.add_sandbox(sandbox(repo.id, 1))
    registry.replace_commits("sb_test000000", [(sha(n), f"edit {n}", T0) for n in range(1, 5)])
    registry.replace_commits("sb_test000001", [(sha(100), "other sandbox", T0)])

    # git now says: edits 1 and 2, then the rollback commit.
    registry.replace_commits(
        "sb_test000000",
        [(sha(1), "edit 1", T0), (sha(2), "edit 2", T0), (sha(9), "rollback", T0)],
    )
    commits = registry.list_commits("sb_test000000")
    assert [(c.seq, c.hash) for c in commits] == [(3, sha(9)), (2, sha(2)), (1, sha(1))]
    # Other sandboxes are untouched.
    assert [c.hash for c in registry.list_commits("sb_test000001")] == [sha(100)]

    registry.replace_commits("sb_test000000", [])
    assert registry.list_commits("sb_test000000") == []


def test_commit_errors(registry: Registry, repo: RepositoryRecord) -> None:
    registry.add_sandbox(sandbox(repo.id))
    sid = "sb_test000000"
    registry.replace_commits(sid, [(sha(1), "kept", T0)])
    with pytest.raises(SandboxNotFound):
        registry.list_commits("sb_missing1")
    with pytest.raises(SandboxNotFound):
        registry.replace_commits("sb_missing1", [])
    with pytest.raises(InvalidRequest, match="hash"):
        registry.replace_commits(sid, [(sha(1), "kept", T0), ("not-a-hash", "m", T0)])
    with pytest.raises(InvalidRequest, match="timestamp"):
        registry.replace_commits(sid, [(sha(2), "naive", datetime(2026, 1, 1))])
    with pytest.raises(InvalidRequest, match="twice"):
        registry.replace_commits(sid, [(sha(5), "a", T0), (sha(5), "b", T0)])
    with pytest.raises(InvalidRequest, match="negative"):
        registry.list_commits(sid, limit=-1)
    assert [c.hash for c in registry.list_commits(sid)] == [sha(1)]


# -- users -------------------------------------------------------------------


def test_user_crud_and_token_lookup(registry: Registry) -> None:
    admin = registry.add_user("admin", "admin-token-123", is_admin=True)
    alice = registry.add_user("alice", "alice-token-456")
    assert admin.is_admin
    assert not alice.is_admin
    assert alice.token_hash == hash_token("alice-token-456")
    assert "token_hash" not in repr(alice)

    assert registry.user_for_token("alice-token-456") == alice
    assert registry.user_for_token("admin-token-123") == admin
    assert registry.user_for_token("alice-token-45") is None
    assert registry.user_for_token("") is None
    assert registry.list_users() == [admin, alice]

    registry.remove_user("alice")
    assert registry.user_for_token("alice-token-456") is None
    assert registry.list_users() == [admin]


def test_user_errors(registry: Registry) -> None:
    registry.add_user("alice", "tok-1")
    with pytest.raises(Conflict, match="'alice'"):
        registry.add_user("alice", "tok-2")
    with pytest.raises(Conflict, match="token"):
        registry.add_user("bob", "tok-1")
    with pytest.raises(InvalidRequest, match="token"):
        registry.add_user("bob", "")
    with pytest.raises(InvalidRequest, match="name"):
        registry.add_user("bad name!", "tok-3")
    with pytest.raises(NotFound, match="'bob'"):
        registry.remove_user("bob")
    assert [u.name for u in registry.list_users()] == ["alice"]


def test_tokens_are_never_stored_in_clear(db_path: Path) -> None:
    tokens = {f"user{n}": f"s3cret-token-{n}-XYZZY" for n in range(20)}
    with Registry(db_path) as reg:
        for name, token in tokens.items():
            reg.add_user(name, token, is_admin=name == "user0")
        # Read while open (rows may still be in the WAL file) and after close
        # (checkpointed into the main file).
        in_wal = b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.is_file())
    at_rest = b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.is_file())
    for data in (in_wal, at_rest):
        assert b"XYZZY" not in data
        assert hash_token("s3cret-token-7-XYZZY").encode() in data
    with Registry(db_path) as reg:
        found = reg.user_for_token(tokens["user7"])
        assert found is not None
        assert found.name == "user7"


# -- records -----------------------------------------------------------------


def test_records_survive_pickling_and_json(registry: Registry, repo: RepositoryRecord) -> None:
    added(registry, sandbox(repo.id, state="running", created_at=T0))
    registry.replace_commits("sb_test000000", [(sha(1), "m", T0)])
    user = registry.add_user("alice", "tok")
    box = registry.get_sandbox("sb_test000000")
    records = [repo, box, registry.list_commits("sb_test000000")[0], user]
    for record in records:
        assert pickle.loads(pickle.dumps(record)) == record
        assert type(record).model_validate_json(record.model_dump_json()) == record
    data = box.model_dump(mode="json")
    assert data["state"] == "running"
    assert data["created_at"] == "2026-11-25T14:30:00Z"
    with pytest.raises(ValueError, match="frozen"):
        box.port = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"naive|timezone"):
        UserRecord(name="x", token_hash=hash_token("t"), created_at=datetime(2026, 1, 1))


# -- concurrency -------------------------------------------------------------


def test_concurrent_writes_from_eight_threads(registry: Registry, repo: RepositoryRecord) -> None:
    per_thread = 15
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            start.wait(timeout=30)
            for i in range(per_thread):
                n = t * 100 + i
                registry.add_sandbox(sandbox(repo.id, n, owner=f"user{t}"))
                registry.update_sandbox(f"sb_test{n:06d}", state="starting", port=5000 + n)
                registry.replace_commits(f"sb_test{n:06d}", [(sha(n + 1), f"t{t} i{i}", T0)])
                registry.list_sandboxes(owner=f"user{t}")
            registry.add_user(f"user{t}", f"token-{t}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []

    for t in range(8):
        mine = registry.list_sandboxes(owner=f"user{t}")
        assert len(mine) == per_thread
        assert all(r.state is SandboxState.STARTING for r in mine)
        for record in mine:
            n = int(record.id.removeprefix("sb_test"))
            assert [(c.seq, c.hash) for c in registry.list_commits(record.id)] == [(1, sha(n + 1))]
    assert len(registry.list_users()) == 8


def test_an_id_past_sqlite_integers_is_not_found(tmp_path: Path) -> None:
    with Registry(tmp_path / "registry.db") as registry:
        for repository_id in (0, -1, 2**63, 2**64):
            with pytest.raises(RepositoryNotFound):
                registry.get_repository(repository_id)


# -- limits ------------------------------------------------------------------


def test_a_token_is_looked_up_on_the_index_of_its_hash(registry: Registry, db_path: Path) -> None:
    registry.add_user("ann", "tok-ann")
    assert registry.user_for_token("tok-ann") is not None
    assert registry.user_for_token("tok-nobody") is None
    with contextlib.closing(_raw(db_path)) as conn:
        plan = " ".join(
            str(row[-1])
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT * FROM users WHERE token_hash = ?", ("x",)
            )
        )
    # A search on an index, not a scan of the table.
    assert "SEARCH users USING INDEX" in plan, plan


def test_the_owner_quota_counts_live_sandboxes_only(
    registry: Registry, repo: RepositoryRecord
) -> None:
    added(registry, sandbox(repo.id, 1, state=SandboxState.RUNNING))
    added(registry, sandbox(repo.id, 2, state=SandboxState.FAILED))
    added(registry, sandbox(repo.id, 3, state=SandboxState.STOPPED))
    added(registry, sandbox(repo.id, 4, owner="bob", state=SandboxState.RUNNING))
    registry.add_sandbox(sandbox(repo.id, 5), owner_quota=2)
    with pytest.raises(QuotaExceeded, match="max_sandboxes_per_user") as refused:
        registry.add_sandbox(sandbox(repo.id, 6), owner_quota=2)
    assert refused.value.details == {"quota": "max_sandboxes_per_user", "limit": 2}
    with pytest.raises(SandboxNotFound):
        registry.get_sandbox("sb_test000006")
    registry.add_sandbox(sandbox(repo.id, 6), owner_quota=0)  # 0: no quota


def test_a_held_running_sandbox_is_claimed_once_and_counted_in_the_quota(
    registry: Registry, repo: RepositoryRecord
) -> None:
    holder = "studio:ready"
    old = datetime(2020, 1, 1, tzinfo=UTC)
    added(
        registry, sandbox(repo.id, 1, owner=holder, state=SandboxState.RUNNING), last_activity=old
    )
    added(registry, sandbox(repo.id, 2, owner=holder, state=SandboxState.STARTING))
    added(registry, sandbox(repo.id, 3, owner="alice", state=SandboxState.RUNNING))
    # Alice has one live sandbox: a quota of 1 refuses, and nothing changes hands.
    with pytest.raises(QuotaExceeded):
        registry.claim_sandbox("sb_test000001", holder, "alice", owner_quota=1)
    assert registry.get_sandbox("sb_test000001").owner == holder
    # The repository's record counts the running held one, not the starting one.
    assert registry.get_repository(repo.id).ready_sandboxes == 1
    taken = registry.claim_sandbox("sb_test000001", holder, "alice", owner_quota=2)
    assert taken is not None and taken.owner == "alice"
    assert taken.last_activity > old and taken.created_at > old
    # Taken already; not the holder's; not running: none of these is handed out.
    assert registry.claim_sandbox("sb_test000001", holder, "bob") is None
    assert registry.claim_sandbox("sb_test000003", holder, "bob") is None
    assert registry.claim_sandbox("sb_test000002", holder, "bob") is None
    assert registry.get_sandbox("sb_test000002").owner == holder
    assert registry.get_repository(repo.id).ready_sandboxes == 0


# -- preparations ------------------------------------------------------------


def _prep(node_id: str, state: str, minutes: int = 0, **fields: object) -> NodePreparation:
    return NodePreparation.model_validate(
        {
            "node_id": node_id,
            "state": state,
            "started_at": T0 + timedelta(minutes=minutes),
            **fields,
        }
    )


def test_a_repository_shows_its_preparation_over_the_nodes(registry: Registry) -> None:
    repo = registry.add_repository("ui", "/srv/ui")
    assert repo.preparation.state == "pending"
    assert repo.preparation.nodes == []
    registry.save_preparation(repo.id, _prep("n1", "ready", finished_at=T0 + timedelta(minutes=2)))
    registry.save_preparation(repo.id, _prep("n2", "preparing", 1, step="install"))
    shown = registry.get_repository(repo.id).preparation
    assert (shown.state, shown.step) == ("preparing", "install")
    assert [n.node_id for n in shown.nodes] == ["n1", "n2"]
    # A row per node: saving again replaces it.
    failed = _prep("n2", "failed", 1, step="install", error="npm ci failed", output=["E404"])
    registry.save_preparation(repo.id, failed)
    [listed] = registry.list_repositories()
    assert (listed.preparation.state, listed.preparation.output) == ("failed", ["E404"])
    assert registry.find_repository("ui") == listed
    assert registry.list_preparations() == [
        (repo.id, listed.preparation.nodes[0]),
        (repo.id, failed),
    ]
    # Ready everywhere: from the first start to the last end, with the story count.
    registry.save_preparation(
        repo.id, _prep("n2", "ready", 1, finished_at=T0 + timedelta(minutes=5), stories=7)
    )
    ready = registry.get_repository(repo.id).preparation
    assert (ready.state, ready.started_at, ready.finished_at, ready.stories) == (
        "ready",
        T0,
        T0 + timedelta(minutes=5),
        7,
    )


def test_preparations_are_forgotten_by_repository_and_state(registry: Registry) -> None:
    ui = registry.add_repository("ui", "/srv/ui")
    kit = registry.add_repository("kit", "/srv/kit")
    registry.save_preparation(ui.id, _prep("n1", "preparing"))
    registry.save_preparation(ui.id, _prep("n2", "failed", error="x"))
    registry.save_preparation(kit.id, _prep("n1", "preparing"))
    assert registry.forget_preparations(states=[]) == 0
    assert registry.forget_preparations(repository_id=ui.id, states=["failed"]) == 1
    assert registry.forget_preparations(states=["preparing"]) == 2
    assert registry.list_preparations() == []
    with pytest.raises(RepositoryNotFound):
        registry.save_preparation(99, _prep("n1", "ready"))


def test_a_v2_registry_upgrades_to_preparations_keeping_its_repositories(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = _raw(db_path)
    try:
        migrations.apply_migrations(conn, up_to=2)
        conn.execute(
            "INSERT INTO repositories (name, source, created_at) VALUES ('ui', '/srv/ui', ?)",
            ("2026-01-02T03:04:05.000000+00:00",),
        )
    finally:
        conn.close()
    with Registry(db_path) as reg:
        [repo] = reg.list_repositories()
        assert (repo.name, repo.preparation.state) == ("ui", "pending")
        reg.save_preparation(repo.id, _prep("n1", "ready"))
        assert reg.get_repository(repo.id).preparation.state == "ready"
