"""Long-term memory: ranking, isolation between users, read and list; on every store.

Each test runs on every store with its own search ("sql": the database's
full-text search on SQLite and PostgreSQL), and through a plain backend wrapper
that has no search of its own, so that the interface's scanning default answers
("scan"); both through the sync API and the asyncio one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

import sessions_db as sdb
import sessions_db.aio
from sessions_db import Message, migrations
from sessions_db.backend import StorageBackend
from sessions_db.sql.engine import normalize_url
from sessions_db.testing.blocking import open_blocking

from .conftest import make_store


def forwarding(base: type[Any]) -> type[Any]:
    """A user's own backend class: forwards the abstract methods of ``base`` only.

    So search and list fall back to the interface's scanning defaults.
    """

    def forward(name: str) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            return getattr(self.inner, name)(*args, **kwargs)

        return method

    def init(self: Any, inner: Any) -> None:
        self.inner = inner

    methods = {name: forward(name) for name in base.__abstractmethods__}
    return type(f"Forwarding{base.__name__}", (base,), {"__init__": init, **methods})


Wrapper = forwarding(StorageBackend)
AsyncWrapper = forwarding(sdb.aio.AsyncStorageBackend)


async def _async_scanning(url: str) -> sdb.aio.AsyncManager:
    return sdb.aio.AsyncManager(AsyncWrapper((await sdb.aio.connect(url)).backend))


@pytest.fixture(params=["sql", "scan"])
def mgr(request: pytest.FixtureRequest, store_url: str, api: str) -> Iterator[sdb.Manager]:
    """A manager through each API (asyncio behind the blocking facade), searching each way."""
    scanning = request.param == "scan"
    if api == "async":
        connect = partial(_async_scanning if scanning else sdb.aio.connect, store_url)
        with open_blocking(connect) as manager:
            yield manager
        return
    backend: StorageBackend = sdb.connect(store_url).backend
    with sdb.Manager(Wrapper(backend) if scanning else backend) as manager:
        yield manager


def say(session: sdb.Session, content: str, **extra: Any) -> Message:
    message = Message.new("user", {"content": content, **extra})
    session.append_message(message)
    return message


# Every text has eight words, so that length normalization (bm25) plays no part.
THRICE = "invoice invoice invoice arrived late this month"
ONCE = "the invoice arrived late again this month ok"
BOTH = "refund for the invoice arrived late this month"
REFUND = "refund arrived late again this month ok sure"
UNRELATED = "the weather today was sunny and quite warm"


def contents(hits: list[sdb.MemoryHit]) -> list[str]:
    return [h.message.payload["content"] for h in hits]


def test_more_mentions_rank_higher_across_sessions(mgr: sdb.Manager) -> None:
    first = mgr.create("billing", user_id="alice")
    second = mgr.create("support", user_id="alice")
    say(first, ONCE)
    say(second, THRICE)
    say(first, UNRELATED)
    hits = mgr.memory("alice").search("invoice")
    assert contents(hits) == [THRICE, ONCE]
    assert hits[0].score > hits[1].score > 0
    assert {h.session_id for h in hits} == {first.id, second.id}
    assert hits[0].session_id == second.id


def test_more_query_words_rank_higher(mgr: sdb.Manager) -> None:
    s = mgr.create("billing", user_id="alice")
    say(s, REFUND)
    say(s, BOTH)
    say(s, UNRELATED)
    assert contents(mgr.memory("alice").search("Invoice, refund?")) == [BOTH, REFUND]


def test_other_users_never_appear(mgr: sdb.Manager) -> None:
    mine = mgr.create("billing", user_id="alice")
    theirs = mgr.create("billing", user_id="bob")
    anonymous = mgr.create("billing")
    say(mine, ONCE)
    other = say(theirs, THRICE)
    say(anonymous, THRICE)
    hits = mgr.memory("alice").search("invoice", limit=10)
    assert contents(hits) == [ONCE]
    assert contents(mgr.memory("bob").search("invoice")) == [THRICE]
    with pytest.raises(sdb.EntryNotFoundError):
        mgr.memory("alice").read(other.id)
    assert [h.message.id for h in mgr.memory("alice").list()] == [h.message.id for h in hits]


def test_limit_and_no_match(mgr: sdb.Manager) -> None:
    s = mgr.create("billing", user_id="alice")
    for i in range(7):
        say(s, f"invoice number {i} " + "invoice " * i)
    memory = mgr.memory("alice")
    hits = memory.search("invoice", limit=3)
    assert [h.message.payload["content"].split()[2] for h in hits] == ["6", "5", "4"]
    assert len(memory.search("invoice")) == 5  # the default limit
    assert memory.search("invoice", limit=0) == []
    assert memory.search("kangaroo") == []
    assert memory.search("  ?! ") == []
    with pytest.raises(sdb.InvalidArgumentError):
        memory.search("invoice", limit=-1)


def test_nested_strings_are_searched_keys_are_not(mgr: sdb.Manager) -> None:
    s = mgr.create("billing", user_id="alice")
    nested = Message.new("tool", {"result": {"items": ["penguin", {"note": "Penguin"}]}, "n": 3})
    s.append_message(nested)
    say(s, "nothing here", result="x")
    memory = mgr.memory("alice")
    assert [h.message.id for h in memory.search("PENGUIN")] == [nested.id]
    assert memory.search("result") == []
    assert memory.search("note") == []


def test_agent_filter(mgr: sdb.Manager) -> None:
    say(mgr.create("billing", user_id="alice"), ONCE)
    say(mgr.create("support", user_id="alice"), THRICE)
    memory = mgr.memory("alice", agent_name="billing")
    assert contents(memory.search("invoice")) == [ONCE]
    assert contents(memory.list()) == [ONCE]


def test_read_and_list_newest_first(mgr: sdb.Manager) -> None:
    a = mgr.create("billing", user_id="alice")
    b = mgr.create("support", user_id="alice")
    sent = [say(a, "one"), say(b, "two"), say(a, "three"), say(b, "four")]
    memory = mgr.memory("alice")
    assert contents(memory.list()) == ["four", "three", "two", "one"]
    assert contents(memory.list(limit=2, offset=1)) == ["three", "two"]
    assert memory.list(limit=2, offset=1)[0].session_id == a.id
    assert memory.read(sent[1].id) == sent[1]
    with pytest.raises(sdb.EntryNotFoundError):
        memory.read("no-such-message")
    with pytest.raises(sdb.InvalidIDError):
        mgr.memory("")


def test_deleted_sessions_are_forgotten(mgr: sdb.Manager) -> None:
    keep = mgr.create("billing", user_id="alice")
    gone = mgr.create("billing", user_id="alice")
    say(keep, ONCE)
    say(gone, THRICE)
    mgr.delete(gone.id)
    assert contents(mgr.memory("alice").search("invoice")) == [ONCE]
    assert contents(mgr.memory("alice").list()) == [ONCE]


def test_fts_rows_follow_deletes(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """On SQLite the FTS rows go with their entries (cascades fire the triggers)."""
    store_url = make_store("sqlite", request, tmp_path)
    with sdb.connect(store_url) as m:
        s = m.create("billing", user_id="alice")
        say(s, ONCE)
        say(s, THRICE)
        m.delete(s.id)
        pruned = m.create("billing", user_id="alice")
        say(pruned, ONCE)
        assert m.prune(timedelta(0)) == [pruned.id]
    engine = create_engine(normalize_url(store_url))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sessions_db_entries_fts")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM sessions_db_entries_fts_docs")).scalar() == 0
    engine.dispose()


def test_messages_stored_before_the_migration_are_indexed(
    sql_kind: str, pg_server: Any, tmp_path: Any
) -> None:
    url = pg_server() if sql_kind == "postgres" else f"sqlite:///{tmp_path / 'old.db'}"
    migrations.upgrade(url, revision="0001")
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO sessions_db_sessions VALUES "
                "('00000000-0000-4000-8000-000000000001', 'billing', 'alice', "
                "'2025-01-01 00:00:00', '2025-01-01 00:00:00', 1, 'm1', 1, '{}')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO sessions_db_entries VALUES "
                "('00000000-0000-4000-8000-000000000001', 'm1', NULL, 1, 1, 'message', 'user', "
                "'{\"content\": \"an old invoice\"}', '2025-01-01 00:00:00')"
            )
        )
    engine.dispose()
    migrations.upgrade(url)
    with sdb.connect(url) as m:
        assert contents(m.memory("alice").search("invoice")) == ["an old invoice"]
    migrations.downgrade(url, revision="0001")
    assert migrations.current(url) == "0001"
    migrations.upgrade(url)
    with sdb.connect(url) as m:
        assert contents(m.memory("alice").search("invoice")) == ["an old invoice"]


def test_models_and_migrations_agree(sql_url: str) -> None:
    store_url = sql_url
    """Autogenerate (through alembic/env.py) finds nothing to change after the migrations."""
    from alembic import command

    engine = create_engine(normalize_url(store_url))
    try:
        with engine.connect() as conn:
            command.check(migrations.config(conn))
    finally:
        engine.dispose()
