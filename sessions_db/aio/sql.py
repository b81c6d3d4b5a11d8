"""AsyncSQLBackend: the asyncio StorageBackend on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from .. import migrations
from ..errors import ConfigurationError, SchemaError, StorageClosedError
from ..sql import opening
from ..sql.engine import (
    PREPARED,
    drop_dead_connections,
    engine_options,
    normalize_url,
    private_sqlite_file,
)
from ..sql.errors import translate
from ..sql.setup import SQLBackendBase
from ..sql.timeouts import DEFAULT_LOCK_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT
from ..sql.unit_of_work import SQLUnitOfWork
from ..storage import Work
from ._tasks import run_to_completion
from .backend import AsyncStorageBackend

T = TypeVar("T")


class AsyncSQLBackend(SQLBackendBase[AsyncEngine], AsyncStorageBackend):
    """Sessions in PostgreSQL (psycopg 3, async) or SQLite (aiosqlite), for asyncio.

    Same options and same SQL as :class:`~sessions_db.SQLBackend`: give it a URL
    and it owns a pooled :class:`~sqlalchemy.ext.asyncio.AsyncEngine`, or give it
    the host's ``AsyncEngine``, which it uses but never disposes, or an
    ``AsyncConnection`` / ``AsyncSession`` the host has open, whose transaction
    every operation joins (never committing, rolling back or closing it; the
    schema is then only checked, never migrated). The schema is
    checked or migrated by :meth:`start`, which the first call awaits if nobody
    did; as in the sync backend, ``migrate=None`` (the default) migrates a
    SQLite file and only checks a PostgreSQL database.

    A call whose task is cancelled still runs to its end before the
    cancellation is raised, so that an append is stored whole or not at all and
    its connection always goes back to the pool.

    ``pooled=True``: the URL leads to a pooler in transaction mode (see
    :class:`~sessions_db.SQLBackend`).
    """

    def __init__(
        self,
        engine_or_url: AsyncEngine | str | AsyncConnection | AsyncSession,
        *,
        schema: str | None = None,
        migrate: bool | None = None,
        check_schema: bool = True,
        busy_timeout: float = 30.0,
        synchronous: str = "FULL",
        connect_timeout: float = 10.0,
        statement_timeout: float | None = DEFAULT_STATEMENT_TIMEOUT,
        lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
        pooled: bool = False,
    ) -> None:
        self._host: AsyncConnection | AsyncSession | None = None
        if pooled and not isinstance(engine_or_url, str):
            raise ConfigurationError(
                "pooled=True applies to a URL; build your own engine with "
                'connect_args={"prepare_threshold": None} instead'
            )
        if isinstance(engine_or_url, AsyncConnection | AsyncSession):
            self._host = engine_or_url
            if isinstance(engine_or_url, AsyncConnection):
                engine = engine_or_url.engine
            else:
                bind = engine_or_url.bind
                if not isinstance(bind, AsyncEngine | AsyncConnection):
                    raise ConfigurationError("the AsyncSession must be bound to an AsyncEngine")
                engine = bind if isinstance(bind, AsyncEngine) else bind.engine
            if migrate:
                raise SchemaError(
                    "sessions_db never migrates on a connection of the application: run "
                    f"`{migrations.migrate_command(engine.sync_engine, schema=schema)}` first"
                )
            migrate = False
        elif isinstance(engine_or_url, str):
            url = normalize_url(engine_or_url, asyncio=True)
            private_sqlite_file(url)
            engine = create_async_engine(
                url, **engine_options(url, connect_timeout=connect_timeout, pooled=pooled)
            )
            drop_dead_connections(engine.sync_engine)
        else:
            engine = engine_or_url
        self._configure(
            engine,
            owns_engine=isinstance(engine_or_url, str),
            schema=schema,
            busy_timeout=busy_timeout,
            synchronous=synchronous,
            statement_timeout=statement_timeout,
            lock_timeout=lock_timeout,
        )
        self._migrate = self._dialect == "sqlite" if migrate is None else migrate
        self._check_schema = check_schema
        self._busy_timeout = busy_timeout
        self._started = False
        self._start_lock = asyncio.Lock()
        self._writer: asyncio.Lock | None = None
        self._calls: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Prepare the database and check (or migrate) its schema. Idempotent.

        Migrations are synchronous alembic scripts; they run through
        ``run_sync`` on one of the engine's connections, one at a time in the
        process and inside the database's write lock (see
        :mod:`sessions_db.sql.opening`).
        """
        async with self._start_lock:
            if self._started:
                return
            if self._closed:
                raise StorageClosedError("the SQL backend is closed")
            if self._host is not None:
                await self._check_host_schema()
                self._started = True
                return
            try:
                async with self._engine.connect() as conn:
                    if self._dialect == "sqlite":
                        for pragma in self._setup.pragmas:
                            await conn.exec_driver_sql(pragma)
                        (await conn.get_raw_connection()).info[PREPARED] = True
                        await opening.start_sqlite_async(conn, self._busy_timeout)
                    await opening.prepare_async(
                        conn,
                        schema=self._setup.schema,
                        migrate=self._migrate,
                        check=self._check_schema,
                    )
            except SQLAlchemyError as exc:
                raise translate(exc, self._dialect) from exc
            self._started = True

    async def _check_host_schema(self) -> None:
        """Check the schema on the host's connection (never migrated there)."""
        if not self._check_schema:
            return
        conn = self._host
        if isinstance(conn, AsyncSession):
            conn = await conn.connection()
        assert conn is not None
        schema = self._setup.schema
        try:
            await conn.run_sync(lambda sync: migrations.check(sync, schema=schema))
        except SQLAlchemyError as exc:
            raise translate(exc, self._dialect) from exc

    async def run(self, work: Work[T], *, write: bool = True) -> T:
        """Do ``work`` in one unit of work, through ``run_sync`` on a pooled connection.

        The unit of work and the rules are the synchronous code the sync backend
        runs; SQLAlchemy's greenlet bridge awaits their statements underneath.
        """
        if self._closed:
            raise StorageClosedError("the SQL backend is closed")
        if not self._started:
            await self.start()
        task = asyncio.create_task(self._execute(work, write))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        return await run_to_completion(task)

    async def _execute(self, work: Work[T], write: bool) -> T:
        if write and self._dialect == "sqlite":
            # As in the sync backend: writers of this process take turns here
            # instead of in SQLite's busy handler, which sleeps between retries.
            if self._writer is None:
                self._writer = asyncio.Lock()
            async with self._writer:
                return await self._execute_on_connection(work, write)
        return await self._execute_on_connection(work, write)

    async def _execute_on_connection(self, work: Work[T], write: bool) -> T:
        if self._host is not None:
            conn = self._host
            if isinstance(conn, AsyncSession):
                conn = await conn.connection()
            return await conn.run_sync(self._do, work, write, True)
        try:
            async with self._engine.connect() as conn:
                raw = await conn.get_raw_connection()
                info = raw.info
                if self._setup.pragmas and not info.get(PREPARED):
                    for pragma in self._setup.pragmas:
                        await conn.exec_driver_sql(pragma)
                    info[PREPARED] = True
                async with self._setup.timeouts.applied_async(raw.driver_connection):
                    return await conn.run_sync(self._do, work, write, False)
        except SQLAlchemyError as exc:
            # Statement errors were translated as they happened; what is left
            # came from getting (or setting up) the connection.
            raise translate(exc, self._dialect, connecting=True) from exc

    def _do(self, conn: Connection, work: Work[T], write: bool, host: bool) -> T:
        """Run ``work`` in a unit of work on ``conn`` (inside ``run_sync``)."""
        with SQLUnitOfWork(conn, self._setup.statements, write=write, host=host) as uow:
            result = work(uow)
            uow.commit()
            return result

    async def close(self) -> None:
        """Close the backend after the calls under way; dispose of an engine it created."""
        if self._closed:
            return
        self._closed = True
        if self._calls:
            await asyncio.wait(set(self._calls))
        if self._owns_engine:
            await self._base_engine.dispose()
