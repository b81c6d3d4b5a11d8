"""SQLBackend: the StorageBackend on PostgreSQL and SQLite."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from .. import search
from .._plan import drive
from ..backend import WHOLE_BRANCH, BranchQuery, MessageHit, NewCheckpoint, StorageBackend
from ..errors import StorageClosedError
from ..types import Checkpoint, Message, SessionEntry, SessionMetadata
from . import opening
from .engine import PREPARED, build_engine
from .errors import translate
from .plans import SQLPlan, Stmt
from .setup import ROLLBACK, SQLBackendBase
from .timeouts import DEFAULT_LOCK_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT


class SQLBackend(SQLBackendBase[Engine], StorageBackend):
    """Sessions in PostgreSQL (psycopg 3) or SQLite, through SQLAlchemy 2.

    Give it a URL (``postgresql://...``, ``sqlite:///path.db``) and it builds and
    owns an engine, or give it the host application's :class:`~sqlalchemy.Engine`,
    which it uses but never disposes.

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
    touch the host's own statements on a shared engine.
    """

    def __init__(
        self,
        engine_or_url: Engine | str,
        *,
        schema: str | None = None,
        migrate: bool | None = None,
        check_schema: bool = True,
        busy_timeout: float = 30.0,
        synchronous: str = "FULL",
        connect_timeout: float = 10.0,
        statement_timeout: float | None = DEFAULT_STATEMENT_TIMEOUT,
        lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        if isinstance(engine_or_url, str):
            engine = build_engine(engine_or_url, connect_timeout=connect_timeout)
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
        if migrate is None:
            migrate = self._dialect == "sqlite"
        try:
            if migrate and self._dialect == "sqlite":
                opening.refuse_host_transaction(engine, schema=schema)
            with self._engine.connect() as conn:
                if self._dialect == "sqlite":
                    for pragma in self._setup.pragmas:
                        conn.exec_driver_sql(pragma)
                    conn.connection.info[PREPARED] = True
                    opening.start_sqlite(conn, busy_timeout)
                opening.prepare(conn, schema=schema, migrate=migrate, check=check_schema)
        except SQLAlchemyError as exc:
            self._dispose()
            raise translate(exc, self._dialect) from exc
        except BaseException:
            self._dispose()
            raise

    def _perform(self, conn: Connection) -> Callable[[Stmt], Any]:
        dialect = self._dialect

        def perform(stmt: Stmt) -> Any:
            if stmt is ROLLBACK:
                return _rollback(conn)
            try:
                return conn.execute(stmt.statement, stmt.params)
            except SQLAlchemyError as exc:
                raise translate(exc, dialect) from exc

        return perform

    def _run(self, sql_plan: SQLPlan) -> Any:
        if self._closed:
            sql_plan.plan.close()
            raise StorageClosedError("the SQL backend is closed")
        if sql_plan.atomic:
            with self._writer:
                return self._run_on_connection(sql_plan)
        return self._run_on_connection(sql_plan)

    def _run_on_connection(self, sql_plan: SQLPlan) -> Any:
        try:
            with self._engine.connect() as conn:
                info = conn.connection.info
                if self._setup.pragmas and not info.get(PREPARED):
                    for pragma in self._setup.pragmas:
                        conn.exec_driver_sql(pragma)
                    info[PREPARED] = True
                with self._setup.timeouts.applied(conn.connection.driver_connection):
                    return drive(self._setup.transaction(sql_plan), self._perform(conn))
        except SQLAlchemyError as exc:
            # Statement errors were translated as they happened; what is left
            # came from getting (or setting up) the connection.
            raise translate(exc, self._dialect, connecting=True) from exc
        finally:
            sql_plan.plan.close()

    def save_session(self, meta: SessionMetadata) -> None:  # noqa: D102 - see StorageBackend
        self._run(self.plans.save_session(meta))

    def load_session(self, session_id: str) -> SessionMetadata:  # noqa: D102
        result: SessionMetadata = self._run(self.plans.load_session(session_id))
        return result

    def delete_session(self, session_id: str) -> None:  # noqa: D102
        self._run(self.plans.delete_session(session_id))

    def list_sessions(  # noqa: D102
        self,
        agent_name: str,
        *,
        user_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[SessionMetadata]:
        result: list[SessionMetadata] = self._run(
            self.plans.list_sessions(agent_name, user_id, limit, offset)
        )
        return result

    def list_agents(self) -> list[str]:  # noqa: D102
        result: list[str] = self._run(self.plans.list_agents())
        return result

    def prune_sessions(  # noqa: D102
        self, updated_before: datetime, *, agent_name: str | None = None, dry_run: bool = False
    ) -> list[str]:
        result: list[str] = self._run(
            self.plans.prune_sessions(updated_before, agent_name, dry_run)
        )
        return result

    def find_or_create_session(self, meta: SessionMetadata) -> SessionMetadata:  # noqa: D102
        result: SessionMetadata = self._run(self.plans.find_or_create_session(meta))
        return result

    def append_entries(  # noqa: D102
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        *,
        fork_from: str | None = None,
        updated_at: datetime,
    ) -> None:
        if entries:
            self._run(self.plans.append_entries(session_id, entries, fork_from, updated_at))

    def load_entries(self, session_id: str) -> list[SessionEntry]:  # noqa: D102
        result: list[SessionEntry] = self._run(self.plans.load_entries(session_id))
        return result

    def load_branch(  # noqa: D102
        self, session_id: str, query: BranchQuery = WHOLE_BRANCH
    ) -> list[SessionEntry]:
        result: list[SessionEntry] = self._run(self.plans.load_branch(session_id, query))
        return result

    def load_messages(self, session_id: str, query: BranchQuery) -> list[Message]:  # noqa: D102
        result: list[Message] = self._run(self.plans.load_messages(session_id, query))
        return result

    def create_checkpoint(self, session_id: str, new: NewCheckpoint) -> Checkpoint:  # noqa: D102
        result: Checkpoint = self._run(self.plans.create_checkpoint(session_id, new))
        return result

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:  # noqa: D102
        self._run(self.plans.save_checkpoint(checkpoint))

    def load_checkpoint(self, checkpoint_id: str) -> Checkpoint:  # noqa: D102
        result: Checkpoint = self._run(self.plans.load_checkpoint(checkpoint_id))
        return result

    def list_checkpoints(self, session_id: str) -> list[Checkpoint]:  # noqa: D102
        result: list[Checkpoint] = self._run(self.plans.list_checkpoints(session_id))
        return result

    def search_messages(  # noqa: D102
        self,
        user_id: str,
        query: str,
        *,
        agent_name: str | None = None,
        limit: int = 5,
    ) -> list[MessageHit]:
        result: list[MessageHit] = self._run(
            self.plans.search_messages(user_id, search.terms(query), agent_name, limit)
        )
        return result

    def list_messages(  # noqa: D102
        self,
        user_id: str,
        *,
        agent_name: str | None = None,
        message_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[MessageHit]:
        result: list[MessageHit] = self._run(
            self.plans.list_messages(user_id, agent_name, message_id, limit, offset)
        )
        return result

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

    def erase_user(self, user_id: str) -> int:  # noqa: D102 - see StorageBackend
        count: int = self._run(self.plans.erase_user(user_id))
        if count and self._dialect == "sqlite":
            self._run(self.plans.checkpoint_wal())
        return count


def _rollback(conn: Connection) -> None:
    try:
        conn.exec_driver_sql("ROLLBACK")
    except SQLAlchemyError:
        # The connection is broken; invalidate it so the pool does not reuse it.
        conn.invalidate()
