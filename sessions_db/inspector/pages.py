"""The pages about a store: its agents, the session lists, the search, the statistics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .. import ids
from ..errors import InvalidIDError, SessionsDBError, UnsupportedOperationError
from ..manager import Manager
from . import params
from .chart import stacked
from .counts import daily, session_counts
from .paging import Cursor, PageQuery, read_page
from .rendering import Links, render

#: Sessions per page of a list.
PAGE = 50
#: Search hits shown.
HITS = 50
#: The periods the statistics page offers, in days.
PERIODS = (7, 30, 90, 365)


def manager_of(request: Request) -> Manager:
    """Return the manager the app reads."""
    manager: Manager = request.app.state.manager
    return manager


def agents(request: Request) -> Response:
    """Show the agents of the store, with their session counts and latest update."""
    manager = manager_of(request)
    counts = session_counts(manager)
    rows = []
    for agent in sorted(counts):
        newest = manager.list(agent, limit=1)
        rows.append((agent, counts[agent], newest[0].updated_at if newest else None))
    return render(request, "agents.html", {"rows": rows})


def find(request: Request) -> Response:
    """Go to the session whose ID is given (``?session=``)."""
    wanted = params.text(request, "session", limit=100)
    if wanted is None:
        raise HTTPException(400, "give a session ID")
    try:
        session_id = ids.session_id(wanted.strip().lower())
    except InvalidIDError:
        raise HTTPException(404, "no session has this ID") from None
    return RedirectResponse(Links(request)(f"/sessions/{session_id}"), status_code=303)


def sessions(request: Request) -> Response:
    """Show an agent's or a user's sessions, newest update first, a page at a time."""
    manager = manager_of(request)
    agent = params.agent(request)
    user_id = params.user(request)
    since = params.moment(request, "from")
    until = params.moment(request, "to", end=True)
    after = params.text(request, "after", limit=200)
    limit = params.number(request, "limit", PAGE, low=1, high=500)
    if agent is None and user_id is None:
        raise HTTPException(400, "choose an agent or a user")
    try:
        cursor = None if after is None else Cursor.decode(after)
    except SessionsDBError:
        raise HTTPException(400, "this page link is damaged: start from the first page") from None
    query = PageQuery(
        agent=agent,
        user_id=user_id,
        after=cursor,
        updated_after=since,
        updated_before=until,
        limit=limit,
    )
    page = read_page(manager, query)
    filters = {
        "agent": agent,
        "user": user_id,
        "from": params.text(request, "from"),
        "to": params.text(request, "to"),
        "limit": None if limit == PAGE else limit,
    }
    next_link = None
    if page.next is not None:
        next_link = Links(request)("/sessions", **filters, after=page.next.encode())
    return render(
        request,
        "sessions.html",
        {
            "page": page,
            "filters": filters,
            "continued": after is not None,
            "first_link": Links(request)("/sessions", **filters),
            "next_link": next_link,
            "agents": manager.list_agents(),
        },
    )


def search(request: Request) -> Response:
    """Search a user's messages (their long-term memory)."""
    manager = manager_of(request)
    user_id = params.user(request)
    agent = params.agent(request)
    words = params.text(request, "q", limit=1000)
    hits = None
    if user_id is not None and words is not None:
        try:
            hits = manager.memory(user_id, agent_name=agent).search(words, HITS)
        except UnsupportedOperationError as exc:  # a store migrated without search
            raise HTTPException(501, str(exc)) from None
    return render(
        request,
        "search.html",
        {
            "user": user_id,
            "agent": agent,
            "q": words,
            "hits": hits,
            "agents": manager.list_agents(),
        },
    )


def stats(request: Request) -> Response:
    """Show sessions and messages per agent per day, as charts and a table."""
    manager = manager_of(request)
    days = params.number(request, "days", 30, low=1, high=366)
    if days not in PERIODS:
        raise HTTPException(400, f"days must be one of {', '.join(map(str, PERIODS))}")
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    found = daily(manager, first)
    agents = sorted({agent for agent, _ in found.sessions} | {agent for agent, _ in found.messages})
    charts = {
        "sessions": stacked(found.sessions, agents, first, today, "sessions created"),
        "messages": stacked(found.messages, agents, first, today, "messages stored"),
    }
    rows = []
    for day in sorted(
        {d for _, d in found.sessions} | {d for _, d in found.messages}, reverse=True
    ):
        for agent in agents:
            made = found.sessions.get((agent, day), 0)
            sent = found.messages.get((agent, day), 0)
            if made or sent:
                rows.append((day, agent, made, sent))
    return render(
        request,
        "stats.html",
        {"days": days, "periods": PERIODS, "charts": charts, "rows": rows, "first": first},
    )
