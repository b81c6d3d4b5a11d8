"""SQLBackend specifics: round trips, host engines, schemas, schema checks."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, inspect, text

import sessions_db as sdb
import sessions_db.aio
from sessions_db import migrations
from sessions_db import migrations as sdb_migrations
from sessions_db.sql.engine import PREPARED, normalize_url


def _message(i: int) -> sdb.Message:
    return sdb.Message.new("user", {"content": f"message {i}"})


class RoundTrips:
    """Counts the protocol round trips of one psycopg connection from libpq's trace."""

    def __init__(self, engine: Engine) -> None:
        raw = engine.raw_connection()
        self._pgconn: Any = raw.driver_connection.pgconn  # type: ignore[union-attr]
        raw.close()
        self._file = tempfile.NamedTemporaryFile(delete=False)  # noqa: SIM115

    def count(self, operation: Callable[[], Any]) -> int:
        """Return how many round trips (ReadyForQuery messages) ``operation`` made."""
        before = Path(self._file.name).read_text()
        self._pgconn.trace(self._file.fileno())
        try:
            operation()
        finally:
            self._pgconn.untrace()  # flushes libpq's buffered trace
        new = Path(self._file.name).read_text()[len(before) :]
        self.last_trace = new
        return new.count("\tReadyForQuery")

    def close(self) -> None:
        self._file.close()
        os.unlink(self._file.name)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    from .conftest import make_store

    url: str = make_store("postgres", request, Path(tempfile.gettempdir()))
    return url


@pytest.mark.parametrize("engine_from", ["host", "own"])
@pytest.mark.postgres
def test_postgres_append_and_load_are_one_round_trip(pg_url: str, engine_from: str) -> None:
    if engine_from == "host":
        # One pooled connection, so that every statement goes through the traced one.
        engine = create_engine(normalize_url(pg_url), pool_size=1, max_overflow=0)
        mgr = sdb.Manager(sdb.SQLBackend(engine))
    else:
        # The engine connect() builds: its liveness check on checkout costs no round
        # trip. Used from one thread, its pool holds a single connection.
        mgr = sdb.connect(pg_url)
        backend = mgr.backend
        assert isinstance(backend, sdb.SQLBackend)
        engine = backend.engine
    session = mgr.create("assistant")
    # psycopg prepares a statement on its fifth use on a connection, which costs
    # one extra round trip once; warm up past that, then count.
    for i in range(6):
        session.append_message(_message(i))
        session.get_messages()
        session.get_messages(limit=3)
    trips = RoundTrips(engine)
    try:
        for i in range(6, 12):
            message = _message(i)
            assert trips.count(lambda: session.append_message(message)) == 1  # noqa: B023
            assert trips.count(session.get_messages) == 1
            assert trips.count(lambda: session.get_messages(limit=3)) == 1
        batch = [_message(i) for i in range(100, 110)]
        assert trips.count(lambda: session.append_messages(batch)) == 1
        assert trips.count(session.checkpoint) > 1  # a locked transaction, on purpose
        assert len(session.get_messages()) == 22
        assert session.info().message_count == 22
    finally:
        trips.close()
        mgr.close()
        engine.dispose()


def test_sqlite_statements_per_operation(tmp_path: Path) -> None:
    mgr = sdb.connect(f"sqlite:///{tmp_path / 's.db'}")
    backend = mgr.backend
    assert isinstance(backend, sdb.SQLBackend)
    statements: list[str] = []

    @event.listens_for(backend.engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split(maxsplit=1)[0].upper())

    session = mgr.create("assistant")
    statements.clear()
    session.append_message(_message(1))
    # BEGIN IMMEDIATE, read the leaf, insert, advance the session row, COMMIT: no network.
    assert statements == ["BEGIN", "SELECT", "INSERT", "UPDATE", "COMMIT"]
    statements.clear()
    session.get_messages()
    # One statement: the whole branch is one range scan of the session's entries.
    assert statements == ["SELECT"]
    statements.clear()
    session.get_messages(limit=1)
    # The newest N: a recursive walk that stops after N messages.
    assert statements == ["WITH"]
    mgr.close()


@pytest.mark.postgres
def test_host_engine_is_never_disposed(pg_url: str) -> None:
    engine = create_engine(normalize_url(pg_url))
    with sdb.Manager(sdb.SQLBackend(engine)) as mgr:
        mgr.create("assistant")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sessions_db_sessions")).scalar() == 1
    # The host's own transactions are untouched by our autocommit connections.
    with engine.connect() as conn:
        conn.execute(text("CREATE TEMP TABLE host_t (x int)"))
        conn.commit()
        conn.execute(text("INSERT INTO host_t VALUES (1)"))
        conn.rollback()
        assert conn.execute(text("SELECT count(*) FROM host_t")).scalar() == 0
    engine.dispose()


@pytest.fixture
def pg_fresh(pg_server: Callable[[], str]) -> str:
    return pg_server()


@pytest.mark.postgres
def test_schema_keeps_tables_apart(pg_fresh: str) -> None:
    with sdb.Manager(sdb.SQLBackend(pg_fresh, schema="agents_store", migrate=True)) as mgr:
        session = mgr.create("assistant")
        session.append_message(_message(1))
        checkpoint = session.checkpoint()
        session.restore(checkpoint.id)
        assert [m.payload["content"] for m in session.get_messages()] == ["message 1"]
    engine = create_engine(normalize_url(pg_fresh))
    names = inspect(engine).get_table_names(schema="agents_store")
    assert sorted(names) == [
        "sessions_db_adk_app_state",
        "sessions_db_adk_user_state",
        "sessions_db_alembic_version",
        "sessions_db_checkpoints",
        "sessions_db_entries",
        "sessions_db_sessions",
    ]
    assert inspect(engine).get_table_names(schema="public") == []
    engine.dispose()
    # The default schema is not migrated: a backend there says so.
    with pytest.raises(sdb.SchemaError, match="sessions-db migrate"):
        sdb.SQLBackend(pg_fresh)


def test_unmigrated_sqlite_says_what_to_run(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    with pytest.raises(sdb.SchemaError) as raised:
        sdb.SQLBackend(f"sqlite:///{path}", migrate=False)
    assert f"`sessions-db migrate --url sqlite:///{path}`" in str(raised.value)
    with pytest.raises(sdb.SchemaError, match="sessions-db migrate --url"):
        sdb.connect(f"sqlite:///{tmp_path / 'empty2.db'}", migrate=False)
    assert migrations.current(f"sqlite:///{path}") is None


def test_bad_options(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with pytest.raises(sdb.ConfigurationError):
        sdb.SQLBackend(url, schema="x")
    with pytest.raises(sdb.ConfigurationError):
        sdb.connect("mysql://x/y")
    with pytest.raises(sdb.ConfigurationError):
        sdb.connect("not a url")
    with pytest.raises(sdb.ConfigurationError):
        sdb.SQLBackend(url, migrate=True, synchronous="sometimes")


@pytest.mark.postgres
def test_unreachable_postgres_is_storage_unavailable() -> None:
    with pytest.raises(sdb.StorageUnavailableError):
        sdb.SQLBackend("postgresql://nobody:x@127.0.0.1:1/none", connect_timeout=2)


#: What ``PRAGMA synchronous`` reports for each level.
SYNCHRONOUS_LEVEL = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}


def test_sqlite_is_wal_with_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with sdb.connect(f"sqlite:///{path}") as mgr:
        mgr.create("assistant").append_message(_message(1))
        backend = mgr.backend
        assert isinstance(backend, sdb.SQLBackend)
        with backend.engine.connect() as conn:
            # The connection the append ran on (one thread: the pool hands it back).
            assert conn.connection.info.get(PREPARED)
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == SYNCHRONOUS_LEVEL["FULL"]
    assert migrations.current(f"sqlite:///{path}") == migrations.head()


@pytest.mark.parametrize("level", ["FULL", "NORMAL", "EXTRA"])
def test_sqlite_durability_setting_reaches_live_connections(tmp_path: Path, level: str) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    migrations.upgrade(url)
    backend = sdb.SQLBackend(url, synchronous=level)
    try:
        sdb.Manager(backend).create("assistant").append_message(_message(1))
        with backend.engine.connect() as conn:
            assert conn.connection.info.get(PREPARED)
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == SYNCHRONOUS_LEVEL[level]
    finally:
        backend.close()


def test_asyncio_sqlite_is_wal_with_full_sync(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"

    async def main() -> tuple[Any, Any]:
        async with await sdb.aio.connect(url) as mgr:
            await (await mgr.create("assistant")).append_message(_message(1))
            backend = mgr.backend
            assert isinstance(backend, sdb.aio.AsyncSQLBackend)
            engine = backend.engine
            assert isinstance(engine, Engine)  # the worker threads' engine
            with engine.connect() as conn:
                assert conn.connection.info.get(PREPARED)
                mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                return mode, conn.exec_driver_sql("PRAGMA synchronous").scalar()

    assert asyncio.run(main()) == ("wal", SYNCHRONOUS_LEVEL["FULL"])


@pytest.mark.postgres
def test_postgres_session_operations_round_trips(pg_url: str) -> None:
    """The reads and creations of the session operations are one round trip each."""
    engine = create_engine(normalize_url(pg_url), pool_size=1, max_overflow=0)
    mgr = sdb.Manager(sdb.SQLBackend(engine))
    session = mgr.create("assistant", user_id="u", key="known", metadata={"team": "x"})
    operations: dict[str, Callable[[], Any]] = {
        "create": lambda: mgr.create("assistant"),
        "create with a key": lambda: mgr.create("assistant", key=f"k{next(counter)}"),
        "get_by_key": lambda: mgr.get_by_key("assistant", "known"),
        "get_or_create of a known key": lambda: mgr.get_or_create("assistant", "u", key="known"),
        "list with filters": lambda: mgr.list(
            "assistant", user_id="u", metadata={"team": "x"}, limit=10
        ),
        "list after a session": lambda: mgr.list("assistant", limit=2, after=seen),
        "get_messages within a budget": lambda: session.get_messages(max_tokens=40),
    }
    counter = iter(range(1_000))
    session.append_messages([_message(i) for i in range(5)])
    seen = session.info()
    # Past psycopg's preparation on the fifth use of each statement.
    for _ in range(6):
        for operation in operations.values():
            operation()
    trips = RoundTrips(engine)
    try:
        for name, operation in operations.items():
            assert trips.count(operation) == 1, name
    finally:
        trips.close()
        mgr.close()
        engine.dispose()


@pytest.mark.parametrize("zone", ["Etc/UTC", "Asia/Tokyo", "America/St_Johns"])
def test_postgres_times_read_back_in_utc_whatever_the_zone(
    pg_server: Callable[[], str], zone: str
) -> None:
    url = pg_server()
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        database = conn.exec_driver_sql("SELECT current_database()").scalar_one()
        conn.exec_driver_sql(f"ALTER DATABASE \"{database}\" SET timezone = '{zone}'")
    engine.dispose()
    sdb_migrations.upgrade(url)
    with sdb.connect(url) as mgr:
        session = mgr.create("assistant")
        sent = [_message(i) for i in range(3)]
        session.append_messages(sent)
        for got in (session.get_messages(), session.get_messages(limit=2)):
            assert [m.timestamp for m in got] == [m.timestamp for m in sent[-len(got) :]]
            assert all(m.timestamp.tzinfo is UTC for m in got)
