"""PostgreSQL under real conditions: locks held elsewhere, slow statements, killed connections.

Every wait here is bounded by the server, never by the test's patience: the
connection holding a lock is ended by the server after HOLD_LIMIT idle in its
transaction (``idle_in_transaction_session_timeout``), which releases the lock.
Had a timeout of ours not fired, the blocked call would then succeed, and the
test fail, instead of hanging.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text

import sessions_db as sdb
from sessions_db.sql.engine import normalize_url
from sessions_db.sql.timeouts import Timeouts
from sessions_db.testing.blocking import open_blocking

from .conftest import make_store
from .test_sql_backend import RoundTrips

pytestmark = pytest.mark.postgres

#: How long the server lets a lock holder sit idle in its transaction.
HOLD_LIMIT = "20s"
#: How long a test waits for something another connection does (a deadline, not a sleep).
DEADLINE = 30.0


def _message(text_: str) -> sdb.Message:
    return sdb.Message.new("user", {"content": text_})


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_store("postgres", request, tmp_path)


def _libpq(url: str) -> str:
    return normalize_url(url).replace("postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def session_row_locked(url: str, session_id: str) -> Iterator[psycopg.Connection[Any]]:
    """Hold the session's row lock from another connection (as a stuck writer would)."""
    conn = psycopg.connect(_libpq(url), connect_timeout=10)
    try:
        conn.execute(f"SET idle_in_transaction_session_timeout = '{HOLD_LIMIT}'")
        row = conn.execute(
            "SELECT id FROM sessions_db_sessions WHERE id = %s FOR UPDATE", [session_id]
        ).fetchone()
        assert row is not None
        yield conn
    finally:
        conn.close()  # ends the transaction: the lock is released


def _open(url: str, api: str, **options: Any) -> sdb.Manager:
    if api == "sync":
        return sdb.connect(url, **options)
    return open_blocking(partial(sdb.aio.connect, url, **options))


def _cause_sqlstate(error: BaseException) -> str | None:
    cause = error.__cause__
    orig = getattr(cause, "orig", None)
    return getattr(orig, "sqlstate", None)


@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_lock_held_elsewhere_times_out_and_the_manager_goes_on(pg_url: str, api: str) -> None:
    with _open(pg_url, api, lock_timeout=0.3, statement_timeout=0) as mgr:
        session = mgr.create("assistant")
        session.append_message(_message("before"))
        with session_row_locked(pg_url, session.id):
            with pytest.raises(sdb.StorageTimeoutError) as caught:
                session.append_message(_message("blocked"))
            assert _cause_sqlstate(caught.value) == "55P03"  # lock_not_available
            assert not isinstance(caught.value, sdb.StorageUnavailableError)
            # A transaction of several statements (lock, read, insert) too.
            with pytest.raises(sdb.StorageTimeoutError):
                session.checkpoint()
            # Nothing of either is stored; reads do not wait for the row lock.
            assert [m.payload["content"] for m in session.get_messages()] == ["before"]
            assert session.list_checkpoints() == []
        session.append_message(_message("after"))
        session.checkpoint()
        assert [m.payload["content"] for m in session.get_messages()] == ["before", "after"]
        assert session.info().message_count == 2
        assert len(session.list_checkpoints()) == 1


@pytest.mark.parametrize("api", ["sync", "async"])
def test_statement_timeout_bounds_a_blocked_statement(pg_url: str, api: str) -> None:
    # No lock timeout: only the statement timeout can end the wait.
    with _open(pg_url, api, lock_timeout=0, statement_timeout=0.3) as mgr:
        session = mgr.create("assistant")
        with session_row_locked(pg_url, session.id):
            with pytest.raises(sdb.StorageTimeoutError) as caught:
                session.append_messages([_message("a"), _message("b")])
            assert _cause_sqlstate(caught.value) == "57014"  # query_canceled
            assert session.get_messages() == []
        session.append_messages([_message("a"), _message("b")])
        assert session.info().message_count == 2


def test_timeouts_stay_in_our_transactions(pg_url: str) -> None:
    """No session-level SET: the host's statements on the shared pool keep the server's values."""
    engine = create_engine(normalize_url(pg_url), pool_size=1, max_overflow=0)
    try:
        show = text("SELECT current_setting('statement_timeout'), current_setting('lock_timeout')")
        with engine.connect() as conn:
            server = tuple(conn.execute(show).one())
        backend = sdb.SQLBackend(engine, statement_timeout=1.5, lock_timeout=0.25)
        assert backend.timeouts == Timeouts(1500, 250)
        with sdb.Manager(backend) as mgr:
            session = mgr.create("assistant")
            session.append_message(_message("one"))
            session.checkpoint()
            with engine.connect() as conn:  # the very connection our calls used
                assert tuple(conn.execute(show).one()) == server
            assert server != ("1500ms", "250ms")
    finally:
        engine.dispose()


def test_timeouts_cost_no_round_trip(pg_url: str) -> None:
    """The SET LOCAL travels with the statement: one append, one round trip, timeouts included."""
    engine = create_engine(normalize_url(pg_url), pool_size=1, max_overflow=0)
    mgr = sdb.Manager(sdb.SQLBackend(engine, statement_timeout=5, lock_timeout=2))
    trips = RoundTrips(engine)
    try:
        session = mgr.create("assistant")
        assert trips.count(lambda: session.append_message(_message("first"))) == 1
        trace = trips.last_trace
        assert "set_config('statement_timeout', '5000', true)" in trace
        assert "set_config('lock_timeout', '2000', true)" in trace
        assert trace.index("set_config") < trace.index("INSERT 0 1") < trace.index("ReadyForQuery")
        for i in range(6):  # past psycopg's preparation of repeated statements
            session.append_message(_message(str(i)))
        assert trips.count(lambda: session.append_message(_message("counted"))) == 1
        # Prepared by now: two statements bound and executed, then one Sync.
        assert trips.last_trace.count("\tExecute\t") == 2
        assert trips.last_trace.count("\tSync") == 1
    finally:
        trips.close()
        mgr.close()
        engine.dispose()


def _terminate_when_waiting(url: str, done: threading.Event, killed: list[int]) -> None:
    """End the backend that waits for a lock in ``url``'s database (within DEADLINE)."""
    with psycopg.connect(_libpq(url), autocommit=True, connect_timeout=10) as conn:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and not done.is_set():
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            ).fetchone()
            if row is not None:
                conn.execute("SELECT pg_terminate_backend(%s)", [row[0]])
                killed.append(row[0])
                return
            done.wait(0.05)


@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_connection_lost_mid_call_is_unavailable(pg_url: str, api: str) -> None:
    with _open(pg_url, api, lock_timeout=0, statement_timeout=0) as mgr:
        session = mgr.create("assistant")
        done = threading.Event()
        killed: list[int] = []
        killer = threading.Thread(target=_terminate_when_waiting, args=(pg_url, done, killed))
        with session_row_locked(pg_url, session.id):
            killer.start()
            try:
                with pytest.raises(sdb.StorageUnavailableError):
                    session.append_message(_message("lost"))
            finally:
                done.set()
                killer.join(DEADLINE)
        assert killed
        # The pool replaces the dead connection; nothing of the lost call was stored.
        assert session.get_messages() == []
        session.append_message(_message("after"))
        assert session.info().message_count == 1


def test_timeouts_are_checked() -> None:
    for bad in (-1, float("nan"), float("inf"), "5s", True):
        with pytest.raises(sdb.ConfigurationError):
            sdb.SQLBackend(
                "postgresql://nobody@127.0.0.1:1/none",
                statement_timeout=bad,  # type: ignore[arg-type]
                check_schema=False,
            )


def test_keepalives_are_on_unless_the_url_says_otherwise() -> None:
    from sessions_db.sql.engine import engine_options

    options = engine_options("postgresql+psycopg://u@h/db")["connect_args"]
    assert options["keepalives"] == 1
    assert options["keepalives_idle"] == 30
    assert "options" not in options  # PgBouncer refuses startup options
    mine = engine_options("postgresql+psycopg://u@h/db?keepalives_idle=5")["connect_args"]
    assert "keepalives_idle" not in mine  # the URL's own value reaches libpq
