"""Batches of any size: one append of 50,000 messages, all or nothing, on both SQL stores.

PostgreSQL accepts at most 65,535 parameters in one statement; an append whose
statement grows with the batch breaks past a few thousand messages. These tests
append far more than that, through the sync and the asyncio API, and through the
backend's fork path (the one a copy or re-encryption takes).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

import sessions_db as sdb
from sessions_db import migrations
from sessions_db.sql.engine import normalize_url

from .conftest import SQL_PARAMS, make_store, opener

BIG = 50_000


def quiet_postgres(pg_server: Callable[[], str]) -> str:
    """Return a new migrated database whose tables autovacuum leaves alone.

    After a bulk insert autovacuum may start a worker there, and dropping the
    database at the end of the run cannot end that worker without superuser
    rights.
    """
    url = pg_server()
    migrations.upgrade(url)
    engine = create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            for table in ("sessions", "entries", "checkpoints"):
                conn.execute(
                    text(
                        f"ALTER TABLE sessions_db_{table} SET "
                        "(autovacuum_enabled = false, toast.autovacuum_enabled = false)"
                    )
                )
    finally:
        engine.dispose()
    return url


@pytest.fixture(params=SQL_PARAMS)
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty SQL store of each kind (a database of its own on PostgreSQL)."""
    if request.param == "postgres":
        return quiet_postgres(request.getfixturevalue("pg_server"))
    return make_store(request.param, request, tmp_path)


def _batch(n: int, tag: str = "m") -> list[sdb.Message]:
    return [sdb.Message.new("user", {"content": f"{tag} {i}", "i": i}) for i in range(n)]


def test_append_50000_messages_in_one_call(sql_url: str, api: str) -> None:
    with opener(sql_url, api)() as mgr:
        session = mgr.create("assistant")
        session.append_message(sdb.Message.new("system", {"content": "start"}))
        batch = _batch(BIG)
        session.append_messages(batch)
        stored = session.get_messages()
        assert len(stored) == BIG + 1
        assert [m.id for m in stored[1:]] == [m.id for m in batch]
        assert stored[-1].payload == {"content": f"m {BIG - 1}", "i": BIG - 1}
        assert session.info().message_count == BIG + 1
        # The branch is linked: paging back from the end walks the batch in order.
        page = session.get_messages(limit=3, before=batch[-1].id)
        assert [m.id for m in page] == [m.id for m in batch[-4:-1]]
        # And the session goes on after it.
        session.append_message(sdb.Message.new("user", {"content": "after"}))
        assert session.info().message_count == BIG + 2


def test_big_batch_with_a_duplicate_id_stores_nothing(sql_url: str, api: str) -> None:
    with opener(sql_url, api)() as mgr:
        session = mgr.create("assistant")
        first = sdb.Message.new("user", {"content": "kept"})
        session.append_message(first)
        within = _batch(BIG)
        within.append(within[10])  # the same ID twice in one batch
        with pytest.raises(sdb.DuplicateEntryError):
            session.append_messages(within)
        again = [*_batch(BIG), first]  # an ID already in the session, last
        with pytest.raises(sdb.DuplicateEntryError):
            session.append_messages(again)
        assert [m.id for m in session.get_messages()] == [first.id]
        assert session.info().message_count == 1


def test_big_batch_with_an_invalid_message_stores_nothing(sql_url: str, api: str) -> None:
    with opener(sql_url, api)() as mgr:
        session = mgr.create("assistant")
        batch = _batch(BIG)
        batch[-1].payload["content"] = "bad \x00 nul"  # changed after it was checked
        with pytest.raises(sdb.PayloadError):
            session.append_messages(batch)
        assert session.get_messages() == []
        assert session.info().message_count == 0


@pytest.mark.postgres
def test_postgres_fork_path_takes_a_big_batch(pg_server: Callable[[], str]) -> None:
    # SQLite appends every batch this way (tested above); PostgreSQL only forks.
    backend = sdb.SQLBackend(quiet_postgres(pg_server))
    try:
        mgr = sdb.Manager(backend)
        session = mgr.create("assistant")
        root = sdb.Message.new("user", {"content": "root"})
        session.append_messages([root, sdb.Message.new("assistant", {"content": "old"})])
        now = datetime.now(UTC)
        entries = [sdb.SessionEntry.for_message(m) for m in _batch(BIG, "fork")]
        backend.append_entries(session.id, entries, fork_from=root.id, updated_at=now)
        stored = session.get_messages()
        assert [m.id for m in stored] == [root.id, *(e.id for e in entries)]
        assert session.info().message_count == BIG + 1
        # A fork whose batch repeats an ID stores nothing either.
        bad = [sdb.SessionEntry.for_message(m) for m in _batch(BIG, "bad")]
        bad.append(entries[0])
        with pytest.raises(sdb.DuplicateEntryError):
            backend.append_entries(session.id, bad, fork_from=root.id, updated_at=now)
        assert len(backend.load_entries(session.id)) == 2 + BIG
    finally:
        backend.close()
