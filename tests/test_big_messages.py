"""A message of megabytes of distinct words is stored whole and found by its first words.

PostgreSQL's text-search vectors must stay under 1 MB; the full-text index
takes only the first characters of a message's text (migration 0003), so such a
message no longer fails to store (error 54000), whoever wrote it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

import sessions_db as sdb
from sessions_db import migrations
from sessions_db.sql.engine import normalize_url
from sessions_db.sql.schema import PG_FTS_CHARS, PG_FTS_VECTOR

from .conftest import opener

ROOT = Path(__file__).resolve().parent.parent


def _huge_text() -> str:
    """About 3.4 MB of distinct words, starting with a findable one."""
    return "needleatstart " + " ".join(f"w{i:06d}q{i * 7919 % 100_003:06d}" for i in range(230_000))


def test_huge_message_is_stored_whole_and_searchable(store_url: str, api: str) -> None:
    body = _huge_text()
    assert len(body.encode()) > 3_000_000
    payload = {"content": body, "parts": [{"text": "tail of a list"}]}
    with opener(store_url, api)() as mgr:
        sess = mgr.create("tools", user_id="u1")
        message = sdb.Message.new("tool", payload)
        sess.append_message(message)
        sess.append_message(sdb.Message.new("assistant", {"content": "short answer"}))
        with opener(store_url, api)() as other:
            (first, second) = other.get(sess.id).get_messages()
        assert first == message
        assert first.payload["content"] == body
        assert second.payload == {"content": "short answer"}
        hits = mgr.memory("u1").search("needleatstart", limit=5)
        assert [h.message.id for h in hits] == [message.id]
        assert [h.message.id for h in mgr.memory("u1").search("answer")] == [second.id]


def test_escaped_characters_separate_words(store_url: str, api: str) -> None:
    """Newlines, quotes and backslashes in the text separate words, as before the cap."""
    payload = {"content": 'one\nnewlineword "quotedword" back\\slashword\ttabword', "n": 5}
    with opener(store_url, api)() as mgr:
        sess = mgr.create("notes", user_id="u1")
        sess.append_message(sdb.Message.new("user", payload))
        memory = mgr.memory("u1")
        for word in ("newlineword", "quotedword", "slashword", "tabword"):
            assert len(memory.search(word)) == 1, word
        assert memory.search("content") == []  # keys are not searched


def test_index_and_search_use_one_expression() -> None:
    """Migration 0003 indexes the expression the search runs (else the index is not used)."""
    path = ROOT / "alembic" / "versions" / "0003_capped_search_index.py"
    spec = importlib.util.spec_from_file_location("migration_0003", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert PG_FTS_VECTOR.format(payload="payload") == module.VECTOR
    assert module.INDEXED_CHARS == PG_FTS_CHARS


@pytest.mark.postgres
def test_postgres_search_uses_the_index(pg_database: str) -> None:
    engine = create_engine(normalize_url(pg_database))
    vector = PG_FTS_VECTOR.format(payload="e.payload")
    try:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(
                row[0]
                for row in conn.execute(
                    text(
                        f"EXPLAIN SELECT e.id FROM sessions_db_entries e WHERE e.type = 'message' "
                        f"AND {vector} @@ plainto_tsquery('simple', 'word')"
                    )
                )
            )
    finally:
        engine.dispose()
    assert "ix_sessions_db_entries_fts" in plan


@pytest.mark.postgres
def test_postgres_downgrade_restores_the_old_index(pg_server: object) -> None:
    url = pg_server()  # type: ignore[operator]
    migrations.upgrade(url)
    migrations.downgrade(url, revision="0002")
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            (definition,) = conn.execute(
                text(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_sessions_db_entries_fts'"
                )
            ).one()
    finally:
        engine.dispose()
    assert "jsonb_to_tsvector" in definition
    migrations.upgrade(url)
    assert migrations.current(url) == migrations.head()
