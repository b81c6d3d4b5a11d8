"""A user's own backend of the seed's nine methods plugs into Manager and passes the contract:
sync and through ThreadedBackend, exact within one process (and across processes with a lock
that spans them); what it cannot do raises UnsupportedOperationError."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

import sessions_db as sdb
from sessions_db import aio
from sessions_db.testing import StorageContract
from sessions_db.testing.blocking import open_blocking
from sessions_db.testing.contract import msg

from . import own_backend
from .own_backend import JsonDirBackend

NINE = {
    "save_session",
    "load_session",
    "delete_session",
    "list_sessions",
    "append_entry",
    "load_entries",
    "save_checkpoint",
    "load_checkpoint",
    "close",
}


class NineMethods(StorageContract):
    """The contract on the nine-method backend; subclasses choose the API and the lock."""

    lists_agents = False
    exact_across_processes = False
    locked = False

    @pytest.fixture
    def root(self, tmp_path: Path) -> str:
        return str(tmp_path / "store")

    @pytest.fixture
    def tamper(self, root: str) -> Callable[..., None]:
        return partial(own_backend.tamper, root)


class TestNineMethodsSync(NineMethods):
    """Sync Manager, the default (process-local) unit of work."""

    @pytest.fixture
    def open_manager(self, root: str) -> Callable[[], sdb.Manager]:
        return partial(own_backend.open_manager, root, self.locked)


class TestNineMethodsThreaded(NineMethods):
    """AsyncManager over ThreadedBackend, the default unit of work."""

    @pytest.fixture
    def open_manager(self, root: str) -> Callable[[], sdb.Manager]:
        return partial(open_blocking, partial(own_backend.open_async_manager, root, self.locked))


class TestNineMethodsAcrossProcesses(TestNineMethodsSync):
    """A file lock as the unit of work: exact across processes too (the whole contract)."""

    exact_across_processes = True
    locked = True


def test_only_the_nine_methods_are_abstract(tmp_path: Path) -> None:
    assert sdb.SimpleBackend.__abstractmethods__ == NINE
    assert {name for name in vars(JsonDirBackend) if not name.startswith("_")} == NINE
    assert isinstance(sdb.Manager(JsonDirBackend(tmp_path)).backend, sdb.SimpleStorage)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[JsonDirBackend, sdb.Manager]]:
    simple = JsonDirBackend(tmp_path / "store")
    with sdb.Manager(simple) as mgr:
        yield simple, mgr


def test_operations_across_agents_are_unsupported(
    store: tuple[JsonDirBackend, sdb.Manager],
) -> None:
    _, mgr = store
    sess = mgr.create("notes", user_id="u1")
    sess.append_message(msg("apple pie"))
    for call in (
        mgr.list_agents,
        lambda: mgr.prune(__import__("datetime").timedelta(0)),
        lambda: mgr.memory("u1").search("apple"),
        lambda: mgr.memory("u1").list(),
    ):
        with pytest.raises(sdb.UnsupportedOperationError, match="list_agents"):
            call()
    assert [m.id for m in mgr.list("notes")] == [sess.id]  # nothing was pruned
    (hit,) = mgr.memory("u1", agent_name="notes").search("apple")
    assert hit.message.payload == {"content": "apple pie"}


def test_a_tenth_method_lists_agents(tmp_path: Path) -> None:
    class Listing(JsonDirBackend):
        def list_agents(self) -> list[str]:
            paths = (self.root / "sessions").glob("*.json")
            return [
                sdb.SessionMetadata.model_validate_json(p.read_bytes()).agent_name for p in paths
            ]

    with sdb.Manager(Listing(tmp_path)) as mgr:
        for agent in ("beta", "alpha", "beta"):
            mgr.create(agent, user_id="u1").append_message(msg(f"hello {agent}"))
        assert mgr.list_agents() == ["alpha", "beta"]
        assert len(mgr.memory("u1").search("hello", limit=10)) == 3


def test_an_append_cut_short_is_invisible_and_can_be_repeated(
    store: tuple[JsonDirBackend, sdb.Manager],
) -> None:
    simple, mgr = store
    sess = mgr.create("notes")
    sess.append_message(msg("kept"))
    before = (sess.info(), sess.get_entries(), sess.get_messages())
    lost = msg("cut short")
    # the process died after append_entry, before save_session committed the append
    simple.append_entry(sess.id, sdb.SessionEntry.for_message(lost))
    assert (sess.info(), sess.get_entries(), sess.get_messages()) == before
    sess.append_messages([lost, msg("next")])
    assert [m.payload["content"] for m in sess.get_messages()] == ["kept", "cut short", "next"]
    assert sess.info().message_count == 3
    ids = [e.id for e in sess.get_entries()]
    assert len(ids) == len(set(ids)) == 3


def test_async_manager_through_threaded_backend(tmp_path: Path) -> None:
    async def main() -> None:
        async with aio.AsyncManager(aio.ThreadedBackend(JsonDirBackend(tmp_path))) as mgr:
            sess = await mgr.create("notes")
            await asyncio.gather(*(sess.append_message(msg(str(i))) for i in range(20)))
            assert (await sess.info()).message_count == 20
            with pytest.raises(sdb.UnsupportedOperationError):
                await mgr.list_agents()

    asyncio.run(main())


def test_logging_a_nine_method_backend(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with (
        sdb.Manager(sdb.LoggingBackend(JsonDirBackend(tmp_path))) as mgr,
        caplog.at_level(logging.DEBUG, logger="sessions_db.storage"),
    ):
        mgr.create("notes").append_message(msg("x"))
    assert [r.getMessage().split()[0] for r in caplog.records] == ["save_session", "append_entries"]
