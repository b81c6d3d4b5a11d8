"""The statements of the SQL stores, built once per schema and dialect, and their rows' models.

:class:`~sessions_db.sql.unit_of_work.SQLUnitOfWork` runs them. The hot paths
are single statements: on PostgreSQL an append is one ``INSERT ... SELECT`` fed
by a data-modifying CTE that locks and advances the session row, and a history
load is one recursive query that walks only the part of the branch it returns
(or one range scan of the session, for a whole branch).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Executable,
    Row,
    Table,
    Text,
    bindparam,
    cast,
    func,
    insert,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import CursorResult

from .. import payload
from ..models import Base, CheckpointRow, EntryRow, SessionRow
from ..types import Checkpoint, EntryType, Message, SessionEntry, SessionMetadata

Result = CursorResult[Any]


_ENTRY_TYPES = {kind.value: kind for kind in EntryType}

_ENTRY_COLUMNS = "id, parent_id, seq, depth, type, role, payload, created_at"


@dataclass(frozen=True, slots=True)
class Tables:
    """The three tables of :mod:`sessions_db.models` (placed in no schema)."""

    sessions: Table
    entries: Table
    checkpoints: Table


#: The tables every statement is built on; a configured schema is applied when
#: they run (``schema_translate_map``), never by copying them.
TABLES = Tables(
    sessions=Base.metadata.tables[SessionRow.__tablename__],
    entries=Base.metadata.tables[EntryRow.__tablename__],
    checkpoints=Base.metadata.tables[CheckpointRow.__tablename__],
)


def _quote(dialect: str, schema: str | None, table: Table) -> str:
    """Return the quoted name of ``table`` in ``schema``, for SQL text.

    ``schema`` is a checked identifier (:func:`sessions_db.ids.schema_name`), and
    both names are quoted by the dialect's own preparer.
    """
    factory: Any = postgresql.dialect if dialect == "postgresql" else sqlite.dialect
    preparer = factory().identifier_preparer
    name: str = preparer.quote(table.name)
    return name if schema is None else f"{preparer.quote_schema(schema)}.{name}"


class SQLStatements:
    """The statements, and the conversions of their rows, for one schema and one dialect.

    ``options`` are the execution options every statement runs with: the
    ``schema_translate_map`` that places the models' tables in ``schema``.
    """

    def __init__(self, dialect: str, schema: str | None = None) -> None:
        self.tables = TABLES
        self.dialect = dialect
        self.options: dict[str, Any] = (
            {} if schema is None else {"schema_translate_map": {None: schema}}
        )
        #: The schema of the tables (``None``: the connection's search path).
        self.schema = schema
        self._sessions = _quote(dialect, schema, TABLES.sessions)
        self._entries = _quote(dialect, schema, TABLES.entries)
        self._walks: dict[tuple[str, str], Executable] = {}
        e = TABLES.entries
        columns: dict[str, Any] = {c.name: bindparam(c.name, type_=c.type) for c in e.columns}
        columns["payload"] = self.json(bindparam("payload", type_=Text))
        self._insert_entry = insert(e).values(columns)

    def json(self, value: ColumnElement[Any]) -> ColumnElement[Any]:
        """Return ``value`` (JSON text from :func:`payload.dumps`) as the JSON column type.

        JSON is always sent as text we encoded, so that what every backend
        stores is exactly what the payload check accepted.
        """
        return cast(value, JSONB) if self.dialect == "postgresql" else value

    def json_value(self, value: dict[str, Any]) -> ColumnElement[Any]:
        """Return ``value`` bound as JSON text of the JSON column type."""
        return self.json(bindparam(None, payload.dumps(value), type_=Text))

    @property
    def sessions_name(self) -> str:
        """The quoted, schema-qualified name of the sessions table (for SQL text)."""
        return self._sessions

    @property
    def entries_name(self) -> str:
        """The quoted, schema-qualified name of the entries table (for SQL text)."""
        return self._entries

    #: The JSON text of a payload, as every store writes it.
    dumps = staticmethod(payload.dumps)

    def metadata_contains(self, wanted: dict[str, Any]) -> list[ColumnElement[bool]]:
        """Return the conditions that the sessions' metadata holds every pair of ``wanted``.

        PostgreSQL: one JSONB containment test (``@>``, which the GIN index on
        the column serves; a nested value must be contained, not equal);
        SQLite: the JSON value at each key equal to the given one.
        """
        column = self.tables.sessions.c.metadata
        if self.dialect == "postgresql":
            return [column.op("@>")(self.json_value(wanted))]
        conditions: list[ColumnElement[bool]] = []
        for key, value in wanted.items():
            path = "$." + json.dumps(key)
            conditions.append(
                func.json_extract(column, path)
                == func.json_extract(
                    bindparam(None, payload.dumps({"v": value}), type_=Text), "$.v"
                )
            )
        return conditions

    def insert_checkpoint(self, checkpoint: Checkpoint) -> Executable:
        """Return the INSERT of ``checkpoint`` as given."""
        return insert(self.tables.checkpoints).values(
            id=checkpoint.id,
            session_id=checkpoint.session_id,
            entry_id=checkpoint.entry_id,
            created_at=checkpoint.timestamp,
            checksum=checkpoint.checksum,
            metadata=self.json_value(checkpoint.metadata),
        )

    # -- rows to models --------------------------------------------------------

    @staticmethod
    def meta(row: Row[Any]) -> SessionMetadata:
        """Return the session of a row of :meth:`session_columns`."""
        m = row._mapping
        return SessionMetadata.model_construct(
            id=m["id"],
            agent_name=m["agent_name"],
            user_id=m["user_id"],
            created_at=m["created_at"],
            updated_at=m["updated_at"],
            message_count=m["message_count"],
            current_leaf=m["current_leaf"],
            metadata=m["metadata"],
            key=m["key"],
            forked_from=m["forked_from"],
            forked_at=m["forked_at"],
        )

    @staticmethod
    def entry(
        id: str,
        parent_id: str | None,
        type: str,
        role: str | None,
        data: Any,
        created_at: datetime,
    ) -> SessionEntry:
        """Return the entry of one entries row's values (no validation: our own rows)."""
        kind = _ENTRY_TYPES[type]
        return SessionEntry._trusted(
            {
                "id": id,
                "parent_id": parent_id,
                "timestamp": created_at,
                "type": kind,
                "data": {"role": role, "payload": data} if kind is EntryType.MESSAGE else data,
            }
        )

    def raw_values(self, rows: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """Yield ``(id, parent_id, type, role, data, timestamp)`` of rows read without types.

        The branch reads hand back the driver's own values, not SQLAlchemy-processed
        ones: on PostgreSQL psycopg has already parsed ``jsonb`` and made aware
        timestamps; on SQLite the payload is JSON text and the timestamp the
        fixed-width UTC text the column stores. One pass here is much cheaper
        than SQLAlchemy's per-column processors.
        """
        if self.dialect == "postgresql":
            zone = None
            for _, id, parent_id, kind, role, data, ts in rows:
                if ts.tzinfo is not zone:
                    zone = ts.tzinfo
                    # psycopg gives times in the connection's zone; when that zone is
                    # UTC under another name (``Etc/UTC``), relabelling is enough and
                    # much cheaper than converting every row.
                    relabel = zone is UTC or _always_utc(zone)
                yield (
                    id,
                    parent_id,
                    kind,
                    role,
                    data,
                    (ts.replace(tzinfo=UTC) if relabel else ts.astimezone(UTC)),
                )
        else:
            loads = json.loads
            parse = datetime.fromisoformat
            for _, id, parent_id, kind, role, data, ts in rows:
                yield id, parent_id, kind, role, loads(data), parse(ts).replace(tzinfo=UTC)

    def raw_entries(self, rows: Sequence[Any]) -> list[SessionEntry]:
        """Return the entries of branch rows."""
        entry = self.entry
        return [entry(*values) for values in self.raw_values(rows)]

    def raw_messages(self, rows: Sequence[Any]) -> list[Message]:
        """Return the messages of branch rows (all message rows): one object per row."""
        trusted = Message._trusted
        return [
            trusted({"type": role, "payload": data, "id": id, "timestamp": ts})
            for id, _, _, role, data, ts in self.raw_values(rows)
        ]

    @staticmethod
    def checkpoint(row: Row[Any]) -> Checkpoint:
        """Return the checkpoint of a row of :meth:`checkpoint_columns`."""
        m = row._mapping
        return Checkpoint.model_construct(
            id=m["id"],
            session_id=m["session_id"],
            timestamp=m["created_at"],
            entry_id=m["entry_id"],
            checksum=m["checksum"],
            metadata=m["metadata"],
        )

    @staticmethod
    def columns(entry: SessionEntry) -> tuple[str | None, dict[str, Any]]:
        """Return the ``role`` and ``payload`` columns of an entry."""
        if entry.type is EntryType.MESSAGE:
            return entry.data["role"], entry.data["payload"]
        return None, entry.data

    # -- sessions ---------------------------------------------------------------

    def session_columns(self) -> list[Any]:
        """Return the columns a session is read with."""
        s = self.tables.sessions
        return [
            s.c.id,
            s.c.agent_name,
            s.c.user_id,
            s.c.created_at,
            s.c.updated_at,
            s.c.message_count,
            s.c.current_leaf,
            s.c.metadata,
            s.c.key,
            s.c.forked_from,
            s.c.forked_at,
        ]

    # -- entries ----------------------------------------------------------------

    def insert_entries(
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        parent_id: str | None,
        seq: int,
        depth: int,
    ) -> tuple[Executable, Any, int]:
        """Return the INSERT of ``entries`` after ``parent_id``, its parameters, the last depth.

        On PostgreSQL it is one statement with one array per column, whatever the
        number of entries; on SQLite one ``executemany`` (no parameter limit).
        """
        rows = []
        for entry in entries:
            role, data = self.columns(entry)
            seq += 1
            if entry.type is EntryType.MESSAGE:
                depth += 1
            rows.append(
                {
                    "session_id": session_id,
                    "id": entry.id,
                    "parent_id": parent_id,
                    "seq": seq,
                    "depth": depth,
                    "type": entry.type.value,
                    "role": role,
                    "payload": payload.dumps(data),
                    "created_at": entry.timestamp,
                }
            )
            parent_id = entry.id
        if self.dialect != "postgresql":
            return self._insert_entry, rows, depth
        arrays: dict[str, Any] = {name: [row[name] for row in rows] for name in ARRAY_COLUMNS}
        arrays["sid"] = session_id
        return pg_insert(self._entries), arrays, depth

    def walk(self, start: str, bound: str) -> Executable:
        """Return the recursive branch walk.

        ``start`` picks the first entry (the current leaf, or a given entry);
        ``bound`` is the depth below which the walk stops: it follows parents only
        until it has passed the oldest message asked for, so reading the newest N
        messages of a long session costs N steps, not the whole history.
        """
        key = (start, bound)
        cached = self._walks.get(key)
        if cached is not None:
            return cached
        first = {
            "leaf": f"(SELECT current_leaf FROM {self._sessions} WHERE id = :sid)",
            "entry": ":start",
        }[start]
        lo = {"all": "0", "newest": "e.depth - :n + 1", "older": "e.depth - :n"}[bound]
        sql = f"""
WITH RECURSIVE branch({_ENTRY_COLUMNS}, lo) AS (
    SELECT e.id, e.parent_id, e.seq, e.depth, e.type, e.role, e.payload, e.created_at, {lo}
    FROM {self._entries} e
    WHERE e.session_id = :sid AND e.id = {first}
  UNION ALL
    SELECT e.id, e.parent_id, e.seq, e.depth, e.type, e.role, e.payload, e.created_at, b.lo
    FROM branch b JOIN {self._entries} e ON e.session_id = :sid AND e.id = b.parent_id
    WHERE NOT (b.type = 'message' AND b.depth <= b.lo)
)
SELECT s.id AS sid, b.id, b.parent_id, b.type, b.role, b.payload, b.created_at
FROM {self._sessions} s LEFT JOIN branch b ON :all_types OR b.type = 'message' OR b.id = {first}
WHERE s.id = :sid
ORDER BY b.seq"""
        # No column types: the rows are converted by _raw_entries in one pass.
        stmt = text(sql)
        self._walks[key] = stmt
        return stmt

    def scan(self) -> Executable:
        """Return the read of a whole session in append order, with its current leaf.

        A whole branch is read this way rather than by the recursive walk: one
        range scan of the ``(session_id, seq)`` index costs a fraction of one
        index probe per entry, and :func:`follow` picks the branch out of it.
        """
        cached = self._walks.get(("scan", "all"))
        if cached is None:
            cached = text(f"""
SELECT s.current_leaf, e.id, e.parent_id, e.type, e.role, e.payload, e.created_at
FROM {self._sessions} s LEFT JOIN {self._entries} e ON e.session_id = s.id
WHERE s.id = :sid
ORDER BY e.seq""")
            self._walks[("scan", "all")] = cached
        return cached

    # -- long-term memory -------------------------------------------------------

    def hit_columns(self) -> list[Any]:
        """Return the entry columns of a memory hit (with ``created_at``)."""
        e = self.tables.entries
        return [e.c.session_id, e.c.id, e.c.parent_id, e.c.type, e.c.role, e.c.payload]

    # -- checkpoints ------------------------------------------------------------

    def checkpoint_columns(self) -> list[Any]:
        """Return the columns a checkpoint is read with."""
        c = self.tables.checkpoints
        return [c.c.id, c.c.session_id, c.c.entry_id, c.c.created_at, c.c.checksum, c.c.metadata]


@lru_cache(maxsize=32)
def _always_utc(zone: tzinfo | None) -> bool:
    """Whether ``zone`` is UTC under another name: no offset, now or at any time."""
    if zone is None:
        return False
    probes = (datetime(1970, 1, 1), datetime(2000, 1, 1), datetime(2030, 7, 1))
    return all(zone.utcoffset(probe) == timedelta(0) for probe in probes) and str(zone) in (
        "UTC",
        "Etc/UTC",
        "Etc/UCT",
        "Etc/Universal",
        "Etc/Zulu",
        "Universal",
        "Zulu",
        "GMT",
        "Etc/GMT",
    )


def follow(rows: Sequence[Any], leaf: str | None, messages_only: bool) -> list[Any]:
    """Return the rows on the path root -> ``leaf``, root first.

    ``rows`` are a session's entries in append order; a parent is always older
    than its child, so one backward pass following parent links finds the
    branch (every row, in a session that was never restored).
    """
    picked = []
    wanted = leaf
    for r in reversed(rows):
        if wanted is None:
            break
        if r[1] == wanted:
            picked.append(r)
            wanted = r[2]
    picked.reverse()
    if messages_only:
        return [r for r in picked if r[3] == "message"]
    return picked


#: The columns :func:`pg_insert` takes as arrays, with their element types.
ARRAY_COLUMNS = {
    "id": "VARCHAR",
    "parent_id": "VARCHAR",
    "seq": "BIGINT",
    "depth": "INTEGER",
    "type": "VARCHAR",
    "role": "VARCHAR",
    "payload": "TEXT",
    "created_at": "TIMESTAMPTZ",
}


@lru_cache(maxsize=64)
def pg_insert(entries: str) -> Executable:
    """Return the PostgreSQL INSERT of any number of linked entries, one array per column."""
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in ARRAY_COLUMNS.items())
    return text(f"""
INSERT INTO {entries} (session_id, {_ENTRY_COLUMNS})
SELECT :sid, v.id, v.parent_id, v.seq, v.depth, v.type, v.role, CAST(v.payload AS JSONB),
       v.created_at
FROM unnest({arrays}) AS v({_ENTRY_COLUMNS})""")


@lru_cache(maxsize=64)
def pg_append(sessions: str, entries: str) -> Executable:
    """Return the one-statement PostgreSQL append of any number of entries.

    ``prev`` locks the session row (a concurrent append waits here and then sees
    the row as the one before it left it); ``upd`` advances the row and returns
    the old leaf and counters; the INSERT links the new entries after the old
    leaf. If the session does not exist, nothing is updated or inserted.

    The entries come as one array per column, so the statement has the same
    text and the same 12 parameters for any batch (PostgreSQL allows at most
    65,535 parameters to a statement) and is prepared once for all sizes.
    """
    return text(f"""
WITH prev AS (
    SELECT current_leaf, last_seq, message_count FROM {sessions} WHERE id = :sid FOR UPDATE
), upd AS (
    UPDATE {sessions} AS s
    SET current_leaf = :last_id, last_seq = prev.last_seq + :n,
        message_count = prev.message_count + :m, updated_at = :now
    FROM prev WHERE s.id = :sid
    RETURNING prev.current_leaf AS parent_id, prev.last_seq AS seq0, prev.message_count AS depth0
)
INSERT INTO {entries} (session_id, {_ENTRY_COLUMNS})
SELECT :sid, v.id, COALESCE(v.parent_id, upd.parent_id), upd.seq0 + v.ord,
       upd.depth0 + v.dmsg, v.type, v.role, CAST(v.payload AS JSONB), v.created_at
FROM upd CROSS JOIN unnest(
        CAST(:ids AS VARCHAR[]), CAST(:parents AS VARCHAR[]), CAST(:types AS VARCHAR[]),
        CAST(:roles AS VARCHAR[]), CAST(:payloads AS TEXT[]), CAST(:stamps AS TIMESTAMPTZ[]),
        CAST(:depths AS INTEGER[])
    ) WITH ORDINALITY AS v(id, parent_id, type, role, payload, created_at, dmsg, ord)""")
