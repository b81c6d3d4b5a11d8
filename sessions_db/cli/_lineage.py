"""Where sessions were forked from, and the forks taken of a session."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from ..manager import Manager
from ..models import SessionRow
from ..sql.backend import SQLBackend
from ..sql.errors import translate
from ..types import SessionMetadata
from ._archive import select_sessions


@dataclass(frozen=True, slots=True)
class Fork:
    """A session forked from another one, and the entry of the source it was taken at."""

    session_id: str
    #: ``None`` for a fork of an empty session.
    forked_at: str | None


def forks_of(manager: Manager, meta: SessionMetadata) -> list[Fork]:
    """Return the sessions forked from ``meta``'s session, oldest first.

    On a SQL store this is one indexed read of ``sessions_db_sessions.forked_from``
    and finds forks of every agent. Other stores have no such index: their
    forks are found among the sessions of the source's agent only.
    """
    backend = manager.backend
    if isinstance(backend, SQLBackend):
        query = (
            select(SessionRow.id, SessionRow.forked_at)
            .where(SessionRow.forked_from == meta.id)
            .order_by(SessionRow.created_at, SessionRow.id)
        )
        engine = backend.engine
        if backend.schema is not None:
            engine = engine.execution_options(schema_translate_map={None: backend.schema})
        try:
            with engine.connect() as conn:
                rows = conn.execute(query).all()
        except SQLAlchemyError as exc:
            raise translate(exc, backend.dialect) from exc
        return [Fork(row.id, row.forked_at) for row in rows]
    found = [s for s in select_sessions(manager, agent=meta.agent_name) if s.forked_from == meta.id]
    found.sort(key=lambda s: (s.created_at, s.id))
    return [Fork(s.id, s.forked_at) for s in found]
