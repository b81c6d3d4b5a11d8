"""The public models, queried by a host with its own ORM Session.

Every snippet of "Querying with the models" in docs/analytics.md runs here as
written, on data seeded through the public API: on PostgreSQL (and SQLite, the
snippets being portable), and in a configured PostgreSQL schema through
``schema_translate_map``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, String, create_engine, func, inspect, select
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sessions_db as sdb
from sessions_db.models import Base, CheckpointRow, EntryRow, SessionRow
from sessions_db.sql.engine import normalize_url

DOC = Path(__file__).resolve().parent.parent / "docs" / "analytics.md"
SNIPPET = re.compile(r"<!-- snippet: (\w+) -->\s*```python\n(.*?)```", re.DOTALL)
SNIPPETS = dict(SNIPPET.findall(DOC.read_text()))
DAY1 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
SCHEMA = "agents_store"


def _m(role: str, content: str, at: datetime, **extra: Any) -> sdb.Message:
    return sdb.Message.new(role, {"content": content, **extra}, timestamp=at)


def seed(mgr: sdb.Manager) -> dict[str, Any]:
    """Write the sessions the snippets read; return their IDs and checkpoints."""
    mgr.create("sales")  # anonymous, empty
    alice1 = mgr.create("support", user_id="alice")
    alice1.append_messages([_m("user", "hi", DAY1), _m("assistant", "hello", DAY1)])
    greeted = alice1.checkpoint()
    alice1.append_message(_m("assistant", "wrong answer", DAY1))
    alice1.restore(greeted.id)
    alice1.append_message(_m("assistant", "right answer", DAY2))
    alice2 = mgr.create("support", user_id="alice")
    alice2.append_message(_m("user", "again", DAY2))
    bob = mgr.create("sales", user_id="bob")
    bob.append_messages([_m("user", "price?", DAY2), _m("assistant", "checking", DAY2)])
    quoted = bob.checkpoint(metadata={"label": "quoted"})
    return {
        "alice1": alice1.id,
        "alice2": alice2.id,
        "bob": bob.id,
        "greeted": greeted,
        "quoted": quoted,
    }


def run_snippet(name: str, engine: Engine, **names: Any) -> dict[str, Any]:
    """Run the doc's snippet ``name`` with ``engine`` (and ``names``); return its variables."""
    namespace: dict[str, Any] = {"engine": engine, **names}
    exec(compile(SNIPPETS[name], f"docs/analytics.md:{name}", "exec"), namespace)
    return namespace


@pytest.fixture
def seeded(sql_url: str) -> Iterator[tuple[Engine, dict[str, Any]]]:
    """An engine on a store of each SQL kind seeded with :func:`seed`, and what it returned."""
    with sdb.connect(sql_url) as mgr:
        ids = seed(mgr)
    engine = create_engine(normalize_url(sql_url))
    yield engine, ids
    engine.dispose()


def test_every_snippet_is_tested() -> None:
    assert set(SNIPPETS) == {"user_sessions", "session_entries", "checkpoints", "in_a_schema"}


def test_user_sessions(seeded: tuple[Engine, dict[str, Any]], sql_url: str) -> None:
    engine, ids = seeded
    rows = run_snippet("user_sessions", engine)["user_sessions"]
    assert [tuple(row) for row in rows] == [
        (ids["alice1"], "support", 3, 4),
        (ids["alice2"], "support", 1, 1),
    ]
    with sdb.connect(sql_url) as mgr:
        by_api = {m.id: m.message_count for m in mgr.list("support", user_id="alice")}
    assert by_api == {row.id: row.message_count for row in rows}


def test_session_entries(seeded: tuple[Engine, dict[str, Any]]) -> None:
    engine, ids = seeded
    entries = run_snippet("session_entries", engine, session_id=ids["alice1"])["entries"]
    assert entries == [
        (1, "message", "user", "hi"),
        (2, "message", "assistant", "hello"),
        (3, "checkpoint", None, None),
        (4, "message", "assistant", "wrong answer"),
        (5, "metadata", None, None),
        (6, "message", "assistant", "right answer"),
    ]


def test_checkpoints(seeded: tuple[Engine, dict[str, Any]]) -> None:
    engine, ids = seeded
    found = run_snippet("checkpoints", engine, session_id=ids["bob"])
    quoted: sdb.Checkpoint = ids["quoted"]
    assert found["checkpoints"] == [(quoted.id, quoted.entry_id, {"label": "quoted"})]
    assert [tuple(row) for row in found["per_agent"]] == [("sales", 1), ("support", 1)]


def test_relationships_both_ways(seeded: tuple[Engine, dict[str, Any]]) -> None:
    engine, ids = seeded
    greeted: sdb.Checkpoint = ids["greeted"]
    with Session(engine) as db:
        checkpoint = db.scalars(select(CheckpointRow).where(CheckpointRow.id == greeted.id)).one()
        assert db.get(CheckpointRow, (ids["alice1"], greeted.id)) is checkpoint
        assert checkpoint.session.id == ids["alice1"]
        assert checkpoint.created_at == greeted.timestamp
        entry = db.get_one(EntryRow, (ids["alice1"], greeted.entry_id))
        assert entry.type == "checkpoint"
        assert entry.session is checkpoint.session
        assert [cp.id for cp in entry.session.checkpoints] == [greeted.id]
        assert entry.session.entries[2] is entry
        assert entry.session.key is None
        assert entry.session.forked_from is None


@pytest.mark.postgres
def test_in_a_schema(pg_server: Callable[[], str]) -> None:
    url = pg_server()
    config = {"session": {"store": "postgres", "url": url, "schema": SCHEMA}}
    with sdb.connect(config=config, migrate=True) as mgr:
        ids = seed(mgr)
    engine = create_engine(normalize_url(url))
    try:
        assert not [t for t in inspect(engine).get_table_names() if t.startswith("sessions_db")]
        found = run_snippet("in_a_schema", engine)
        assert [tuple(row) for row in found["messages_per_agent"]] == [
            ("sales", 2),
            ("support", 4),
        ]
        assert found["newest"].id == ids["bob"]
        assert found["newest_entries"] == ["price?", "checking", None]

        # The host's own models stay on its engine, in the same ORM Session.
        class HostBase(DeclarativeBase):
            pass

        class Note(HostBase):
            __tablename__ = "host_notes"
            id: Mapped[int] = mapped_column(primary_key=True)
            text: Mapped[str] = mapped_column(String(100))

        HostBase.metadata.create_all(engine)
        sessions_engine = found["sessions_engine"]
        with Session(engine, binds={Base: sessions_engine}) as db:
            db.add(Note(id=1, text="seen"))
            db.commit()
            assert db.scalar(select(func.count()).select_from(SessionRow)) == 4
            assert db.scalars(select(Note.text)).all() == ["seen"]
        # Without the map, the models look in the default schema, where nothing is.
        with Session(engine) as db, pytest.raises(ProgrammingError):
            db.scalar(select(func.count()).select_from(SessionRow))
    finally:
        engine.dispose()
