"""PostgreSQL through PgBouncer (Debian's 1.18) in transaction mode.

Each transaction may run on another server connection, and a server connection
serves other clients in between: nothing of ours may outlive a transaction.
The contract suite runs through PgBouncer too (``tests/test_contract.py``); these
tests check what it cannot see: the timeouts (``SET LOCAL`` in a pipeline),
server connections left clean, concurrent appends, and why ``pooled`` exists.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest

import sessions_db as sdb
from sessions_db.testing.blocking import open_blocking

from .conftest import PG_URL, make_store
from .pgbouncer import Bouncer, private_pgbouncer
from .test_pg_timeouts import _cause_sqlstate, _libpq, session_row_locked

pytestmark = pytest.mark.postgres


def _message(text: str) -> sdb.Message:
    return sdb.Message.new("user", {"content": text})


@pytest.fixture
def direct_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty migrated database, reached directly."""
    return make_store("postgres", request, tmp_path)


@pytest.fixture
def one_connection(pg_server: Callable[[], str]) -> Iterator[Bouncer]:
    """A PgBouncer of its own with one server connection: every client shares it."""
    with private_pgbouncer(PG_URL, pool_size=1) as bouncer:
        yield bouncer


def _open(url: str, api: str, **options: Any) -> sdb.Manager:
    if api == "sync":
        return sdb.connect(url, **options)
    return open_blocking(partial(sdb.aio.connect, url, **options))


@pytest.mark.parametrize("api", ["sync", "async"])
def test_timeouts_hold_through_pgbouncer(direct_url: str, pgbouncer: Bouncer, api: str) -> None:
    url = pgbouncer.url(direct_url)
    with _open(url, api, pooled=True, lock_timeout=0.3, statement_timeout=0) as mgr:
        session = mgr.create("assistant")
        session.append_message(_message("before"))
        with session_row_locked(direct_url, session.id):
            with pytest.raises(sdb.StorageTimeoutError) as caught:
                session.append_message(_message("blocked"))
            assert _cause_sqlstate(caught.value) == "55P03"
            with pytest.raises(sdb.StorageTimeoutError):
                session.checkpoint()
        session.append_message(_message("after"))
        assert [m.payload["content"] for m in session.get_messages()] == ["before", "after"]
    with _open(url, api, pooled=True, lock_timeout=0, statement_timeout=0.3) as mgr:
        session = mgr.get(session.id)
        with session_row_locked(direct_url, session.id):
            with pytest.raises(sdb.StorageTimeoutError) as caught:
                session.append_messages([_message("a"), _message("b")])
            assert _cause_sqlstate(caught.value) == "57014"
        assert session.info().message_count == 2


def _server_state(url: str) -> dict[str, Any]:
    """What a server connection carries from one client to the next."""
    with psycopg.connect(_libpq(url), autocommit=True, prepare_threshold=None) as conn:
        row = conn.execute(
            """
SELECT current_setting('statement_timeout'), current_setting('lock_timeout'),
       (SELECT count(*) FROM pg_prepared_statements),
       (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
       (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()),
       pg_backend_pid()"""
        ).fetchone()
    assert row is not None
    keys = ("statement_timeout", "lock_timeout", "prepared", "advisory_locks", "temp_tables")
    return {**dict(zip(keys, row[:5], strict=True)), "pid": row[5]}


@pytest.mark.parametrize("api", ["sync", "async"])
def test_server_connections_are_left_clean(
    direct_url: str, one_connection: Bouncer, api: str
) -> None:
    """Everything of ours ends with its transaction: the next client finds the server's state."""
    url = one_connection.url(direct_url)
    before = _server_state(url)
    with _open(url, api, pooled=True, statement_timeout=7, lock_timeout=3) as mgr:
        for user in ("u1", "u2"):
            session = mgr.get_or_create("assistant", user)  # a transaction advisory lock
            for i in range(8):
                session.append_message(_message(f"{user}-{i}"))
            checkpoint = session.checkpoint()
            session.restore(checkpoint.id)
            session.fork()
            assert len(session.get_messages(limit=3)) == 3
            mgr.list("assistant", user_id=user)
            mgr.memory(user).search("u1")
    after = _server_state(url)
    assert after["pid"] == before["pid"]  # the one server connection, used by us meanwhile
    assert after == before
    assert after["prepared"] == after["advisory_locks"] == after["temp_tables"] == 0


def test_without_pooled_a_pooler_is_refused_clearly(
    direct_url: str, one_connection: Bouncer
) -> None:
    """Why ``pooled`` exists: a direct connection carries settings a pooler refuses.

    Without ``pooled=True`` the timeouts are startup parameters of the
    connection (and psycopg would prepare statements on a server connection
    others share); PgBouncer refuses them at once, and the error shows why.
    """
    url = one_connection.url(direct_url)
    with pytest.raises(sdb.StorageUnavailableError, match="startup parameter: options"):
        sdb.connect(url)
    with sdb.connect(url, pooled=True) as mgr:
        session = mgr.create("assistant")
        session.append_message(_message("through the pooler"))
        assert [m.payload for m in session.get_messages()] == [
            _message("through the pooler").payload
        ]


def test_without_pooled_prepared_statements_collide(
    direct_url: str, one_connection: Bouncer
) -> None:
    """The other reason: psycopg prepares statements on a server connection others share."""
    url = one_connection.url(direct_url)

    def manager() -> sdb.Manager:
        # No timeouts: nothing else keeps this connection from the pooler.
        return sdb.Manager(sdb.SQLBackend(url, statement_timeout=None, lock_timeout=None))

    first, second = manager(), manager()

    def appends() -> None:
        for mgr in (first, second):
            session = mgr.create("assistant")
            for i in range(10):  # past psycopg's prepare_threshold (5)
                session.append_message(_message(str(i)))

    try:
        with pytest.raises(sdb.StorageError) as caught:
            appends()
        assert _cause_sqlstate(caught.value) in ("42P05", "26000")
    finally:
        first.close()
        second.close()


def test_concurrent_appends_through_pgbouncer(direct_url: str, pgbouncer: Bouncer) -> None:
    url = pgbouncer.url(direct_url)
    threads, appends = 8, 25
    with sdb.connect(url, pooled=True) as mgr:
        shared = mgr.create("assistant")
        own = [mgr.create("assistant") for _ in range(threads)]
        errors: list[BaseException] = []
        start = threading.Barrier(threads)

        def work(n: int) -> None:
            try:
                start.wait(timeout=30)
                for i in range(appends):
                    shared.append_message(_message(f"{n}-{i}"))
                    own[n].append_message(_message(f"{n}-{i}"))
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        assert not [w for w in workers if w.is_alive()]
        assert not errors, errors[:3]
        assert shared.info().message_count == threads * appends
        contents = [m.payload["content"] for m in shared.get_messages()]
        assert len(set(contents)) == threads * appends
        for n in range(threads):
            assert [m.payload["content"] for m in own[n].get_messages()] == [
                f"{n}-{i}" for i in range(appends)
            ]


def test_concurrent_async_appends_through_pgbouncer(direct_url: str, pgbouncer: Bouncer) -> None:
    url = pgbouncer.url(direct_url)
    tasks, appends = 8, 25

    async def run() -> None:
        async with await sdb.aio.connect(url, pooled=True) as mgr:
            session = await mgr.create("assistant")

            async def work(n: int) -> None:
                for i in range(appends):
                    await session.append_message(_message(f"{n}-{i}"))

            await asyncio.wait_for(asyncio.gather(*(work(n) for n in range(tasks))), 120)
            assert (await session.info()).message_count == tasks * appends

    asyncio.run(run())


def test_pooled_from_configuration(direct_url: str, pgbouncer: Bouncer) -> None:
    url = pgbouncer.url(direct_url)
    with sdb.connect(url, config={"pooled": True}) as mgr:
        engine = mgr.backend.engine  # type: ignore[attr-defined]
        with engine.connect() as conn:
            assert conn.connection.driver_connection.prepare_threshold is None
    with sdb.connect(direct_url) as mgr:
        engine = mgr.backend.engine  # type: ignore[attr-defined]
        with engine.connect() as conn:
            assert conn.connection.driver_connection.prepare_threshold == 5
    with pytest.raises(sdb.ConfigurationError, match="prepare_threshold"):
        sdb.SQLBackend(mgr.backend.engine, pooled=True)  # type: ignore[attr-defined]
