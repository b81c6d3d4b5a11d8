"""Fixtures: real PostgreSQL (through pytest-postgresql), real SQLite files.

PostgreSQL tests never skip: when the server cannot be reached they fail. Point
them at a server with SESSIONS_DB_TEST_PG (a URL of a role that may create
databases); `scripts/test` starts the local cluster and creates that role.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text

pytest.register_assert_rewrite("sessions_db.testing")

import sessions_db as sdb  # noqa: E402
from sessions_db import migrations  # noqa: E402
from sessions_db.sql.engine import normalize_url  # noqa: E402

PG_URL = os.environ.get(
    "SESSIONS_DB_TEST_PG", "postgresql://sessions_db:sessions_db@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Callable[[], str]]:
    """A factory of throwaway PostgreSQL databases, dropped at the end of the run."""
    from pytest_postgresql.janitor import DatabaseJanitor

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


@pytest.fixture(scope="session")
def pg_database(pg_server: Callable[[], str]) -> str:
    """One migrated database shared by the tests, emptied before each of them."""
    db_url = pg_server()
    migrations.upgrade(db_url)
    return db_url


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
            text("TRUNCATE sessions_db_checkpoints, sessions_db_entries, sessions_db_sessions")
        )
    engine.dispose()


def make_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Return the URL of an empty store of ``kind`` for the current test."""
    if kind == "postgres":
        url: str = request.getfixturevalue("pg_database")
        _empty_postgres(url)
        return url
    if kind == "sqlite":
        path = tmp_path / "sessions.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    raise AssertionError(kind)


#: The SQL store kinds, marked so that `-m "not postgres"` can leave the server out.
SQL_PARAMS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=SQL_PARAMS)
def sql_kind(request: pytest.FixtureRequest) -> str:
    """Each SQL store kind in turn."""
    kind: str = request.param
    return kind


@pytest.fixture
def store_url(sql_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty SQL store of each kind."""
    return make_store(sql_kind, request, tmp_path)


def sql_tamper(manager: sdb.Manager, session_id: str, entry_id: str, data: dict[str, Any]) -> None:
    """Change an entry behind the library's back, with plain SQL."""
    backend = manager.backend
    assert isinstance(backend, sdb.SQLBackend)
    as_json = "CAST(:payload AS JSONB)" if backend.dialect == "postgresql" else ":payload"
    statement = text(
        f"UPDATE sessions_db_entries SET payload = {as_json}, role = :role "
        "WHERE session_id = :sid AND id = :id"
    )
    with backend.engine.begin() as conn:
        conn.execute(
            statement,
            {
                "payload": json.dumps(data.get("payload", data)),
                "role": data.get("role"),
                "sid": session_id,
                "id": entry_id,
            },
        )


@pytest.fixture
def open_manager(store_url: str) -> Callable[[], sdb.Manager]:
    """Opens a new manager on the test's store (picklable, for worker processes)."""
    return partial(sdb.connect, store_url)


@pytest.fixture
def tamper() -> Callable[..., None]:
    """Changes a stored entry behind the library's back."""
    return sql_tamper
