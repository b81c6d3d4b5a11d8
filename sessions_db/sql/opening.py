"""Opening a SQL store: check its schema, or bring it to the newest migration.

Any number of threads, asyncio tasks and processes may open one new SQLite file
at the same moment, and each must find it migrated once, whole. Three things
make that so:

- an opener that finds the version table at the newest revision is done: it
  reads one row and never runs alembic (every opening but the first);
- alembic runs one at a time in a process (:data:`~sessions_db.migrations.ALEMBIC_LOCK`):
  its running environment is module-level state;
- the migration runs inside the database's write lock
  (:func:`~sessions_db.sql.writelock.write_transaction`) and reads the version
  again there first, so that of several processes only the first migrates.

Before all that, a new SQLite file is switched to WAL (:func:`start_sqlite`).

A SQLite connection that the host's engine shares with us (``StaticPool``,
``SingletonThreadPool``) and that is inside the host's transaction is never
migrated: :class:`~sessions_db.SchemaError` names the command to run instead.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import SingletonThreadPool, StaticPool

from .. import migrations
from ..errors import SchemaError
from .schema import VERSION_TABLE
from .setup import SQLITE_START
from .writelock import write_transaction


def start_sqlite(conn: Connection, busy_timeout: float) -> None:
    """Put the file in WAL mode (a property of the file, kept once set).

    The first switch of a new file needs its exclusive lock. Several openers
    switching at once can each hold the shared lock while asking for it, and
    SQLite then answers "busy" at once, without waiting: try again, for up
    to ``busy_timeout`` seconds.
    """
    deadline = time.monotonic() + busy_timeout
    pause = 0.001
    while True:
        try:
            conn.exec_driver_sql(SQLITE_START)
            return
        except OperationalError as exc:
            if not _busy(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(2 * pause, 0.05)


async def start_sqlite_async(conn: AsyncConnection, busy_timeout: float) -> None:
    """:func:`start_sqlite` for asyncio."""
    deadline = time.monotonic() + busy_timeout
    pause = 0.001
    while True:
        try:
            await conn.exec_driver_sql(SQLITE_START)
            return
        except OperationalError as exc:
            if not _busy(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(2 * pause, 0.05)


def _busy(exc: OperationalError) -> bool:
    name = getattr(exc.orig, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def at_head(conn: Connection, schema: str | None) -> bool:
    """Whether the version table on ``conn`` says the newest revision (one cheap read)."""
    return migrations.current(conn, schema=schema) == migrations.head()


def upgrade_holding_lock(conn: Connection, schema: str | None) -> None:
    """Migrate ``conn`` (autocommit) to the newest revision unless another opener just did.

    The caller holds :data:`~sessions_db.migrations.ALEMBIC_LOCK`.
    """
    with write_transaction(conn):
        if not at_head(conn, schema):
            migrations.upgrade_holding_lock(conn, schema=schema)


def prepare(conn: Connection, *, schema: str | None, migrate: bool, check: bool) -> None:
    """Migrate (``migrate``) or check (``check``) the schema on ``conn`` (autocommit)."""
    if migrate:
        if not at_head(conn, schema):
            with migrations.ALEMBIC_LOCK:
                upgrade_holding_lock(conn, schema)
    elif check:
        migrations.check(conn, schema=schema)


async def prepare_async(
    conn: AsyncConnection, *, schema: str | None, migrate: bool, check: bool
) -> None:
    """:func:`prepare` for asyncio: the event loop never waits on the lock itself."""
    if migrate:
        if not await conn.run_sync(at_head, schema):
            async with _holding(migrations.ALEMBIC_LOCK):
                await conn.run_sync(upgrade_holding_lock, schema)
    elif check:
        await conn.run_sync(lambda sync: migrations.check(sync, schema=schema))


@asynccontextmanager
async def _holding(lock: Any) -> AsyncIterator[None]:
    """Hold a :class:`threading.Lock`, waiting for it in a worker thread."""
    acquiring = asyncio.get_running_loop().run_in_executor(None, lock.acquire)
    try:
        await asyncio.shield(acquiring)
    except asyncio.CancelledError:
        # The worker thread may still get the lock: give it back then.
        acquiring.add_done_callback(
            lambda done: lock.release() if not done.cancelled() and not done.exception() else None
        )
        raise
    try:
        yield
    finally:
        lock.release()


def refuse_host_transaction(engine: Engine, *, schema: str | None) -> None:
    """Raise :class:`SchemaError` rather than migrate inside a host's open transaction.

    Only a SQLite engine whose pool hands everyone one connection can put us
    inside the host's transaction; there the version is read on that
    connection as it is, without starting, ending or resetting anything.
    """
    pool = engine.pool
    if isinstance(pool, StaticPool):
        if "connection" not in vars(pool):
            return  # not connected yet: no transaction
        driver = pool.connection.driver_connection
    elif isinstance(pool, SingletonThreadPool):
        # If the host holds this thread's connection, this is a nested checkout
        # of the same one, which is not reset when given back.
        proxied = pool.connect()
        try:
            driver = proxied.driver_connection
        finally:
            proxied.close()
    else:
        return
    if not isinstance(driver, sqlite3.Connection) or not driver.in_transaction:
        return
    try:
        rows = driver.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()
    except sqlite3.Error:
        rows = []
    if rows != [(migrations.head(),)]:
        raise SchemaError(
            "the sessions_db tables are not at the newest revision and the connection "
            "they would be migrated on is inside a transaction of the application, "
            "which sessions_db never migrates in: run "
            f"`{migrations.migrate_command(engine, schema=schema)}` first, "
            "or open the store outside the transaction"
        )
