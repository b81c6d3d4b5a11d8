"""Retention at scale: prune in batches, each a transaction of its own, with progress.

The contract suite checks the API (batches of at most N, stopped and resumed);
these tests check the SQL stores' side: nothing left behind, no wait for a
writer, and the command line's progress, interruption and resumption.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text

import sessions_db as sdb
from sessions_db.manager import Manager
from sessions_db.sql.engine import normalize_url
from sessions_db.types import utcnow

from .test_cli import invoke, one_error_line
from .test_pg_timeouts import _libpq


def _fixed(at: datetime) -> datetime:
    return at


def _old_sessions(url: str, count: int, *, agent: str = "support") -> list[str]:
    """Make ``count`` sessions last updated 40 days ago, with entries and checkpoints."""
    with sdb.connect(url) as mgr:
        start = utcnow() - timedelta(days=40)
        made = []
        for i in range(count):
            at = start + timedelta(seconds=i)
            old = sdb.Manager(mgr.backend, clock=partial(_fixed, at))
            session = old.create(agent, user_id="u1")
            session.append_message(sdb.Message.new("user", {"content": f"old {i}"}))
            session.checkpoint()
            session.append_message(sdb.Message.new("assistant", {"content": "answer"}))
            made.append(session.id)
        return made


def _rows(url: str) -> dict[str, int]:
    """Rows per table, and rows whose session is gone (orphans)."""
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            counts = {}
            for table in ("sessions", "entries", "checkpoints"):
                counts[table] = conn.execute(
                    text(f"SELECT count(*) FROM sessions_db_{table}")
                ).scalar_one()
            for table in ("entries", "checkpoints"):
                counts[f"orphan {table}"] = conn.execute(
                    text(
                        f"SELECT count(*) FROM sessions_db_{table} t WHERE NOT EXISTS "
                        "(SELECT 1 FROM sessions_db_sessions s WHERE s.id = t.session_id)"
                    )
                ).scalar_one()
            return counts
    finally:
        engine.dispose()


def test_batches_leave_nothing_behind(sql_url: str) -> None:
    old = _old_sessions(sql_url, 7)
    with sdb.connect(sql_url) as mgr:
        kept = mgr.create("support", user_id="u1")
        kept.append_message(sdb.Message.new("user", {"content": "recent"}))
        kept.checkpoint()
        sizes = [len(batch) for batch in mgr.prune_batches(timedelta(days=30), batch_size=3)]
    assert sizes == [3, 3, 1]
    assert _rows(sql_url) == {
        "sessions": 1,
        "entries": 2,
        "checkpoints": 1,
        "orphan entries": 0,
        "orphan checkpoints": 0,
    }
    with sdb.connect(sql_url) as mgr:
        for session_id in old:
            with pytest.raises(sdb.SessionNotFoundError):
                mgr.get(session_id)
        assert [hit.session_id for hit in mgr.memory("u1").search("recent old")] == [kept.id]


@pytest.mark.postgres
def test_a_batch_never_waits_for_a_writer(pg_database: str) -> None:
    """A session a writer holds is skipped (its update makes it recent), never waited for."""
    url = pg_database
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(
            text("TRUNCATE sessions_db_checkpoints, sessions_db_entries, sessions_db_sessions")
        )
    engine.dispose()
    held, *others = _old_sessions(url, 5)
    with psycopg.connect(_libpq(url)) as writer:
        writer.execute("SET idle_in_transaction_session_timeout = '20s'")
        writer.execute("SELECT 1 FROM sessions_db_sessions WHERE id = %s FOR UPDATE", [held])
        # A lock timeout far shorter than the writer's hold: a wait would fail here.
        with sdb.connect(url, lock_timeout=0.5) as mgr:
            pruned = mgr.prune(timedelta(days=30), batch_size=2)
        assert sorted(pruned) == sorted(others)
    with sdb.connect(url) as mgr:  # the writer went away without writing: now it goes
        assert mgr.prune(timedelta(days=30)) == [held]


def test_cli_prune_shows_progress(sql_url: str) -> None:
    old = _old_sessions(sql_url, 5)
    result = invoke("prune", "--older-than", "30d", "--batch-size", "2", url=sql_url)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("pruning: 2 sessions deleted in 1 batch ("), lines
    assert lines[-1].startswith("pruned: 5 sessions deleted in 3 batches ("), lines
    assert "deleted 5 sessions" in result.stdout
    assert all(session_id in result.stdout for session_id in old)
    bad = invoke("prune", "--older-than", "30d", "--batch-size", "0", url=sql_url)
    assert bad.exit_code == 2


def test_cli_prune_interrupted_goes_on_when_run_again(
    sql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _old_sessions(sql_url, 5)
    batches = Manager.prune_batches

    def interrupted(self: Manager, *args: Any, **kwargs: Any) -> Iterator[list[str]]:
        generator: Generator[list[str], None, None] = batches(self, *args, **kwargs)
        yield next(generator)
        generator.close()
        raise KeyboardInterrupt  # Ctrl-C while the second batch runs

    monkeypatch.setattr(Manager, "prune_batches", interrupted)
    stopped = invoke("prune", "--older-than", "30d", "--batch-size", "2", url=sql_url)
    assert stopped.exit_code == 1
    assert "interrupted: 2 sessions deleted in 1 batch" in stopped.stderr
    assert "run the same command again" in one_error_line(stopped.stderr.splitlines()[-1])
    assert _rows(sql_url)["sessions"] == 3
    monkeypatch.setattr(Manager, "prune_batches", batches)
    again = invoke("prune", "--older-than", "30d", "--batch-size", "2", "--json", url=sql_url)
    assert again.exit_code == 0, again.stderr
    assert len(json.loads(again.stdout)["sessions"]) == len(old) - 2
    assert _rows(sql_url)["sessions"] == 0
