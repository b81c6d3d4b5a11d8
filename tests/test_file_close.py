"""The file store's descriptor shared by threads: ``close()`` with calls in flight, and
concurrent reads of the base directory; and the bounds of its in-process caches."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import sessions_db as sdb
from sessions_db.file.caches import LockTable, LruMap
from sessions_db.testing.contract import contents, msg

DEADLINE = 60.0  # seconds any wait of these tests may take before it fails


def _worker(
    mgr: sdb.Manager,
    session_id: str,
    acked: list[int],
    errors: list[BaseException],
    started: threading.Event,
) -> None:
    """Append, read, create and list until the store refuses with ``StorageClosedError``."""
    session = mgr.get(session_id)
    i = 0
    try:
        while True:
            session.append_message(msg(str(i)))
            acked.append(i)
            i += 1
            got = contents(session)
            assert got == [str(k) for k in range(len(got))]
            assert len(got) >= len(acked)
            if i % 3 == 0:
                mgr.create("other", user_id=session_id)
            if i % 5 == 0:
                assert len(mgr.list("assistant")) == 4
            if i == 3:
                started.set()
    except sdb.StorageClosedError:
        pass
    except BaseException as exc:  # reported by the test
        errors.append(exc)
    finally:
        started.set()


def _lister(mgr: sdb.Manager, agents: int, errors: list[BaseException]) -> None:
    """List the agents (a call that works through the base directory throughout)."""
    try:
        while True:
            assert len(mgr.list_agents()) == agents
    except sdb.StorageClosedError:
        pass
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def _decoy(directory: Path, stop: threading.Event) -> None:
    """Open and close descriptors of another directory, so that a closed number is reused."""
    while not stop.is_set():
        fds = [os.open(directory, os.O_RDONLY | os.O_DIRECTORY) for _ in range(8)]
        for fd in fds:
            os.close(fd)


@pytest.mark.parametrize("run", range(4))
def test_close_waits_for_calls_in_flight(tmp_path: Path, run: int) -> None:
    base = tmp_path / "store"
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    backend = sdb.FileBackend(base)
    mgr = sdb.Manager(backend)
    session_ids = [mgr.create("assistant").id for _ in range(4)]
    mgr.create("other")
    for n in range(30):
        mgr.create(f"agent-{n}")
    acked: list[list[int]] = [[] for _ in session_ids]
    errors: list[BaseException] = []
    started = [threading.Event() for _ in session_ids]
    stop = threading.Event()
    threads = [
        threading.Thread(target=_worker, args=(mgr, sid, acked[n], errors, started[n]))
        for n, sid in enumerate(session_ids)
    ]
    threads += [threading.Thread(target=_lister, args=(mgr, 32, errors)) for _ in range(2)]
    decoys = [threading.Thread(target=_decoy, args=(decoy, stop)) for _ in range(2)]
    for thread in [*threads, *decoys]:
        thread.start()
    try:
        for event in started:
            assert event.wait(DEADLINE)
        closer = threading.Thread(target=backend.close)
        closer.start()
        closer.join(DEADLINE)
        assert not closer.is_alive()
        for thread in threads:
            thread.join(DEADLINE)
            assert not thread.is_alive()
    finally:
        stop.set()
        for thread in decoys:
            thread.join(DEADLINE)
    assert errors == []
    assert list(decoy.iterdir()) == []  # nothing written through a reused descriptor
    with pytest.raises(sdb.StorageClosedError):
        backend.load_session(session_ids[0])
    with sdb.Manager(sdb.FileBackend(base)) as again:
        for sid, done in zip(session_ids, acked, strict=True):
            stored = contents(again.get(sid))
            assert stored == [str(k) for k in range(len(stored))]
            assert len(stored) >= len(done) > 0  # every acknowledged append is there
        assert len(again.list("other")) == len(list((base / "other").glob("*.jsonl")))


def test_threads_listing_agents_at_once_each_see_all(tmp_path: Path) -> None:
    with sdb.Manager(sdb.FileBackend(tmp_path / "store")) as mgr:
        agents = sorted(f"agent-{n}" for n in range(40))
        for agent in agents:
            mgr.create(agent)
        seen: list[list[str]] = []
        errors: list[BaseException] = []

        def list_many() -> None:
            try:
                for _ in range(40):
                    seen.append(mgr.list_agents())
            except BaseException as exc:  # reported by the test
                errors.append(exc)

        threads = [threading.Thread(target=list_many) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE)
            assert not thread.is_alive()
        assert errors == []
        assert len(seen) == 160
        assert all(found == agents for found in seen)


def test_calls_after_close_raise_storage_closed(tmp_path: Path) -> None:
    backend = sdb.FileBackend(tmp_path / "store")
    mgr = sdb.Manager(backend)
    session = mgr.create("assistant")
    backend.close()
    backend.close()  # idempotent
    calls: list[Callable[[], object]] = [
        lambda: backend.load_session(session.id),
        lambda: backend.list_sessions("assistant"),
        lambda: backend.load_entries(session.id),
        backend.list_agents,
        backend.repair,
    ]
    for call in calls:
        with pytest.raises(sdb.StorageClosedError):
            call()


def test_caches_stay_bounded_with_many_sessions(tmp_path: Path) -> None:
    base = tmp_path / "store"
    backend = sdb.FileBackend(base, cache_size=8)
    mgr = sdb.Manager(backend)
    sessions = [mgr.create(f"agent-{i % 3}", user_id=f"u{i}") for i in range(60)]
    checkpoints = {}
    for i, session in enumerate(sessions):
        session.append_message(msg(f"m{i}"))
        checkpoints[session.id] = session.checkpoint().id
        session.close()  # drops the session's entries (the cache release frees)
    for i, session in enumerate(sessions):
        again = mgr.get(session.id)
        assert contents(again) == [f"m{i}"]
        assert backend.load_checkpoint(checkpoints[session.id]).session_id == session.id
        again.close()
    assert len(backend._session_locks) <= 8
    assert len(backend._agents) <= 8
    assert len(backend._checkpoint_agents) <= 8
    assert backend._dirty_count <= 8  # index records awaiting close() are bounded too
    # evicted entries are found again on disk, and deleting still finds its session
    mgr.delete(sessions[0].id)
    with pytest.raises(sdb.SessionNotFoundError):
        mgr.get(sessions[0].id)
    assert len(mgr.list("agent-0")) == 19
    mgr.close()


def test_cache_size_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(sdb.InvalidArgumentError):
        sdb.FileBackend(tmp_path / "store", cache_size=0)
    assert not (tmp_path / "store").exists()


def test_a_lock_in_use_is_never_evicted() -> None:
    table = LockTable(size=2)
    holding = threading.Event()
    release = threading.Event()
    held: list[object] = []

    def hold_a() -> None:
        with table.hold("a"):
            held.append(table._slots["a"].lock)
            holding.set()
            assert release.wait(DEADLINE)

    thread = threading.Thread(target=hold_a)
    thread.start()
    try:
        assert holding.wait(DEADLINE)
        for n in range(50):  # far more keys than the bound, each used and released
            with table.hold(f"k{n}"):
                pass
        assert len(table) <= 3  # the bound, plus the lock in use
        slot = table._slots["a"]
        assert slot.lock is held[0]  # the same lock: a new user of "a" would wait for it
        assert not slot.lock.acquire(blocking=False)
    finally:
        release.set()
        thread.join(DEADLINE)
    for n in range(5):
        with table.hold(f"j{n}"):
            pass
    assert "a" not in table._slots  # idle now, so it may go
    assert len(table) <= 2


def test_lru_map_forgets_the_least_recently_used() -> None:
    cache = LruMap(size=3)
    for key in "abc":
        cache.put(key, key.upper())
    assert cache.get("a") == "A"  # now the most recent
    cache.put("d", "D")
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == ["A", "C", "D"]
    assert len(cache) == 3
