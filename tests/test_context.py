"""The context helpers: use_session / current_session / session_from_context."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

import sessions_db as sdb


@pytest.fixture
def mgr() -> Iterator[sdb.Manager]:
    with sdb.Manager(sdb.NullBackend()) as manager:
        yield manager


def test_nothing_bound() -> None:
    assert sdb.session_from_context() is None
    with pytest.raises(sdb.SessionNotInContextError):
        sdb.current_session()
    assert issubclass(sdb.SessionNotInContextError, sdb.SessionsDBError)


def test_bind_nest_and_restore(mgr: sdb.Manager) -> None:
    outer, inner = mgr.create("a"), mgr.create("b")
    with sdb.use_session(outer) as bound:
        assert bound is outer
        assert sdb.current_session() is outer
        with sdb.use_session(inner):
            assert sdb.current_session() is inner
            assert sdb.session_from_context() is inner
        assert sdb.current_session() is outer
        with sdb.use_session(outer):  # binding the same one again nests too
            assert sdb.current_session() is outer
        assert sdb.current_session() is outer
    assert sdb.session_from_context() is None


def test_restored_on_exception(mgr: sdb.Manager) -> None:
    outer, inner = mgr.create("a"), mgr.create("b")
    with sdb.use_session(outer):
        with pytest.raises(RuntimeError), sdb.use_session(inner):
            raise RuntimeError("boom")
        assert sdb.current_session() is outer
    assert sdb.session_from_context() is None


def test_threads_are_isolated(mgr: sdb.Manager) -> None:
    sessions = [mgr.create(f"agent-{i}") for i in range(4)]
    barrier = threading.Barrier(len(sessions))
    seen: dict[int, list[object]] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            before = sdb.session_from_context()
            with sdb.use_session(sessions[i]):
                barrier.wait(timeout=30)  # every thread has bound its own now
                during = sdb.current_session()
                barrier.wait(timeout=30)
            seen[i] = [before, during, sdb.session_from_context()]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with sdb.use_session(mgr.create("main")) as main:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(sessions))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sdb.current_session() is main  # the threads' bindings never reach here
    assert errors == []
    for i, session in enumerate(sessions):
        # A new thread starts with nothing bound, whatever its starter had bound.
        assert seen[i] == [None, session, None]


def test_asyncio_tasks_are_isolated(mgr: sdb.Manager) -> None:
    sessions = [mgr.create(f"agent-{i}") for i in range(4)]

    async def task(i: int, all_bound: asyncio.Barrier) -> tuple[object, object]:
        with sdb.use_session(sessions[i]):
            await all_bound.wait()  # every task is inside its own block now
            during = sdb.current_session()
        return during, sdb.session_from_context()

    async def main() -> list[tuple[object, object]]:
        barrier = asyncio.Barrier(len(sessions))
        return list(await asyncio.gather(*(task(i, barrier) for i in range(len(sessions)))))

    results = asyncio.run(main())
    assert results == [(s, None) for s in sessions]


def test_asyncio_task_inherits_and_does_not_leak(mgr: sdb.Manager) -> None:
    outer, inner = mgr.create("a"), mgr.create("b")

    async def child() -> object:
        inherited = sdb.current_session()
        with sdb.use_session(inner):
            await asyncio.sleep(0)
            assert sdb.current_session() is inner
        return inherited

    async def binder(started: asyncio.Event, done: asyncio.Event) -> None:
        with sdb.use_session(inner):
            started.set()
            await done.wait()

    async def main() -> None:
        with sdb.use_session(outer):
            assert await asyncio.create_task(child()) is outer
            assert sdb.current_session() is outer
            # While another task holds a binding, this one still sees its own.
            started, done = asyncio.Event(), asyncio.Event()
            other = asyncio.create_task(binder(started, done))
            await started.wait()
            assert sdb.current_session() is outer
            done.set()
            await other
        assert sdb.session_from_context() is None

    asyncio.run(main())
