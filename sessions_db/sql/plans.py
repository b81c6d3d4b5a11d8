"""The SQL of every backend operation, as plans shared by the sync and async backends.

Each method returns a plan (see :mod:`sessions_db._plan`) that yields
:class:`Stmt` objects and receives their results; the backend runs it on one
connection, inside a transaction when :attr:`SQLPlan.atomic` says so. The hot
paths are single statements: on PostgreSQL an append is one
``INSERT ... SELECT`` fed by a data-modifying CTE that locks and advances the
session row, and a history load is one recursive query that walks only the
part of the branch it returns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Executable,
    Float,
    Row,
    Text,
    and_,
    bindparam,
    cast,
    column,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import CursorResult

from .. import payload
from ..backend import BranchQuery, MessageHit, NewCheckpoint, checkpoint_entry
from ..checksum import branch_checksum
from ..errors import (
    CheckpointNotFoundError,
    EntryNotFoundError,
    SessionNotFoundError,
)
from ..types import Checkpoint, EntryType, Message, SessionEntry, SessionMetadata
from .schema import FTS_DOCS, FTS_TABLE, PG_FTS_VECTOR, Tables

Result = CursorResult[Any]


@dataclass(frozen=True, slots=True)
class Stmt:
    """One statement to execute, with its parameters (a list for executemany)."""

    statement: Executable
    params: dict[str, Any] | list[dict[str, Any]] | None = None


Plan = Generator[Stmt, Result, Any]


@dataclass(frozen=True, slots=True)
class SQLPlan:
    """A plan and whether it needs a transaction (``atomic``) or is one statement."""

    plan: Plan
    atomic: bool = False


_ENTRY_TYPES = {kind.value: kind for kind in EntryType}

_ENTRY_COLUMNS = "id, parent_id, seq, depth, type, role, payload, created_at"


def _quote(tables: Tables, dialect: str, name: str) -> str:
    """Return the quoted, schema-qualified name of one of ``tables``."""
    factory: Any = postgresql.dialect if dialect == "postgresql" else sqlite.dialect
    preparer = factory().identifier_preparer
    quoted: str = preparer.format_table(getattr(tables, name))
    return quoted


class SQLPlans:
    """Builds the plans for one schema and one dialect (``postgresql`` or ``sqlite``)."""

    def __init__(self, tables: Tables, dialect: str) -> None:
        self.tables = tables
        self.dialect = dialect
        self._sessions = _quote(tables, dialect, "sessions")
        self._entries = _quote(tables, dialect, "entries")
        self._walks: dict[tuple[str, str], Executable] = {}
        self._begin = "BEGIN" if dialect == "postgresql" else "BEGIN IMMEDIATE"
        e = tables.entries
        columns: dict[str, Any] = {c.name: bindparam(c.name, type_=c.type) for c in e.columns}
        columns["payload"] = self._json(bindparam("payload", type_=Text))
        self._insert_entry = insert(e).values(columns)

    def _json(self, value: ColumnElement[Any]) -> ColumnElement[Any]:
        """Return ``value`` (JSON text from :func:`payload.dumps`) as the JSON column type.

        JSON is always sent as text we encoded, so that what every backend
        stores is exactly what the payload check accepted.
        """
        return cast(value, JSONB) if self.dialect == "postgresql" else value

    def _json_value(self, value: dict[str, Any]) -> ColumnElement[Any]:
        return self._json(bindparam(None, payload.dumps(value), type_=Text))

    @property
    def begin(self) -> str:
        """The statement that opens a write transaction."""
        return self._begin

    # -- rows to models --------------------------------------------------------

    @staticmethod
    def _meta(row: Row[Any]) -> SessionMetadata:
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
        )

    @staticmethod
    def _entry(
        id: str,
        parent_id: str | None,
        type: str,
        role: str | None,
        data: Any,
        created_at: datetime,
    ) -> SessionEntry:
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

    def _raw_values(self, rows: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """Yield ``(id, parent_id, type, role, data, timestamp)`` of rows read without types.

        The branch reads hand back the driver's own values, not SQLAlchemy-processed
        ones: on PostgreSQL psycopg has already parsed ``jsonb`` and made aware
        timestamps; on SQLite the payload is JSON text and the timestamp the
        fixed-width UTC text the column stores. One pass here is much cheaper
        than SQLAlchemy's per-column processors.
        """
        if self.dialect == "postgresql":
            for _, id, parent_id, kind, role, data, ts in rows:
                yield id, parent_id, kind, role, data, ts.astimezone(UTC)
        else:
            loads = json.loads
            parse = datetime.fromisoformat
            for _, id, parent_id, kind, role, data, ts in rows:
                yield id, parent_id, kind, role, loads(data), parse(ts).replace(tzinfo=UTC)

    def _raw_entries(self, rows: Sequence[Any]) -> list[SessionEntry]:
        """Return the entries of branch rows."""
        entry = self._entry
        return [entry(*values) for values in self._raw_values(rows)]

    def _raw_messages(self, rows: Sequence[Any]) -> list[Message]:
        """Return the messages of branch rows (all message rows): one object per row."""
        trusted = Message._trusted
        return [
            trusted({"type": role, "payload": data, "id": id, "timestamp": ts})
            for id, _, _, role, data, ts in self._raw_values(rows)
        ]

    @staticmethod
    def _checkpoint(row: Row[Any]) -> Checkpoint:
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
    def _columns(entry: SessionEntry) -> tuple[str | None, dict[str, Any]]:
        if entry.type is EntryType.MESSAGE:
            return entry.data["role"], entry.data["payload"]
        return None, entry.data

    # -- sessions ---------------------------------------------------------------

    def _session_columns(self) -> list[Any]:
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
        ]

    def save_session(self, meta: SessionMetadata) -> SQLPlan:
        """Insert the session, or update its user and metadata."""
        s = self.tables.sessions
        ins = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(s)
        stmt = ins.values(
            id=meta.id,
            agent_name=meta.agent_name,
            user_id=meta.user_id,
            created_at=meta.created_at,
            updated_at=meta.updated_at,
            message_count=0,
            current_leaf=None,
            last_seq=0,
            metadata=self._json_value(meta.metadata),
        ).on_conflict_do_update(
            index_elements=[s.c.id],
            set_={"user_id": meta.user_id, "metadata": self._json_value(meta.metadata)},
        )

        def plan() -> Plan:
            yield Stmt(stmt)

        return SQLPlan(plan())

    def load_session(self, session_id: str) -> SQLPlan:
        """Select one session."""
        s = self.tables.sessions
        stmt = select(*self._session_columns()).where(s.c.id == session_id)

        def plan() -> Plan:
            row = (yield Stmt(stmt)).first()
            if row is None:
                raise SessionNotFoundError(f"session {session_id} not found")
            return self._meta(row)

        return SQLPlan(plan())

    def delete_session(self, session_id: str) -> SQLPlan:
        """Delete a session; its entries and checkpoints go by ON DELETE CASCADE."""
        s = self.tables.sessions
        stmt = delete(s).where(s.c.id == session_id).returning(s.c.id)

        def plan() -> Plan:
            if (yield Stmt(stmt)).first() is None:
                raise SessionNotFoundError(f"session {session_id} not found")

        return SQLPlan(plan())

    def list_sessions(
        self, agent_name: str, user_id: str | None, limit: int | None, offset: int
    ) -> SQLPlan:
        """Select a page of an agent's sessions, most recently updated first."""
        s = self.tables.sessions
        stmt = select(*self._session_columns()).where(s.c.agent_name == agent_name)
        if user_id is not None:
            stmt = stmt.where(s.c.user_id == user_id)
        stmt = stmt.order_by(s.c.updated_at.desc(), s.c.id.desc()).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)

        def plan() -> Plan:
            return [self._meta(row) for row in (yield Stmt(stmt))]

        return SQLPlan(plan())

    def list_agents(self) -> SQLPlan:
        """Select the distinct agent names."""
        s = self.tables.sessions
        stmt = select(s.c.agent_name).distinct().order_by(s.c.agent_name)

        def plan() -> Plan:
            return [row.agent_name for row in (yield Stmt(stmt))]

        return SQLPlan(plan())

    def prune_sessions(
        self, updated_before: datetime, agent_name: str | None, dry_run: bool
    ) -> SQLPlan:
        """Delete (or, dry, select) the expired sessions in one statement; cascades do the rest."""
        s = self.tables.sessions
        condition = s.c.updated_at < updated_before
        if agent_name is not None:
            condition = and_(condition, s.c.agent_name == agent_name)
        stmt: Executable = (
            select(s.c.id).where(condition)
            if dry_run
            else delete(s).where(condition).returning(s.c.id)
        )

        def plan() -> Plan:
            return sorted(row.id for row in (yield Stmt(stmt)))

        return SQLPlan(plan())

    def find_or_create_session(self, meta: SessionMetadata) -> SQLPlan:
        """Return the user's latest session of the agent, or insert ``meta``; atomically."""
        s = self.tables.sessions
        latest = (
            select(*self._session_columns())
            .where(s.c.agent_name == meta.agent_name, s.c.user_id == meta.user_id)
            .order_by(s.c.updated_at.desc(), s.c.id.desc())
            .limit(1)
        )

        def plan() -> Plan:
            if self.dialect == "postgresql":
                # Concurrent callers for one (agent, user) queue on this lock, so
                # the second sees the session the first created.
                key = func.hashtextextended(meta.agent_name + "\x1f" + (meta.user_id or ""), 0)
                yield Stmt(select(func.pg_advisory_xact_lock(key)))
            row = (yield Stmt(latest)).first()
            if row is not None:
                return self._meta(row)
            yield from self.save_session(meta).plan
            return meta

        return SQLPlan(plan(), atomic=True)

    # -- entries ----------------------------------------------------------------

    def _lock_session(self, session_id: str) -> Plan:
        s = self.tables.sessions
        stmt = (
            select(s.c.current_leaf, s.c.last_seq, s.c.message_count)
            .where(s.c.id == session_id)
            .with_for_update()
        )
        row = (yield Stmt(stmt)).first()
        if row is None:
            raise SessionNotFoundError(f"session {session_id} not found")
        return row

    def _insert_entries(
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        parent_id: str | None,
        seq: int,
        depth: int,
    ) -> tuple[Stmt, int]:
        """Return the INSERT of ``entries`` linked after ``parent_id``, and the final depth.

        On PostgreSQL it is one statement with one array per column, whatever the
        number of entries; on SQLite one ``executemany`` (no parameter limit).
        """
        rows = []
        for entry in entries:
            role, data = self._columns(entry)
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
            return Stmt(self._insert_entry, rows), depth
        arrays: dict[str, Any] = {name: [row[name] for row in rows] for name in _ARRAY_COLUMNS}
        arrays["sid"] = session_id
        return Stmt(_pg_insert(self._entries), arrays), depth

    def append_entries(
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        fork_from: str | None,
        updated_at: datetime,
    ) -> SQLPlan:
        """Append entries at the current leaf (or at ``fork_from``), all or nothing."""
        if self.dialect == "postgresql" and fork_from is None:
            return SQLPlan(self._append_one_statement(session_id, entries, updated_at))
        return SQLPlan(self._append_locked(session_id, entries, fork_from, updated_at), atomic=True)

    def _append_locked(
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        fork_from: str | None,
        updated_at: datetime,
    ) -> Plan:
        s, e = self.tables.sessions, self.tables.entries
        leaf, last_seq, depth = yield from self._lock_session(session_id)
        if fork_from is not None:
            found = (
                yield Stmt(
                    select(e.c.depth).where(e.c.session_id == session_id, e.c.id == fork_from)
                )
            ).first()
            if found is None:
                raise EntryNotFoundError(f"entry {fork_from} not found in session {session_id}")
            leaf, depth = fork_from, found.depth
        stmt, depth = self._insert_entries(session_id, entries, leaf, last_seq, depth)
        yield stmt
        yield Stmt(
            update(s)
            .where(s.c.id == session_id)
            .values(
                current_leaf=entries[-1].id,
                last_seq=last_seq + len(entries),
                message_count=depth,
                updated_at=updated_at,
            )
        )

    def _append_one_statement(
        self, session_id: str, entries: Sequence[SessionEntry], updated_at: datetime
    ) -> Plan:
        ids: list[str] = []
        types: list[str] = []
        roles: list[str | None] = []
        payloads: list[str] = []
        stamps: list[datetime] = []
        depths: list[int] = []
        messages = 0
        for entry in entries:
            role, data = self._columns(entry)
            if entry.type is EntryType.MESSAGE:
                messages += 1
            ids.append(entry.id)
            types.append(entry.type.value)
            roles.append(role)
            payloads.append(payload.dumps(data))
            stamps.append(entry.timestamp)
            depths.append(messages)
        params: dict[str, Any] = {
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
        result = yield Stmt(_pg_append(self._sessions, self._entries), params)
        if result.rowcount == 0:
            raise SessionNotFoundError(f"session {session_id} not found")

    def _walk(self, start: str, bound: str) -> Executable:
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
FROM {self._sessions} s LEFT JOIN branch b ON :all_types OR b.type = 'message'
WHERE s.id = :sid
ORDER BY b.seq"""
        # No column types: the rows are converted by _raw_entries in one pass.
        stmt = text(sql)
        self._walks[key] = stmt
        return stmt

    def _scan(self) -> Executable:
        """Return the read of a whole session in append order, with its current leaf.

        A whole branch is read this way rather than by the recursive walk: one
        range scan of the ``(session_id, seq)`` index costs a fraction of one
        index probe per entry, and :func:`_follow` picks the branch out of it.
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

    def load_branch(self, session_id: str, query: BranchQuery) -> SQLPlan:
        """Read one branch; return its entries root first."""
        return SQLPlan(self._branch(session_id, query, self._raw_entries))

    def load_messages(self, session_id: str, query: BranchQuery) -> SQLPlan:
        """Read the messages of one branch, built straight into :class:`Message` objects."""
        return SQLPlan(
            self._branch(session_id, replace(query, messages_only=True), self._raw_messages)
        )

    def _branch(
        self, session_id: str, query: BranchQuery, build: Callable[[Sequence[Any]], list[Any]]
    ) -> Plan:
        """Read one branch, root first, and ``build`` the objects of its rows.

        A whole branch is one range scan of the session picked by :func:`_follow`;
        with a ``limit`` it is the recursive walk, which stops after the newest
        ``limit`` messages (from the leaf, or from ``before``).
        """
        start = "leaf" if query.leaf is None and query.before is None else "entry"
        bound = "all" if query.limit is None else ("older" if query.before else "newest")
        params: dict[str, Any] = {"sid": session_id}
        if start == "entry":
            params["start"] = query.before or query.leaf
        if bound == "all":
            stmt = self._scan()
        else:
            stmt = self._walk(start, bound)
            params["all_types"] = not query.messages_only
            params["n"] = query.limit
        rows: list[Any] = list((yield Stmt(stmt, params)).all())
        if not rows:
            raise SessionNotFoundError(f"session {session_id} not found")
        if bound == "all":
            rows = _follow(rows, params.get("start") or rows[0][0], query.messages_only)
        else:
            rows = [r for r in rows if r[1] is not None]
        if start == "entry":
            if not rows or rows[-1][1] != params["start"]:
                what = "message" if query.before else "entry"
                raise EntryNotFoundError(
                    f"{what} {params['start']} not found in session {session_id}"
                )
            if query.before is not None:
                rows.pop()
        if query.limit is not None and len(rows) > query.limit:
            rows = rows[len(rows) - query.limit :]
        return build(rows)

    def load_entries(self, session_id: str) -> SQLPlan:
        """Select every entry of a session in append order."""
        s, e = self.tables.sessions, self.tables.entries
        stmt = (
            select(
                s.c.id.label("sid"),
                e.c.id,
                e.c.parent_id,
                e.c.type,
                e.c.role,
                e.c.payload,
                e.c.created_at,
            )
            .select_from(s.outerjoin(e, e.c.session_id == s.c.id))
            .where(s.c.id == session_id)
            .order_by(e.c.seq)
        )

        def plan() -> Plan:
            rows = (yield Stmt(stmt)).all()
            if not rows:
                raise SessionNotFoundError(f"session {session_id} not found")
            return [
                self._entry(r.id, r.parent_id, r.type, r.role, r.payload, r.created_at)
                for r in rows
                if r.id is not None
            ]

        return SQLPlan(plan())

    # -- long-term memory -------------------------------------------------------

    def _hit_columns(self) -> list[Any]:
        e = self.tables.entries
        return [e.c.session_id, e.c.id, e.c.parent_id, e.c.type, e.c.role, e.c.payload]

    def _hit(self, row: Row[Any], score: float) -> MessageHit:
        return MessageHit(
            row.session_id,
            self._entry(row.id, row.parent_id, row.type, row.role, row.payload, row.created_at),
            score,
        )

    def search_messages(
        self, user_id: str, words: Sequence[str], agent_name: str | None, limit: int
    ) -> SQLPlan:
        """Select the user's messages matching any of ``words``, best first, in one query.

        PostgreSQL ranks with ``ts_rank`` over the GIN-indexed ``tsvector`` of the
        payload's strings; SQLite with ``bm25`` over the FTS5 table (negated, so
        that larger is better on both).
        """
        e = self.tables.entries
        params: dict[str, Any] = {"uid": user_id, "agent": agent_name, "limit": limit}
        by_agent = "AND s.agent_name = :agent" if agent_name is not None else ""
        order = "ORDER BY score DESC, e.created_at DESC, e.session_id DESC, e.seq DESC LIMIT :limit"
        if self.dialect == "postgresql":
            query = " || ".join(f"plainto_tsquery('simple', :t{i})" for i in range(len(words)))
            params.update({f"t{i}": word for i, word in enumerate(words)})
            vector = PG_FTS_VECTOR.format(payload="e.payload")
            sql = f"""
SELECT e.session_id, e.id, e.parent_id, e.type, e.role, e.payload, e.created_at,
       ts_rank({vector}, q.query) AS score
FROM {self._entries} e JOIN {self._sessions} s ON s.id = e.session_id
     CROSS JOIN (SELECT {query} AS query) q
WHERE s.user_id = :uid {by_agent} AND e.type = 'message' AND {vector} @@ q.query
{order}"""
        else:
            # Each word is a quoted FTS5 string (words are \w+, so hold no quote).
            params["match"] = " OR ".join(f'"{word}"' for word in words)
            sql = f"""
SELECT e.session_id, e.id, e.parent_id, e.type, e.role, e.payload, e.created_at,
       -bm25({FTS_TABLE}) AS score
FROM {FTS_TABLE}
     JOIN {FTS_DOCS} d ON d.docid = {FTS_TABLE}.rowid
     JOIN {self._entries} e ON e.session_id = d.session_id AND e.id = d.entry_id
     JOIN {self._sessions} s ON s.id = e.session_id
WHERE {FTS_TABLE} MATCH :match AND s.user_id = :uid {by_agent} AND e.type = 'message'
{order}"""
        stmt = text(sql).columns(*self._hit_columns(), e.c.created_at, column("score", Float))

        def plan() -> Plan:
            if not words or limit <= 0:
                return []
            return [self._hit(row, float(row.score)) for row in (yield Stmt(stmt, params))]

        return SQLPlan(plan())

    def list_messages(
        self,
        user_id: str,
        agent_name: str | None,
        message_id: str | None,
        limit: int | None,
        offset: int,
    ) -> SQLPlan:
        """Select the user's messages, newest first."""
        s, e = self.tables.sessions, self.tables.entries
        stmt = (
            select(*self._hit_columns(), e.c.created_at)
            .select_from(e.join(s, s.c.id == e.c.session_id))
            .where(s.c.user_id == user_id, e.c.type == EntryType.MESSAGE.value)
            .order_by(e.c.created_at.desc(), e.c.session_id.desc(), e.c.seq.desc())
            .offset(offset)
        )
        if agent_name is not None:
            stmt = stmt.where(s.c.agent_name == agent_name)
        if message_id is not None:
            stmt = stmt.where(e.c.id == message_id)
        if limit is not None:
            stmt = stmt.limit(limit)

        def plan() -> Plan:
            return [self._hit(row, 0.0) for row in (yield Stmt(stmt))]

        return SQLPlan(plan())

    # -- checkpoints ------------------------------------------------------------

    def _checkpoint_columns(self) -> list[Any]:
        c = self.tables.checkpoints
        return [c.c.id, c.c.session_id, c.c.entry_id, c.c.created_at, c.c.checksum, c.c.metadata]

    def create_checkpoint(self, session_id: str, new: NewCheckpoint) -> SQLPlan:
        """Lock the session, hash its branch with a new checkpoint entry, store both."""

        def plan() -> Plan:
            s = self.tables.sessions
            leaf, last_seq, depth = yield from self._lock_session(session_id)
            branch: list[SessionEntry] = []
            if leaf is not None:
                branch = yield from self.load_branch(session_id, BranchQuery(leaf=leaf)).plan
            entry = checkpoint_entry(new, leaf)
            checksum = branch_checksum([*branch, entry])
            stmt, _ = self._insert_entries(session_id, [entry], leaf, last_seq, depth)
            yield stmt
            yield Stmt(
                update(s)
                .where(s.c.id == session_id)
                .values(current_leaf=entry.id, last_seq=last_seq + 1, updated_at=new.timestamp)
            )
            checkpoint = Checkpoint.model_construct(
                id=new.id,
                session_id=session_id,
                timestamp=new.timestamp,
                entry_id=entry.id,
                checksum=checksum,
                metadata=new.metadata,
            )
            yield self._insert_checkpoint(checkpoint)
            return checkpoint

        return SQLPlan(plan(), atomic=True)

    def _insert_checkpoint(self, checkpoint: Checkpoint) -> Stmt:
        return Stmt(
            insert(self.tables.checkpoints).values(
                id=checkpoint.id,
                session_id=checkpoint.session_id,
                entry_id=checkpoint.entry_id,
                created_at=checkpoint.timestamp,
                checksum=checkpoint.checksum,
                metadata=self._json_value(checkpoint.metadata),
            )
        )

    def save_checkpoint(self, checkpoint: Checkpoint) -> SQLPlan:
        """Insert a checkpoint as given."""
        s = self.tables.sessions

        def plan() -> Plan:
            exists = (yield Stmt(select(s.c.id).where(s.c.id == checkpoint.session_id))).first()
            if exists is None:
                raise SessionNotFoundError(f"session {checkpoint.session_id} not found")
            yield self._insert_checkpoint(checkpoint)

        return SQLPlan(plan(), atomic=True)

    def load_checkpoint(self, checkpoint_id: str) -> SQLPlan:
        """Select one checkpoint."""
        c = self.tables.checkpoints
        stmt = select(*self._checkpoint_columns()).where(c.c.id == checkpoint_id)

        def plan() -> Plan:
            row = (yield Stmt(stmt)).first()
            if row is None:
                raise CheckpointNotFoundError(f"checkpoint {checkpoint_id} not found")
            return self._checkpoint(row)

        return SQLPlan(plan())

    def list_checkpoints(self, session_id: str) -> SQLPlan:
        """Select a session's checkpoints, oldest first."""
        s, c = self.tables.sessions, self.tables.checkpoints
        stmt = (
            select(s.c.id.label("sid"), *self._checkpoint_columns())
            .select_from(s.outerjoin(c, and_(c.c.session_id == s.c.id)))
            .where(s.c.id == session_id)
            .order_by(c.c.created_at, c.c.id)
        )

        def plan() -> Plan:
            rows = (yield Stmt(stmt)).all()
            if not rows:
                raise SessionNotFoundError(f"session {session_id} not found")
            return [self._checkpoint(r) for r in rows if r.id is not None]

        return SQLPlan(plan())

    # -- erasure -------------------------------------------------------------------

    def erase_user(self, user_id: str) -> SQLPlan:
        """Delete every session of the user in one transaction; return how many.

        Entries and checkpoints go by ON DELETE CASCADE, and with the entries
        their full-text index rows (PostgreSQL's GIN index entries; SQLite's
        FTS5 rows, by the mapping table's cascade and trigger). On SQLite the
        transaction also zeroes the pages it frees (``secure_delete``) and
        merges the FTS5 index, whose segments would otherwise keep the deleted
        words until some later merge.
        """
        s = self.tables.sessions
        stmt = delete(s).where(s.c.user_id == user_id).returning(s.c.id)
        if self.dialect != "sqlite":
            return SQLPlan(_count_rows(stmt))
        optimize = text(f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}) VALUES ('optimize')")

        def plan() -> Plan:
            before = (yield Stmt(text("PRAGMA secure_delete"))).scalar()
            yield Stmt(text("PRAGMA secure_delete = ON"))
            count = yield from _count_rows(stmt)
            if count:
                yield Stmt(optimize)
            yield Stmt(text(f"PRAGMA secure_delete = {int(before or 0)}"))
            return count

        return SQLPlan(plan(), atomic=True)

    def checkpoint_wal(self) -> SQLPlan:
        """Move SQLite's write-ahead log into the database file and empty it (SQLite only).

        Run after an erasure, so that the log keeps no older copy of the pages
        it changed. With readers holding an old snapshot the log may not be
        emptied; this waits for them up to the busy timeout, and does not fail.
        """

        def plan() -> Plan:
            yield Stmt(text("PRAGMA wal_checkpoint(TRUNCATE)"))

        return SQLPlan(plan())


def _count_rows(stmt: Executable) -> Plan:
    """Run ``stmt`` and return the number of rows it returns."""
    return len((yield Stmt(stmt)).all())


def _follow(rows: Sequence[Any], leaf: str | None, messages_only: bool) -> list[Any]:
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


#: The columns :func:`_pg_insert` takes as arrays, with their element types.
_ARRAY_COLUMNS = {
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
def _pg_insert(entries: str) -> Executable:
    """Return the PostgreSQL INSERT of any number of linked entries, one array per column."""
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _ARRAY_COLUMNS.items())
    return text(f"""
INSERT INTO {entries} (session_id, {_ENTRY_COLUMNS})
SELECT :sid, v.id, v.parent_id, v.seq, v.depth, v.type, v.role, CAST(v.payload AS JSONB),
       v.created_at
FROM unnest({arrays}) AS v({_ENTRY_COLUMNS})""")


@lru_cache(maxsize=64)
def _pg_append(sessions: str, entries: str) -> Executable:
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
