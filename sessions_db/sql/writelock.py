"""A transaction that holds the database's write lock, for changing the schema.

Two processes that migrate one database at the same moment must not both see
it unmigrated and both create the tables. Inside :func:`write_transaction`
only one connection at a time gets past the start: on SQLite ``BEGIN
IMMEDIATE`` takes the file's write lock (other writers wait for it, up to the
connection's busy timeout); on PostgreSQL a transaction-level advisory lock
does the same for migrations. Whoever gets in second reads the version the
first one committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import SQLAlchemyError

#: The PostgreSQL advisory lock key of sessions_db migrations (any fixed 64-bit number).
PG_MIGRATION_LOCK = 0x5E55_10D8_0001


@contextmanager
def write_transaction(conn: Connection) -> Iterator[Connection]:
    """Run the block in one transaction on ``conn`` that holds the write lock.

    ``conn`` is in autocommit mode (the transaction is opened explicitly); it is
    committed when the block ends and rolled back when it raises.
    """
    dialect = conn.dialect.name
    conn.exec_driver_sql("BEGIN IMMEDIATE" if dialect == "sqlite" else "BEGIN")
    try:
        if dialect == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(PG_MIGRATION_LOCK)))
        yield conn
    except BaseException:
        try:
            conn.exec_driver_sql("ROLLBACK")
        except SQLAlchemyError:
            conn.invalidate()
        raise
    conn.exec_driver_sql("COMMIT")
