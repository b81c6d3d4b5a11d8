"""Keyset paging of an agent's or a user's sessions, newest update first.

A page continues after the last row of the page before it, given as its
``(updated_at, id)``: the :class:`Cursor`. Rows are ordered by that key,
descending (``Storage.list_sessions`` breaks ties in ``updated_at`` by ID,
descending), so "after the cursor" means "a smaller key". A session updated
while someone pages moves to the top, before the cursor: it is neither shown
twice nor does it push another row off the next page, as it would with offsets.

The public listing, ``Manager.list(agent, user_id=, limit=, offset=)``, pages by
offset only. :func:`read_page` therefore finds the offset where the rows after
the cursor start: first around the offset the previous page ended at (the
``hint`` it passed on), which is right unless sessions moved meanwhile, else by
a binary search over offsets that reads one row per step. A time range is a
contiguous run of that order, so ``updated_before`` is a cursor too and
``updated_after`` ends the listing.

Everything that depends on the listing API is in this module. When
``Manager.list(..., after=..., updated_after=..., updated_before=...)`` is
available, :func:`_agent_rows` becomes that one call (``after`` the last
``SessionMetadata`` of the previous page) and :func:`_first_after` and the
offset hints go away; the pages read the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .. import ids
from ..errors import InvalidArgumentError
from ..manager import Manager
from ..types import SessionMetadata

#: Rows read around an offset hint to find where the next page starts.
WINDOW = 16

#: A sort key of the listing: ``(updated_at, session ID)``, listed descending.
Key = tuple[datetime, str]

#: Reads ``count`` rows from ``offset`` of one agent's listing.
Fetch = Callable[[int, int], list[SessionMetadata]]


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

    ``updated_after`` is inclusive, ``updated_before`` exclusive. ``hint`` is
    the offset at which the rows after ``after`` are expected (one agent only).
    """

    agent: str | None
    user_id: str | None = None
    after: Cursor | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    limit: int = 50
    hint: int | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of sessions, and where the next one starts (``None``: this is the last)."""

    sessions: list[SessionMetadata]
    next: Cursor | None
    next_hint: int | None


def _bound(query: PageQuery) -> Key | None:
    """Return the key every row of the page must be below (``None``: from the top)."""
    bounds: list[Key] = []
    if query.after is not None:
        bounds.append(query.after.key)
    if query.updated_before is not None:
        # Below every session updated at that instant: any ID sorts after "".
        bounds.append((query.updated_before.astimezone(UTC), ""))
    return min(bounds) if bounds else None


def _search(fetch: Fetch, bound: Key, start: int) -> int:
    """Return the first offset whose row is below ``bound``, one row read per step."""

    def below(offset: int) -> bool:
        rows = fetch(offset, 1)
        return not rows or key_of(rows[0]) < bound

    low, high = 0, max(start, 1)
    while not below(high):  # grow until past the bound
        low, high = high + 1, high * 2
    while low < high:
        middle = (low + high) // 2
        if below(middle):
            high = middle
        else:
            low = middle + 1
    return low


def _first_after(fetch: Fetch, bound: Key, hint: int | None) -> int:
    """Return the offset of the first row below ``bound`` in one agent's listing."""
    if hint is not None and hint >= 0:
        low = max(hint - WINDOW, 0)
        rows = fetch(low, 2 * WINDOW)
        for position, row in enumerate(rows):
            if key_of(row) < bound:
                if position > 0 or low == 0:
                    return low + position
                break  # the first row read is already below: the start is further up
        else:
            if len(rows) < 2 * WINDOW and (rows or low == 0):
                return low + len(rows)  # the listing ends before the bound is passed
    return _search(fetch, bound, hint or 64)


def _agent_rows(
    manager: Manager, agent: str, query: PageQuery, count: int, hint: int | None
) -> tuple[list[SessionMetadata], int]:
    """Return up to ``count`` rows of ``agent`` after the query's bound, and their offset."""

    def fetch(offset: int, limit: int) -> list[SessionMetadata]:
        return manager.list(agent, user_id=query.user_id, limit=limit, offset=offset)

    bound = _bound(query)
    start = 0 if bound is None else _first_after(fetch, bound, hint)
    rows = fetch(start, count)
    if bound is not None:
        # Rows that moved up between the search and the read are not repeated.
        rows = [row for row in rows if key_of(row) < bound]
    return rows, start


def read_page(manager: Manager, query: PageQuery) -> Page:
    """Return one page of the sessions ``query`` selects, newest update first."""
    if query.limit <= 0:
        raise InvalidArgumentError("a page holds at least one session")
    if query.agent is None and query.user_id is None:
        raise InvalidArgumentError("list an agent's sessions, or a user's")
    want = query.limit + 1  # one more tells whether there is a next page
    start: int | None = None
    if query.agent is not None:
        rows, start = _agent_rows(manager, query.agent, query, want, query.hint)
    else:
        rows = []
        for agent in manager.list_agents():
            rows.extend(_agent_rows(manager, agent, query, want, None)[0])
        rows.sort(key=key_of, reverse=True)
    if query.updated_after is not None:
        floor = query.updated_after.astimezone(UTC)
        rows = [row for row in rows if row.updated_at >= floor]
    shown = rows[: query.limit]
    if len(rows) <= query.limit or not shown:
        return Page(shown, None, None)
    next_hint = None if start is None else start + len(shown)
    return Page(shown, Cursor.after(shown[-1]), next_hint)
