"""Reads from a PostgreSQL streaming replica, for asyncio (see :mod:`sessions_db.sql.replica`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from ..errors import ConfigurationError
from ..sql.replica import MAX_LAG, ReadRouter, ReplicatedSQLBackend
from .sql import AsyncSQLBackend

__all__ = ["ReplicatedAsyncSQLBackend"]


class ReplicatedAsyncSQLBackend(AsyncSQLBackend):
    """An :class:`AsyncSQLBackend` on a PostgreSQL primary that reads from a replica.

    The asyncio twin of :class:`~sessions_db.sql.replica.ReplicatedSQLBackend`,
    which its worker threads run: the same rules decide where each read goes.
    """

    def __init__(
        self, url: str, *, read_url: str, max_lag: float = MAX_LAG, **options: Any
    ) -> None:
        if not isinstance(url, str) or not isinstance(read_url, str):
            raise ConfigurationError("a read replica needs the URLs of the primary and replica")
        self._read_url = read_url
        self._max_lag = max_lag
        super().__init__(url, **options)

    def _open(self, url: str, **options: Any) -> ReplicatedSQLBackend:
        return ReplicatedSQLBackend(url, read_url=self._read_url, max_lag=self._max_lag, **options)

    @property
    def _replicated(self) -> ReplicatedSQLBackend:
        assert isinstance(self._sync, ReplicatedSQLBackend)
        return self._sync

    @property
    def router(self) -> ReadRouter:
        """What this backend knows of its writes and of the replica."""
        return self._replicated.router

    @property
    def replica_engine(self) -> Engine:
        """The engine of the replica (used by the worker threads)."""
        return self._replicated.replica_engine
