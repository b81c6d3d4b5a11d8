"""SQLBackend: the StorageBackend on PostgreSQL and SQLite."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session as OrmSession

from .. import migrations
from ..backend import UnitOfWorkBackend
from ..errors import ConfigurationError, SchemaError, StorageClosedError
from . import opening
from .engine import PREPARED, build_engine
from .errors import translate
from .setup import SQLBackendBase
from .timeouts import DEFAULT_LOCK_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT, Timeouts
from .unit_of_work import SQLUnitOfWork


class SQLBackend(SQLBackendBase[Engine], UnitOfWorkBackend):
    """Sessions in PostgreSQL (psycopg 3) or SQLite, through SQLAlchemy 2.

    Give it a URL (``postgresql://...``, ``sqlite:///path.db``) and it builds and
    owns an engine, or give it the host application's :class:`~sqlalchemy.Engine`,
    which it uses but never disposes, or a :class:`~sqlalchemy.Connection` or ORM
    :class:`~sqlalchemy.orm.Session` the host has open: then every operation
    joins the host's transaction (inside a savepoint when it writes several
    rows) and never commits, rolls back or closes it, and the schema is only
    checked, never migrated (``migrate=True`` raises
    :class:`~sessions_db.SchemaError` naming the command to run).

    ``schema`` places the tables in a PostgreSQL schema. ``migrate`` brings the
    tables to the newest migration on start; by default (``None``) a SQLite file
    is migrated and a PostgreSQL database is only checked: a missing or old
    schema raises :class:`~sessions_db.SchemaError` naming the command to run
    (``check_schema=False`` skips that check). Opening one file from many
    threads or processes at once is safe: it is migrated once. A SQLite
    connection that a host's ``StaticPool`` / ``SingletonThreadPool`` shares
    with us is never migrated inside the host's open transaction.

    On SQLite, ``busy_timeout`` (seconds) is how long a writer waits for the
    lock and ``synchronous`` is the durability pragma (``FULL``: a returned
    append survives power loss; ``NORMAL``: it survives a process crash).

    On PostgreSQL, ``statement_timeout`` and ``lock_timeout`` (seconds; ``0``: no
    limit; ``None``: the server's setting) bound every statement of ours and its
    waits for locks; past them the call raises
    :class:`~sessions_db.StorageTimeoutError` and stores nothing. They are set
    per transaction (``SET LOCAL``, sent in the same round trip as the
    statement), so they hold behind PgBouncer in transaction mode and never
    touch the host's own statements on a shared engine; on the connections of
    an engine it builds itself from a URL that is not ``pooled``, they are set
    once per connection, when it is opened.

    ``pooled=True`` says ``engine_or_url`` (a URL) leads to PgBouncer or
    another pooler in transaction mode: psycopg's automatic prepared
    statements are then off (see :func:`~sessions_db.sql.engine.engine_options`).
    A host's own engine is built by the host: give it
    ``connect_args={"prepare_threshold": None}`` for the same.

    The constructor connects, prepares the database and checks (or migrates)
    the schema; ``start=False`` leaves that to :meth:`start` or the first call.
    """

    def __init__(
        self,
        engine_or_url: Engine | str | Connection | OrmSession,
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
        start: bool = True,
    ) -> None:
        self._host: Connection | Callable[[], Connection] | None = None
        if pooled and not isinstance(engine_or_url, str):
            raise ConfigurationError(
                "pooled=True applies to a URL; build your own engine with "
                'connect_args={"prepare_threshold": None} instead'
            )
        if isinstance(engine_or_url, str):
            engine = build_engine(
                engine_or_url,
                connect_timeout=connect_timeout,
                pooled=pooled,
                timeouts=Timeouts.of(statement_timeout, lock_timeout),
            )
        elif isinstance(engine_or_url, Connection):
            self._host = engine_or_url
            engine = engine_or_url.engine
        elif isinstance(engine_or_url, OrmSession):
            self._host = engine_or_url.connection
            engine = engine_or_url.connection().engine
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
        self._lock = threading.Lock()
        # SQLite has one writer at a time. Threads of this process take turns
        # here, in order, instead of in SQLite's busy handler, which sleeps and
        # retries (1 ms, 2 ms, 5 ms, ... up to 100 ms) and turns contention
        # between threads into a convoy. Other processes still meet at
        # BEGIN IMMEDIATE and its busy timeout.
        self._writer: AbstractContextManager[Any] = (
            threading.Lock() if self._dialect == "sqlite" else nullcontext()
        )
        self._started = False
        self._start_lock = threading.Lock()
        if self._host is not None:
            self._check_host_schema(schema, migrate=migrate, check=check_schema)
            self._started = True
            return
        self._migrate = self._dialect == "sqlite" if migrate is None else migrate
        self._check_schema = check_schema
        self._busy_timeout = busy_timeout
        if start:
            self.start()

    def start(self) -> None:
        """Prepare the database and check (or migrate) its schema. Idempotent.

        The constructor calls it unless given ``start=False`` (the asyncio
        backend does, to run it in a worker thread); until it has succeeded,
        units of work open no connection.
        """
        with self._start_lock:
            if self._started:
                return
            if self._closed:
                raise StorageClosedError("the SQL backend is closed")
            self._prepare()
            self._started = True

    def _prepare(self) -> None:
        schema = self._setup.schema
        try:
            if self._migrate and self._dialect == "sqlite":
                opening.refuse_host_transaction(self._base_engine, schema=schema)
            with self._engine.connect() as conn:
                if self._dialect == "sqlite":
                    for pragma in self._setup.pragmas:
                        conn.exec_driver_sql(pragma)
                    conn.connection.info[PREPARED] = True
                    opening.start_sqlite(conn, self._busy_timeout)
                opening.prepare(
                    conn, schema=schema, migrate=self._migrate, check=self._check_schema
                )
        except SQLAlchemyError as exc:
            self._dispose()
            raise translate(exc, self._dialect) from exc
        except BaseException:
            self._dispose()
            raise

    transactional = True

    def _check_host_schema(self, schema: str | None, *, migrate: bool | None, check: bool) -> None:
        """Check the schema on the host's connection, which is never migrated."""
        assert self._host is not None
        conn = self._host() if callable(self._host) else self._host
        if migrate:
            raise SchemaError(
                "sessions_db never migrates on a connection of the application: run "
                f"`{migrations.migrate_command(self._base_engine, schema=schema)}` first"
            )
        if check:
            try:
                opening.prepare(conn, schema=schema, migrate=False, check=True)
            except SQLAlchemyError as exc:
                raise translate(exc, self._dialect) from exc

    def unit_of_work(self, *, write: bool = True) -> SQLUnitOfWork:
        """Open a unit of work: one transaction on a pooled connection, or in the host's.

        On a connection or ORM session of the host, the unit joins its
        transaction and never commits, rolls back or closes it.
        """
        if self._closed:
            raise StorageClosedError("the SQL backend is closed")
        if not self._started:
            self.start()
        if self._host is not None:
            conn = self._host() if callable(self._host) else self._host
            return SQLUnitOfWork(conn, self._setup.statements, write=write, host=True)
        resources = ExitStack()
        try:
            if write:
                resources.enter_context(self._writer)
            conn = resources.enter_context(self._engine.connect())
            info = conn.connection.info
            if self._setup.pragmas and not info.get(PREPARED):
                for pragma in self._setup.pragmas:
                    conn.exec_driver_sql(pragma)
                info[PREPARED] = True
            resources.enter_context(self._setup.timeouts.applied(conn.connection.driver_connection))
        except SQLAlchemyError as exc:
            resources.close()
            raise translate(exc, self._dialect, connecting=True) from exc
        except BaseException:
            resources.close()
            raise
        return SQLUnitOfWork(conn, self._setup.statements, write=write, resources=resources)

    def close(self) -> None:
        """Close the backend; dispose of the engine only if this backend created it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._dispose()

    def _dispose(self) -> None:
        if self._owns_engine:
            self._base_engine.dispose()
