"""The asyncio API beyond the contract: tasks, processes, cancellation, outages, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import shutil
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text

import sessions_db as sdb
from sessions_db import aio
from sessions_db.aio.sql import THREAD_NAME
from sessions_db.sql.engine import normalize_url
from sessions_db.testing import StorageContract
from sessions_db.testing.blocking import open_blocking
from sessions_db.testing.contract import msg

from .conftest import sql_tamper


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def assert_valid(session: aio.AsyncSession) -> list[str]:
    """Check the tree (unique IDs, parents first, leaf newest); return the branch's contents."""
    entries = await session.get_entries()
    ids = [e.id for e in entries]
    assert len(ids) == len(set(ids))
    seen: set[str] = set()
    for entry in entries:
        assert entry.parent_id is None or entry.parent_id in seen
        seen.add(entry.id)
    messages = await session.get_messages()
    info = await session.info()
    assert info.current_leaf == (entries[-1].id if entries else None)
    assert info.message_count == len(messages)
    return [m.payload["content"] for m in messages]


def checked_out(manager: aio.AsyncManager) -> int:
    """Return the connections the manager's pool has out (0 for stores without one)."""
    backend = manager.backend
    if not isinstance(backend, aio.AsyncSQLBackend):
        return 0
    engine = backend.engine
    pool: Any = getattr(engine, "sync_engine", engine).pool
    count: int = pool.checkedout()
    return count


def test_hundred_tasks_append_to_one_session(store_url: str) -> None:
    async def main() -> None:
        async with await aio.connect(store_url) as mgr:
            session = await mgr.create("assistant")
            await asyncio.gather(*(session.append_message(msg(f"m{i}")) for i in range(100)))
            got = await assert_valid(session)
            assert sorted(got) == sorted(f"m{i}" for i in range(100))
            assert (await session.info()).message_count == 100
            assert checked_out(mgr) == 0

    run(main())


def _tasks_worker(url: str, session_id: str, worker: int, tasks: int, each: int) -> None:
    async def main() -> None:
        async with await aio.connect(url) as mgr:
            session = await mgr.get(session_id)

            async def task(t: int) -> None:
                for i in range(each):
                    await session.append_message(msg(f"p{worker}-t{t}-{i}"))

            await asyncio.gather(*(task(t) for t in range(tasks)))

    asyncio.run(main())


def test_processes_running_tasks(store_url: str) -> None:
    workers, tasks, each = 3, 10, 4

    async def create() -> str:
        async with await aio.connect(store_url) as mgr:
            return (await mgr.create("assistant")).id

    session_id = run(create())
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        pool.starmap(
            _tasks_worker, [(store_url, session_id, w, tasks, each) for w in range(workers)]
        )

    async def check() -> None:
        async with await aio.connect(store_url) as mgr:
            got = await assert_valid(await mgr.get(session_id))
            want = [
                f"p{w}-t{t}-{i}" for w in range(workers) for t in range(tasks) for i in range(each)
            ]
            assert sorted(got) == sorted(want)
            for w in range(workers):
                for t in range(tasks):  # each task's own order is kept
                    mine = [c for c in got if c.startswith(f"p{w}-t{t}-")]
                    assert mine == [f"p{w}-t{t}-{i}" for i in range(each)]

    run(check())


def test_cancelled_appends_are_whole_or_absent(store_url: str) -> None:
    async def main() -> None:
        async with await aio.connect(store_url) as mgr:
            session = await mgr.create("assistant")
            # Each batch with whether its call returned (then it must be stored whole)
            # or was cancelled / timed out (then it is stored whole or not at all).
            batches: list[tuple[list[str], bool]] = []
            for k in range(60):
                batch = [f"b{k}-{i}" for i in range(3)]
                work = asyncio.ensure_future(session.append_messages([msg(c) for c in batch]))
                for _ in range(k % 12):
                    await asyncio.sleep(0)
                if work.cancel():
                    with pytest.raises(asyncio.CancelledError):
                        await work
                    batches.append((batch, False))
                else:  # it had already finished: cancel() cannot undo it
                    await work
                    batches.append((batch, True))
            for k in range(60, 100):  # timeouts, some of which expire mid-call
                batch = [f"b{k}-{i}" for i in range(3)]
                try:
                    await asyncio.wait_for(
                        session.append_messages([msg(c) for c in batch]), timeout=(k % 5) * 1e-4
                    )
                except TimeoutError:
                    batches.append((batch, False))
                else:
                    batches.append((batch, True))
            got = await assert_valid(session)
            stored = set(got)
            for batch, returned in batches:  # all or nothing, and in order
                present = [c for c in batch if c in stored]
                assert (present == batch) if returned else (present in ([], batch)), batch
            assert got == [c for batch, _ in batches for c in batch if c in stored]
            assert checked_out(mgr) == 0
            await session.append_message(msg("after"))
            assert (await session.get_messages(limit=1))[0].payload == {"content": "after"}

    run(main())


def _terminate_others(url: str) -> int:
    engine = create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
            return int(killed)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_connections_killed_then_recovered(pg_database: str) -> None:
    async def main() -> None:
        async with await aio.connect(pg_database) as mgr:
            session = await mgr.create("assistant")
            await asyncio.gather(*(session.append_message(msg(f"a{i}")) for i in range(10)))
            assert await asyncio.to_thread(_terminate_others, pg_database) >= 1
            # a pooled connection died: the call reconnects, or fails clearly
            with contextlib.suppress(sdb.StorageUnavailableError):
                await session.append_message(msg("right after"))
            await session.append_message(msg("next"))  # the same manager recovers

            # killed while appends are under way
            async def append(i: int) -> Any:
                try:
                    await session.append_message(msg(f"c{i}"))
                except sdb.StorageUnavailableError as exc:
                    return exc
                return None

            work = [asyncio.ensure_future(append(i)) for i in range(30)]
            await asyncio.sleep(0.01)
            await asyncio.to_thread(_terminate_others, pg_database)
            results = await asyncio.gather(*work)
            assert all(r is None or isinstance(r, sdb.StorageUnavailableError) for r in results)
            await session.append_message(msg("last"))
            got = await assert_valid(session)
            assert got[-1] == "last"
            assert "next" in got
            assert checked_out(mgr) == 0

    run(main())


@pytest.mark.postgres
def test_unreachable_database_is_storage_unavailable(pg_database: str) -> None:
    url = make_url(pg_database).set(port=1).render_as_string(hide_password=False)

    async def main() -> None:
        backend = aio.AsyncSQLBackend(url, check_schema=False, connect_timeout=1)
        async with aio.AsyncManager(backend) as mgr:
            for _ in range(2):
                with pytest.raises(sdb.StorageUnavailableError):
                    await mgr.list("assistant")

    run(main())


def test_async_with_and_close(store_url: str) -> None:
    async def main() -> None:
        async with await aio.connect(store_url) as mgr:
            async with await mgr.create("assistant") as session:
                await session.append_message(msg("x"))
            with pytest.raises(sdb.StorageClosedError):
                await session.get_messages()
            again = await mgr.get(session.id)
            # close waits for the calls under way; later calls fail
            work = [asyncio.ensure_future(again.append_message(msg(f"w{i}"))) for i in range(5)]
            await asyncio.sleep(0)
        assert mgr.closed
        results = await asyncio.gather(*work, return_exceptions=True)
        assert all(r is None or isinstance(r, sdb.StorageClosedError) for r in results)
        await mgr.close()  # idempotent
        with pytest.raises(sdb.StorageClosedError):
            await mgr.get(session.id)
        with pytest.raises(sdb.StorageClosedError):
            await again.append_message(msg("late"))
        with pytest.raises(sdb.StorageClosedError):
            await mgr.backend.load_session(session.id)
        async with await aio.connect(store_url) as mgr2:
            got = [m.payload["content"] for m in await (await mgr2.get(session.id)).get_messages()]
            assert got[0] == "x"
            assert len(got) == 1 + sum(r is None for r in results)

    run(main())


def _sql_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(THREAD_NAME)}


def test_worker_threads_are_bounded_and_end_with_close(sql_url: str) -> None:
    async def main() -> set[threading.Thread]:
        others = _sql_threads()
        backend = aio.AsyncSQLBackend(sql_url, max_workers=3)
        async with aio.AsyncManager(backend) as mgr:
            sessions = [await mgr.create("assistant") for _ in range(4)]
            await asyncio.gather(
                *(s.append_message(msg(f"m{i}")) for s in sessions for i in range(10)),
                *(s.get_messages() for s in sessions for _ in range(5)),
            )
            mine = _sql_threads() - others
            assert 1 <= len(mine) <= 3
            for session in sessions:
                got = await assert_valid(session)
                assert sorted(got) == sorted(f"m{i}" for i in range(10))
            assert checked_out(mgr) == 0
        with pytest.raises(sdb.StorageClosedError):
            await sessions[0].append_message(msg("late"))
        return mine

    mine = run(main())
    assert mine
    assert not any(t.is_alive() for t in mine)  # close() ended them


def _waiting_for_a_lock(url: str) -> int:
    engine = create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            count = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            return int(count)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_wait_for_a_worker_thread_is_bounded(pg_database: str) -> None:
    async def main() -> None:
        backend = aio.AsyncSQLBackend(pg_database, max_workers=1, connect_timeout=0.2)
        async with aio.AsyncManager(backend) as mgr:
            session = await mgr.create("assistant")
            engine = create_engine(normalize_url(pg_database))
            try:
                with engine.connect() as other:
                    # Another client holds the session's row: the append waits
                    # for it (up to the lock timeout) in the only worker thread.
                    other.execute(
                        text("SELECT 1 FROM sessions_db_sessions WHERE id = :id FOR UPDATE"),
                        {"id": session.id},
                    )
                    append = asyncio.ensure_future(session.append_message(msg("held")))
                    for _ in range(1000):
                        if await asyncio.to_thread(_waiting_for_a_lock, pg_database):
                            break
                        await asyncio.sleep(0.01)
                    assert not append.done()
                    with pytest.raises(sdb.StorageUnavailableError):
                        await mgr.list("assistant")
                    other.rollback()
                await append
            finally:
                engine.dispose()
            got = [m.payload["content"] for m in await session.get_messages()]
            assert got == ["held"]

    run(main())


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_max_workers_must_be_a_positive_whole_number(tmp_path: Path, workers: Any) -> None:
    with pytest.raises(sdb.ConfigurationError):
        aio.AsyncSQLBackend(f"sqlite:///{tmp_path / 's.db'}", max_workers=workers)


def test_context_is_per_task(store_url: str) -> None:
    async def main() -> None:
        async with await aio.connect(store_url) as mgr:
            sessions = [await mgr.create("assistant") for _ in range(10)]

            async def worker(session: aio.AsyncSession) -> None:
                with sdb.use_session(session):
                    for i in range(5):
                        await asyncio.sleep(0)
                        assert sdb.current_session() is session
                        await sdb.current_session().append_message(msg(f"{session.id}-{i}"))
                assert sdb.session_from_context() is None

            await asyncio.gather(*(worker(s) for s in sessions))
            assert sdb.session_from_context() is None
            with pytest.raises(sdb.SessionNotInContextError):
                sdb.current_session()
            for session in sessions:
                got = [m.payload["content"] for m in await session.get_messages()]
                assert got == [f"{session.id}-{i}" for i in range(5)]

    run(main())


def test_sync_and_async_read_each_other(store_url: str) -> None:
    with sdb.connect(store_url) as mgr:
        session = mgr.create("assistant", user_id="u")
        session.append_message(msg("from sync"))
        checkpoint = session.checkpoint()

    async def main() -> None:
        async with await aio.connect(store_url) as amgr:
            asession = await amgr.get(session.id, user_id="u")
            await asession.append_message(msg("from async"))
            await asession.restore(checkpoint.id)
            assert [m.payload["content"] for m in await asession.get_messages()] == ["from sync"]

    run(main())
    with sdb.connect(store_url) as mgr:
        assert mgr.get(session.id).info().message_count == 1


async def _threaded_connect(url: str) -> aio.AsyncManager:
    return aio.AsyncManager(aio.ThreadedBackend(sdb.connect(url).backend))


class TestThreadedBackendContract(StorageContract):
    """A sync backend behind ThreadedBackend passes the contract through the async API."""

    @pytest.fixture
    def url(self, sqlite_template: Path, tmp_path: Path) -> str:
        shutil.copy(sqlite_template, tmp_path / "threaded.db")
        return f"sqlite:///{tmp_path / 'threaded.db'}"

    @pytest.fixture
    def open_manager(self, url: str) -> Callable[[], sdb.Manager]:
        return partial(open_blocking, partial(_threaded_connect, url))

    @pytest.fixture
    def tamper(self, url: str) -> Callable[..., None]:
        return partial(sql_tamper, url)
