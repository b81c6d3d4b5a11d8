"""Full-text search of messages on or off, chosen when a store is migrated.

A store's full-text search objects (see :mod:`sessions_db.search`) are the
largest structure after the messages themselves, and every append keeps them
up to date. A store whose users never call ``memory(...).search`` can do
without them: migrate it with ``sessions-db migrate --no-search``,
``sessions_db.migrations.upgrade(..., search=False)``, or a host's alembic with
``run_with_host(search=False)`` / ``-x sessions_db_search=off``; ``--search``
(``search=True``) makes them again, indexing every message stored so far.
Migrating without the option keeps what the store has.

Like the partition layout (:mod:`sessions_db.sql.partitions`), the switch is no
revision: it is the presence of the objects themselves, which
:func:`read_search` looks up in the catalog. PostgreSQL: the GIN expression
index ``ix_sessions_db_entries_fts`` (on a partitioned store, one per
partition). SQLite: the FTS5 table ``sessions_db_entries_fts`` (with its shadow
tables), the table mapping its rows to entries and the triggers that keep them
in step.

With search off, a search by the store raises
:class:`~sessions_db.UnsupportedOperationError` naming the command that turns
it on; nothing else changes (appends, reads, listings, erasure). Stores whose
payloads are encrypted never use these objects: their search reads and
decrypts the user's messages, whichever way the switch is set.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, TextClause, text
from sqlalchemy.dialects import postgresql

from ..errors import ConfigurationError, InvalidArgumentError
from ..ids import schema_name
from ..models import EntryRow
from .schema import FTS_DOCS, FTS_INDEX, FTS_TABLE, PG_FTS_VECTOR

__all__ = [
    "SEARCH_OFF",
    "create_sql",
    "drop_sql",
    "probe",
    "read_search",
    "search_option",
    "set_search",
]

#: What a search on a store without full-text search raises
#: (:class:`~sessions_db.UnsupportedOperationError`) says.
SEARCH_OFF = (
    "full-text search is off in this store (it was migrated with --no-search): "
    "turn it on with `sessions-db migrate --search --url URL`, which indexes every "
    "message stored"
)

_ENTRIES = EntryRow.__tablename__

#: What the switch accepts as a string (a command-line or ``-x`` argument).
_ON = ("on", "true", "yes", "1")
_OFF = ("off", "false", "no", "0")

# The searchable text of an SQLite entry row: the string values of its payload.
_SQLITE_TEXT = (
    "(SELECT coalesce(group_concat(value, ' '), '') "
    "FROM json_tree({row}.payload) WHERE type = 'text')"
)

_SQLITE_CREATE = [
    f"""CREATE TABLE {FTS_DOCS} (
    docid INTEGER PRIMARY KEY,
    session_id VARCHAR(36) NOT NULL,
    entry_id VARCHAR(128) NOT NULL,
    CONSTRAINT uq_{FTS_DOCS}_session_id_entry_id UNIQUE (session_id, entry_id),
    CONSTRAINT fk_{FTS_DOCS}_session_id_entry_id FOREIGN KEY (session_id, entry_id)
        REFERENCES {_ENTRIES} (session_id, id) ON DELETE CASCADE
)""",
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(body, tokenize = 'unicode61')",
    f"""CREATE TRIGGER {FTS_TABLE}_insert AFTER INSERT ON {_ENTRIES}
WHEN NEW.type = 'message' BEGIN
    INSERT INTO {FTS_DOCS} (session_id, entry_id) VALUES (NEW.session_id, NEW.id);
    INSERT INTO {FTS_TABLE} (rowid, body) VALUES (
        (SELECT docid FROM {FTS_DOCS} WHERE session_id = NEW.session_id AND entry_id = NEW.id),
        {_SQLITE_TEXT.format(row="NEW")});
END""",
    f"""CREATE TRIGGER {FTS_TABLE}_update AFTER UPDATE OF payload ON {_ENTRIES}
WHEN NEW.type = 'message' BEGIN
    UPDATE {FTS_TABLE} SET body = {_SQLITE_TEXT.format(row="NEW")}
    WHERE rowid = (SELECT docid FROM {FTS_DOCS}
                   WHERE session_id = NEW.session_id AND entry_id = NEW.id);
END""",
    f"""CREATE TRIGGER {FTS_DOCS}_delete AFTER DELETE ON {FTS_DOCS} BEGIN
    DELETE FROM {FTS_TABLE} WHERE rowid = OLD.docid;
END""",
    # The messages stored so far.
    f"""INSERT INTO {FTS_DOCS} (session_id, entry_id)
SELECT session_id, id FROM {_ENTRIES} WHERE type = 'message'""",
    f"""INSERT INTO {FTS_TABLE} (rowid, body)
SELECT d.docid, {_SQLITE_TEXT.format(row="e")}
FROM {FTS_DOCS} d
JOIN {_ENTRIES} e ON e.session_id = d.session_id AND e.id = d.entry_id""",
]

_SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS {FTS_DOCS}_delete",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_update",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_insert",
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
    f"DROP TABLE IF EXISTS {FTS_DOCS}",
]


def search_option(value: object, *, what: str = "search") -> bool:
    """Return ``value`` as the switch: a ``bool``, or ``on``/``off`` (``true``/``false``...).

    Anything else raises :class:`~sessions_db.InvalidArgumentError`.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _ON:
            return True
        if word in _OFF:
            return False
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    raise InvalidArgumentError(f"{what} must be on or off, not {shown}")


_DIALECT: Any = postgresql.dialect


def _quoted(schema: str | None, name: str) -> str:
    preparer: Any = _DIALECT().identifier_preparer
    quoted: str = preparer.quote(name)
    return quoted if schema is None else f"{preparer.quote_schema(schema)}.{quoted}"


def create_sql(dialect: str, schema: str | None = None) -> list[str]:
    """Return the statements that make the full-text search objects (which must not exist).

    They index every message already stored. PostgreSQL builds its index while
    writes to the entries table wait; the index takes each append's words at
    once (``fastupdate = off``: no pending list, see migration 0006).
    """
    schema = schema_name(schema)
    if dialect == "postgresql":
        vector = PG_FTS_VECTOR.format(payload="payload")
        return [
            f"CREATE INDEX {FTS_INDEX} ON {_quoted(schema, _ENTRIES)} "
            f"USING gin ({vector}) WITH (fastupdate = off) WHERE type = 'message'"
        ]
    if dialect == "sqlite":
        return list(_SQLITE_CREATE)
    raise ConfigurationError(f"no full-text search on {dialect}")


def drop_sql(dialect: str, schema: str | None = None) -> list[str]:
    """Return the statements that drop the full-text search objects, if they exist."""
    schema = schema_name(schema)
    if dialect == "postgresql":
        return [f"DROP INDEX IF EXISTS {_quoted(schema, FTS_INDEX)}"]
    if dialect == "sqlite":
        return list(_SQLITE_DROP)
    raise ConfigurationError(f"no full-text search on {dialect}")


_PG_FOUND = text("""
SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = coalesce(:schema, current_schema()) AND c.relname = :name""")
_SQLITE_FOUND = text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name")


def probe(dialect: str, schema: str | None = None) -> tuple[TextClause, dict[str, Any]]:
    """Return the catalog query (and its parameters) that finds the full-text search objects.

    It returns a row when the switch is on.
    """
    if dialect == "postgresql":
        return _PG_FOUND, {"schema": schema_name(schema), "name": FTS_INDEX}
    if dialect == "sqlite":
        return _SQLITE_FOUND, {"name": FTS_TABLE}
    raise ConfigurationError(f"no full-text search on {dialect}")


def read_search(conn: Connection, schema: str | None = None) -> bool:
    """Whether the store on ``conn`` has its full-text search objects (the switch is on)."""
    if conn.dialect.name not in ("postgresql", "sqlite"):
        return False
    return conn.execute(*probe(conn.dialect.name, schema)).first() is not None


def set_search(conn: Connection, schema: str | None, on: bool) -> bool:
    """Make or drop the full-text search objects on ``conn``; return whether anything changed.

    Runs in the caller's transaction (a migration's). Nothing happens when the
    store already is as asked.
    """
    on = search_option(on)
    if read_search(conn, schema) == on:
        return False
    dialect = conn.dialect.name
    for statement in (create_sql if on else drop_sql)(dialect, schema):
        conn.exec_driver_sql(statement)
    return True
