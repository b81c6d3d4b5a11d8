"""How many sessions each agent has, and per day: one query on SQL stores, a scan elsewhere.

The public API lists sessions but does not count them. SQL stores are counted
with one ``GROUP BY`` over the public models (:mod:`sessions_db.models`); any
other store (the file store, a user's own backend) by listing its sessions.
Both give the same numbers (the tests compare them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Date,
    String,
    cast,
    func,
    select,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import SQLCoreOperations

from ..backend import StorageBackend
from ..errors import SessionNotFoundError, StorageClosedError
from ..manager import Manager
from ..models import EntryRow, SessionRow
from ..sql.backend import SQLBackend
from ..sql.errors import translate
from ..types import EntryType

#: Sessions read per call when a store is scanned.
PAGE = 1000


def _sql(manager: Manager) -> SQLBackend | None:
    """Return the manager's SQL backend, ``None`` for other stores."""
    if manager.closed:
        raise StorageClosedError("the session manager is closed")
    backend = manager.backend
    return backend if isinstance(backend, SQLBackend) else None


@contextmanager
def _connection(backend: SQLBackend) -> Iterator[Connection]:
    engine = backend.engine
    if backend.schema is not None:
        engine = engine.execution_options(schema_translate_map={None: backend.schema})
    try:
        with engine.connect() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise translate(exc, backend.dialect) from exc


def session_counts(manager: Manager) -> dict[str, int]:
    """Return the number of sessions of each agent that has any, by agent name."""
    backend = _sql(manager)
    if backend is None:
        return {agent: len(manager.list(agent)) for agent in manager.list_agents()}
    query = select(SessionRow.agent_name, func.count()).group_by(SessionRow.agent_name)
    with _connection(backend) as conn:
        return {str(agent): int(n) for agent, n in conn.execute(query)}


@dataclass(frozen=True, slots=True)
class Daily:
    """Sessions created and messages stored per agent per day (UTC), from ``since`` on.

    Messages are every message entry, abandoned branches included (as in
    ``docs/analytics.md``), by the day of their timestamp.
    """

    since: date
    sessions: dict[tuple[str, date], int]
    messages: dict[tuple[str, date], int]


def _day(value: object) -> date:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def daily(manager: Manager, since: date) -> Daily:
    """Count sessions and messages per agent per day since ``since`` (a UTC day)."""
    backend = _sql(manager)
    if backend is None:
        return daily_scan(manager, since)
    start = datetime(since.year, since.month, since.day, tzinfo=UTC)

    def day_of(column: SQLCoreOperations[datetime]) -> ColumnElement[Any]:
        if backend.dialect == "postgresql":
            return cast(func.timezone("UTC", column), Date)
        return func.substr(cast(column, String), 1, 10)  # SQLite: "YYYY-MM-DD hh:mm:ss"

    created = day_of(SessionRow.created_at)
    sessions_query = (
        select(SessionRow.agent_name, created, func.count())
        .where(SessionRow.created_at >= start)
        .group_by(SessionRow.agent_name, created)
    )
    stored = day_of(EntryRow.created_at)
    # As in daily_scan: a session not updated since the start has no entry stored
    # since then. The sessions' updated_at index finds the others, and the entries
    # are read session by session (no index on the entries' timestamps).
    messages_query = (
        select(SessionRow.agent_name, stored, func.count())
        .join(SessionRow, SessionRow.id == EntryRow.session_id)
        .where(
            SessionRow.updated_at >= start,
            EntryRow.type == EntryType.MESSAGE.value,
            EntryRow.created_at >= start,
        )
        .group_by(SessionRow.agent_name, stored)
    )
    with _connection(backend) as conn:
        sessions = {(str(a), _day(d)): int(n) for a, d, n in conn.execute(sessions_query)}
        messages = {(str(a), _day(d)): int(n) for a, d, n in conn.execute(messages_query)}
    return Daily(since, sessions, messages)


def daily_scan(manager: Manager, since: date) -> Daily:
    """:func:`daily` on any store: list the sessions updated since, read their entries.

    A session not updated since ``since`` has no entry stored since then, so the
    listing (newest update first) stops at the first one older.
    """
    start = datetime(since.year, since.month, since.day, tzinfo=UTC)
    sessions: Counter[tuple[str, date]] = Counter()
    messages: Counter[tuple[str, date]] = Counter()
    backend: StorageBackend = manager.backend
    for agent in manager.list_agents():
        offset = 0
        while True:
            page = manager.list(agent, limit=PAGE, offset=offset)
            recent = [meta for meta in page if meta.updated_at >= start]
            for meta in recent:
                if meta.created_at >= start:
                    sessions[(agent, _day(meta.created_at))] += 1
                try:
                    entries = backend.load_entries(meta.id)  # stored form: no decryption
                except SessionNotFoundError:
                    continue
                for entry in entries:
                    if entry.type is EntryType.MESSAGE and entry.timestamp >= start:
                        messages[(agent, _day(entry.timestamp))] += 1
            if len(page) < PAGE or len(recent) < len(page):
                break
            offset += PAGE
    return Daily(since, dict(sessions), dict(messages))
