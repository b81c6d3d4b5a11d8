"""Keyset paging of session lists over the offset-only listing, on every kind of store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

import sessions_db as sdb
from sessions_db.inspector.paging import Cursor, Page, PageQuery, key_of, read_page

START = datetime(2025, 6, 1, tzinfo=UTC)


def ticking(manager: sdb.Manager, *, same_every: int = 1) -> sdb.Manager:
    """A manager on the same store whose clock moves on one second every ``same_every`` calls."""
    calls = count()

    def clock() -> datetime:
        return START + timedelta(seconds=next(calls) // same_every)

    return sdb.Manager(manager.backend, clock=clock)


def walk(manager: sdb.Manager, query: PageQuery) -> list[list[str]]:
    pages: list[list[str]] = []
    page: Page = read_page(manager, query)
    while True:
        pages.append([meta.id for meta in page.sessions])
        if page.next is None:
            return pages
        query = replace(query, after=page.next)
        page = read_page(manager, query)


def test_pages_cover_every_session_once_in_order(manager: sdb.Manager) -> None:
    # Three sessions per clock second: ties in updated_at are ordered by ID.
    clocked = ticking(manager, same_every=3)
    for n in range(20):
        clocked.create("agent", user_id=f"u{n % 2}")
    expected = [meta.id for meta in manager.list("agent")]
    pages = walk(manager, PageQuery(agent="agent", limit=6))
    assert [len(p) for p in pages] == [6, 6, 6, 2]
    assert [i for p in pages for i in p] == expected


def test_a_session_updated_between_pages_is_neither_repeated_nor_skips_another(
    manager: sdb.Manager,
) -> None:
    clocked = ticking(manager)
    made = [clocked.create("agent") for _ in range(10)]
    first = read_page(manager, PageQuery(agent="agent", limit=4))
    assert [m.id for m in first.sessions] == [s.id for s in reversed(made)][:4]
    # Two sessions of the next pages are updated: they move to the top.
    clocked.get(made[2].id).append_message(sdb.Message.new("user", {"content": "x"}))
    clocked.get(made[0].id).append_message(sdb.Message.new("user", {"content": "y"}))
    rest = walk(
        manager,
        PageQuery(agent="agent", limit=4, after=first.next),
    )
    seen = [i for p in rest for i in p]
    assert seen == [made[n].id for n in (5, 4, 3, 1)]


def test_a_page_continues_after_its_cursor(manager: sdb.Manager) -> None:
    clocked = ticking(manager, same_every=2)
    for _ in range(12):
        clocked.create("agent")
    listed = manager.list("agent")
    after = Cursor.after(listed[4])
    page = read_page(manager, PageQuery(agent="agent", after=after, limit=3))
    assert [m.id for m in page.sessions] == [m.id for m in listed[5:8]]
    assert page.next == Cursor.after(listed[7])


def test_time_range_is_a_run_of_the_listing(manager: sdb.Manager) -> None:
    clocked = ticking(manager)
    made = [clocked.create("agent") for _ in range(10)]  # updated at START + 0 ... 9 s
    query = PageQuery(
        agent="agent",
        updated_after=START + timedelta(seconds=3),
        updated_before=START + timedelta(seconds=7),
        limit=3,
    )
    pages = walk(manager, query)
    assert pages == [[made[6].id, made[5].id, made[4].id], [made[3].id]]


def test_a_users_sessions_across_agents(manager: sdb.Manager) -> None:
    clocked = ticking(manager)
    mine = []
    for n in range(9):
        agent = ("alpha", "beta", "gamma")[n % 3]
        mine.append(clocked.create(agent, user_id="me").id)
        clocked.create(agent, user_id="someone else")
    pages = walk(manager, PageQuery(agent=None, user_id="me", limit=4))
    assert [i for p in pages for i in p] == list(reversed(mine))
    assert [len(p) for p in pages] == [4, 4, 1]


def test_cursor_round_trips_and_refuses_junk() -> None:
    cursor = Cursor(START + timedelta(microseconds=5), "0b5c8d3e-1f2a-4b6c-8d9e-0f1a2b3c4d5e")
    assert Cursor.decode(cursor.encode()) == cursor
    for junk in ("", "x", "2025-06-01T00:00:00,../etc", "2025-06-01T00:00:00,abc"):
        with pytest.raises(sdb.SessionsDBError):
            Cursor.decode(junk)


def test_sort_key_is_the_listing_order(manager: sdb.Manager) -> None:
    clocked = ticking(manager, same_every=4)
    for _ in range(8):
        clocked.create("agent")
    listed = manager.list("agent")
    assert listed == sorted(listed, key=key_of, reverse=True)
