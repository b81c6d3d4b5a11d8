"""Opening a store: SQLite files are migrated however they are opened, PostgreSQL is
only checked, and nothing is migrated inside a transaction of the application."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import StaticPool

import sessions_db as sdb
from sessions_db import aio, migrations
from sessions_db.sql.engine import normalize_url

DEADLINE = 60.0


def _message(text: str) -> sdb.Message:
    return sdb.Message.new("user", {"content": text})


def _sync(backend: sdb.SQLBackend) -> list[str]:
    with sdb.Manager(backend) as mgr:
        session = mgr.create("assistant")
        session.append_message(_message("hello"))
        return [m.payload["content"] for m in mgr.get(session.id).get_messages()]


async def _async(mgr: aio.AsyncManager) -> list[str]:
    async with mgr:
        session = await mgr.create("assistant")
        await session.append_message(_message("hello"))
        again = await mgr.get(session.id)
        return [m.payload["content"] for m in await again.get_messages()]


def _via_engine(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        return _sync(sdb.SQLBackend(engine))
    finally:
        engine.dispose()


async def _via_async_engine(url: str) -> list[str]:
    engine = create_async_engine(normalize_url(url, asyncio=True))
    try:
        return await _async(aio.AsyncManager(aio.AsyncSQLBackend(engine)))
    finally:
        await engine.dispose()


async def _via_aio_connect(url: str) -> list[str]:
    return await _async(await aio.connect(url))


OPENED: dict[str, Callable[[str], list[str]]] = {
    "SQLBackend(url)": lambda url: _sync(sdb.SQLBackend(url)),
    "SQLBackend(engine)": _via_engine,
    "connect": lambda url: _sync_manager(sdb.connect(url)),
    "AsyncSQLBackend(url)": lambda url: asyncio.run(
        _async(aio.AsyncManager(aio.AsyncSQLBackend(url)))
    ),
    "AsyncSQLBackend(engine)": lambda url: asyncio.run(_via_async_engine(url)),
    "aio.connect": lambda url: asyncio.run(_via_aio_connect(url)),
}


def _sync_manager(mgr: sdb.Manager) -> list[str]:
    with mgr:
        session = mgr.create("assistant")
        session.append_message(_message("hello"))
        return [m.payload["content"] for m in mgr.get(session.id).get_messages()]


@pytest.mark.parametrize("how", list(OPENED))
def test_a_new_sqlite_file_is_migrated_however_it_is_opened(tmp_path: Path, how: str) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert OPENED[how](url) == ["hello"]
    assert migrations.current(url) == migrations.head()
    # And it opens again, now without migrating.
    assert OPENED[how](url) == ["hello"]


def test_opening_a_migrated_file_never_waits_for_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ready.db'}"
    migrations.upgrade(url)
    opened: list[list[str]] = []
    # Whatever runs alembic elsewhere in the process, a migrated file opens.
    with migrations.ALEMBIC_LOCK:
        opener = threading.Thread(target=lambda: opened.append(_sync(sdb.SQLBackend(url))))
        opener.start()
        opener.join(DEADLINE)
        assert not opener.is_alive(), "opening a migrated file waited for alembic"
    assert opened == [["hello"]]


def _host_engine(kind: str, tmp_path: Path) -> Engine:
    if kind == "StaticPool":
        return create_engine(f"sqlite:///{tmp_path / 'host.db'}", poolclass=StaticPool)
    return create_engine("sqlite://")  # in memory: SingletonThreadPool, one connection per thread


@pytest.mark.parametrize("migrate", [None, True])
@pytest.mark.parametrize("kind", ["StaticPool", "SingletonThreadPool"])
def test_never_migrates_inside_the_hosts_transaction(
    tmp_path: Path, kind: str, migrate: bool | None
) -> None:
    engine = _host_engine(kind, tmp_path)
    try:
        with engine.connect() as host:
            host.execute(text("CREATE TABLE host_things (i INTEGER)"))
            host.commit()
            host.execute(text("INSERT INTO host_things VALUES (1)"))
            with pytest.raises(sdb.SchemaError) as raised:
                sdb.SQLBackend(engine, migrate=migrate)
            assert "`sessions-db migrate --url sqlite://" in str(raised.value)
            # The host's transaction is still open, and still the host's to end.
            assert host.in_transaction()
            assert host.execute(text("SELECT count(*) FROM host_things")).scalar() == 1
            host.rollback()
            assert host.execute(text("SELECT count(*) FROM host_things")).scalar() == 0
            assert inspect(host).get_table_names() == ["host_things"]
        # Outside a transaction the same engine is migrated on open.
        assert _sync(sdb.SQLBackend(engine, migrate=migrate)) == ["hello"]
        assert migrations.current(engine) == migrations.head()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_is_only_checked_on_open(pg_server: Callable[[], str]) -> None:
    url = pg_server()
    password = make_url(url).password
    assert password
    with pytest.raises(sdb.SchemaError) as raised:
        sdb.SQLBackend(url, schema="agents")
    message = str(raised.value)
    assert "`sessions-db migrate --url 'postgresql://sessions_db:***@" in message
    assert message.endswith("--schema agents` or connect with migrate=True")
    assert f":{password}@" not in message

    async def open_async() -> None:
        backend = aio.AsyncSQLBackend(url)
        try:
            await backend.start()
        finally:
            await backend.close()

    with pytest.raises(sdb.SchemaError, match="sessions-db migrate --url"):
        asyncio.run(open_async())
    with pytest.raises(sdb.SchemaError, match="sessions-db migrate --url"):
        sdb.connect(url)
    engine = create_engine(normalize_url(url))
    try:
        assert inspect(engine).get_schema_names() == ["information_schema", "public"]
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
