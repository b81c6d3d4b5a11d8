"""Stores written by the previous release (revision 0003) open, migrate and read back exactly.

The stores in ``tests/fixtures/v1/`` were written by ``tests/fixtures/make_v1_stores.py``
run with that release's code: SQLite, encrypted SQLite, a file directory, and the
rows of a PostgreSQL store. Each is copied, opened with today's code, and must hold
exactly what was written: the sessions of two agents, their messages, checkpoints
that still verify on restore, and a session with two branches.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

import sessions_db as sdb
from sessions_db import migrations
from sessions_db.crypto import Keyring
from sessions_db.sql.engine import normalize_url

from .fixtures.make_v1_stores import KEY, KEY_ID, REVISION, START

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "v1"


def _at(minute: int) -> datetime:
    return START + timedelta(minutes=minute)


#: What each fixture session holds, by its ``metadata["fixture"]``: agent, user,
#: and the messages of the current branch (role, content, minute of the timestamp).
SESSIONS: dict[str, tuple[str, str | None, list[tuple[str, str, int]]]] = {
    "a": (
        "support",
        "alice",
        [("user", "hi", 0), ("assistant", "hello", 1), ("assistant", "right answer", 3)],
    ),
    "b": ("support", "alice", [("user", "again", 4)]),
    "c": ("sales", "bob", [("user", "price?", 5), ("assistant", "checking", 6)]),
    "d": ("sales", None, []),
}


def _by_fixture(mgr: sdb.Manager) -> dict[str, sdb.SessionMetadata]:
    found = {
        meta.metadata["fixture"]: meta for agent in mgr.list_agents() for meta in mgr.list(agent)
    }
    assert set(found) == set(SESSIONS)
    return found


def assert_v1_data(mgr: sdb.Manager) -> None:
    """Everything the fixture script wrote is there, exactly (reads only)."""
    assert mgr.list_agents() == ["sales", "support"]
    found = _by_fixture(mgr)
    for name, (agent, user, messages) in SESSIONS.items():
        meta = found[name]
        assert (meta.agent_name, meta.user_id) == (agent, user), name
        assert meta.metadata == {"fixture": name}
        assert meta.message_count == len(messages), name
        got = mgr.get(meta.id).get_messages()
        assert [(m.type, m.payload["content"], m.timestamp) for m in got] == [
            (role, content, _at(minute)) for role, content, minute in messages
        ], name
    assert [m.id for m in mgr.list("support", user_id="alice")] == [
        found["b"].id,
        found["a"].id,
    ]
    assert [m.id for m in mgr.list("sales", user_id="bob")] == [found["c"].id]

    # a: two branches; the abandoned one still holds the wrong answer.
    a = mgr.get(found["a"].id)
    entries = a.get_entries()
    assert [e.type for e in entries] == [
        "message",
        "message",
        "checkpoint",
        "message",
        "metadata",
        "message",
    ]
    parents = {e.parent_id for e in entries}
    leaves = [e for e in entries if e.id not in parents]
    assert [leaf.data["payload"]["content"] for leaf in leaves] == ["wrong answer", "right answer"]
    (greeted,) = a.list_checkpoints()
    assert greeted.metadata == {}
    assert greeted.entry_id == entries[2].id
    assert entries[4].data == {"event": "restore", "checkpoint_id": greeted.id}

    # c: the tool calls and the checkpoint's metadata are kept.
    c = mgr.get(found["c"].id)
    assert c.get_messages()[1].payload == {
        "content": "checking",
        "tool_calls": [{"function": {"name": "quote"}}],
    }
    (quoted,) = c.list_checkpoints()
    assert quoted.metadata == {"label": "quoted"}
    assert mgr.get(found["d"].id).list_checkpoints() == []


def assert_v1_restores(mgr: sdb.Manager) -> None:
    """The old checkpoints verify on restore, and the stores take new writes."""
    found = _by_fixture(mgr)
    a = mgr.get(found["a"].id)
    (greeted,) = a.list_checkpoints()
    a.restore(greeted.id)
    assert [m.payload["content"] for m in a.get_messages()] == ["hi", "hello"]
    assert a.info().message_count == 2
    a.append_message(sdb.Message.new("assistant", {"content": "third answer"}))
    assert [m.payload["content"] for m in a.get_messages()] == ["hi", "hello", "third answer"]

    c = mgr.get(found["c"].id)
    (quoted,) = c.list_checkpoints()
    c.restore(quoted.id)
    assert [m.payload["content"] for m in c.get_messages()] == ["price?", "checking"]
    assert c.info().message_count == 2
    new = c.checkpoint()
    assert [cp.id for cp in c.list_checkpoints()] == [quoted.id, new.id]

    d = mgr.get(found["d"].id)
    d.append_message(sdb.Message.new("user", {"content": "first words"}))
    assert d.info().message_count == 1


def assert_v1_data_after_restores(mgr: sdb.Manager) -> None:
    """What :func:`assert_v1_restores` wrote is read back by a new manager."""
    found = _by_fixture(mgr)
    assert [m.payload["content"] for m in mgr.get(found["a"].id).get_messages()] == [
        "hi",
        "hello",
        "third answer",
    ]
    assert len(mgr.get(found["c"].id).list_checkpoints()) == 2
    assert found["d"].message_count == 1


#: The rows of each table in every SQL fixture store.
V1_COUNTS = {"sessions_db_sessions": 4, "sessions_db_entries": 10, "sessions_db_checkpoints": 2}


def _counts(url: str) -> dict[str, int]:
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return {
                table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in (
                    "sessions_db_sessions",
                    "sessions_db_entries",
                    "sessions_db_checkpoints",
                )
            }
    finally:
        engine.dispose()


def _by_fixture_ids(url: str) -> dict[str, str]:
    """The session IDs by fixture name, read with plain SQL (metadata is sealed)."""
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id FROM sessions_db_sessions ORDER BY created_at")
            ).all()
    finally:
        engine.dispose()
    return dict(zip("abcd", (row.id for row in rows), strict=True))


def _copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    source = FIXTURES / name
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy(source, target)
    return target


def _sqlite_layout(url: str) -> None:
    """The copied SQLite file is at the newest revision, with the final keys."""
    assert migrations.current(url) == migrations.head()
    engine = create_engine(normalize_url(url))
    try:
        found = inspect(engine)
        pk = found.get_pk_constraint("sessions_db_checkpoints")
        assert pk["constrained_columns"] == ["session_id", "id"]
        columns = {c["name"] for c in found.get_columns("sessions_db_sessions")}
        assert {"key", "forked_from", "forked_at"} <= columns
        with engine.connect() as conn:
            assert (
                conn.execute(
                    text("SELECT count(*) FROM sessions_db_sessions WHERE key IS NOT NULL")
                ).scalar_one()
                == 0
            )
    finally:
        engine.dispose()


def test_sqlite_store_of_v1(tmp_path: Path) -> None:
    url = f"sqlite:///{_copy('sqlite.db', tmp_path)}"
    assert migrations.current(url) == REVISION
    with sdb.connect(url) as mgr:  # SQLite migrates on open
        assert_v1_data(mgr)
    _sqlite_layout(url)
    # Down to the previous release's revision and up again: the rows stay as they are.
    migrations.downgrade(url, revision=REVISION)
    assert _counts(url) == V1_COUNTS
    with sdb.connect(url) as mgr:
        assert_v1_data(mgr)
        assert_v1_restores(mgr)
    with sdb.connect(url) as mgr:
        assert_v1_data_after_restores(mgr)


def test_encrypted_sqlite_store_of_v1(tmp_path: Path) -> None:
    path = _copy("encrypted.db", tmp_path)
    assert b"right answer" not in path.read_bytes()
    url = f"sqlite:///{path}"

    def open_store() -> sdb.Manager:
        return sdb.Manager(sdb.SQLBackend(url, migrate=True), keyring=Keyring({KEY_ID: KEY}))

    with open_store() as mgr:
        assert_v1_data(mgr)
    _sqlite_layout(url)
    with open_store() as mgr:
        assert_v1_restores(mgr)
    with open_store() as mgr:
        assert_v1_data_after_restores(mgr)
    with sdb.connect(url) as plain, pytest.raises(sdb.EncryptionError):
        plain.get(_by_fixture_ids(url)["a"]).get_messages()


def test_file_store_of_v1(tmp_path: Path) -> None:
    directory = _copy("files", tmp_path)
    url = directory.as_uri()
    with sdb.connect(url) as mgr:
        assert_v1_data(mgr)
    with sdb.connect(url) as mgr:
        assert_v1_restores(mgr)
    with sdb.connect(url) as mgr:
        assert_v1_data_after_restores(mgr)


def _load_pg_rows(url: str) -> None:
    lines = (FIXTURES / "pg.sql").read_text().splitlines()
    statements = [line for line in lines if line.startswith("INSERT INTO ")]
    assert len(statements) == len([line for line in lines if line and not line.startswith("--")])
    engine = create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_store_of_v1(pg_server: Callable[[], str]) -> None:
    url = pg_server()
    migrations.upgrade(url, revision=REVISION)
    _load_pg_rows(url)
    assert _counts(url) == V1_COUNTS

    migrations.upgrade(url)
    assert migrations.current(url) == migrations.head()
    with sdb.connect(url) as mgr:
        assert_v1_data(mgr)

    # Down to the previous release's revision and up again: the rows stay as they are.
    migrations.downgrade(url, revision=REVISION)
    assert migrations.current(url) == REVISION
    assert _counts(url) == V1_COUNTS
    migrations.upgrade(url)
    with sdb.connect(url) as mgr:
        assert_v1_data(mgr)
        assert_v1_restores(mgr)
    with sdb.connect(url) as mgr:
        assert_v1_data_after_restores(mgr)
