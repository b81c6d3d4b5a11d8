"""A Manager on the host's own connection or ORM session joins the host's transaction.

The host writes a row of its own and appends a message in one transaction:
both are kept when the host commits, both are gone when it rolls back, and
sessions_db never commits, rolls back or closes what it did not open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, Integer, String, create_engine, insert, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncSession as AsyncOrmSession
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sessions_db as sdb
from sessions_db.aio import AsyncManager, AsyncSQLBackend
from sessions_db.sql.engine import normalize_url


class HostBase(DeclarativeBase):
    """The host application's own models."""


class Order(HostBase):
    """A row of the host's, written in the same transaction as a message."""

    __tablename__ = "host_orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    note: Mapped[str] = mapped_column(String(100))


def _message_count(url: str, session_id: str) -> int:
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM sessions_db_entries WHERE session_id = :s"),
                    {"s": session_id},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _orders(url: str) -> list[str]:
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return [row.note for row in conn.execute(select(Order.note).order_by(Order.id))]
    finally:
        engine.dispose()


@pytest.fixture
def host_engine(sql_url: str) -> Iterator[Engine]:
    """The host's engine on the test store, with the host's own table created."""
    engine = create_engine(normalize_url(sql_url))
    HostBase.metadata.drop_all(engine)  # the PostgreSQL test database is shared
    HostBase.metadata.create_all(engine)
    yield engine
    HostBase.metadata.drop_all(engine)
    engine.dispose()


def _new_session(url: str) -> str:
    with sdb.connect(url) as mgr:
        return mgr.create("shop", user_id="ann").id


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_host_row_and_an_append_share_a_connection_transaction(
    sql_url: str, host_engine: Engine, outcome: str
) -> None:
    session_id = _new_session(sql_url)
    conn = host_engine.connect()
    transaction = conn.begin()
    mgr = sdb.Manager(sdb.SQLBackend(conn))
    conn.execute(insert(Order).values(note="order 1"))
    mgr.get(session_id).append_message(sdb.Message.new("user", {"content": "buy"}))
    # Inside the host's transaction our append is visible to the host...
    assert [m.payload["content"] for m in mgr.get(session_id).get_messages()] == ["buy"]
    # ...and to no one else until the host commits.
    assert _message_count(sql_url, session_id) == 0
    assert transaction.is_active
    assert not conn.closed
    if outcome == "commit":
        transaction.commit()
    else:
        transaction.rollback()
    conn.close()
    mgr.close()
    kept = outcome == "commit"
    assert _orders(sql_url) == (["order 1"] if kept else [])
    assert _message_count(sql_url, session_id) == (1 if kept else 0)


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_host_orm_session_and_an_append_commit_or_roll_back_together(
    sql_url: str, host_engine: Engine, outcome: str
) -> None:
    session_id = _new_session(sql_url)
    with Session(host_engine) as orm:
        mgr = sdb.Manager(sdb.SQLBackend(orm))
        orm.add(Order(note="order 2"))
        orm.flush()
        session = mgr.get(session_id)
        session.append_messages(
            [
                sdb.Message.new("user", {"content": "a"}),
                sdb.Message.new("assistant", {"content": "b"}),
            ]
        )
        checkpoint = session.checkpoint()
        session.append_message(sdb.Message.new("user", {"content": "c"}))
        session.restore(checkpoint.id)
        assert [m.payload["content"] for m in session.get_messages()] == ["a", "b"]
        assert orm.in_transaction()
        if outcome == "commit":
            orm.commit()
        else:
            orm.rollback()
    kept = outcome == "commit"
    assert _orders(sql_url) == (["order 2"] if kept else [])
    with sdb.connect(sql_url) as mgr2:
        reread = mgr2.get(session_id)
        assert [m.payload["content"] for m in reread.get_messages()] == (["a", "b"] if kept else [])
        assert len(reread.list_checkpoints()) == (1 if kept else 0)


def test_a_failed_operation_leaves_the_host_transaction_usable(
    sql_url: str, host_engine: Engine
) -> None:
    session_id = _new_session(sql_url)
    with host_engine.connect() as conn, conn.begin():
        mgr = sdb.Manager(sdb.SQLBackend(conn))
        session = mgr.get(session_id)
        session.append_message(sdb.Message.new("user", {"content": "kept"}))
        with pytest.raises(sdb.CheckpointNotFoundError):
            session.restore("00000000-0000-4000-8000-000000000000")
        conn.execute(insert(Order).values(note="after the error"))
    assert _orders(sql_url) == ["after the error"]
    assert _message_count(sql_url, session_id) == 1


def _refuses_to_migrate(engine: Engine) -> None:
    with engine.connect() as conn:
        with pytest.raises(sdb.SchemaError, match="sessions-db migrate"):
            sdb.SQLBackend(conn, migrate=True)
        with pytest.raises(sdb.SchemaError, match="sessions-db migrate"):
            sdb.SQLBackend(conn)
    assert "sessions_db_sessions" not in inspect(engine).get_table_names()


def test_never_migrates_on_a_host_sqlite_connection(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'new.db'}")
    _refuses_to_migrate(engine)
    engine.dispose()


def test_never_migrates_on_a_host_postgres_connection(pg_server: Callable[[], str]) -> None:
    engine = create_engine(normalize_url(pg_server()))
    _refuses_to_migrate(engine)
    engine.dispose()


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_async_host_session_and_an_append_commit_or_roll_back_together(
    sql_url: str, host_engine: Engine, outcome: str
) -> None:
    session_id = _new_session(sql_url)

    async def scenario() -> None:
        engine = create_async_engine(normalize_url(sql_url, asyncio=True))
        try:
            async with AsyncOrmSession(engine) as orm:
                mgr = AsyncManager(AsyncSQLBackend(orm))
                orm.add(Order(note="async order"))
                await orm.flush()
                session = await mgr.get(session_id)
                await session.append_message(sdb.Message.new("user", {"content": "async"}))
                assert [m.payload["content"] for m in await session.get_messages()] == ["async"]
                if outcome == "commit":
                    await orm.commit()
                else:
                    await orm.rollback()
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    kept = outcome == "commit"
    assert _orders(sql_url) == (["async order"] if kept else [])
    assert _message_count(sql_url, session_id) == (1 if kept else 0)


def test_async_host_connection_joins_its_transaction(sql_url: str, host_engine: Engine) -> None:
    session_id = _new_session(sql_url)

    async def scenario() -> None:
        engine = create_async_engine(normalize_url(sql_url, asyncio=True))
        try:
            async with engine.connect() as conn:
                await conn.begin()
                mgr = AsyncManager(AsyncSQLBackend(conn))
                session = await mgr.get(session_id)
                await session.append_message(sdb.Message.new("user", {"content": "x"}))
                await conn.rollback()
                assert not conn.closed
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    assert _message_count(sql_url, session_id) == 0
