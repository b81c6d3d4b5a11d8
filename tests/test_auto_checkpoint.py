"""Automatic checkpoints (``checkpoint.auto_save``), driven by a hand-moved clock."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

import sessions_db as sdb
from sessions_db.aio import AsyncManager
from sessions_db.backend import CallsUnitOfWork, UnitOfWork
from sessions_db.testing.contract import msg

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
INTERVAL = timedelta(minutes=5)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def at(self, minutes: float) -> None:
        self.now = T0 + timedelta(minutes=minutes)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def plain(store_url: str) -> Iterator[sdb.Manager]:
    with sdb.connect(store_url) as mgr:
        yield mgr


@pytest.fixture
def mgr(plain: sdb.Manager, clock: Clock) -> sdb.Manager:
    return sdb.Manager(plain.backend, clock=clock, auto_checkpoint=INTERVAL)


def _times(session: sdb.Session) -> list[float]:
    return [(c.timestamp - T0).total_seconds() / 60 for c in session.list_checkpoints()]


def test_due_interval_after_creation_then_after_the_last_checkpoint(
    mgr: sdb.Manager, clock: Clock
) -> None:
    sess = mgr.create("assistant")
    clock.at(1)
    sess.append_message(msg("1m"))
    clock.at(4.99)
    sess.append_message(msg("4.99m"))
    assert _times(sess) == []
    clock.at(5)  # exactly the interval since creation: due
    sess.append_message(msg("5m"))
    assert _times(sess) == [5]
    auto = sess.list_checkpoints()[0]
    assert auto.metadata == {"auto": True}
    entries = sess.get_entries()
    assert entries[-1].id == auto.entry_id  # taken right after the append, at the new leaf
    assert entries[-2].data["payload"] == {"content": "5m"}
    clock.at(9)
    sess.append_message(msg("9m"))
    assert _times(sess) == [5]
    clock.at(30)  # long idle: one checkpoint, not one per missed interval
    sess.append_message(msg("30m"))
    assert _times(sess) == [5, 30]
    # A manual checkpoint counts as the last one.
    clock.at(32)
    sess.checkpoint(metadata={"label": "manual"})
    clock.at(36)
    sess.append_message(msg("36m"))
    assert _times(sess) == [5, 30, 32]
    clock.at(37)
    sess.append_message(msg("37m"))
    assert _times(sess) == [5, 30, 32, 37]
    assert [m.payload["content"] for m in sess.get_messages()] == [
        "1m",
        "4.99m",
        "5m",
        "9m",
        "30m",
        "36m",
        "37m",
    ]


def test_a_batch_takes_one_checkpoint_after_it(mgr: sdb.Manager, clock: Clock) -> None:
    sess = mgr.create("assistant")
    clock.at(10)
    sess.append_messages([msg("a"), msg("b"), msg("c")])
    assert _times(sess) == [10]
    assert sess.get_entries()[-2].data["payload"] == {"content": "c"}


def test_only_message_appends_trigger(mgr: sdb.Manager, clock: Clock) -> None:
    sess = mgr.create("assistant")
    sess.append_message(msg("a"))
    manual = sess.checkpoint()
    clock.at(20)
    sess.restore(manual.id)
    sess.append_messages([])
    assert len(sess.list_checkpoints()) == 1
    sess.append_message(msg("b"))
    assert _times(sess) == [0, 20]


def test_restored_auto_checkpoint_carries_its_branch(mgr: sdb.Manager, clock: Clock) -> None:
    sess = mgr.create("assistant")
    clock.at(5)
    sess.append_message(msg("kept"))
    auto = sess.list_checkpoints()[0]
    clock.at(6)
    sess.append_message(msg("dropped"))
    sess.restore(auto.id)
    assert [m.payload["content"] for m in sess.get_messages()] == ["kept"]


def test_off_by_default(plain: sdb.Manager, clock: Clock) -> None:
    mgr = sdb.Manager(plain.backend, clock=clock)
    assert mgr.auto_checkpoint is None
    sess = mgr.create("assistant")
    clock.at(60)
    sess.append_message(msg("a"))
    assert sess.list_checkpoints() == []


def test_interval_must_be_positive(plain: sdb.Manager) -> None:
    with pytest.raises(sdb.InvalidArgumentError):
        sdb.Manager(plain.backend, auto_checkpoint=timedelta(0))


def test_configuration_turns_it_on(store_url: str) -> None:
    config = {"checkpoint": {"auto_save": True, "interval": "30s"}}
    with sdb.connect(store_url, config=config) as mgr:
        assert mgr.auto_checkpoint == timedelta(seconds=30)
    with sdb.connect(store_url, config={"checkpoint": {"interval": "30s"}}) as mgr:
        assert mgr.auto_checkpoint is None


class _NoCheckpoints(sdb.LoggingBackend):
    """The store under test, with checkpoints failing as if the server were gone."""

    fail = True

    def unit_of_work(self, *, write: bool = True) -> UnitOfWork:
        # Every call of the manager's units of work goes through this wrapper's calls.
        return CallsUnitOfWork(self)

    def create_checkpoint(self, session_id: str, new: sdb.NewCheckpoint) -> sdb.Checkpoint:
        if self.fail:
            raise sdb.StorageUnavailableError("checkpoint refused")
        return super().create_checkpoint(session_id, new)


def test_a_failed_checkpoint_does_not_fail_the_append(
    plain: sdb.Manager, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    backend = _NoCheckpoints(plain.backend)
    mgr = sdb.Manager(backend, clock=clock, auto_checkpoint=INTERVAL)
    sess = mgr.create("assistant")
    clock.at(5)
    with caplog.at_level(logging.WARNING, logger="sessions_db"):
        sess.append_message(msg("stored"))
    assert [m.payload["content"] for m in sess.get_messages()] == ["stored"]
    assert sess.list_checkpoints() == []
    assert any("automatic checkpoint" in r.getMessage() for r in caplog.records)
    assert all(sess.id not in r.getMessage() for r in caplog.records)
    backend.fail = False
    clock.at(6)
    sess.append_message(msg("next"))  # still due: the next append takes it
    assert _times(sess) == [6]


def test_racing_appends_take_one_checkpoint_per_interval(mgr: sdb.Manager, clock: Clock) -> None:
    sess = mgr.create("assistant")
    clock.at(6)  # due for every one of the racers
    barrier = threading.Barrier(8)

    def append(i: int) -> None:
        barrier.wait(timeout=30)
        mgr.get(sess.id).append_message(msg(f"racer {i}"))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(append, range(8)))
    assert len(sess.get_messages()) == 8
    assert _times(sess) == [6]


def test_racing_async_appends_take_one_checkpoint_per_interval(
    store_url: str, clock: Clock
) -> None:
    async def scenario() -> list[float]:
        async with await sdb.aio.connect(store_url) as plain:
            amgr = AsyncManager(plain.backend, clock=clock, auto_checkpoint=INTERVAL)
            sess = await amgr.create("assistant")
            clock.at(6)
            handles = [await amgr.get(sess.id) for _ in range(8)]
            await asyncio.gather(
                *(h.append_message(msg(f"task {i}")) for i, h in enumerate(handles))
            )
            assert len(await sess.get_messages()) == 8
            return [(c.timestamp - T0).total_seconds() / 60 for c in await sess.list_checkpoints()]

    assert asyncio.run(scenario()) == [6]
