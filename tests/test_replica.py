"""Reads from a real streaming replica (``read_url``): own writes never read backwards.

The replica is a hot standby of the test server made with ``pg_basebackup -R``
(tests/replica.py). Pausing its replay makes its lag as long as a test needs:
what another connection writes meanwhile is missing there, which shows which
reads it served. The contract suite also runs with a replica configured
(``tests/test_contract.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

import sessions_db as sdb
from sessions_db.sql.replica import ReadRouter, lsn, session_of
from sessions_db.testing.blocking import BlockingBackend, open_blocking

from .conftest import make_store
from .replica import Replica

pytestmark = pytest.mark.postgres

#: The longest a test waits for the replica to serve reads again.
DEADLINE = 30.0


def _message(text: str) -> sdb.Message:
    return sdb.Message.new("user", {"content": text})


def _contents(session: sdb.Session) -> list[str]:
    return [m.payload["content"] for m in session.get_messages()]


@pytest.fixture
def primary(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty migrated database on the primary."""
    return make_store("postgres", request, tmp_path)


@pytest.fixture
def replica(pg_replica: Replica, primary: str) -> Iterator[Replica]:
    """The replica, caught up with the primary, replaying again after the test."""
    pg_replica.catch_up(primary)
    try:
        yield pg_replica
    finally:
        pg_replica.resume()


def _open(url: str, api: str, **options: Any) -> sdb.Manager:
    if api == "sync":
        return sdb.connect(url, **options)
    return open_blocking(partial(sdb.aio.connect, url, **options))


def _replica_engine(mgr: sdb.Manager) -> Engine:
    backend: Any = mgr.backend
    if isinstance(backend, BlockingBackend):
        engine: Engine = backend.target.replica_engine  # type: ignore[attr-defined]
        return engine
    replica: Engine = backend.replica_engine
    return replica


@contextmanager
def _replica_reads(mgr: sdb.Manager) -> Iterator[list[str]]:
    """Record the statements the replica runs for ``mgr`` (probes left out)."""
    seen: list[str] = []
    engine = _replica_engine(mgr)

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "pg_last_wal_replay_lsn" not in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.mark.parametrize("api", ["sync", "async"])
def test_reads_go_to_the_replica_and_own_writes_never_go_back(
    primary: str, replica: Replica, api: str
) -> None:
    read_url = replica.url(primary)
    lag = {"replica_max_lag": "60s"}  # the pause below must not outlast the bound
    with sdb.connect(primary) as other, _open(primary, api, read_url=read_url, config=lag) as mgr:
        theirs = other.create("bot", user_id="u1")
        theirs.append_messages([_message("t1"), _message("t2")])
        replica.catch_up(primary)
        _until_the_replica_serves(mgr, theirs.id, ["t1", "t2"])
        replica.pause()
        other.get(theirs.id).append_message(_message("t3"))
        late = other.create("bot", user_id="u2")

        # What this process never wrote is read from the replica: a little stale.
        with _replica_reads(mgr) as served:
            assert _contents(mgr.get(theirs.id)) == ["t1", "t2"]
            assert late.id not in [meta.id for meta in mgr.list("bot")]
        assert served
        # A session the replica does not have yet is found on the primary.
        assert mgr.get(late.id).user_id == "u2"

        # Once this process writes to the session, its reads of it never go back.
        mine = mgr.get(theirs.id)
        mine.append_message(_message("mine"))
        with _replica_reads(mgr) as served:
            assert _contents(mgr.get(theirs.id)) == ["t1", "t2", "t3", "mine"]
            assert _contents(mine) == ["t1", "t2", "t3", "mine"]
            assert mine.info().message_count == 4
            checkpoint = mine.checkpoint()
            assert [c.id for c in mine.list_checkpoints()] == [checkpoint.id]
            # Its own new sessions too, in listings and searches (all reads of this process).
            made = mgr.create("bot", user_id="u3")
            made.append_message(_message("findable words"))
            assert made.id in [meta.id for meta in mgr.list("bot")]
            assert [hit.session_id for hit in mgr.memory("u3").search("findable")] == [made.id]
            assert _contents(made.fork()) == ["findable words"]
        assert served == []  # all of it from the primary: the replica is still paused

        # Caught up again, the replica serves those reads again, right.
        replica.resume()
        replica.catch_up(primary)
        _until_the_replica_serves(mgr, theirs.id, ["t1", "t2", "t3", "mine"])


def _until_the_replica_serves(mgr: sdb.Manager, session_id: str, expected: list[str]) -> None:
    """Read the session until the replica serves the read (it has seen a recent probe).

    The test server is shared: others' writes move the primary's position on,
    so the first probe may find the replica a little behind it.
    """
    deadline = time.monotonic() + DEADLINE
    while True:
        with _replica_reads(mgr) as served:
            assert _contents(mgr.get(session_id)) == expected
        if served:
            return
        assert time.monotonic() < deadline, "the replica never served the reads"
        time.sleep(0.05)


def test_a_lagging_replica_is_left_alone(primary: str, replica: Replica) -> None:
    """Replica reads are at most ``replica_max_lag`` behind: further behind, the primary serves."""
    config = {"url": primary, "read_url": replica.url(primary), "replica_max_lag": "2s"}
    with sdb.connect(primary) as other, sdb.connect(config=config) as mgr:
        assert mgr.backend.router.max_lag == 2.0  # type: ignore[attr-defined]
        theirs = other.create("bot")
        theirs.append_message(_message("t1"))
        replica.catch_up(primary)
        _until_the_replica_serves(mgr, theirs.id, ["t1"])
        replica.pause()
        other.get(theirs.id).append_message(_message("t2"))
        assert _contents(mgr.get(theirs.id)) == ["t1"]  # within the bound: the replica
        deadline = time.monotonic() + DEADLINE
        while _contents(mgr.get(theirs.id)) != ["t1", "t2"]:
            assert time.monotonic() < deadline, "a replica past the bound kept serving reads"
            time.sleep(0.05)
        with _replica_reads(mgr) as served:
            assert _contents(mgr.get(theirs.id)) == ["t1", "t2"]
            assert [meta.id for meta in mgr.list("bot")] == [theirs.id]
        assert served == []


@pytest.mark.parametrize("api", ["sync", "async"])
def test_an_unreachable_replica_costs_little(primary: str, api: str) -> None:
    """Reads go to the primary when the replica cannot be reached, each wait bounded."""
    started = time.monotonic()
    with _open(primary, api, read_url="postgresql://sessions_db:x@127.0.0.1:1/none") as mgr:
        session = mgr.create("bot")
        session.append_message(_message("hello"))
        for _ in range(20):
            assert _contents(mgr.get(session.id)) == ["hello"]
            assert [meta.id for meta in mgr.list("bot")] == [session.id]
    assert time.monotonic() - started < 10


def test_a_server_not_in_recovery_is_not_read_as_a_replica(primary: str) -> None:
    """``read_url`` naming a primary (a promoted or mistaken server) is left alone."""
    with sdb.connect(primary, read_url=primary) as mgr, _replica_reads(mgr) as served:
        session = mgr.create("bot")
        session.append_message(_message("hello"))
        for _ in range(5):
            assert _contents(mgr.get(session.id)) == ["hello"]
            mgr.list("bot")
    assert served == []


def test_read_url_from_the_configuration(
    primary: str, replica: Replica, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SESSIONS_DB_URL", primary)
    monkeypatch.setenv("SESSIONS_DB_READ_URL", replica.url(primary))
    with sdb.connect() as mgr:
        assert mgr.backend.replica_engine is not None  # type: ignore[attr-defined]
    with sdb.connect(primary) as mgr:  # the configured store, named again
        assert hasattr(mgr.backend, "replica_engine")
    # Another store is not read from the configured store's replica.
    other = f"sqlite:///{tmp_path / 'other.db'}"
    with sdb.connect(other) as mgr:
        assert not hasattr(mgr.backend, "replica_engine")
    for url, read_url in ((other, replica.url(primary)), (primary, other)):
        with pytest.raises(sdb.ConfigurationError, match="read replicas are for PostgreSQL"):
            sdb.connect(url, read_url=read_url)
    with pytest.raises(sdb.ConfigurationError, match="replica_max_lag"):
        sdb.connect(config={"url": primary, "replica_max_lag": "soon"})


def test_the_router_counts_writes_per_session() -> None:
    router = ReadRouter(max_lag=1.0, max_sessions=2)
    assert router.need("a") == router.need(None) == 0
    router.wrote(["a"])
    router.wrote(["b", "c"])  # "a" is forgotten: it now counts for every read
    assert router.need("a") == router.need("z") == 1
    assert router.need("b") == router.need("c") == 2
    assert router.need(None) == 2
    router.wrote(None)
    assert router.need("z") == router.need("b") == 3
    assert lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert lsn(None) is None
    assert session_of(partial(print, session_id="s1")) == "s1"
    assert session_of(print) is None
