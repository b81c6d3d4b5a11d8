"""AsyncSQLBackend: the asyncio StorageBackend on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from .. import migrations
from ..errors import (
    ConfigurationError,
    SchemaError,
    StorageClosedError,
    StorageUnavailableError,
)
from ..sql import opening
from ..sql.backend import SQLBackend
from ..sql.engine import PREPARED
from ..sql.errors import translate
from ..sql.setup import SQLBackendBase
from ..sql.timeouts import DEFAULT_LOCK_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT
from ..sql.unit_of_work import SQLUnitOfWork
from ..storage import Work
from ._tasks import run_to_completion
from .backend import AsyncStorageBackend

T = TypeVar("T")

#: Worker threads of a backend built from a URL: PostgreSQL's pool keeps 10
#: connections (sessions_db.sql.engine.engine_options), SQLite's 5 plus 10.
MAX_WORKERS = 10

#: The names of those threads start with this.
THREAD_NAME = "sessions_db-sql"


class AsyncSQLBackend(SQLBackendBase[Any], AsyncStorageBackend):
    """Sessions in PostgreSQL (psycopg 3) or SQLite, for asyncio.

    Same options and same SQL as :class:`~sessions_db.SQLBackend`. Give it a
    URL and it owns a :class:`~sessions_db.SQLBackend` on that URL and a pool
    of at most ``max_workers`` threads: each call runs its whole unit of work
    in one of those threads, so a call costs one hop between the event loop
    and a thread, whatever the number of its statements. A call waits at most
    ``connect_timeout`` seconds for a free thread (as for a free pooled
    connection), then raises :class:`~sessions_db.StorageUnavailableError`.
    The threads end when the backend is closed.

    Or give it the host's :class:`~sqlalchemy.ext.asyncio.AsyncEngine`, which
    it uses but never disposes, or an ``AsyncConnection`` / ``AsyncSession``
    the host has open, whose transaction every operation joins (never
    committing, rolling back or closing it; the schema is then only checked,
    never migrated): the unit of work then runs through ``run_sync`` on one of
    its connections. The schema is checked or migrated by :meth:`start`, which
    the first call awaits if nobody did; as in the sync backend,
    ``migrate=None`` (the default) migrates a SQLite file and only checks a
    PostgreSQL database.

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
        max_workers: int = MAX_WORKERS,
    ) -> None:
        self._host: AsyncConnection | AsyncSession | None = None
        self._sync: SQLBackend | None = None
        self._pool: ThreadPoolExecutor | None = None
        if pooled and not isinstance(engine_or_url, str):
            raise ConfigurationError(
                "pooled=True applies to a URL; build your own engine with "
                'connect_args={"prepare_threshold": None} instead'
            )
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigurationError("max_workers must be a whole number >= 1")
        if isinstance(engine_or_url, str):
            # Checks the options and builds the engine; connects only in start().
            self._sync = self._open(
                engine_or_url,
                schema=schema,
                migrate=migrate,
                check_schema=check_schema,
                busy_timeout=busy_timeout,
                synchronous=synchronous,
                connect_timeout=connect_timeout,
                statement_timeout=statement_timeout,
                lock_timeout=lock_timeout,
                pooled=pooled,
                start=False,
            )
            engine: AsyncEngine | Engine = self._sync.engine
            self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix=THREAD_NAME)
        elif isinstance(engine_or_url, AsyncConnection | AsyncSession):
            self._host = engine_or_url
            engine = _engine_of(engine_or_url)
            if migrate:
                command = migrations.migrate_command(engine.sync_engine, schema=schema)
                raise SchemaError(
                    "sessions_db never migrates on a connection of the application: "
                    f"run `{command}` first"
                )
            migrate = False
        else:
            engine = engine_or_url
        self._configure(
            engine,
            owns_engine=False,  # the host's, or the synchronous backend's
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
        self._calls: set[asyncio.Future[Any]] = set()
        self._threads = asyncio.Semaphore(max_workers)
        self._thread_wait = connect_timeout

    def _open(self, url: str, **options: Any) -> SQLBackend:
        """Build the synchronous backend the worker threads use (not started yet)."""
        return SQLBackend(url, **options)

    @property
    def engine(self) -> AsyncEngine | Engine:
        """The engine this backend runs on.

        The host's ``AsyncEngine`` (or its connection's), or, for a backend
        built from a URL, the synchronous engine its worker threads use.
        """
        engine: AsyncEngine | Engine = self._base_engine
        return engine

    async def start(self) -> None:
        """Prepare the database and check (or migrate) its schema. Idempotent.

        Migrations are synchronous alembic scripts; they run in a worker thread
        (or through ``run_sync`` on one of the host engine's connections), one at
        a time in the process and inside the database's write lock (see
        :mod:`sessions_db.sql.opening`).
        """
        async with self._start_lock:
            if self._started:
                return
            if self._closed:
                raise StorageClosedError("the SQL backend is closed")
            if self._sync is not None:
                await self._in_thread(self._sync.start)
            elif self._host is not None:
                await self._check_host_schema()
            else:
                await self._prepare_engine()
            self._started = True

    async def _prepare_engine(self) -> None:
        """Prepare the database through the host's ``AsyncEngine``."""
        engine: AsyncEngine = self._engine
        try:
            async with engine.connect() as conn:
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
        """Do ``work`` in one unit of work: in a worker thread, or through ``run_sync``.

        The unit of work and the rules are the synchronous code the sync backend
        runs. Built from a URL, the backend runs them whole in one of its worker
        threads; on the host's engine or connection, SQLAlchemy's greenlet
        bridge awaits their statements underneath.
        """
        if self._closed:
            raise StorageClosedError("the SQL backend is closed")
        if not self._started:
            await self.start()
        if self._sync is None:
            task = asyncio.create_task(self._execute(work, write))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)
            return await run_to_completion(task)
        if write and self._dialect == "sqlite":
            # Writers wait for their turn here rather than in a worker thread
            # (the synchronous backend's lock), so that reads find a thread.
            async with self._writer_lock():
                return await self._in_thread(partial(self._sync.run, work, write=write))
        return await self._in_thread(partial(self._sync.run, work, write=write))

    async def _in_thread(self, function: Callable[[], T]) -> T:
        """Call ``function`` in a worker thread and wait for it to return, even if cancelled."""
        assert self._pool is not None
        await self._take_thread()
        try:
            if self._closed:
                # A call that waited (for its turn to write, for start or for a
                # thread) while the backend closed: the threads may be gone.
                raise StorageClosedError("the SQL backend is closed")
            loop = asyncio.get_running_loop()
            call = loop.run_in_executor(self._pool, contextvars.copy_context().run, function)
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)
            return await run_to_completion(call)
        finally:
            self._threads.release()

    async def _take_thread(self) -> None:
        """Wait (at most ``connect_timeout``) until a worker thread is free, and take it."""
        if not self._threads.locked():
            await self._threads.acquire()  # returns at once
            return
        try:
            async with asyncio.timeout(self._thread_wait):
                await self._threads.acquire()
        except TimeoutError:
            raise StorageUnavailableError(
                f"no worker thread became free within {self._thread_wait:g} s"
            ) from None

    def _writer_lock(self) -> asyncio.Lock:
        # As in the sync backend: writers of this process take turns here
        # instead of in SQLite's busy handler, which sleeps between retries.
        if self._writer is None:
            self._writer = asyncio.Lock()
        return self._writer

    async def _execute(self, work: Work[T], write: bool) -> T:
        if write and self._dialect == "sqlite":
            async with self._writer_lock():
                return await self._execute_on_connection(work, write)
        return await self._execute_on_connection(work, write)

    async def _execute_on_connection(self, work: Work[T], write: bool) -> T:
        if self._host is not None:
            conn = self._host
            if isinstance(conn, AsyncSession):
                conn = await conn.connection()
            return await conn.run_sync(self._do, work, write, True)
        engine: AsyncEngine = self._engine
        try:
            async with engine.connect() as conn:
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
        """Close the backend after the calls under way.

        A backend built from a URL then closes its synchronous backend (which
        disposes of the engine) and ends its worker threads.
        """
        if self._closed:
            return
        self._closed = True
        if self._calls:
            await asyncio.wait(set(self._calls))
        if self._sync is not None and self._pool is not None:
            loop = asyncio.get_running_loop()
            try:
                await run_to_completion(loop.run_in_executor(self._pool, self._sync.close))
            finally:
                # The threads are idle (every call has returned): they end at once.
                self._pool.shutdown(wait=True)


def _engine_of(conn: AsyncConnection | AsyncSession) -> AsyncEngine:
    """Return the engine of the host's connection or ORM session."""
    if isinstance(conn, AsyncConnection):
        return conn.engine
    bind = conn.bind
    if not isinstance(bind, AsyncEngine | AsyncConnection):
        raise ConfigurationError("the AsyncSession must be bound to an AsyncEngine")
    return bind if isinstance(bind, AsyncEngine) else bind.engine
