"""The statements of the SQL stores, built once per schema and dialect, and their rows' models.

:class:`~sessions_db.sql.unit_of_work.SQLUnitOfWork` runs them. The hot paths
are single statements: on PostgreSQL an append is one ``INSERT ... SELECT`` fed
by a data-modifying CTE that locks and advances the session row, and a history
load is one recursive query that walks only the part of the branch it returns
(or one range scan of the session, for a whole branch).
"""

from __future__ import annotations

import re
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
    TextClause,
    bindparam,
    cast,
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

#: The columns a session is read with, in :meth:`SQLStatements.session_values` order.
_SESSION_COLUMNS = (
    'id, agent_name, user_id, created_at, updated_at, message_count, current_leaf, "metadata", '
    '"key", forked_from, forked_at'
)


#: A ``:name`` parameter of SQL text (a ``::`` cast is not one).
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True, slots=True)
class SQL:
    """One statement of ours as SQL text, in SQLAlchemy's form and in the driver's own.

    ``driver`` is the same text in the driver's parameter style (psycopg's
    ``%(name)s``; sqlite3 takes ``:name`` as written), for the units of work
    that run it on their own connection without SQLAlchemy's execution layer;
    ``clause`` is what a host's connection runs. Parameters are never spliced
    into the text: only our own table names (quoted) are.
    """

    clause: TextClause
    driver: str

    @classmethod
    def of(cls, dialect: str, source: str) -> SQL:
        """Return ``source`` (SQL text with ``:name`` parameters) for ``dialect``."""
        if dialect == "postgresql":
            driver = _NAMED.sub(r"%(\1)s", source.replace("%", "%%"))
        else:
            driver = source
        return cls(text(source), driver)


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
        self._walks: dict[tuple[str, str], SQL] = {}
        self._lists: dict[tuple[Any, ...], SQL] = {}
        self._build()

    def _build(self) -> None:
        """Build the SQL text of the hot paths once."""
        sessions, entries, pg = self._sessions, self._entries, self.dialect == "postgresql"
        json_param = "CAST(:{} AS JSONB)" if pg else ":{}"
        self._insert_entry = SQL.of(
            self.dialect,
            f"INSERT INTO {entries} (session_id, {_ENTRY_COLUMNS}) VALUES (:session_id, :id, "
            f":parent_id, :seq, :depth, :type, :role, {json_param.format('payload')}, "
            ":created_at)",
        )
        arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in ARRAY_COLUMNS.items())
        self._insert_entries = SQL.of(
            self.dialect,
            f"""
INSERT INTO {entries} (session_id, {_ENTRY_COLUMNS})
SELECT :sid, v.id, v.parent_id, v.seq, v.depth, v.type, v.role, CAST(v.payload AS JSONB),
       v.created_at
FROM unnest({arrays}) AS v({_ENTRY_COLUMNS})""",
        )
        lock = f"SELECT current_leaf, last_seq, message_count FROM {sessions} WHERE id = :sid"
        self._lock = SQL.of(self.dialect, lock + (" FOR UPDATE" if pg else ""))
        self._advance = SQL.of(
            self.dialect,
            f"UPDATE {sessions} SET current_leaf = :leaf, last_seq = :last_seq, "
            "message_count = COALESCE(:count, message_count), updated_at = :now WHERE id = :sid",
        )
        advance = f"""
WITH prev AS (
    SELECT current_leaf, last_seq, message_count FROM {sessions} WHERE id = :sid FOR UPDATE
), upd AS (
    UPDATE {sessions} AS s
    SET current_leaf = :last_id, last_seq = prev.last_seq + :n,
        message_count = prev.message_count + :m, updated_at = :now
    FROM prev WHERE s.id = :sid
    RETURNING prev.current_leaf AS parent_id, prev.last_seq AS seq0, prev.message_count AS depth0
)
INSERT INTO {entries} (session_id, {_ENTRY_COLUMNS})"""
        self._append_one = SQL.of(
            self.dialect,
            f"""{advance}
SELECT :sid, :id, upd.parent_id, upd.seq0 + 1, upd.depth0 + :dmsg, :type, :role,
       CAST(:payload AS JSONB), :stamp
FROM upd""",
        )
        self._append_many = SQL.of(
            self.dialect,
            f"""{advance}
SELECT :sid, v.id, COALESCE(v.parent_id, upd.parent_id), upd.seq0 + v.ord,
       upd.depth0 + v.dmsg, v.type, v.role, CAST(v.payload AS JSONB), v.created_at
FROM upd CROSS JOIN unnest(
        CAST(:ids AS VARCHAR[]), CAST(:parents AS VARCHAR[]), CAST(:types AS VARCHAR[]),
        CAST(:roles AS VARCHAR[]), CAST(:payloads AS TEXT[]), CAST(:stamps AS TIMESTAMPTZ[]),
        CAST(:depths AS INTEGER[])
    ) WITH ORDINALITY AS v(id, parent_id, type, role, payload, created_at, dmsg, ord)""",
        )
        self._insert_session = SQL.of(
            self.dialect,
            f"INSERT INTO {sessions} ({_SESSION_COLUMNS}, last_seq) VALUES (:id, :agent_name, "
            ":user_id, :created_at, :updated_at, 0, NULL, "
            f"{json_param.format('metadata')}, :key, :forked_from, :forked_at, 0) "
            'ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, "metadata" = '
            'excluded."metadata"',
        )
        self._select_session = SQL.of(
            self.dialect, f"SELECT {_SESSION_COLUMNS} FROM {sessions} WHERE id = :id"
        )
        self._select_by_key = SQL.of(
            self.dialect,
            f'SELECT {_SESSION_COLUMNS} FROM {sessions} WHERE agent_name = :agent AND "key" = :key',
        )

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
            loads = payload.loads
            parse = datetime.fromisoformat
            for _, id, parent_id, kind, role, data, ts in rows:
                # The column holds UTC as fixed-width text without an offset.
                yield id, parent_id, kind, role, loads(data), parse(ts + "+00:00")

    def raw_entries(self, rows: Sequence[Any]) -> list[SessionEntry]:
        """Return the entries of branch rows."""
        entry = self.entry
        return [entry(*values) for values in self.raw_values(rows)]

    def raw_messages(self, rows: Sequence[Any]) -> list[Message]:
        """Return the messages of branch rows (all message rows): one object per row.

        :meth:`raw_values` and the model in one loop: a history load spends
        most of its Python here, once per message.
        """
        trusted = Message._trusted
        if self.dialect != "postgresql":
            loads = payload.loads
            parse = datetime.fromisoformat
            return [
                trusted(
                    {
                        "type": role,
                        "payload": loads(data),
                        "id": id,
                        "timestamp": parse(ts + "+00:00"),
                    }
                )
                for _, id, _, _, role, data, ts in rows
            ]
        # psycopg gives every time of a result in the connection's zone.
        zone = rows[0][6].tzinfo if rows else UTC
        if zone is UTC:
            return [
                trusted({"type": role, "payload": data, "id": id, "timestamp": ts})
                for _, id, _, _, role, data, ts in rows
            ]
        if _always_utc(zone):
            return [
                trusted(
                    {"type": role, "payload": data, "id": id, "timestamp": ts.replace(tzinfo=UTC)}
                )
                for _, id, _, _, role, data, ts in rows
            ]
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
    ) -> tuple[SQL, Any, int]:
        """Return the INSERT of ``entries`` after ``parent_id``, its parameters, the last depth.

        On PostgreSQL it is one statement with one array per column, whatever the
        number of entries; on SQLite one ``executemany`` (no parameter limit).
        """
        stamp = self.stamp
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
                    "created_at": stamp(entry.timestamp),
                }
            )
            parent_id = entry.id
        if self.dialect != "postgresql":
            return self._insert_entry, rows, depth
        arrays: dict[str, Any] = {name: [row[name] for row in rows] for name in ARRAY_COLUMNS}
        arrays["sid"] = session_id
        return self._insert_entries, arrays, depth

    def append(self, entries: int) -> SQL:
        """Return the one-statement PostgreSQL append of ``entries`` entries (1, or any).

        ``prev`` locks the session row (a concurrent append waits here and then
        sees the row as the one before it left it); ``upd`` advances the row and
        returns the old leaf and counters; the INSERT links the new entries
        after the old leaf. If the session does not exist, nothing is updated or
        inserted. One entry comes as plain parameters; more as one array per
        column, so that the statement has the same text and the same 12
        parameters for any batch (PostgreSQL allows at most 65,535 parameters
        to a statement).
        """
        return self._append_one if entries == 1 else self._append_many

    def append_params(
        self, session_id: str, entries: Sequence[SessionEntry], updated_at: datetime
    ) -> dict[str, Any]:
        """Return the parameters of :meth:`append` for ``entries``."""
        columns = self.columns
        dumps = self.dumps
        if len(entries) == 1:
            entry = entries[0]
            role, data = columns(entry)
            message = entry.type is EntryType.MESSAGE
            return {
                "sid": session_id,
                "last_id": entry.id,
                "n": 1,
                "m": 1 if message else 0,
                "now": updated_at,
                "id": entry.id,
                "type": entry.type.value,
                "role": role,
                "payload": dumps(data),
                "stamp": entry.timestamp,
                "dmsg": 1 if message else 0,
            }
        ids: list[str] = []
        types: list[str] = []
        roles: list[str | None] = []
        payloads: list[str] = []
        stamps: list[datetime] = []
        depths: list[int] = []
        messages = 0
        for entry in entries:
            role, data = columns(entry)
            if entry.type is EntryType.MESSAGE:
                messages += 1
            ids.append(entry.id)
            types.append(entry.type.value)
            roles.append(role)
            payloads.append(dumps(data))
            stamps.append(entry.timestamp)
            depths.append(messages)
        return {
            "sid": session_id,
            "last_id": ids[-1],
            "n": len(ids),
            "m": messages,
            "now": updated_at,
            "ids": ids,
            "parents": [None, *ids[:-1]],
            "types": types,
            "roles": roles,
            "payloads": payloads,
            "stamps": stamps,
            "depths": depths,
        }

    def lock(self) -> SQL:
        """Return the read of a session's leaf and counters that locks its row (PostgreSQL).

        On SQLite the unit already holds the database's write lock (``BEGIN
        IMMEDIATE``), which SQLite has no row lock finer than.
        """
        return self._lock

    def advance(self) -> SQL:
        """Return the UPDATE that moves a session's leaf and counters after an append."""
        return self._advance

    def insert_session(self) -> SQL:
        """Return the INSERT of a new session (an existing ID gets its user and metadata)."""
        return self._insert_session

    def session_params(self, meta: SessionMetadata) -> dict[str, Any]:
        """Return the parameters of :meth:`insert_session` for ``meta``."""
        return {
            "id": meta.id,
            "agent_name": meta.agent_name,
            "user_id": meta.user_id,
            "created_at": self.stamp(meta.created_at),
            "updated_at": self.stamp(meta.updated_at),
            "metadata": payload.dumps(meta.metadata),
            "key": meta.key,
            "forked_from": meta.forked_from,
            "forked_at": meta.forked_at,
        }

    def select_session(self) -> SQL:
        """Return the read of one session by ID (``:id``), in :meth:`session_values` order."""
        return self._select_session

    def select_by_key(self) -> SQL:
        """Return the read of an agent's session by external key (``:agent``, ``:key``)."""
        return self._select_by_key

    def list_sessions(
        self,
        *,
        user: bool,
        after: bool,
        before: bool,
        metadata: int,
        cursor: bool,
        limit: bool,
        offset: bool,
    ) -> SQL:
        """Return a listing of an agent's sessions, newest first, for the filters given.

        Parameters: ``:agent``, and as asked ``:user``, ``:after``, ``:before``,
        ``:cursor_at`` and ``:cursor_id``, ``:limit``, ``:offset``, and the
        metadata pairs (PostgreSQL: ``:meta``, one JSON object that the
        column must contain; SQLite: ``:path0``, ``:value0``, ... one JSON path
        and one ``{"v": value}`` per pair). Each combination is built once.
        """
        key = ("list", user, after, before, metadata, cursor, limit, offset)
        found = self._lists.get(key)
        if found is not None:
            return found
        where = ["agent_name = :agent"]
        if user:
            where.append("user_id = :user")
        if after:
            where.append("updated_at > :after")
        if before:
            where.append("updated_at < :before")
        if metadata and self.dialect == "postgresql":
            where.append('"metadata" @> CAST(:meta AS JSONB)')
        else:
            where.extend(
                f"""json_extract("metadata", :path{i}) = json_extract(:value{i}, '$.v')"""
                for i in range(metadata)
            )
        if cursor:
            where.append("(updated_at, id) < (:cursor_at, :cursor_id)")
        sql = (
            f"SELECT {_SESSION_COLUMNS} FROM {self._sessions} WHERE {' AND '.join(where)} "
            "ORDER BY updated_at DESC, id DESC"
        )
        if limit:
            sql += " LIMIT :limit"
        elif offset and self.dialect == "sqlite":
            sql += " LIMIT -1"
        if offset:
            sql += " OFFSET :offset"
        found = self._lists[key] = SQL.of(self.dialect, sql)
        return found

    def stamp(self, value: datetime) -> Any:
        """Return a timestamp parameter as this dialect's columns take it."""
        if self.dialect == "postgresql":
            if value.tzinfo is None:
                raise ValueError("naive datetime refused: sessions_db stores timezone-aware UTC")
            return value
        return sqlite_stamp(value)

    def session_values(self, row: Sequence[Any]) -> SessionMetadata:
        """Return the session of a row of the session columns (driver or SQLAlchemy values)."""
        (
            id,
            agent_name,
            user_id,
            created_at,
            updated_at,
            message_count,
            current_leaf,
            metadata,
            key,
            forked_from,
            forked_at,
        ) = row
        return SessionMetadata._trusted(
            {
                "id": id,
                "agent_name": agent_name,
                "user_id": user_id,
                "created_at": self._time(created_at),
                "updated_at": self._time(updated_at),
                "message_count": message_count,
                "current_leaf": current_leaf,
                "metadata": payload.loads(metadata) if isinstance(metadata, str) else metadata,
                "key": key,
                "forked_from": forked_from,
                "forked_at": forked_at,
            }
        )

    @staticmethod
    def _time(value: Any) -> datetime:
        """Return a driver's timestamp (aware, or SQLite's UTC text) as an aware UTC datetime."""
        if isinstance(value, str):
            return datetime.fromisoformat(value + "+00:00")
        result: datetime = value
        zone = result.tzinfo
        if zone is UTC:
            return result
        if _always_utc(zone):
            return result.replace(tzinfo=UTC)
        return result.astimezone(UTC)

    def walk(self, start: str, bound: str) -> SQL:
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
        # No column types: the rows are converted by raw_values in one pass.
        stmt = SQL.of(self.dialect, sql)
        self._walks[key] = stmt
        return stmt

    def scan(self) -> SQL:
        """Return the read of a whole session in append order, with its current leaf.

        A whole branch is read this way rather than by the recursive walk: one
        range scan of the ``(session_id, seq)`` index costs a fraction of one
        index probe per entry, and :func:`follow` picks the branch out of it.
        """
        cached = self._walks.get(("scan", "all"))
        if cached is None:
            cached = SQL.of(
                self.dialect,
                f"""
SELECT s.current_leaf, e.id, e.parent_id, e.type, e.role, e.payload, e.created_at
FROM {self._sessions} s LEFT JOIN {self._entries} e ON e.session_id = s.id
WHERE s.id = :sid
ORDER BY e.seq""",
            )
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


#: The columns the PostgreSQL INSERT of many entries takes as arrays, with their element types.
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


def sqlite_stamp(value: datetime) -> str:
    """Return an aware datetime as SQLite's timestamp columns hold it: UTC, fixed-width text.

    The same text SQLAlchemy's SQLite ``DATETIME`` writes, so that rows written
    either way sort together.
    """
    if value.tzinfo is None:
        raise ValueError("naive datetime refused: sessions_db stores timezone-aware UTC")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
