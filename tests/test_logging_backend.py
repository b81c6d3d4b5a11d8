"""LoggingBackend: passes the contract, logs every call, never payloads or full IDs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial

import pytest

import sessions_db as sdb
import sessions_db.aio
from sessions_db.backend import UnitOfWork
from sessions_db.logging_backend import LoggingUnitOfWork
from sessions_db.testing import StorageContract
from sessions_db.testing.contract import msg

from .conftest import sql_tamper

SECRET = "SECRET-PAYLOAD-7f3a"
USER = "user-secret-91"


def logged_manager(url: str) -> sdb.Manager:
    """A manager on ``url`` through a LoggingBackend (module level: picklable)."""
    return sdb.Manager(sdb.LoggingBackend(sdb.connect(url).backend))


class TestLoggingContract(StorageContract):
    """The whole contract through a LoggingBackend wrapping SQLite."""

    @pytest.fixture
    def store_kind(self) -> str:
        return "sqlite"

    @pytest.fixture
    def open_manager(self, store_url: str) -> Callable[[], sdb.Manager]:
        return partial(logged_manager, store_url)

    @pytest.fixture
    def tamper(self, store_url: str) -> Callable[..., None]:
        return partial(sql_tamper, store_url)


@pytest.fixture
def mgr(store_url: str) -> Iterator[sdb.Manager]:
    with logged_manager(store_url) as manager:
        yield manager


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sessions_db.storage"]


def test_logs_operations_without_private_data(
    mgr: sdb.Manager, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="sessions_db.storage"):
        sess = mgr.create("assistant", user_id=USER, metadata={"note": SECRET})
        sess.append_message(msg(f"my card is {SECRET}"))
        sess.append_messages([msg(SECRET), msg(SECRET, "assistant")])
        checkpoint = sess.checkpoint(metadata={"why": SECRET})
        sess.append_message(msg("later"))
        sess.restore(checkpoint.id)
        assert len(sess.get_messages(limit=2)) == 2
        mgr.get_or_create("assistant", USER)
        mgr.list("assistant", user_id=USER)
        with pytest.raises(sdb.SessionNotFoundError):
            mgr.get("00000000-0000-4000-8000-00000000beef")
        with pytest.raises(sdb.CheckpointNotFoundError):
            sess.restore("00000000-0000-4000-8000-00000000cafe")
    lines = _messages(caplog)
    short = sess.id[:8]
    assert f"append_entries session={short} entries=1 (message)" in "\n".join(lines)
    assert any(
        line.startswith(f"append_entries session={short} entries=2 (messagex2)") for line in lines
    )
    assert any(line.startswith(f"create_checkpoint session={short}") for line in lines)
    assert any(
        line.startswith(f"append_entries session={short} entries=1 (metadata) fork")
        for line in lines
    )
    assert any("load_messages" in line and "limit=2" in line for line in lines)
    assert any(
        line.startswith("load_session session=00000000 failed: SessionNotFoundError")
        for line in lines
    )
    assert any(
        line.startswith(f"load_session_checkpoint session={short} checkpoint=00000000 failed")
        and "CheckpointNotFoundError" in line
        for line in lines
    )
    assert all(line.endswith("ms") for line in lines)
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert failures
    assert {r.levelno for r in failures} == {logging.WARNING}
    everything = "\n".join(
        [*lines, *(str(r.args) for r in caplog.records), *(r.msg for r in caplog.records)]
    )
    for private in (SECRET, USER, sess.id, checkpoint.id, "00000000-0000-4000"):
        assert private not in everything


def test_level_and_logger(store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("app.sessions")
    with (
        sdb.Manager(
            sdb.LoggingBackend(sdb.connect(store_url).backend, logger=logger, level=logging.INFO)
        ) as mgr,
        caplog.at_level(logging.INFO, logger="app.sessions"),
    ):
        mgr.create("assistant")
    assert [(r.name, r.levelno) for r in caplog.records] == [("app.sessions", logging.INFO)]
    assert caplog.records[0].getMessage().startswith("save_session session=")


def test_quiet_when_disabled(mgr: sdb.Manager, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sessions_db.storage"):
        mgr.create("assistant").append_message(msg("x"))
    assert _messages(caplog) == []


def _public_methods(cls: type) -> set[str]:
    return {
        name
        for klass in cls.__mro__
        if klass is not object
        for name, value in vars(klass).items()
        if callable(value) and not name.startswith("_")
    }


def _defined_by(cls: type, name: str) -> type:
    return next(klass for klass in cls.__mro__ if name in vars(klass))


@pytest.mark.parametrize(
    ("interface", "wrapper"),
    [
        (sdb.StorageBackend, sdb.LoggingBackend),
        (UnitOfWork, LoggingUnitOfWork),
    ],
)
def test_wrappers_forward_every_method(interface: type, wrapper: type) -> None:
    """A wrapper overrides every public method of its interface, defaults included: a method
    left to the interface's default would silently replace the wrapped store's own."""
    methods = _public_methods(interface)
    assert {"search_messages", "list_messages", "find_or_create_session", "lock_session"} <= methods
    interfaces = set(interface.__mro__)
    # ``run`` is the interface's own: it does its work in the wrapper's unit of work.
    missing = sorted(name for name in methods - {"run"} if _defined_by(wrapper, name) in interfaces)
    assert missing == []


def test_the_threaded_adapter_forwards_units_of_work_and_releases() -> None:
    """Every awaited call is a unit of work of the wrapped store (its own calls, its own
    search and atomic get-or-create); only ``run``, ``release`` and ``close`` reach it."""
    interface = sdb.aio.AsyncStorageBackend
    for name in ("run", "release", "close"):
        assert _defined_by(sdb.aio.ThreadedBackend, name) is sdb.aio.ThreadedBackend
    derived = _public_methods(interface) - {"run", "release", "close"}
    assert all(_defined_by(sdb.aio.ThreadedBackend, name) is interface for name in derived)


RANKED = [
    "apple",
    "apple pie with apple sauce and apple cider",
    "banana bread, no apples here but an apple once",
    "a long story about an orchard, with many trees and one apple tree among the pears",
    "pear",
    "apple banana apple",
]


def test_a_wrapped_store_ranks_exactly_as_the_bare_one(sql_url: str) -> None:
    """Search through a LoggingBackend is the wrapped store's own full-text search."""
    with sdb.connect(sql_url) as bare:
        for agent in ("notes", "chat"):
            sess = bare.create(agent, user_id="u1")
            sess.append_messages([msg(text) for text in RANKED])
        bare.create("notes", user_id="u2").append_message(msg("apple"))
        wrapped = sdb.Manager(sdb.LoggingBackend(bare.backend))
        searches: list[tuple[str, str | None]] = [
            ("apple", None),
            ("apple banana", "notes"),
            ("tree pear", None),
        ]
        for query, only in searches:
            expected = bare.memory("u1", agent_name=only).search(query, limit=20)
            got = wrapped.memory("u1", agent_name=only).search(query, limit=20)
            assert [(h.session_id, h.message.id, h.score) for h in got] == [
                (h.session_id, h.message.id, h.score) for h in expected
            ]
            assert expected
        listed = bare.memory("u1").list(limit=None)
        assert wrapped.memory("u1").list(limit=None) == listed
        assert len(listed) == 2 * len(RANKED)
