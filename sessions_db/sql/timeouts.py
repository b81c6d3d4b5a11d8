"""Statement and lock timeouts on PostgreSQL, set per transaction in the same round trip.

The timeouts must hold behind PgBouncer in transaction mode, which refuses
``options=-c ...`` startup parameters and hands each transaction a different
server connection, so a session-level ``SET`` would leak to other clients or be
lost. They are therefore set with ``set_config(..., true)`` (``SET LOCAL``) at the
start of each of our transactions: explicit ones (``BEGIN``) and the implicit
one of a single statement in autocommit.

On a connection sessions_db opens itself straight to the server (not
through a pooler), the timeouts are instead startup parameters of the
connection (libpq's ``options``), set once when it is opened: nothing is sent
per transaction, and no other client shares the connection.
:func:`at_startup` gives an engine's connections these parameters, and
:meth:`Timeouts.applied` then leaves them alone.

To keep a single statement at one round trip, the ``set_config`` and the
statement go to the server together in psycopg's pipeline mode, followed by one
Sync: the server runs both in one implicit transaction (the settings apply to
the statement, whose timeout timer starts after the ``set_config`` ran) and
answers once. :meth:`Timeouts.applied` installs, for the length of one of our
calls, a cursor class that does this on the connection, so the host's own use
of a shared pool is untouched.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import pq
from sqlalchemy import Engine, event

from ..errors import ConfigurationError

#: Default seconds a statement may run (``None``: the server's setting).
DEFAULT_STATEMENT_TIMEOUT = 60.0
#: Default seconds a statement may wait for a lock (``None``: the server's setting).
DEFAULT_LOCK_TIMEOUT = 10.0


def _milliseconds(name: str, seconds: float | None) -> int | None:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds or None")
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigurationError(f"{name} must be a finite number of seconds >= 0 (0: no limit)")
    ms = math.ceil(seconds * 1000)
    if ms > 2_147_483_647:
        raise ConfigurationError(f"{name} is too large")
    return ms


@dataclass(frozen=True, slots=True)
class Timeouts:
    """PostgreSQL statement and lock timeouts, in whole milliseconds (``None``: not set)."""

    statement_ms: int | None
    lock_ms: int | None

    @classmethod
    def of(cls, statement_timeout: float | None, lock_timeout: float | None) -> Timeouts:
        """Check timeouts given in seconds (``0``: no limit; ``None``: the server's setting)."""
        return cls(
            _milliseconds("statement_timeout", statement_timeout),
            _milliseconds("lock_timeout", lock_timeout),
        )

    @property
    def prelude(self) -> str | None:
        """The statement that sets the timeouts for the current transaction, if any.

        Only integers this class checked are written into it.
        """
        settings = (("statement_timeout", self.statement_ms), ("lock_timeout", self.lock_ms))
        calls = [f"set_config('{name}', '{ms}', true)" for name, ms in settings if ms is not None]
        return f"SELECT {', '.join(calls)}" if calls else None

    @property
    def startup_options(self) -> str | None:
        """The libpq ``options`` that set the timeouts for a whole connection, if any."""
        settings = (("statement_timeout", self.statement_ms), ("lock_timeout", self.lock_ms))
        parts = [f"-c {name}={ms}" for name, ms in settings if ms is not None]
        return " ".join(parts) if parts else None

    def check_supported(self) -> None:
        """Raise ``ConfigurationError`` if timeouts are set and libpq lacks pipeline mode."""
        if self.prelude is not None and not psycopg.Pipeline.is_supported():
            raise ConfigurationError(
                "statement and lock timeouts need libpq 14 or newer (pipeline mode); "
                "install psycopg[binary] or pass statement_timeout=None, lock_timeout=None"
            )

    @contextmanager
    def applied(self, driver_connection: Any) -> Iterator[None]:
        """Make our statements on ``driver_connection`` (psycopg) run under the timeouts."""
        prelude = self.prelude
        if (
            prelude is None
            or not isinstance(driver_connection, psycopg.Connection)
            or _STARTED.get(driver_connection) == self
        ):
            yield
            return
        saved = driver_connection.cursor_factory
        driver_connection.cursor_factory = _sync_cursor(prelude)
        try:
            yield
        finally:
            driver_connection.cursor_factory = saved

    @asynccontextmanager
    async def applied_async(self, driver_connection: Any) -> AsyncIterator[None]:
        """Do what :meth:`applied` does, on a psycopg ``AsyncConnection``."""
        prelude = self.prelude
        if (
            prelude is None
            or not isinstance(driver_connection, psycopg.AsyncConnection)
            or _STARTED.get(driver_connection) == self
        ):
            yield
            return
        saved = driver_connection.cursor_factory
        driver_connection.cursor_factory = _async_cursor(prelude)
        try:
            yield
        finally:
            driver_connection.cursor_factory = saved


#: The connections opened with the timeouts as startup parameters, and which.
_STARTED: weakref.WeakKeyDictionary[Any, Timeouts] = weakref.WeakKeyDictionary()


def with_startup_options(timeouts: Timeouts, options: str | None) -> str | None:
    """Return libpq ``options`` (a URL's or a caller's, if any) with the timeouts added.

    Ours come last, so they win over the same settings in ``options``, as the
    per-transaction ``SET LOCAL`` would.
    """
    ours = timeouts.startup_options
    return " ".join(part for part in (options, ours) if part) or None


def at_startup(engine: Engine, timeouts: Timeouts) -> None:
    """Note that ``engine``'s connections were opened with ``timeouts`` as startup parameters.

    The engine must have been created with :func:`with_startup_options` in its
    ``connect_args``; only a connection made straight to the server may be,
    since PgBouncer refuses the ``options`` parameter.
    """
    if timeouts.startup_options is None:
        return

    @event.listens_for(engine, "connect")
    def _started(dbapi_connection: Any, record: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None) or dbapi_connection
        _STARTED[driver] = timeouts


def _outside_transaction(pgconn: pq.abc.PGconn) -> bool:
    """Whether a statement sent now starts a transaction (and no pipeline is open)."""
    return (
        pgconn.transaction_status == pq.TransactionStatus.IDLE
        and pgconn.pipeline_status == pq.PipelineStatus.OFF
    )


class _PreludeCursor(psycopg.Cursor[Any]):
    """A cursor that sends :attr:`prelude` with a statement that starts a transaction."""

    prelude = ""

    def execute(
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> _PreludeCursor:
        conn = self.connection
        if not _outside_transaction(conn.pgconn):
            super().execute(query, params, prepare=prepare, binary=binary)
            return self
        # Both statements, then one Sync when the block ends: one round trip,
        # one transaction. The results (or the first error) are in when it ends.
        with conn.pipeline():
            psycopg.Cursor(conn).execute(self.prelude)
            super().execute(query, params, prepare=prepare, binary=binary)
        return self


class _AsyncPreludeCursor(psycopg.AsyncCursor[Any]):
    """The asyncio twin of :class:`_PreludeCursor`."""

    prelude = ""

    async def execute(
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> _AsyncPreludeCursor:
        conn = self.connection
        if not _outside_transaction(conn.pgconn):
            await super().execute(query, params, prepare=prepare, binary=binary)
            return self
        async with conn.pipeline():
            await psycopg.AsyncCursor(conn).execute(self.prelude)
            await super().execute(query, params, prepare=prepare, binary=binary)
        return self


@lru_cache(maxsize=16)
def _sync_cursor(prelude: str) -> type[_PreludeCursor]:
    return type("PreludeCursor", (_PreludeCursor,), {"prelude": prelude})


@lru_cache(maxsize=16)
def _async_cursor(prelude: str) -> type[_AsyncPreludeCursor]:
    return type("AsyncPreludeCursor", (_AsyncPreludeCursor,), {"prelude": prelude})
