"""Reads from a PostgreSQL streaming replica, for asyncio (see :mod:`sessions_db.sql.replica`)."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..errors import ConfigurationError, StorageUnavailableError
from ..sql.engine import drop_dead_connections, engine_options, normalize_url
from ..sql.errors import translate
from ..sql.replica import (
    FALLBACK,
    MAX_LAG,
    PRIMARY_POSITION,
    REPLAY_POSITION,
    REPLICA_CONNECT_TIMEOUT,
    ReadRouter,
    lsn,
    session_of,
    written,
)
from ..storage import Work
from .sql import AsyncSQLBackend

__all__ = ["ReplicatedAsyncSQLBackend"]

T = TypeVar("T")


class ReplicatedAsyncSQLBackend(AsyncSQLBackend):
    """An :class:`AsyncSQLBackend` on a PostgreSQL primary that reads from a replica.

    The asyncio twin of :class:`~sessions_db.sql.replica.ReplicatedSQLBackend`:
    the same rules decide where each read goes.
    """

    def __init__(
        self, url: str, *, read_url: str, max_lag: float = MAX_LAG, **options: Any
    ) -> None:
        if not isinstance(url, str) or not isinstance(read_url, str):
            raise ConfigurationError("a read replica needs the URLs of the primary and replica")
        for name, value in (("url", url), ("read_url", read_url)):
            if not normalize_url(value).startswith("postgresql"):
                raise ConfigurationError(f"{name}: a read replica needs PostgreSQL URLs")
        super().__init__(url, **options)
        replica_url = normalize_url(read_url, asyncio=True)  # checked: nothing to dispose yet
        timeout = min(options.get("connect_timeout", 10.0), REPLICA_CONNECT_TIMEOUT)
        self._replica: AsyncEngine = create_async_engine(
            replica_url,
            **engine_options(
                replica_url, connect_timeout=timeout, pooled=bool(options.get("pooled", False))
            ),
        )
        drop_dead_connections(self._replica.sync_engine)
        self._router = ReadRouter(max_lag=max_lag)

    @property
    def router(self) -> ReadRouter:
        """What this backend knows of its writes and of the replica."""
        return self._router

    @property
    def replica_engine(self) -> AsyncEngine:
        """The engine of the replica."""
        return self._replica

    async def _execute_on_connection(self, work: Work[T], write: bool) -> T:
        if write:
            result = await super()._execute_on_connection(work, True)
            self._router.wrote(written(work, result))
            return result
        if await self._on_replica(session_of(work)):
            try:
                return await self._run_on_replica(work)
            except FALLBACK as exc:
                if isinstance(exc, StorageUnavailableError):
                    self._router.failed(f"the replica is unavailable: {exc}")
        return await super()._execute_on_connection(work, False)

    async def _on_replica(self, session_id: str | None) -> bool:
        need = self._router.need(session_id)
        target = self._router.target(need)
        if target == "probe":
            if await self._probe():
                return True  # the replica had replayed a position sampled after ``need``
            target = self._router.target(need)
        return target == "replica"

    async def _probe(self) -> bool:
        try:
            point = self._router.probe_point()
            try:
                primary = await self._position(self._engine, PRIMARY_POSITION)
            except SQLAlchemyError:
                primary = None  # the primary's own reads and writes will say what is wrong
            try:
                replayed = await self._position(self._replica, REPLAY_POSITION)
            except SQLAlchemyError as exc:
                self._router.failed(f"the replica is unavailable: {translate(exc, 'postgresql')}")
                return False
            return self._router.probed(point, primary, replayed)
        finally:
            self._router.release()

    async def _position(self, engine: AsyncEngine, query: str) -> int | None:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            async with self._setup.timeouts.applied_async(raw.driver_connection):
                return lsn((await conn.exec_driver_sql(query)).scalar())

    async def _run_on_replica(self, work: Work[T]) -> T:
        try:
            async with self._replica.connect() as conn:
                raw = await conn.get_raw_connection()
                async with self._setup.timeouts.applied_async(raw.driver_connection):
                    return await conn.run_sync(self._do, work, False, False)
        except SQLAlchemyError as exc:
            raise translate(exc, self._dialect, connecting=True) from exc

    async def close(self) -> None:
        """Close the backend, then the replica's engine."""
        await super().close()
        await self._replica.dispose()
