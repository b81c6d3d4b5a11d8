"""Full-text search on or off, chosen when a store is migrated (sessions_db.sql.fulltext).

With search off the store has no full-text search object, a search raises
UnsupportedOperationError, and everything else works; turned on again, every
message stored in between is found. Migration 0006 round-trips, on plain and
partitioned stores, with search on or off.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, make_url, text

import sessions_db as sdb
from sessions_db import migrations
from sessions_db.cli import main
from sessions_db.crypto import Keyring, generate_key
from sessions_db.sql.engine import normalize_url
from sessions_db.sql.fulltext import search_option

FTS_INDEX = "ix_sessions_db_entries_fts"
SQLITE_FTS = {"sessions_db_entries_fts", "sessions_db_entries_fts_docs"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database (never migrated)."""
    if request.param == "postgres":
        new_database: Callable[[], str] = request.getfixturevalue("pg_server")
        return new_database()
    return f"sqlite:///{tmp_path / 'empty.db'}"


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), env={"SESSIONS_DB_URL": None, "COLUMNS": "200"})


def _fts_objects(url: str) -> set[str]:
    """The full-text search objects in the database: indexes (PostgreSQL), tables (SQLite)."""
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                rows = conn.execute(
                    text(
                        "SELECT name FROM sqlite_master "
                        "WHERE name LIKE 'sessions_db_entries_fts%' "
                        "OR (type = 'trigger' AND name LIKE '%fts%')"
                    )
                )
            else:
                # On a partitioned store each partition has its own index.
                rows = conn.execute(
                    text(
                        "SELECT indexname FROM pg_indexes "
                        "WHERE indexdef LIKE '%to_tsvector%' AND tablename LIKE 'sessions_db_%'"
                    )
                )
            return {row[0] for row in rows}
    finally:
        engine.dispose()


def _indexes(url: str, table: str) -> set[str]:
    engine = create_engine(normalize_url(url))
    try:
        return {str(ix["name"]) for ix in inspect(engine).get_indexes(table)}
    finally:
        engine.dispose()


def _say(mgr: sdb.Manager, user: str, words: str) -> sdb.Session:
    session = mgr.create("assistant", user_id=user)
    session.append_message(sdb.Message.new("user", {"content": words}))
    return session


def test_search_off_then_on(empty_url: str) -> None:
    migrations.upgrade(empty_url, search=False)
    assert _fts_objects(empty_url) == set()
    assert migrations.search_on(empty_url) is False
    with sdb.connect(empty_url) as mgr:
        before = _say(mgr, "u1", "a marmalade sandwich")
        assert [m.payload["content"] for m in mgr.get(before.id).get_messages()] == [
            "a marmalade sandwich"
        ]
        with pytest.raises(sdb.UnsupportedOperationError, match="migrate --search"):
            mgr.memory("u1").search("marmalade")
        # The rest of the memory does not need the index.
        assert [hit.session_id for hit in mgr.memory("u1").list()] == [before.id]
        assert mgr.erase_user("u1") == 1
        kept = _say(mgr, "u2", "a marmalade sandwich again")
    # Migrating without the option keeps it off.
    migrations.upgrade(empty_url)
    assert _fts_objects(empty_url) == set()

    migrations.upgrade(empty_url, search=True)
    assert _fts_objects(empty_url)
    assert migrations.search_on(empty_url) is True
    with sdb.connect(empty_url) as mgr:
        # Stored while search was off, found now; and what is appended now too.
        assert [hit.session_id for hit in mgr.memory("u2").search("marmalade")] == [kept.id]
        later = _say(mgr, "u2", "more marmalade please")
        found = {hit.message.id for hit in mgr.memory("u2").search("marmalade")}
        assert later.get_messages()[0].id in found
        assert len(found) == 2


def test_an_open_manager_follows_the_switch(empty_url: str) -> None:
    """An open manager sees search turned on, and off again, as soon as it is migrated so."""
    migrations.upgrade(empty_url, search=False)
    with sdb.connect(empty_url) as mgr:
        session = _say(mgr, "u1", "quince jelly")
        with pytest.raises(sdb.UnsupportedOperationError):
            mgr.memory("u1").search("quince")
        migrations.upgrade(empty_url, search=True)
        assert [hit.session_id for hit in mgr.memory("u1").search("quince")] == [session.id]
        migrations.upgrade(empty_url, search=False)
        with pytest.raises(sdb.UnsupportedOperationError):
            mgr.memory("u1").search("quince")


def test_encrypted_stores_search_without_the_index(empty_url: str) -> None:
    """Encrypted payloads are searched by decrypting the user's messages: the switch is moot."""
    migrations.upgrade(empty_url, search=False)
    backend = sdb.connect(empty_url).backend
    with sdb.Manager(backend, keyring=Keyring({"k1": generate_key()})) as mgr:
        session = _say(mgr, "u1", "damson gin")
        assert [hit.session_id for hit in mgr.memory("u1").search("damson")] == [session.id]


def test_round_trip_through_0006(empty_url: str) -> None:
    """Downgrading below 0006 brings back its indexes and search; upgrading drops them again."""
    migrations.upgrade(empty_url, search=False)
    with sdb.connect(empty_url) as mgr:
        session = _say(mgr, "u1", "elderflower cordial")
    assert "ix_sessions_db_entries_created_at" not in _indexes(empty_url, "sessions_db_entries")
    assert "ix_sessions_db_checkpoints_session_id_created_at" not in _indexes(
        empty_url, "sessions_db_checkpoints"
    )
    migrations.downgrade(empty_url, revision="0005")
    assert migrations.current(empty_url) == "0005"
    assert "ix_sessions_db_entries_created_at" in _indexes(empty_url, "sessions_db_entries")
    assert "ix_sessions_db_checkpoints_session_id_created_at" in _indexes(
        empty_url, "sessions_db_checkpoints"
    )
    # Revisions before 0006 always have full-text search.
    assert _fts_objects(empty_url)
    assert migrations.search_on(empty_url) is True
    migrations.upgrade(empty_url)
    assert migrations.current(empty_url) == migrations.head()
    assert "ix_sessions_db_entries_created_at" not in _indexes(empty_url, "sessions_db_entries")
    with sdb.connect(empty_url) as mgr:
        assert [hit.session_id for hit in mgr.memory("u1").search("cordial")] == [session.id]
        assert len(mgr.get(session.id).get_messages()) == 1


def test_search_is_chosen_at_the_newest_revision(empty_url: str) -> None:
    with pytest.raises(sdb.InvalidArgumentError, match="newest revision"):
        migrations.upgrade(empty_url, revision="0005", search=False)


@pytest.mark.parametrize("bad", ["maybe", "", 2, None])
def test_search_option_is_checked(bad: object) -> None:
    with pytest.raises(sdb.InvalidArgumentError):
        search_option(bad)


@pytest.mark.parametrize(("given", "wanted"), [("off", False), ("ON", True), (False, False)])
def test_search_option_words(given: object, wanted: bool) -> None:
    assert search_option(given) is wanted


def test_cli_switch(empty_url: str) -> None:
    result = _cli("migrate", "--url", empty_url, "--no-search", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["search"] is False
    result = _cli("migrate", "current", "--url", empty_url)
    assert "full-text search off" in result.output
    assert _fts_objects(empty_url) == set()
    result = _cli("migrate", "current", "--url", empty_url, "--no-search")
    assert result.exit_code != 0
    assert "upgrade only" in result.output
    result = _cli("migrate", "--url", empty_url, "--search", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["search"] is True
    current = json.loads(_cli("migrate", "current", "--url", empty_url, "--json").output)
    assert current["search"] is True
    assert _fts_objects(empty_url)


@pytest.mark.postgres
def test_partitioned_store_without_search(pg_server: Callable[[], str]) -> None:
    url = pg_server()
    migrations.upgrade(url, partitions=2, search=False)
    assert _fts_objects(url) == set()
    with sdb.connect(url) as mgr:
        session = _say(mgr, "u1", "rhubarb crumble")
    # A new layout keeps search off; turning it on indexes every partition.
    migrations.upgrade(url, partitions=3)
    assert _fts_objects(url) == set()
    assert migrations.layout(url).partitions == 3
    migrations.upgrade(url, search=True)
    assert len(_fts_objects(url)) == 4  # the partitioned index and one per partition
    with sdb.connect(url) as mgr:
        assert [hit.session_id for hit in mgr.memory("u1").search("rhubarb")] == [session.id]
    migrations.downgrade(url, revision="0005")
    migrations.upgrade(url)
    with sdb.connect(url) as mgr:
        assert [hit.session_id for hit in mgr.memory("u1").search("crumble")] == [session.id]


@pytest.mark.postgres
def test_sql_script_without_search(pg_server: Callable[[], str]) -> None:
    """`migrate --sql --no-search`, applied by hand to an empty database, has no search index."""
    source, target = pg_server(), pg_server()
    result = _cli("migrate", "--sql", "--url", source, "--no-search")
    assert result.exit_code == 0, result.output
    assert f"DROP INDEX IF EXISTS {FTS_INDEX}" in result.output
    dsn = make_url(target).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(result.output.encode())
    assert migrations.current(target) == migrations.head()
    assert _fts_objects(target) == set()
    with sdb.connect(target) as mgr:
        _say(mgr, "u1", "scripted")
        with pytest.raises(sdb.UnsupportedOperationError):
            mgr.memory("u1").search("scripted")


def test_inspector_search_page_says_search_is_off(empty_url: str) -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from sessions_db.inspector import app

    migrations.upgrade(empty_url, search=False)
    with sdb.connect(empty_url) as mgr:
        _say(mgr, "u1", "greengage")
        with TestClient(app(mgr)) as client:
            page = client.get("/search", params={"user": "u1", "q": "greengage"})
            assert page.status_code == 501
            assert "migrate --search" in page.text
            assert client.get("/search").status_code == 200  # the empty form
