"""Helpers shared by the reliability suites: store snapshots, tree checks, profiles."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, settings

import sessions_db as sdb

# Hypothesis profiles: "ci" (the default) keeps the suites within a few minutes
# on two cores; "nightly" goes much further. Pick with SESSIONS_DB_HYPOTHESIS.
settings.register_profile(
    "ci",
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=False,
)
settings.register_profile(
    "nightly",
    max_examples=1000,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PROFILE = os.environ.get("SESSIONS_DB_HYPOTHESIS", "ci")


def profile(**overrides: Any) -> settings:
    """Return the chosen hypothesis profile, with ``overrides``."""
    return settings(settings.get_profile(PROFILE), **overrides)


def scale(ci: int, nightly: int) -> int:
    """Return a count for the chosen profile (bounded counts, never durations)."""
    return nightly if PROFILE == "nightly" else ci


def store_kind(url: str) -> str:
    """Return ``"postgres"``, ``"sqlite"`` or ``"file"`` for a store URL."""
    scheme = url.split(":", 1)[0].lower()
    if scheme.startswith("postgres"):
        return "postgres"
    if scheme.startswith("sqlite"):
        return "sqlite"
    if scheme == "file":
        return "file"
    raise AssertionError(f"unknown store kind for {url!r}")


def snapshot(mgr: sdb.Manager) -> dict[str, Any]:
    """Return everything the store holds, as comparable plain data.

    Sessions by ID with their metadata, every entry of every branch and the
    checkpoints; used to show that a failed call stored nothing.
    """
    result: dict[str, Any] = {}
    for agent in mgr.list_agents():
        for meta in mgr.list(agent):
            session = mgr.get(meta.id)
            result[meta.id] = {
                "meta": meta.model_dump(),
                "entries": [e.model_dump() for e in session.get_entries()],
                "checkpoints": [c.model_dump() for c in session.list_checkpoints()],
            }
    return result


def clear(mgr: sdb.Manager) -> None:
    """Delete every session of the store."""
    for agent in mgr.list_agents():
        for meta in mgr.list(agent):
            mgr.delete(meta.id)


def check_tree(session: sdb.Session) -> list[sdb.SessionEntry]:
    """Check a session's tree is whole; return its entries.

    Entry IDs are unique, every parent is an earlier entry, the leaf is the
    newest entry, and ``message_count`` is the length of the current branch.
    """
    entries = session.get_entries()
    counts = Counter(e.id for e in entries)
    assert not [i for i, n in counts.items() if n > 1], "duplicate entries"
    known: set[str] = set()
    by_id = {e.id: e for e in entries}
    for entry in entries:
        assert entry.parent_id is None or entry.parent_id in known, f"dangling {entry}"
        known.add(entry.id)
    info = session.info()
    assert info.current_leaf == (entries[-1].id if entries else None)
    branch_messages = 0
    node = info.current_leaf
    while node is not None:
        if by_id[node].type is sdb.EntryType.MESSAGE:
            branch_messages += 1
        node = by_id[node].parent_id
    assert info.message_count == branch_messages
    assert len(session.get_messages()) == branch_messages
    return entries


#: What each suite did in this run (printed in the terminal summary).
COUNTS: Counter[str] = Counter()
