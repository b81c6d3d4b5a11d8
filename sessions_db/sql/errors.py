"""Translation of driver errors into sessions_db errors, in one place.

Errors are classified by SQLSTATE and constraint name (PostgreSQL) or by the
extended result code (SQLite), never by parsing message text.
"""

from __future__ import annotations

import re
import sqlite3

from sqlalchemy import exc as sa_exc

from ..errors import (
    ConfigurationError,
    DuplicateEntryError,
    DuplicateKeyError,
    EntryNotFoundError,
    SchemaError,
    SessionNotFoundError,
    SessionsDBError,
    StorageError,
    StorageTimeoutError,
    StorageUnavailableError,
)
from .schema import PREFIX

_ENTRY_PK = f"pk_{PREFIX}entries"
#: The primary key of a partition of the entries table (PostgreSQL names it).
_ENTRY_PARTITION_PK = re.compile(rf"{PREFIX}entries_p[0-9]+_pkey")
_SESSION_KEY = f"ix_{PREFIX}sessions_agent_name_key"
_PARENT_FK = f"fk_{PREFIX}entries_session_id_parent_id"
_CHECKPOINT_ENTRY_FK = f"fk_{PREFIX}checkpoints_session_id_entry_id"
_SESSION_FKS = {f"fk_{PREFIX}entries_session_id", f"fk_{PREFIX}checkpoints_session_id"}


def _first_line(orig: BaseException | None) -> str:
    """Return the first line of the driver's message, for humans (never parsed)."""
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


def _postgres(
    orig: BaseException | None, exc: sa_exc.DBAPIError, connecting: bool
) -> SessionsDBError:
    sqlstate = getattr(orig, "sqlstate", None) or ""
    diag = getattr(orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None) or ""
    if sqlstate == "23505":
        if constraint == _ENTRY_PK or _ENTRY_PARTITION_PK.fullmatch(constraint):
            return DuplicateEntryError("an entry with this ID is already in the session")
        if constraint == _SESSION_KEY:
            return DuplicateKeyError("another session of the agent has this key")
        return StorageError(f"unique constraint {constraint} violated")
    if sqlstate == "23503":
        if constraint in _SESSION_FKS:
            return SessionNotFoundError("session not found")
        if constraint in (_PARENT_FK, _CHECKPOINT_ENTRY_FK):
            return EntryNotFoundError("entry not found in the session")
        return StorageError(f"foreign key {constraint} violated")
    if sqlstate in ("42P01", "3F000"):
        return SchemaError(
            "the sessions_db tables are missing: run `sessions-db migrate` "
            "(or connect with migrate=True)"
        )
    if sqlstate.startswith("28"):
        return ConfigurationError(f"PostgreSQL refused the login: {_first_line(orig)}")
    if sqlstate == "3D000":
        return ConfigurationError(f"no such PostgreSQL database: {_first_line(orig)}")
    # lock_timeout (or NOWAIT) and statement_timeout (or a cancel request).
    if sqlstate in ("55P03", "57014"):
        return StorageTimeoutError(f"PostgreSQL gave up on the statement: {_first_line(orig)}")
    # Without an SQLSTATE the error is the client's: it is about the connection
    # only if the connection is gone or was never made (no statement was run).
    if (
        sqlstate.startswith(("08", "57", "53"))
        or exc.connection_invalidated
        or (not sqlstate and (connecting or exc.statement is None))
    ):
        return StorageUnavailableError(f"PostgreSQL is unavailable: {_first_line(orig)}")
    if sqlstate in ("40001", "40P01"):
        return StorageError(f"PostgreSQL aborted the transaction ({sqlstate}); it may be retried")
    return StorageError(f"PostgreSQL error {sqlstate or type(orig).__name__}: {_first_line(orig)}")


def _sqlite(orig: BaseException | None, exc: sa_exc.DBAPIError) -> SessionsDBError:
    name = getattr(orig, "sqlite_errorname", "") or ""
    if name == "SQLITE_CONSTRAINT_PRIMARYKEY":
        return DuplicateEntryError("an entry with this ID is already in the session")
    if name == "SQLITE_CONSTRAINT_UNIQUE":
        # SQLite does not name the index; of ours, only the sessions' (agent,
        # key) index can be violated by a caller (sequence numbers are taken
        # under the write lock).
        return DuplicateKeyError("another session of the agent has this key")
    if name == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return EntryNotFoundError("entry not found in the session")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StorageUnavailableError("the SQLite database stayed locked past the busy timeout")
    if name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_FULL", "SQLITE_READONLY")):
        return StorageUnavailableError(f"SQLite cannot write the database ({name})")
    if isinstance(orig, sqlite3.OperationalError) and exc.connection_invalidated:
        return StorageUnavailableError("the SQLite connection was lost")
    return SessionsDBError(f"SQLite error {name or type(orig).__name__}")


def translate(
    exc: sa_exc.SQLAlchemyError, dialect: str, *, connecting: bool = False
) -> SessionsDBError:
    """Return the sessions_db error for a SQLAlchemy/driver error.

    With ``connecting``, ``exc`` came from getting a connection (the pool), where
    any failure means the database cannot be reached: after a restart, for
    example, the pool gives up once its attempts to reconnect are used up.
    """
    if isinstance(exc, sa_exc.DBAPIError):
        orig = exc.orig
        error = _postgres(orig, exc, connecting) if dialect == "postgresql" else _sqlite(orig, exc)
    elif isinstance(exc, sa_exc.TimeoutError):
        error = StorageUnavailableError("no database connection became free in time")
    elif connecting:
        error = StorageUnavailableError(f"no working database connection: {type(exc).__name__}")
    else:
        error = SessionsDBError(f"database error: {type(exc).__name__}")
    error.__cause__ = exc
    return error
