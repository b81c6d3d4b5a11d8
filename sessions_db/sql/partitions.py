"""Hash partitions of the entries and checkpoints tables, by ``session_id`` (PostgreSQL).

A store's *layout* is chosen when it is migrated (``sessions-db migrate
--partitions N``, ``sessions_db.migrations.upgrade(..., partitions=N)``, or a
host's alembic with ``run_with_host(partitions=N)`` / ``-x
sessions_db_partitions=N``): ``N`` hash partitions of ``sessions_db_entries`` and
``sessions_db_checkpoints`` by ``session_id``, named ``<table>_p0`` to
``<table>_p<N-1>``, or ``0`` for plain tables. Every primary key and unique index
of those tables leads with ``session_id`` (migration 0004), so every query about
one session reads one partition.

The layout is not a revision: it is kept in PostgreSQL's own catalog
(``pg_partitioned_table`` and ``pg_inherits``), which :func:`read_layout` reads
back; a later migration that rebuilds one of these tables reads it there too,
and ``sessions-db migrate current`` shows it. Migrating without a layout keeps
the one the store has.

Changing the layout rewrites both tables in the migration's transaction: their
rows are kept aside in temporary tables, the tables are made again from the
models (the same columns, keys and indexes, and the full-text index if the
store has it: :mod:`sessions_db.sql.fulltext`), and the rows are put back,
while every other client waits. It suits empty or small stores; a large store
is copied into a new database migrated with the layout it wants
(``sessions-db copy``, see ``docs/production.md``). Grants and row-level
security policies on the two tables are made again by whoever made them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, MetaData, Table, bindparam, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from ..errors import ConfigurationError, InvalidArgumentError, SchemaError
from ..ids import schema_name
from ..models import NAMING_CONVENTION, Base, CheckpointRow, EntryRow, SessionRow
from .fulltext import create_sql, read_search

__all__ = [
    "MAX_PARTITIONS",
    "PARTITIONED_TABLES",
    "Layout",
    "layout_sql",
    "partition_count",
    "read_layout",
    "relayout",
]

#: The most partitions a table may have (a sanity bound, far above any use).
MAX_PARTITIONS = 1024

#: The tables that are partitioned, parents first (entries are referenced by checkpoints).
PARTITIONED_TABLES = (EntryRow.__tablename__, CheckpointRow.__tablename__)

#: The partition key of both tables.
PARTITION_KEY = "session_id"


def partition_count(value: object, *, what: str = "partitions") -> int:
    """Return ``value`` as a checked number of partitions (``0``: not partitioned).

    Accepts an ``int`` or a string of decimal digits (a command-line or ``-x``
    argument) from 0 to :data:`MAX_PARTITIONS`; anything else raises
    :class:`~sessions_db.InvalidArgumentError`. Only numbers checked here reach
    the SQL this module writes.
    """
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not 0 <= number <= MAX_PARTITIONS:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise InvalidArgumentError(
            f"{what} must be a whole number from 0 (plain tables) to {MAX_PARTITIONS}, not {shown}"
        )
    return number


@dataclass(frozen=True, slots=True)
class Layout:
    """How the entries and checkpoints tables of a store are laid out."""

    #: Hash partitions per table by ``session_id``; ``0``: plain tables.
    partitions: int

    @property
    def partitioned(self) -> bool:
        """Whether the tables are hash-partitioned."""
        return self.partitions > 0

    def describe(self) -> str:
        """One line for people: ``hash-partitioned by session_id into 8 partitions``."""
        if not self.partitioned:
            return "not partitioned"
        plural = "" if self.partitions == 1 else "s"
        return f"hash-partitioned by {PARTITION_KEY} into {self.partitions} partition{plural}"


_LAYOUT_SQL = text("""
SELECT c.relname AS name,
       p.partstrat AS strategy,
       (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = c.oid) AS children
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_partitioned_table p ON p.partrelid = c.oid
WHERE n.nspname = coalesce(:schema, current_schema()) AND c.relname IN :names
""").bindparams(bindparam("names", expanding=True))


def read_layout(conn: Connection, schema: str | None = None) -> Layout:
    """Return the layout of the tables on ``conn``, from the catalog (PostgreSQL).

    Other databases, and a database without our tables, have plain tables
    (``Layout(0)``). Tables partitioned other than as this module makes them
    raise :class:`~sessions_db.SchemaError`.
    """
    if conn.dialect.name != "postgresql":
        return Layout(0)
    schema = schema_name(schema)
    rows = conn.execute(_LAYOUT_SQL, {"schema": schema, "names": list(PARTITIONED_TABLES)})
    found = {row.name: (row.strategy, int(row.children)) for row in rows}
    counts = set()
    for name in PARTITIONED_TABLES:
        strategy, children = found.get(name, (None, 0))
        if strategy is None:
            counts.add(0)
        elif strategy != "h":
            raise SchemaError(f"{name} is partitioned, but not by hash of {PARTITION_KEY}")
        else:
            counts.add(children)
    if len(counts) != 1:
        raise SchemaError(
            f"the tables {', '.join(PARTITIONED_TABLES)} have different layouts "
            f"(partitions: {sorted(counts)}); migrate with --partitions N to make them one"
        )
    return Layout(counts.pop())


def _tables(schema: str | None, partitions: int) -> tuple[Table, Table]:
    """Return the models' entries and checkpoints tables in ``schema``, partitioned or not."""
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    for model in (SessionRow, EntryRow, CheckpointRow):
        table = Base.metadata.tables[model.__tablename__]
        if schema is None:
            table.to_metadata(metadata)
        else:
            table.to_metadata(metadata, schema=schema)
    key = f"{schema}." if schema else ""
    entries = metadata.tables[f"{key}{EntryRow.__tablename__}"]
    checkpoints = metadata.tables[f"{key}{CheckpointRow.__tablename__}"]
    if partitions:
        for table in (entries, checkpoints):
            table.dialect_options["postgresql"]["partition_by"] = f"HASH ({PARTITION_KEY})"
    return entries, checkpoints


_DIALECT: Any = postgresql.dialect


def _quoted(schema: str | None, name: str) -> str:
    preparer = _DIALECT().identifier_preparer
    quoted: str = preparer.quote(name)
    return quoted if schema is None else f"{preparer.quote_schema(schema)}.{quoted}"


def _compiled(element: Any) -> str:
    return str(element.compile(dialect=_DIALECT())).strip()


def layout_sql(schema: str | None, partitions: int, *, search: bool = True) -> list[str]:
    """Return the statements that make the entries and checkpoints tables in a layout.

    The tables (which must not exist) get the models' columns, keys and
    indexes, and with ``search`` the full-text index
    (:mod:`sessions_db.sql.fulltext`); with ``partitions``, ``PARTITION BY HASH
    (session_id)`` and their ``<table>_p<i>`` partitions.
    """
    schema = schema_name(schema)
    partitions = partition_count(partitions)
    statements: list[str] = []
    for table in _tables(schema, partitions):
        statements.append(_compiled(CreateTable(table)))
        for i in range(partitions):
            statements.append(
                f"CREATE TABLE {_quoted(schema, f'{table.name}_p{i}')} "
                f"PARTITION OF {_quoted(schema, table.name)} "
                f"FOR VALUES WITH (MODULUS {partitions}, REMAINDER {i})"
            )
        for index in sorted(table.indexes, key=lambda ix: str(ix.name)):
            statements.append(_compiled(CreateIndex(index)))
        if table.name == EntryRow.__tablename__ and search:
            statements += create_sql("postgresql", schema)
    return statements


def replace_sql(schema: str | None, partitions: int, *, search: bool = True) -> list[str]:
    """Return the statements that drop both (empty) tables and make them in a layout.

    For a script written offline, from an empty database up (``--sql``): the
    tables the migrations just made are dropped and made again (with the
    full-text index if ``search``).
    """
    schema = schema_name(schema)
    drops = [f"DROP TABLE {_quoted(schema, name)}" for name in reversed(PARTITIONED_TABLES)]
    return [*drops, *layout_sql(schema, partitions, search=search)]


def _columns(table: str) -> str:
    return ", ".join(f'"{column.name}"' for column in Base.metadata.tables[table].columns)


def relayout(conn: Connection, schema: str | None, partitions: int) -> bool:
    """Give the tables on ``conn`` the layout of ``partitions``; return whether it changed.

    Runs in the caller's transaction (a migration's), which should hold the
    migration lock. Rows are kept: copied aside into temporary tables, then
    back into the tables made again (see the module), with the full-text index
    if they had it. Nothing happens when the layout is already the one asked for.
    """
    if conn.dialect.name != "postgresql":
        if partition_count(partitions):
            raise ConfigurationError("partitions need PostgreSQL; SQLite tables are plain")
        return False
    schema = schema_name(schema)
    partitions = partition_count(partitions)
    if read_layout(conn, schema).partitions == partitions:
        return False
    search = read_search(conn, schema)
    aside: dict[str, str] = {}
    for name in PARTITIONED_TABLES:
        temporary = f"sessions_db_relayout_{name.removeprefix('sessions_db_')}"
        aside[name] = temporary
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {temporary} ON COMMIT DROP AS "
            f"SELECT {_columns(name)} FROM {_quoted(schema, name)}"
        )
    for statement in replace_sql(schema, partitions, search=search):
        conn.exec_driver_sql(statement)
    for name in PARTITIONED_TABLES:
        columns = _columns(name)
        conn.exec_driver_sql(
            f"INSERT INTO {_quoted(schema, name)} ({columns}) SELECT {columns} FROM {aside[name]}"
        )
        conn.exec_driver_sql(f"DROP TABLE {aside[name]}")
    return True
