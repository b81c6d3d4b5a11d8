"""SQLUnitOfWork: every storage operation on PostgreSQL and SQLite, in one transaction.

The unit of work runs on one SQLAlchemy :class:`~sqlalchemy.Connection`. The sync
backend gives it a pooled connection in autocommit mode (so does the asyncio
backend, in a worker thread, on a store it opened from a URL); on a host's async
engine the asyncio backend gives it the synchronous face of an
``AsyncConnection`` inside ``run_sync``, so that all run this very code; a host
gives it its own connection (or ORM session), whose transaction the unit joins.

**Transactions.** On a connection of ours the unit opens its transaction
lazily, before its first statement (``BEGIN``, or ``BEGIN IMMEDIATE`` when a
SQLite unit writes, so that the write lock is taken up front), and ends it
with ``COMMIT`` or ``ROLLBACK``. A statement that is a whole operation on its
own (an append on PostgreSQL, a read) runs as the first statement of a unit
without ``BEGIN``: a single statement in autocommit is a transaction, and this
keeps the hot paths at one round trip. A unit that does that cannot run a
second statement: operations of several calls call :meth:`begin` first. On a
host's connection nothing is begun, committed or rolled back: :meth:`begin`
takes a savepoint, which :meth:`commit` releases and :meth:`rollback` undoes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Executable,
    Float,
    NestedTransaction,
    and_,
    column,
    delete,
    func,
    null,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from .. import search
from ..backend import UnitOfWork
from ..checksum import branch_checksum
from ..errors import (
    CheckpointNotFoundError,
    EntryNotFoundError,
    SessionNotFoundError,
    SessionsDBError,
    StorageClosedError,
    UnsupportedOperationError,
)
from ..models import AdkUserStateRow
from ..storage import WHOLE_BRANCH, BranchQuery, Cursor, NewCheckpoint, checkpoint_entry
from ..types import Checkpoint, EntryType, Message, MessageHit, SessionEntry, SessionMetadata
from . import fulltext
from .errors import translate
from .schema import FTS_DOCS, FTS_TABLE, PG_FTS_VECTOR
from .statements import SQL, SQLStatements, follow

Result = CursorResult[Any]
B = TypeVar("B")


class SQLUnitOfWork(UnitOfWork):
    """One unit of work on a SQL connection (see the module).

    ``host`` says the connection and its transaction are the host's;
    ``write`` that the unit may write (on SQLite it then begins with the write
    lock). ``resources`` is closed when the unit ends, after its transaction
    (the connection of a pooled unit, the write lock it holds).
    """

    def __init__(
        self,
        conn: Connection,
        statements: SQLStatements,
        *,
        write: bool,
        host: bool = False,
        resources: ExitStack | None = None,
    ) -> None:
        self._conn = conn
        self._sql = statements
        self._dialect = statements.dialect
        self._write = write
        self._host = host
        self._resources = resources
        self._began = False
        self._alone = False
        self._ended = False
        self._erased = False
        self._savepoint: NestedTransaction | None = None
        self._cursor: Any = None
        # Statements go through SQLAlchemy where someone listens to them (a
        # tracer, a statement log: SQLAlchemy's cursor events), which sees
        # nothing else.
        events = conn.dispatch
        self._direct = not host and not (
            events.before_cursor_execute or events.after_cursor_execute
        )

    @property
    def dialect(self) -> str:
        """``"postgresql"`` or ``"sqlite"``."""
        return self._dialect

    def execute(self, statement: Executable, params: Any = None) -> Result:
        """Run a statement of the caller's in the unit's transaction; return its result.

        For the adapters that keep tables of their own next to the sessions
        (modelled in :mod:`sessions_db.models`) and change them in the same
        transaction as a session. The transaction is begun first if need be;
        the store's schema applies (``schema_translate_map``), and driver
        errors become sessions_db errors, as for the unit's own statements.
        """
        return self._run(statement, params)

    # -- the transaction ----------------------------------------------------------

    def begin(self) -> None:
        """Open the unit's transaction (a savepoint on a host's connection), if not yet open."""
        if self._ended:
            raise StorageClosedError("this unit of work has ended")
        if self._began:
            return
        if self._alone:
            raise RuntimeError(
                "a statement of this unit of work ran alone; call begin() before the first one"
            )
        if self._host:
            if self._write:
                if self._dialect == "sqlite" and not _driver_in_transaction(self._conn):
                    # Python's sqlite3 opens its transaction only before a data
                    # change, so a SAVEPOINT first would start (and its RELEASE
                    # commit) a transaction of its own: open the host's first.
                    self._driver("BEGIN")
                self._savepoint = self._conn.begin_nested()
        else:
            opening = "BEGIN IMMEDIATE" if self._write and self._dialect == "sqlite" else "BEGIN"
            self._driver(opening)
        self._began = True

    def commit(self) -> None:
        """Commit the unit's transaction (release the savepoint on a host's connection).

        The unit may go on with another transaction after it.
        """
        self._alone = False
        if not self._began:
            return
        self._began = False
        if self._host:
            if self._savepoint is not None:
                savepoint, self._savepoint = self._savepoint, None
                savepoint.commit()
            return
        self._driver("COMMIT")
        if self._erased:
            self._erased = False
            # The write-ahead log still holds the erased rows' old pages: move
            # it into the database file and empty it (waits for readers up to
            # the busy timeout, and does not fail).
            self._driver("PRAGMA wal_checkpoint(TRUNCATE)")

    def rollback(self) -> None:
        """Roll back the unit's transaction (to the savepoint on a host's connection)."""
        if not self._began:
            return
        self._began = False
        if self._host:
            if self._savepoint is not None:
                savepoint, self._savepoint = self._savepoint, None
                savepoint.rollback()
            return
        try:
            self._driver("ROLLBACK")
        except SessionsDBError:
            # The connection is broken; the pool must not hand it out again.
            if not self._conn.invalidated:
                self._conn.invalidate()

    def end(self) -> None:
        """Roll back what was not committed, then release the connection and locks."""
        if self._ended:
            return
        self._ended = True
        try:
            self.rollback()
        finally:
            self._cursor = None
            if self._resources is not None:
                try:
                    self._resources.close()
                except SQLAlchemyError as exc:
                    raise translate(exc, self._dialect, connecting=True) from exc

    def _driver(self, sql: str) -> None:
        if not self._direct:
            try:
                self._conn.exec_driver_sql(sql)
            except SQLAlchemyError as exc:
                raise translate(exc, self._dialect) from exc
        else:
            self._on_driver(sql, None, many=False)

    def _enter(self, alone: bool) -> None:
        """Begin the unit's transaction before a statement, unless it runs ``alone``.

        A statement that is not alone runs inside the unit's transaction,
        begun now if need be; so does every statement of a SQLite unit that
        writes.
        """
        if not self._began and not self._host:
            if not alone or (self._write and self._dialect == "sqlite") or self._alone:
                self.begin()
            elif self._write:
                self._alone = True
        elif self._ended:
            raise StorageClosedError("this unit of work has ended")

    def _exec(
        self, sql: SQL, params: Any = None, *, alone: bool = False, many: bool = False
    ) -> Any:
        """Run one of our SQL texts; return a cursor-like result (positional rows).

        On a connection of ours the statement goes to the driver as it is:
        the text was written once for this dialect, its parameters need no
        processing, and SQLAlchemy's execution layer (compilation cache,
        events, result processing) would cost several times the driver's own
        work on the hot paths. A host's connection runs it through SQLAlchemy,
        so that the host's transaction bookkeeping sees it, and so does any
        connection whose statements someone listens to (SQLAlchemy's
        ``before_cursor_execute`` or ``after_cursor_execute``: tracers,
        statement logs).
        """
        if not self._direct:
            return self._run(sql.clause, params, alone=alone)
        self._enter(alone)
        return self._on_driver(sql.driver, params, many=many)

    def _on_driver(self, sql: str, params: Any, *, many: bool) -> Any:
        """Execute ``sql`` on the driver's cursor; translate its errors as SQLAlchemy would."""
        cursor = self._cursor
        try:
            if cursor is None:
                cursor = self._cursor = self._conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            if many:
                cursor.executemany(sql, params)
            elif params is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, params)
        except Exception as orig:
            dialect = self._conn.dialect
            if not isinstance(orig, dialect.loaded_dbapi.Error):
                raise
            invalid = dialect.is_disconnect(orig, self._conn.connection.dbapi_connection, cursor)
            if invalid:
                self._cursor = None
                self._conn.invalidate(orig)
            exc = DBAPIError.instance(
                sql,
                params,
                orig,
                dialect.loaded_dbapi.Error,
                connection_invalidated=invalid,
                dialect=dialect,
            )
            raise translate(exc, self._dialect) from exc
        except BaseException:
            # Interrupted mid-statement (a cancelled task, KeyboardInterrupt): the
            # connection's state is unknown, so it must not go back to the pool.
            self._cursor = None
            self._conn.invalidate()
            raise
        return cursor

    def _run(self, statement: Executable, params: Any = None, *, alone: bool = False) -> Result:
        """Execute one statement of the unit; ``alone``: it is a whole operation by itself.

        Driver errors become sessions_db errors here (and in :meth:`_on_driver`).
        """
        self._enter(alone)
        try:
            options = self._sql.options
            if options:
                result: Result = self._conn.execute(statement, params, execution_options=options)
            else:
                result = self._conn.execute(statement, params)
        except SQLAlchemyError as exc:
            raise translate(exc, self._dialect) from exc
        return result

    # -- sessions -----------------------------------------------------------------

    def save_session(self, meta: SessionMetadata) -> None:  # noqa: D102 - see Storage
        self._exec(self._sql.insert_session(), self._sql.session_params(meta), alone=True)

    def load_session(self, session_id: str) -> SessionMetadata:  # noqa: D102
        row = self._exec(self._sql.select_session(), {"id": session_id}, alone=True).fetchone()
        if row is None:
            raise SessionNotFoundError(f"session {session_id} not found")
        return self._sql.session_values(row)

    def delete_session(self, session_id: str) -> None:  # noqa: D102
        s = self._sql.tables.sessions
        stmt = delete(s).where(s.c.id == session_id).returning(s.c.id)
        if self._run(stmt, alone=True).first() is None:
            raise SessionNotFoundError(f"session {session_id} not found")

    def list_sessions(  # noqa: D102
        self,
        agent_name: str,
        *,
        user_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        metadata: dict[str, Any] | None = None,
        after: Cursor | None = None,
    ) -> list[SessionMetadata]:
        sql = self._sql
        params: dict[str, Any] = {"agent": agent_name, "user": user_id}
        if updated_after is not None:
            params["after"] = sql.stamp(updated_after)
        if updated_before is not None:
            params["before"] = sql.stamp(updated_before)
        if after is not None:
            params["cursor_at"], params["cursor_id"] = sql.stamp(after[0]), after[1]
        pairs = 0
        if metadata:
            if self._dialect == "postgresql":
                params["meta"] = sql.dumps(metadata)
                pairs = 1
            else:
                for i, (key, value) in enumerate(metadata.items()):
                    params[f"path{i}"] = "$." + json.dumps(key)
                    params[f"value{i}"] = sql.dumps({"v": value})
                pairs = len(metadata)
        params["limit"], params["offset"] = limit, offset
        stmt = sql.list_sessions(
            user=user_id is not None,
            after=updated_after is not None,
            before=updated_before is not None,
            metadata=pairs,
            cursor=after is not None,
            limit=limit is not None,
            offset=offset > 0,
        )
        rows = self._exec(stmt, params, alone=True).fetchall()
        return [sql.session_values(row) for row in rows]

    def load_session_by_key(self, agent_name: str, key: str) -> SessionMetadata:  # noqa: D102
        params = {"agent": agent_name, "key": key}
        row = self._exec(self._sql.select_by_key(), params, alone=True).fetchone()
        if row is None:
            raise SessionNotFoundError(f"no session of agent {agent_name!r} has this key")
        return self._sql.session_values(row)

    def create_session(  # noqa: D102 - see Storage
        self, meta: SessionMetadata, entries: Sequence[SessionEntry]
    ) -> None:
        if entries:
            self.begin()
        self.save_session(meta)  # alone, with no entries: one statement in autocommit
        if entries:
            self.append_entries(meta.id, entries, updated_at=meta.updated_at)

    def list_agents(self) -> list[str]:  # noqa: D102
        s = self._sql.tables.sessions
        stmt = select(s.c.agent_name).distinct().order_by(s.c.agent_name)
        return [row.agent_name for row in self._run(stmt, alone=True)]

    def prune_sessions(  # noqa: D102
        self, updated_before: datetime, *, agent_name: str | None = None, dry_run: bool = False
    ) -> list[str]:
        s = self._sql.tables.sessions
        condition = s.c.updated_at < updated_before
        if agent_name is not None:
            condition = and_(condition, s.c.agent_name == agent_name)
        stmt: Executable = (
            select(s.c.id).where(condition)
            if dry_run
            else delete(s).where(condition).returning(s.c.id)
        )
        return sorted(row.id for row in self._run(stmt, alone=True))

    def prune_batch(
        self, updated_before: datetime, *, agent_name: str | None = None, limit: int
    ) -> list[str]:
        """Delete the ``limit`` oldest sessions updated before ``updated_before``: one statement.

        The sessions are picked by the ``updated_at`` index and locked; on
        PostgreSQL a session another transaction holds is skipped (``SKIP
        LOCKED``: an append under way makes it recent anyway), so a prune never
        waits for writers, nor they for more than one batch. Entries and
        checkpoints go by ON DELETE CASCADE in the same transaction.
        """
        s = self._sql.tables.sessions
        condition = s.c.updated_at < updated_before
        if agent_name is not None:
            condition = and_(condition, s.c.agent_name == agent_name)
        picked = (
            select(s.c.id)
            .where(condition)
            .order_by(s.c.updated_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = delete(s).where(s.c.id.in_(picked.scalar_subquery())).returning(s.c.id)
        return [row.id for row in self._run(stmt, alone=True)]

    def find_or_create_session(self, meta: SessionMetadata) -> SessionMetadata:  # noqa: D102
        s = self._sql.tables.sessions
        if meta.key is not None and not self._began:
            # The common case, a key seen before, is one read in autocommit.
            try:
                return self.load_session_by_key(meta.agent_name, meta.key)
            except SessionNotFoundError:
                self.commit()  # nothing to keep: the read ran alone
        self.begin()
        if meta.key is not None:
            # The unique (agent, key) index decides between racing creators: the
            # insert of the second waits for the first, then does nothing.
            ins = (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(s)
            self._run(
                ins.values(
                    id=meta.id,
                    agent_name=meta.agent_name,
                    user_id=meta.user_id,
                    created_at=meta.created_at,
                    updated_at=meta.updated_at,
                    message_count=0,
                    current_leaf=None,
                    last_seq=0,
                    metadata=self._sql.json_value(meta.metadata),
                    key=meta.key,
                ).on_conflict_do_nothing(index_elements=[s.c.agent_name, s.c.key])
            )
            return self.load_session_by_key(meta.agent_name, meta.key)
        if self._dialect == "postgresql":
            # Concurrent callers for one (agent, user) queue on this lock, so
            # the second sees the session the first created.
            key = func.hashtextextended(meta.agent_name + "\x1f" + (meta.user_id or ""), 0)
            self._run(select(func.pg_advisory_xact_lock(key)))
        latest = (
            select(*self._sql.session_columns())
            .where(s.c.agent_name == meta.agent_name, s.c.user_id == meta.user_id)
            .order_by(s.c.updated_at.desc(), s.c.id.desc())
            .limit(1)
        )
        row = self._run(latest).first()
        if row is not None:
            return self._sql.session_values(row)
        self.save_session(meta)
        return meta

    # -- entries ----------------------------------------------------------------------

    def lock_session(self, session_id: str) -> None:  # noqa: D102 - see Storage
        self.begin()
        self._lock_session(session_id)

    def _lock_session(self, session_id: str) -> Any:
        """Lock the session row for the rest of the transaction; return its leaf and counters."""
        row = self._exec(self._sql.lock(), {"sid": session_id}).fetchone()
        if row is None:
            raise SessionNotFoundError(f"session {session_id} not found")
        return row

    def append_entries(  # noqa: D102
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        *,
        fork_from: str | None = None,
        at_root: bool = False,
        updated_at: datetime,
    ) -> None:
        if not entries:
            return
        if self._dialect == "postgresql" and fork_from is None and not at_root:
            self._append_one_statement(session_id, entries, updated_at)
        else:
            self._append_locked(session_id, entries, fork_from, at_root, updated_at)

    def append_entry(  # noqa: D102
        self,
        session_id: str,
        entry: SessionEntry,
        *,
        fork_from: str | None = None,
        at_root: bool = False,
        updated_at: datetime,
    ) -> None:
        self.append_entries(
            session_id, [entry], fork_from=fork_from, at_root=at_root, updated_at=updated_at
        )

    def _append_locked(
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        fork_from: str | None,
        at_root: bool,
        updated_at: datetime,
    ) -> None:
        e = self._sql.tables.entries
        self.begin()
        leaf, last_seq, depth = self._lock_session(session_id)
        if at_root:
            leaf, depth = None, 0
        elif fork_from is not None:
            found = self._run(
                select(e.c.depth).where(e.c.session_id == session_id, e.c.id == fork_from)
            ).first()
            if found is None:
                raise EntryNotFoundError(f"entry {fork_from} not found in session {session_id}")
            leaf, depth = fork_from, found.depth
        stmt, params, depth = self._sql.insert_entries(session_id, entries, leaf, last_seq, depth)
        self._exec(stmt, params, many=self._dialect == "sqlite")
        self._exec(
            self._sql.advance(),
            {
                "sid": session_id,
                "leaf": entries[-1].id,
                "last_seq": last_seq + len(entries),
                "count": depth,
                "now": self._sql.stamp(updated_at),
            },
        )

    def _append_one_statement(
        self, session_id: str, entries: Sequence[SessionEntry], updated_at: datetime
    ) -> None:
        params = self._sql.append_params(session_id, entries, updated_at)
        if self._exec(self._sql.append(len(entries)), params, alone=True).rowcount == 0:
            raise SessionNotFoundError(f"session {session_id} not found")

    def load_branch(  # noqa: D102
        self, session_id: str, query: BranchQuery = WHOLE_BRANCH
    ) -> list[SessionEntry]:
        return self._branch(session_id, query, self._sql.raw_entries)

    def load_messages(self, session_id: str, query: BranchQuery) -> list[Message]:  # noqa: D102
        query = replace(query, messages_only=True)
        return self._branch(session_id, query, self._sql.raw_messages)

    def _branch(
        self, session_id: str, query: BranchQuery, build: Callable[[Sequence[Any]], list[B]]
    ) -> list[B]:
        """Read one branch, root first, and ``build`` the objects of its rows.

        A whole branch is one range scan of the session picked by
        :func:`~sessions_db.sql.statements.follow`; with a ``limit`` it is the
        recursive walk, which stops after the newest ``limit`` messages (from
        the leaf, or from ``before``).
        """
        start = "leaf" if query.leaf is None and query.before is None else "entry"
        bound = "all" if query.limit is None else ("older" if query.before else "newest")
        params: dict[str, Any] = {"sid": session_id}
        if start == "entry":
            params["start"] = query.before or query.leaf
        if bound == "all":
            stmt = self._sql.scan()
        else:
            stmt = self._sql.walk(start, bound)
            params["all_types"] = not query.messages_only
            params["n"] = query.limit
        rows: list[Any] = list(self._exec(stmt, params, alone=True).fetchall())
        if not rows:
            raise SessionNotFoundError(f"session {session_id} not found")
        if bound == "all":
            rows = follow(rows, params.get("start") or rows[0][0], messages_only=False)
        else:
            rows = [r for r in rows if r[1] is not None]
        if start == "entry":
            # The walk returns its first entry whatever its type, so that an
            # entry that is not a message may end a branch of messages.
            if (
                not rows
                or rows[-1][1] != params["start"]
                or (query.before is not None and rows[-1][3] != EntryType.MESSAGE.value)
            ):
                what = "message" if query.before else "entry"
                raise EntryNotFoundError(
                    f"{what} {params['start']} not found in session {session_id}"
                )
            if query.before is not None:
                rows.pop()
        if query.messages_only:
            message = EntryType.MESSAGE.value
            rows = [r for r in rows if r[3] == message]
        if query.limit is not None and len(rows) > query.limit:
            rows = rows[len(rows) - query.limit :]
        return build(rows)

    def load_entries(self, session_id: str) -> list[SessionEntry]:  # noqa: D102
        s, e = self._sql.tables.sessions, self._sql.tables.entries
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
        rows = self._run(stmt, alone=True).all()
        if not rows:
            raise SessionNotFoundError(f"session {session_id} not found")
        entry = self._sql.entry
        return [
            entry(r.id, r.parent_id, r.type, r.role, r.payload, r.created_at)
            for r in rows
            if r.id is not None
        ]

    def _entry_rows(self, session_id: str, *conditions: Any) -> list[SessionEntry] | None:
        """Return the session's entries that meet any of ``conditions``, in append order.

        ``None`` when the session is absent. One statement: a ``UNION ALL`` of a
        select per condition (each served by its own index; an ``OR``, or an
        ``ORDER BY seq``, would have SQLite scan the session) and a row that
        says the session exists. Entries meeting two conditions come once.
        """
        s, e = self._sql.tables.sessions, self._sql.tables.entries
        columns = (e.c.id, e.c.parent_id, e.c.type, e.c.role, e.c.payload, e.c.created_at, e.c.seq)
        parts = [select(*columns).where(e.c.session_id == session_id, c) for c in conditions]
        exists = select(*(null().label(c.name) for c in columns)).where(s.c.id == session_id)
        rows = self._run(union_all(*parts, exists), alone=True).all()
        if not rows:
            return None
        entry = self._sql.entry
        unique = {r.seq: r for r in rows if r.id is not None}
        return [
            entry(r.id, r.parent_id, r.type, r.role, r.payload, r.created_at)
            for _, r in sorted(unique.items())
        ]

    def load_entries_by_id(  # noqa: D102 - see Storage
        self, session_id: str, entry_ids: Sequence[str]
    ) -> list[SessionEntry]:
        e = self._sql.tables.entries
        found = self._entry_rows(session_id, e.c.id.in_(list(dict.fromkeys(entry_ids))))
        if found is None:
            raise SessionNotFoundError(f"session {session_id} not found")
        return found

    def load_children(self, session_id: str, entry_id: str) -> list[SessionEntry]:  # noqa: D102
        e = self._sql.tables.entries
        found = self._entry_rows(session_id, e.c.id == entry_id, e.c.parent_id == entry_id)
        if found is None:
            raise SessionNotFoundError(f"session {session_id} not found")
        if all(entry.id != entry_id for entry in found):
            raise EntryNotFoundError(f"entry {entry_id} not found in session {session_id}")
        return [entry for entry in found if entry.parent_id == entry_id]

    # -- long-term memory -------------------------------------------------------------

    def _hit(self, row: Any, score: float) -> MessageHit:
        entry = self._sql.entry(
            row.id, row.parent_id, row.type, row.role, row.payload, row.created_at
        )
        return MessageHit(row.session_id, entry, score)

    def search_messages(
        self,
        user_id: str,
        query: str,
        *,
        agent_name: str | None = None,
        limit: int = 5,
    ) -> list[MessageHit]:
        """Select the user's messages matching any word of ``query``, best first, in one query.

        PostgreSQL ranks with ``ts_rank`` over the GIN-indexed ``tsvector`` of the
        payload's strings; SQLite with ``bm25`` over the FTS5 table (negated, so
        that larger is better on both). A store migrated without full-text
        search raises :class:`~sessions_db.UnsupportedOperationError`.
        """
        words = search.terms(query)
        if not words or limit <= 0:
            return []
        # Looked up each time (one catalog read), so that a switch takes effect at once.
        catalog, found = fulltext.probe(self._dialect, self._sql.schema)
        if self._run(catalog, found, alone=True).first() is None:
            raise UnsupportedOperationError(fulltext.SEARCH_OFF)
        e = self._sql.tables.entries
        sessions, entries = self._sql.sessions_name, self._sql.entries_name
        params: dict[str, Any] = {"uid": user_id, "agent": agent_name, "limit": limit}
        by_agent = "AND s.agent_name = :agent" if agent_name is not None else ""
        order = "ORDER BY score DESC, e.created_at DESC, e.session_id DESC, e.seq DESC LIMIT :limit"
        if self._dialect == "postgresql":
            tsquery = " || ".join(f"plainto_tsquery('simple', :t{i})" for i in range(len(words)))
            params.update({f"t{i}": word for i, word in enumerate(words)})
            vector = PG_FTS_VECTOR.format(payload="e.payload")
            sql = f"""
SELECT e.session_id, e.id, e.parent_id, e.type, e.role, e.payload, e.created_at,
       ts_rank({vector}, q.query) AS score
FROM {entries} e JOIN {sessions} s ON s.id = e.session_id
     CROSS JOIN (SELECT {tsquery} AS query) q
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
     JOIN {entries} e ON e.session_id = d.session_id AND e.id = d.entry_id
     JOIN {sessions} s ON s.id = e.session_id
WHERE {FTS_TABLE} MATCH :match AND s.user_id = :uid {by_agent} AND e.type = 'message'
{order}"""
        stmt = text(sql).columns(*self._sql.hit_columns(), e.c.created_at, column("score", Float))
        return [self._hit(row, float(row.score)) for row in self._run(stmt, params, alone=True)]

    def list_messages(  # noqa: D102
        self,
        user_id: str,
        *,
        agent_name: str | None = None,
        message_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[MessageHit]:
        s, e = self._sql.tables.sessions, self._sql.tables.entries
        stmt = (
            select(*self._sql.hit_columns(), e.c.created_at)
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
        return [self._hit(row, 0.0) for row in self._run(stmt, alone=True)]

    # -- checkpoints ------------------------------------------------------------------

    def create_checkpoint(self, session_id: str, new: NewCheckpoint) -> Checkpoint:
        """Lock the session, hash its branch with a new checkpoint entry, store both."""
        self.begin()
        leaf, last_seq, depth = self._lock_session(session_id)
        branch: list[SessionEntry] = []
        if leaf is not None:
            branch = self.load_branch(session_id, BranchQuery(leaf=leaf))
        entry = checkpoint_entry(new, leaf)
        checksum = branch_checksum([*branch, entry])
        stmt, params, _ = self._sql.insert_entries(session_id, [entry], leaf, last_seq, depth)
        self._exec(stmt, params, many=self._dialect == "sqlite")
        self._exec(
            self._sql.advance(),
            {
                "sid": session_id,
                "leaf": entry.id,
                "last_seq": last_seq + 1,
                "count": None,
                "now": self._sql.stamp(new.timestamp),
            },
        )
        checkpoint = Checkpoint.model_construct(
            id=new.id,
            session_id=session_id,
            timestamp=new.timestamp,
            entry_id=entry.id,
            checksum=checksum,
            metadata=new.metadata,
        )
        self._run(self._sql.insert_checkpoint(checkpoint))
        return checkpoint

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:  # noqa: D102
        s = self._sql.tables.sessions
        self.begin()
        exists = self._run(select(s.c.id).where(s.c.id == checkpoint.session_id)).first()
        if exists is None:
            raise SessionNotFoundError(f"session {checkpoint.session_id} not found")
        self._run(self._sql.insert_checkpoint(checkpoint))

    def load_checkpoint(self, checkpoint_id: str) -> Checkpoint:  # noqa: D102
        c = self._sql.tables.checkpoints
        stmt = select(*self._sql.checkpoint_columns()).where(c.c.id == checkpoint_id)
        row = self._run(stmt, alone=True).first()
        if row is None:
            raise CheckpointNotFoundError(f"checkpoint {checkpoint_id} not found")
        return self._sql.checkpoint(row)

    def load_session_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint:
        """Find the checkpoint by its primary key, ``(session_id, id)``: one partition."""
        c = self._sql.tables.checkpoints
        stmt = select(*self._sql.checkpoint_columns()).where(
            c.c.session_id == session_id, c.c.id == checkpoint_id
        )
        row = self._run(stmt, alone=True).first()
        if row is None:
            raise CheckpointNotFoundError(
                f"checkpoint {checkpoint_id} not found in session {session_id}"
            )
        return self._sql.checkpoint(row)

    def list_checkpoints(self, session_id: str) -> list[Checkpoint]:  # noqa: D102
        s, c = self._sql.tables.sessions, self._sql.tables.checkpoints
        stmt = (
            select(s.c.id.label("sid"), *self._sql.checkpoint_columns())
            .select_from(s.outerjoin(c, and_(c.c.session_id == s.c.id)))
            .where(s.c.id == session_id)
            .order_by(c.c.created_at, c.c.id)
        )
        rows = self._run(stmt, alone=True).all()
        if not rows:
            raise SessionNotFoundError(f"session {session_id} not found")
        return [self._sql.checkpoint(r) for r in rows if r.id is not None]

    # -- erasure ----------------------------------------------------------------------

    def erase_user(self, user_id: str) -> int:
        """Delete every session of the user in one transaction; return how many.

        Entries and checkpoints go by ON DELETE CASCADE, and with the entries
        their full-text index rows (PostgreSQL's GIN index entries; SQLite's
        FTS5 rows, by the mapping table's cascade and trigger); the user's
        Google ADK user state (:class:`~sessions_db.models.AdkUserStateRow`,
        every app) goes in the same transaction. On SQLite the
        transaction also zeroes the pages it frees (``secure_delete``) and
        merges the FTS5 index (if the store has it), whose segments would
        otherwise keep the deleted words until some later merge, and its
        commit empties the write-ahead log into the database file.
        """
        s = self._sql.tables.sessions
        stmt = delete(s).where(s.c.user_id == user_id).returning(s.c.id)
        adk_state = delete(AdkUserStateRow).where(AdkUserStateRow.user_id == user_id)
        self.begin()
        if self._dialect != "sqlite":
            count = len(self._run(stmt).all())
            self._run(adk_state)
            return count
        before = self._run(text("PRAGMA secure_delete")).scalar()
        self._run(text("PRAGMA secure_delete = ON"))
        count = len(self._run(stmt).all())
        states = self._run(adk_state).rowcount
        if count and self._run(*fulltext.probe(self._dialect)).first() is not None:
            self._run(text(f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}) VALUES ('optimize')"))
        self._erased = bool(count or states)
        self._run(text(f"PRAGMA secure_delete = {int(before or 0)}"))
        return count


def _driver_in_transaction(conn: Connection) -> bool:
    """Whether the SQLite driver connection under ``conn`` has a transaction open."""
    driver = conn.connection.driver_connection
    return bool(getattr(driver, "in_transaction", True))
