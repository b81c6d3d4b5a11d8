"""Counting sessions and messages: the SQL queries agree with a scan through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sessions_db as sdb
from sessions_db.inspector.counts import daily, daily_scan, session_counts

from .seeding import Seeded


def test_counts_agree_with_the_listing(manager: sdb.Manager, seeded: Seeded) -> None:
    expected = {agent: len(manager.list(agent)) for agent in manager.list_agents()}
    assert session_counts(manager) == expected == {"coder": 1, "support": 2}


def test_daily_counts_agree_with_a_scan(manager: sdb.Manager, seeded: Seeded) -> None:
    today = datetime.now(UTC).date()
    found = daily(manager, today - timedelta(days=6))
    assert found == daily_scan(manager, today - timedelta(days=6))
    assert sum(n for (agent, _), n in found.sessions.items() if agent == "support") == 2
    stored = sum(
        1
        for meta in manager.list("support")
        for entry in manager.get(meta.id).get_entries()
        if entry.type is sdb.EntryType.MESSAGE
    )
    assert sum(n for (agent, _), n in found.messages.items() if agent == "support") == stored
    assert daily(manager, today + timedelta(days=1)).messages == {}
