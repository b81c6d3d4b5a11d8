"""Fixtures: real PostgreSQL (through pytest-postgresql), real SQLite files, real directories.

Tests never skip for want of something on the machine: a test that cannot run
here (no PostgreSQL server, no way to make the outage test's private cluster)
fails, through :func:`cannot_run`, unless SESSIONS_DB_ALLOW_SKIP=1 is set; then
it is skipped with the reason. Point the PostgreSQL tests at a server with
SESSIONS_DB_TEST_PG (a URL of a role that may create databases); `scripts/test`
starts the local cluster and creates that role.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest
from sqlalchemy import create_engine, make_url, text

pytest.register_assert_rewrite("sessions_db.testing")

import sessions_db as sdb  # noqa: E402
import sessions_db.aio  # noqa: E402
from sessions_db import migrations  # noqa: E402
from sessions_db.connect import file_path  # noqa: E402
from sessions_db.sql.engine import normalize_url  # noqa: E402
from sessions_db.testing.blocking import open_blocking  # noqa: E402

PG_URL = os.environ.get(
    "SESSIONS_DB_TEST_PG", "postgresql://sessions_db:sessions_db@127.0.0.1:5432/postgres"
)

#: Set to ``1`` to skip, instead of fail, the tests that cannot run on this machine.
ALLOW_SKIP = "SESSIONS_DB_ALLOW_SKIP"


def cannot_run(reason: str) -> NoReturn:
    """End the current test, which cannot run here: a failure, or a skip if the
    user opted out with ``SESSIONS_DB_ALLOW_SKIP=1`` (CI never does)."""
    if os.environ.get(ALLOW_SKIP) == "1":
        pytest.skip(reason)
    pytest.fail(
        f"this test cannot run here: {reason} (set {ALLOW_SKIP}=1 to skip such tests)",
        pytrace=False,
    )


def reach_postgres(url: str) -> None:
    """Connect once to the server of ``url``; :func:`cannot_run` if that fails."""
    parts = make_url(url)
    try:
        psycopg.connect(
            host=parts.host or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password,
            dbname=parts.database or "postgres",
            connect_timeout=10,
        ).close()
    except psycopg.OperationalError as exc:
        problem = str(exc)
    else:
        return
    where = parts.render_as_string(hide_password=True)
    cannot_run(f"no PostgreSQL server to test on at {where} (SESSIONS_DB_TEST_PG): {problem}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Callable[[], str]]:
    """A factory of throwaway PostgreSQL databases, dropped at the end of the run."""
    from pytest_postgresql.janitor import DatabaseJanitor

    reach_postgres(PG_URL)
    url = make_url(PG_URL)
    janitors: list[Any] = []

    def new_database() -> str:
        name = f"sessions_db_test_{secrets.token_hex(6)}"
        janitor = DatabaseJanitor(
            user=url.username or "postgres",
            password=url.password,
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            dbname=name,
            connection_timeout=10,
        )
        janitor.init()
        janitors.append(janitor)
        return url.set(database=name).render_as_string(hide_password=False)

    yield new_database
    for janitor in janitors:
        janitor.drop()


#: The fixtures that need the PostgreSQL server.
PG_FIXTURES = frozenset(
    {"pg_server", "pg_database", "pg_partitioned_database", "pgbouncer", "pg_replica"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``postgres`` every test that takes a PostgreSQL fixture, so that
    ``-m "not postgres"`` leaves out exactly the tests that need the server."""
    for item in items:
        if PG_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def pg_database(pg_server: Callable[[], str]) -> str:
    """One migrated database shared by the tests, emptied before each of them."""
    db_url = pg_server()
    migrations.upgrade(db_url)
    return db_url


#: Hash partitions of the partitioned test store.
TEST_PARTITIONS = 4


@pytest.fixture(scope="session")
def pg_partitioned_database(pg_server: Callable[[], str]) -> str:
    """One database migrated with partitioned tables, emptied before each test that uses it."""
    db_url = pg_server()
    migrations.upgrade(db_url, partitions=TEST_PARTITIONS)
    return db_url


@pytest.fixture(scope="session")
def pgbouncer(pg_server: Callable[[], str]) -> Iterator[Any]:
    """A private PgBouncer in transaction mode in front of the test server (see tests/pgbouncer.py).

    Its ``url(server_url)`` is a database's URL through it.
    """
    from .pgbouncer import private_pgbouncer  # it imports this module

    with private_pgbouncer(PG_URL) as bouncer:
        yield bouncer


@pytest.fixture(scope="session")
def pg_replica(pg_server: Callable[[], str]) -> Iterator[Any]:
    """A streaming replica of the test server (see tests/replica.py), for the whole run."""
    from .replica import streaming_replica  # it imports this module

    with streaming_replica(PG_URL) as replica:
        yield replica


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies (migrating once per run)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrations.upgrade(f"sqlite:///{path}")
    return path


def _empty_postgres(url: str) -> None:
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE sessions_db_checkpoints, sessions_db_entries, sessions_db_sessions, "
                "sessions_db_adk_app_state, sessions_db_adk_user_state"
            )
        )
    engine.dispose()


def make_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Return the URL of an empty store of ``kind`` for the current test."""
    if kind == "postgres":
        url: str = request.getfixturevalue("pg_database")
        _empty_postgres(url)
        return url
    if kind == "postgres-partitioned":
        url = request.getfixturevalue("pg_partitioned_database")
        _empty_postgres(url)
        return url
    if kind == "pgbouncer":
        # The same database, through PgBouncer in transaction mode; every manager
        # opened on it (in this process or a worker's) is told it is pooled.
        url = request.getfixturevalue("pg_database")
        _empty_postgres(url)
        request.getfixturevalue("monkeypatch").setenv("SESSIONS_DB_POOLED", "true")
        bounced: str = request.getfixturevalue("pgbouncer").url(url)
        return bounced
    if kind == "replica":
        # The same database, with reads from a streaming replica. Its reads are
        # held to no lag at all (each one probes first), as the contract's
        # checks read what other processes and connections just wrote; the
        # default bound is tested in tests/test_replica.py.
        url = request.getfixturevalue("pg_database")
        _empty_postgres(url)
        replica = request.getfixturevalue("pg_replica")
        replica.catch_up(url)
        environment = request.getfixturevalue("monkeypatch")
        environment.setenv("SESSIONS_DB_URL", url)
        environment.setenv("SESSIONS_DB_READ_URL", replica.url(url))
        environment.setenv("SESSIONS_DB_REPLICA_MAX_LAG", "0")
        return url
    if kind == "sqlite":
        path = tmp_path / "sessions.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    if kind == "file":
        return (tmp_path / "sessions").as_uri()
    raise AssertionError(kind)


#: The store kinds, marked so that `-m "not postgres"` can leave the server out.
STORE_PARAMS = [
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("file"),
]


#: The SQL store kinds only, for tests of SQL specifics.
SQL_PARAMS = STORE_PARAMS[:2]

#: PostgreSQL as it is deployed at scale: entries and checkpoints hash-partitioned.
PARTITIONED_PARAM = pytest.param("postgres-partitioned", marks=pytest.mark.postgres)
#: PostgreSQL through PgBouncer in transaction mode (``pooled``).
PGBOUNCER_PARAM = pytest.param("pgbouncer", marks=pytest.mark.postgres)
#: PostgreSQL with a streaming replica for reads (``read_url``).
REPLICA_PARAM = pytest.param("replica", marks=pytest.mark.postgres)


@pytest.fixture(params=SQL_PARAMS)
def sql_kind(request: pytest.FixtureRequest) -> str:
    """Each SQL store kind in turn."""
    kind: str = request.param
    return kind


@pytest.fixture
def sql_url(sql_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty SQL store of each kind."""
    return make_store(sql_kind, request, tmp_path)


@pytest.fixture(params=STORE_PARAMS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each store kind in turn."""
    kind: str = request.param
    return kind


@pytest.fixture
def store_url(store_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store of each kind."""
    return make_store(store_kind, request, tmp_path)


def sql_tamper(
    url: str, manager: sdb.Manager, session_id: str, entry_id: str, data: dict[str, Any]
) -> None:
    """Change an entry of the store at ``url`` behind the library's back, with plain SQL."""
    engine = create_engine(normalize_url(url))
    payload = ":payload" if engine.dialect.name == "sqlite" else "CAST(:payload AS JSONB)"
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"UPDATE sessions_db_entries SET payload = {payload}, role = :role "
                    "WHERE session_id = :sid AND id = :id"
                ).bindparams(
                    payload=json.dumps(data.get("payload", data)),
                    role=data.get("role"),
                    sid=session_id,
                    id=entry_id,
                )
            )
    finally:
        engine.dispose()


#: The APIs the contract runs through: the sync one, and the asyncio one behind a facade.
API_PARAMS = ["sync", "async"]


@pytest.fixture(params=API_PARAMS)
def api(request: pytest.FixtureRequest) -> str:
    """Each API in turn."""
    kind: str = request.param
    return kind


def opener(url: str, api: str) -> Callable[[], sdb.Manager]:
    """Return a picklable factory of new managers on ``url`` through ``api``."""
    if api == "sync":
        return partial(sdb.connect, url)
    return partial(open_blocking, partial(sdb.aio.connect, url))


def file_tamper(
    url: str, manager: sdb.Manager, session_id: str, entry_id: str, data: dict[str, Any]
) -> None:
    """Change an entry of the file store at ``url`` behind the library's back (its .jsonl line)."""
    (path,) = file_path(url).glob(f"*/{session_id}.jsonl")
    lines = path.read_bytes().splitlines(keepends=True)
    for i, line in enumerate(lines):
        obj = json.loads(line)
        if obj["id"] == entry_id and obj["type"] != "session":
            obj["data"] = data
            lines[i] = (json.dumps(obj, ensure_ascii=False) + "\n").encode()
    edited = path.with_name(path.name + ".edited")
    edited.write_bytes(b"".join(lines))
    edited.replace(path)  # as an editor does: a new file under the old name


@pytest.fixture
def open_manager(store_url: str, api: str) -> Callable[[], sdb.Manager]:
    """Opens a new manager on the test's store (picklable, for worker processes)."""
    return opener(store_url, api)


@pytest.fixture
def tamper(store_url: str, store_kind: str) -> Callable[..., None]:
    """Changes a stored entry behind the library's back."""
    return partial(file_tamper if store_kind == "file" else sql_tamper, store_url)


#: The environment variables the configuration reads.
CONFIG_VARIABLES = (
    "SESSIONS_DB_CONFIG",
    "SESSIONS_DB_ENABLED",
    "SESSIONS_DB_STORE",
    "SESSIONS_DB_URL",
    "SESSIONS_DB_BASE_DIR",
    "SESSIONS_DB_SCHEMA",
    "SESSIONS_DB_STATEMENT_TIMEOUT",
    "SESSIONS_DB_LOCK_TIMEOUT",
    "SESSIONS_DB_POOLED",
    "SESSIONS_DB_READ_URL",
    "SESSIONS_DB_REPLICA_MAX_LAG",
    "SESSIONS_DB_CHECKPOINT_AUTO_SAVE",
    "SESSIONS_DB_CHECKPOINT_INTERVAL",
    "SESSIONS_DB_REDACT",
    "SESSIONS_DB_ENCRYPTION_KEYS",
    "SESSIONS_DB_ENCRYPTION_ACTIVE",
    "SESSIONS_DB_ENCRYPTION_ALLOW_PLAINTEXT",
    "AIXGO_SESSION_DIR",
    "POSTGRES_CONNECTION_STRING",
)


@pytest.fixture(autouse=True)
def _no_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's own configuration variables out of every test."""
    for name in CONFIG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
