"""Keyset paging of an agent's or a user's sessions, newest update first.

A page continues after the last row of the page before it, given as its
``(updated_at, id)``: the :class:`Cursor`. Rows are ordered by that key,
descending (``Storage.list_sessions`` breaks ties in ``updated_at`` by ID,
descending), so "after the cursor" means "a smaller key". A session updated
while someone pages moves to the top, before the cursor: it is neither shown
twice nor does it push another row off the next page, as it would with offsets.
Each page is one ``Manager.list(..., after=...)`` per agent: a late page costs
what the first does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .. import ids
from ..errors import InvalidArgumentError
from ..manager import Manager
from ..types import SessionMetadata

#: A sort key of the listing: ``(updated_at, session ID)``, listed descending.
Key = tuple[datetime, str]

#: The smallest step of a stored time: "from" times are inclusive, the listing's exclusive.
_TICK = timedelta(microseconds=1)


def key_of(meta: SessionMetadata) -> Key:
    """Return the sort key of a listed session."""
    return (meta.updated_at, meta.id)


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last row of a page: the next page holds the rows listed after it."""

    updated_at: datetime
    session_id: str

    @property
    def key(self) -> Key:
        """The sort key the next page starts below."""
        return (self.updated_at, self.session_id)

    def encode(self) -> str:
        """Return the cursor as text for a URL (``<ISO time>,<session ID>``)."""
        stamp = self.updated_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return f"{stamp},{self.session_id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Parse :meth:`encode`'s text; ``InvalidArgumentError`` if it is not one."""
        stamp, _, session_id = text.partition(",")
        try:
            when = datetime.fromisoformat(stamp)
        except ValueError:
            raise InvalidArgumentError(f"not a page cursor: {text[:80]!r}") from None
        if when.tzinfo is None:
            raise InvalidArgumentError(f"not a page cursor: {text[:80]!r}")
        return cls(when.astimezone(UTC), ids.session_id(session_id))

    @classmethod
    def after(cls, meta: SessionMetadata) -> Cursor:
        """Return the cursor that continues after ``meta``."""
        return cls(meta.updated_at, meta.id)


@dataclass(frozen=True, slots=True)
class PageQuery:
    """Which sessions to list: an agent's (``agent``) or a user's across agents (``None``).

    ``updated_after`` is inclusive, ``updated_before`` exclusive.
    """

    agent: str | None
    user_id: str | None = None
    after: Cursor | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class Page:
    """One page of sessions, and where the next one starts (``None``: this is the last)."""

    sessions: list[SessionMetadata]
    next: Cursor | None


def _agent_rows(
    manager: Manager, agent: str, query: PageQuery, count: int
) -> list[SessionMetadata]:
    """Return up to ``count`` rows of ``agent`` after the query's cursor, in its time range."""
    return manager.list(
        agent,
        user_id=query.user_id,
        limit=count,
        after=None if query.after is None else query.after.key,
        updated_after=None if query.updated_after is None else query.updated_after - _TICK,
        updated_before=query.updated_before,
    )


def read_page(manager: Manager, query: PageQuery) -> Page:
    """Return one page of the sessions ``query`` selects, newest update first."""
    if query.limit <= 0:
        raise InvalidArgumentError("a page holds at least one session")
    if query.agent is None and query.user_id is None:
        raise InvalidArgumentError("list an agent's sessions, or a user's")
    want = query.limit + 1  # one more tells whether there is a next page
    if query.agent is not None:
        rows = _agent_rows(manager, query.agent, query, want)
    else:
        rows = []
        for agent in manager.list_agents():
            rows.extend(_agent_rows(manager, agent, query, want))
        rows.sort(key=key_of, reverse=True)
    shown = rows[: query.limit]
    if len(rows) <= query.limit or not shown:
        return Page(shown, None)
    return Page(shown, Cursor.after(shown[-1]))
