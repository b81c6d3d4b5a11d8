"""AsyncSQLBackend: the asyncio StorageBackend on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .. import search
from .._plan import adrive
from ..backend import WHOLE_BRANCH, BranchQuery, MessageHit, NewCheckpoint
from ..errors import StorageClosedError
from ..sql import opening
from ..sql.engine import (
    PREPARED,
    drop_dead_connections,
    engine_options,
    normalize_url,
    private_sqlite_file,
)
from ..sql.errors import translate
from ..sql.plans import SQLPlan, Stmt
from ..sql.setup import ROLLBACK, SQLBackendBase
from ..sql.timeouts import DEFAULT_LOCK_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT
from ..types import Checkpoint, Message, SessionEntry, SessionMetadata
from ._tasks import run_to_completion
from .backend import AsyncStorageBackend


class AsyncSQLBackend(SQLBackendBase[AsyncEngine], AsyncStorageBackend):
    """Sessions in PostgreSQL (psycopg 3, async) or SQLite (aiosqlite), for asyncio.

    Same options and same SQL as :class:`~sessions_db.SQLBackend`: give it a URL
    and it owns a pooled :class:`~sqlalchemy.ext.asyncio.AsyncEngine`, or give it
    the host's ``AsyncEngine``, which it uses but never disposes. The schema is
    checked or migrated by :meth:`start`, which the first call awaits if nobody
    did; as in the sync backend, ``migrate=None`` (the default) migrates a
    SQLite file and only checks a PostgreSQL database.

    A call whose task is cancelled still runs to its end before the
    cancellation is raised, so that an append is stored whole or not at all and
    its connection always goes back to the pool.
    """

    def __init__(
        self,
        engine_or_url: AsyncEngine | str,
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
            url = normalize_url(engine_or_url, asyncio=True)
            private_sqlite_file(url)
            engine = create_async_engine(
                url, **engine_options(url, connect_timeout=connect_timeout)
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

    def _perform(self, conn: AsyncConnection) -> Callable[[Stmt], Coroutine[Any, Any, Any]]:
        dialect = self._dialect

        async def perform(stmt: Stmt) -> Any:
            if stmt is ROLLBACK:
                return await _rollback(conn)
            try:
                return await conn.execute(stmt.statement, stmt.params)
            except SQLAlchemyError as exc:
                raise translate(exc, dialect) from exc

        return perform

    async def _execute(self, sql_plan: SQLPlan) -> Any:
        if sql_plan.atomic and self._dialect == "sqlite":
            # As in the sync backend: writers of this process take turns here
            # instead of in SQLite's busy handler, which sleeps between retries.
            if self._writer is None:
                self._writer = asyncio.Lock()
            async with self._writer:
                return await self._execute_on_connection(sql_plan)
        return await self._execute_on_connection(sql_plan)

    async def _execute_on_connection(self, sql_plan: SQLPlan) -> Any:
        try:
            async with self._engine.connect() as conn:
                raw = await conn.get_raw_connection()
                info = raw.info
                if self._setup.pragmas and not info.get(PREPARED):
                    for pragma in self._setup.pragmas:
                        await conn.exec_driver_sql(pragma)
                    info[PREPARED] = True
                async with self._setup.timeouts.applied_async(raw.driver_connection):
                    return await adrive(self._setup.transaction(sql_plan), self._perform(conn))
        except SQLAlchemyError as exc:
            # Statement errors were translated as they happened; what is left
            # came from getting (or setting up) the connection.
            raise translate(exc, self._dialect, connecting=True) from exc
        finally:
            sql_plan.plan.close()

    async def _run(self, sql_plan: SQLPlan) -> Any:
        if self._closed:
            sql_plan.plan.close()
            raise StorageClosedError("the SQL backend is closed")
        if not self._started:
            try:
                await self.start()
            except BaseException:
                sql_plan.plan.close()
                raise
        task = asyncio.create_task(self._execute(sql_plan))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        return await run_to_completion(task)

    async def save_session(self, meta: SessionMetadata) -> None:  # noqa: D102 - see the ABC
        await self._run(self.plans.save_session(meta))

    async def load_session(self, session_id: str) -> SessionMetadata:  # noqa: D102
        result: SessionMetadata = await self._run(self.plans.load_session(session_id))
        return result

    async def delete_session(self, session_id: str) -> None:  # noqa: D102
        await self._run(self.plans.delete_session(session_id))

    async def list_sessions(  # noqa: D102
        self,
        agent_name: str,
        *,
        user_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[SessionMetadata]:
        plan = self.plans.list_sessions(agent_name, user_id, limit, offset)
        result: list[SessionMetadata] = await self._run(plan)
        return result

    async def list_agents(self) -> list[str]:  # noqa: D102
        result: list[str] = await self._run(self.plans.list_agents())
        return result

    async def prune_sessions(  # noqa: D102
        self, updated_before: datetime, *, agent_name: str | None = None, dry_run: bool = False
    ) -> list[str]:
        plan = self.plans.prune_sessions(updated_before, agent_name, dry_run)
        result: list[str] = await self._run(plan)
        return result

    async def find_or_create_session(self, meta: SessionMetadata) -> SessionMetadata:  # noqa: D102
        result: SessionMetadata = await self._run(self.plans.find_or_create_session(meta))
        return result

    async def append_entries(  # noqa: D102
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        *,
        fork_from: str | None = None,
        updated_at: datetime,
    ) -> None:
        if entries:
            plan = self.plans.append_entries(session_id, entries, fork_from, updated_at)
            await self._run(plan)

    async def load_entries(self, session_id: str) -> list[SessionEntry]:  # noqa: D102
        result: list[SessionEntry] = await self._run(self.plans.load_entries(session_id))
        return result

    async def load_branch(  # noqa: D102
        self, session_id: str, query: BranchQuery = WHOLE_BRANCH
    ) -> list[SessionEntry]:
        plan = self.plans.load_branch(session_id, query)
        result: list[SessionEntry] = await self._run(plan)
        return result

    async def load_messages(self, session_id: str, query: BranchQuery) -> list[Message]:  # noqa: D102
        result: list[Message] = await self._run(self.plans.load_messages(session_id, query))
        return result

    async def create_checkpoint(self, session_id: str, new: NewCheckpoint) -> Checkpoint:  # noqa: D102
        result: Checkpoint = await self._run(self.plans.create_checkpoint(session_id, new))
        return result

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:  # noqa: D102
        await self._run(self.plans.save_checkpoint(checkpoint))

    async def load_checkpoint(self, checkpoint_id: str) -> Checkpoint:  # noqa: D102
        result: Checkpoint = await self._run(self.plans.load_checkpoint(checkpoint_id))
        return result

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:  # noqa: D102
        plan = self.plans.list_checkpoints(session_id)
        result: list[Checkpoint] = await self._run(plan)
        return result

    async def search_messages(  # noqa: D102
        self,
        user_id: str,
        query: str,
        *,
        agent_name: str | None = None,
        limit: int = 5,
    ) -> list[MessageHit]:
        plan = self.plans.search_messages(user_id, search.terms(query), agent_name, limit)
        result: list[MessageHit] = await self._run(plan)
        return result

    async def list_messages(  # noqa: D102
        self,
        user_id: str,
        *,
        agent_name: str | None = None,
        message_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[MessageHit]:
        plan = self.plans.list_messages(user_id, agent_name, message_id, limit, offset)
        result: list[MessageHit] = await self._run(plan)
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

    async def erase_user(self, user_id: str) -> int:  # noqa: D102 - see the ABC
        count: int = await self._run(self.plans.erase_user(user_id))
        if count and self._dialect == "sqlite":
            await self._run(self.plans.checkpoint_wal())
        return count


async def _rollback(conn: AsyncConnection) -> None:
    try:
        await conn.exec_driver_sql("ROLLBACK")
    except SQLAlchemyError:
        # The connection is broken; invalidate it so the pool does not reuse it.
        await conn.invalidate()
