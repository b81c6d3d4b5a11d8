"""What the sync and asyncio SQL backends share besides the unit of work.

:class:`SQLSetup` checks the options once and holds the statements, the
per-connection pragmas and the timeouts; a backend only opens connections (or
takes the host's) and runs a :class:`~sessions_db.sql.unit_of_work.SQLUnitOfWork`
on them, directly or through ``run_sync``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from ..errors import ConfigurationError
from ..ids import schema_name
from .engine import sqlite_pragmas
from .statements import SQLStatements
from .timeouts import Timeouts

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

E = TypeVar("E", "Engine", "AsyncEngine")

#: Run once when a SQLite backend starts (a property of the database file).
SQLITE_START = "PRAGMA journal_mode = WAL"


@dataclass(frozen=True, slots=True)
class SQLSetup:
    """The checked options of a SQL backend, for one dialect and schema."""

    dialect: str
    schema: str | None
    statements: SQLStatements
    #: Statements each new connection runs once (SQLite pragmas; none on PostgreSQL).
    pragmas: tuple[str, ...]
    #: The statement and lock timeouts of every transaction (PostgreSQL only).
    timeouts: Timeouts

    @classmethod
    def of(
        cls,
        dialect: str,
        *,
        schema: str | None,
        busy_timeout: float,
        synchronous: str,
        statement_timeout: float | None = None,
        lock_timeout: float | None = None,
    ) -> SQLSetup:
        """Check the options for ``dialect`` and build the setup."""
        schema = schema_name(schema)
        if dialect not in ("postgresql", "sqlite"):
            raise ConfigurationError(f"unsupported database dialect {dialect!r}")
        if schema is not None and dialect != "postgresql":
            raise ConfigurationError("a schema can only be set on PostgreSQL")
        pragmas = sqlite_pragmas(busy_timeout, synchronous) if dialect == "sqlite" else ()
        timeouts = Timeouts.of(statement_timeout, lock_timeout)
        if dialect != "postgresql":
            timeouts = Timeouts(None, None)  # SQLite waits for locks by busy_timeout
        timeouts.check_supported()
        return cls(dialect, schema, SQLStatements(dialect, schema), pragmas, timeouts)


class SQLBackendBase(Generic[E]):
    """The engine handling and properties the sync and asyncio SQL backends share."""

    def _configure(
        self,
        engine: E,
        *,
        owns_engine: bool,
        schema: str | None,
        busy_timeout: float,
        synchronous: str,
        statement_timeout: float | None,
        lock_timeout: float | None,
    ) -> None:
        self._setup = SQLSetup.of(
            engine.dialect.name,
            schema=schema,
            busy_timeout=busy_timeout,
            synchronous=synchronous,
            statement_timeout=statement_timeout,
            lock_timeout=lock_timeout,
        )
        if self._setup.timeouts.prelude is not None and engine.dialect.driver != "psycopg":
            raise ConfigurationError(
                "statement and lock timeouts need a psycopg 3 engine "
                f"(postgresql+psycopg://), not the {engine.dialect.driver!r} driver: "
                "use psycopg 3, or pass statement_timeout=None, lock_timeout=None"
            )
        self._dialect = self._setup.dialect
        self._owns_engine = owns_engine
        self._base_engine: E = engine
        # Every statement of ours runs in autocommit; transactions are opened
        # explicitly (BEGIN / BEGIN IMMEDIATE) only where a plan needs one. The
        # host's engine keeps its own settings: this is a copy sharing its pool.
        self._engine: E = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._closed = False

    @property
    def engine(self) -> E:
        """The engine this backend runs on (the host's, when one was given)."""
        return self._base_engine

    @property
    def dialect(self) -> str:
        """``"postgresql"`` or ``"sqlite"``."""
        return self._dialect

    @property
    def schema(self) -> str | None:
        """The PostgreSQL schema of the tables (``None``: the search path)."""
        return self._setup.schema

    @property
    def timeouts(self) -> Timeouts:
        """The statement and lock timeouts of our transactions (PostgreSQL only)."""
        return self._setup.timeouts

    @property
    def statements(self) -> SQLStatements:
        """The statements (the same for the sync and asyncio backends)."""
        return self._setup.statements
