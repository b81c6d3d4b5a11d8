"""A PostgreSQL schema name is checked at every entry before it reaches SQL.

Hostile names go in through the API, the migrations, a YAML configuration, the
environment, the command line and the alembic command: each is refused with
``ConfigurationError`` (exit 2 on the command line) and the database is left
exactly as it was (no schema, no table anywhere).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text

import sessions_db as sdb
import sessions_db.aio
from sessions_db import migrations
from sessions_db.aio.sql import AsyncSQLBackend
from sessions_db.cli import EXIT_USAGE
from sessions_db.config import load_config
from sessions_db.ids import schema_name
from sessions_db.sql.engine import normalize_url

ROOT = Path(__file__).resolve().parent.parent

HOSTILE = [
    'x"; COMMIT; CREATE TABLE public.pwned(i int); --',
    "x'; CREATE TABLE public.pwned(i int); --",
    "a b",
    "a.b",
    "",
    "9lives",
    "pg_catalog",
    "Pg_toast",
    "é",
    "\u017f",  # matches "s" case-insensitively in some regex engines
    "x" * 64,
    "tab\there",
    "nul\x00",
]


def test_plain_identifiers_are_accepted() -> None:
    for name in ("sessions_db", "tenant_42", "_private", "MixedCase", "x" * 63):
        assert schema_name(name) == name
    assert schema_name(None) is None


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused(name: str) -> None:
    with pytest.raises(sdb.ConfigurationError, match="invalid schema name"):
        schema_name(name)


@pytest.fixture(scope="module")
def database(pg_server: Callable[[], str]) -> str:
    """One empty PostgreSQL database for the whole module: the checks leave it empty."""
    return pg_server()


def catalog(url: str) -> tuple[set[str], set[tuple[str, str]]]:
    """Every schema and every table of the database at ``url``."""
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            schemas = set(conn.execute(text("SELECT nspname FROM pg_namespace")).scalars())
            tables = {
                (row.schemaname, row.tablename)
                for row in conn.execute(text("SELECT schemaname, tablename FROM pg_tables"))
            }
        return schemas, tables
    finally:
        engine.dispose()


@pytest.fixture
def untouched(database: str) -> Iterator[str]:
    """The database's URL; after the test, its catalog must be what it was before."""
    before = catalog(database)
    yield database
    assert catalog(database) == before


def _api_entries(url: str, name: str) -> list[Callable[[], Any]]:
    return [
        lambda: migrations.upgrade(url, schema=name),
        lambda: migrations.downgrade(url, schema=name, revision="base"),
        lambda: migrations.current(url, schema=name),
        lambda: migrations.upgrade_sql(url, schema=name),
        lambda: migrations.tables_dropped(url, schema=name, revision="base"),
        lambda: sdb.SQLBackend(url, schema=name, migrate=True),
        lambda: AsyncSQLBackend(url, schema=name, migrate=True),
        lambda: sdb.connect(
            config={"session": {"store": "postgres", "url": url, "schema": name}}, migrate=True
        ),
        lambda: asyncio.run(
            sessions_db.aio.connect(
                config={"session": {"store": "postgres", "url": url, "schema": name}},
                migrate=True,
            )
        ),
    ]


@pytest.mark.postgres
@pytest.mark.parametrize("name", HOSTILE[:4])
def test_api_refuses_hostile_schemas(untouched: str, name: str) -> None:
    for entry in _api_entries(untouched, name):
        with pytest.raises(sdb.ConfigurationError, match="schema"):
            entry()


@pytest.mark.postgres
def test_yaml_configuration_refuses_a_hostile_schema(untouched: str, tmp_path: Path) -> None:
    path = tmp_path / "sessions.yaml"
    document = {"session": {"store": "postgres", "url": untouched, "schema": HOSTILE[0]}}
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(sdb.ConfigurationError, match=r"session\.schema"):
        sdb.connect(config=str(path), migrate=True)


@pytest.mark.postgres
def test_environment_refuses_a_hostile_schema(
    untouched: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSIONS_DB_SCHEMA", HOSTILE[0])
    monkeypatch.setenv("SESSIONS_DB_STORE", "postgres")
    monkeypatch.setenv("SESSIONS_DB_URL", untouched)
    with pytest.raises(sdb.ConfigurationError, match=r"SESSIONS_DB_SCHEMA"):
        load_config()
    with pytest.raises(sdb.ConfigurationError, match="schema"):
        sdb.connect(migrate=True)


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONS_DB_")}
    return subprocess.run(
        args, capture_output=True, text=True, env={**base, **env}, timeout=120, check=False
    )


@pytest.mark.postgres
def test_command_line_refuses_a_hostile_schema(untouched: str) -> None:
    cli = [sys.executable, "-m", "sessions_db", "migrate", "--url", untouched]
    for args, env in [
        ([*cli, "--schema", HOSTILE[0]], {}),
        ([*cli, "--sql", "--schema", HOSTILE[0]], {}),
        (cli, {"SESSIONS_DB_SCHEMA": HOSTILE[0]}),
        ([*cli, "current"], {"SESSIONS_DB_SCHEMA": "a b"}),
        ([*cli, "downgrade", "--revision", "base", "--yes"], {"SESSIONS_DB_SCHEMA": "a b"}),
    ]:
        done = _run(args, **env)
        assert done.returncode == EXIT_USAGE, done.stderr
        assert done.stderr.startswith("error: invalid schema name"), done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.postgres
def test_alembic_command_refuses_a_hostile_schema(untouched: str) -> None:
    done = _run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        SESSIONS_DB_URL=untouched,
        SESSIONS_DB_SCHEMA=HOSTILE[0],
    )
    assert done.returncode != 0
    assert "invalid schema name" in done.stderr


@pytest.mark.postgres
def test_a_valid_schema_is_quoted_as_needed(pg_server: Callable[[], str]) -> None:
    """A mixed-case schema (which SQL must quote) holds the tables and the search index."""
    url = pg_server()
    migrations.upgrade(url, schema="Tenant_1")
    schemas, tables = catalog(url)
    assert "Tenant_1" in schemas
    assert ("Tenant_1", "sessions_db_entries") in tables
    assert not any(schema == "public" and name.startswith("sessions_db") for schema, name in tables)
    with sdb.Manager(sdb.SQLBackend(url, schema="Tenant_1")) as mgr:
        session = mgr.create("assistant", user_id="u1")
        session.append_message(sdb.Message.new("user", {"content": "quoted schema"}))
        (hit,) = mgr.backend.search_messages("u1", "quoted")
        assert hit.session_id == session.id
    migrations.downgrade(url, schema="Tenant_1", revision="base")
    assert not any(name.startswith("sessions_db_e") for _, name in catalog(url)[1])
