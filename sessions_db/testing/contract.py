"""The backend contract, as pytest test methods (see :mod:`sessions_db.testing`)."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import sessions_db as sdb
from sessions_db import Message

from .entries import EntryReadsContract
from .helpers import contents, msg
from .operations import OperationsContract

OpenManager = Callable[[], sdb.Manager]
Tamper = Callable[[sdb.Manager, str, str, dict[str, Any]], None]


def assert_one_chain(session: sdb.Session) -> None:
    """Check the entry tree: parents exist, IDs are unique, the leaf is the newest entry."""
    entries = session.get_entries()
    ids = [e.id for e in entries]
    assert len(ids) == len(set(ids))
    known: set[str] = set()
    for entry in entries:
        assert entry.parent_id is None or entry.parent_id in known
        known.add(entry.id)
    info = session.info()
    assert info.current_leaf == (entries[-1].id if entries else None)
    assert info.message_count == len(session.get_messages())


def _append_worker(open_manager: OpenManager, session_id: str, worker: int, count: int) -> None:
    with open_manager() as mgr:
        session = mgr.get(session_id)
        for i in range(count):
            session.append_message(msg(f"p{worker}-{i}"))


def _create_worker(open_manager: OpenManager, user: str) -> str:
    with open_manager() as mgr:
        return mgr.get_or_create("racer", user).id


class _Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


BAD_PAYLOADS: list[tuple[str, Any]] = [
    ("nul", {"content": "a\x00b"}),
    ("nul-key", {"a\x00": 1}),
    ("lone-surrogate", {"content": "\ud800"}),
    ("nan", {"x": float("nan")}),
    ("inf", {"x": float("inf")}),
    ("-inf", {"x": [float("-inf")]}),
    ("object", {"x": object()}),
    ("set", {"x": {1, 2}}),
    ("tuple", {"x": (1, 2)}),
    ("bytes", {"x": b"raw"}),
    ("datetime", {"x": datetime(2024, 1, 1, tzinfo=UTC)}),
    ("int-key", {1: "one"}),
    ("deep", {"x": __import__("functools").reduce(lambda acc, _: [acc], range(300), [])}),
    ("not-a-dict", ["content"]),
]

GOOD_PAYLOADS: list[tuple[str, dict[str, Any]]] = [
    ("empty", {}),
    ("unicode", {"content": "héllo wörld ✓ 日本語 🙂", "emoji🙂": "key"}),
    ("numbers", {"i": 2**63 + 1, "neg": -7, "f": 0.1, "tiny": 1.5e-7, "big": 1e300, "zero": 0.0}),
    ("nested", {"a": {"b": [1, {"c": [True, False, None]}, "x"]}, "list": []}),
    ("escapes", {"content": 'quote " backslash \\ newline \n tab \t \\u0000 text'}),
    ("tool-call", {"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]}),
    ("long", {"content": "x" * 100_000}),
]


class StorageContract(OperationsContract, EntryReadsContract):
    """The behaviour every backend shares; subclass it with the fixtures described above.

    Two class attributes describe what a backend does not claim: set
    ``lists_agents = False`` for one that cannot list its agents (a
    :class:`~sessions_db.SimpleBackend` without ``list_agents``: the suite then
    checks that those operations raise ``UnsupportedOperationError``), and
    ``exact_across_processes = False`` for one that is exact within one process
    only (the multi-process tests are then skipped).
    """

    #: Whether the backend lists its agents (else it raises ``UnsupportedOperationError``).
    lists_agents: bool = True
    #: Whether managers in several processes share the store exactly.
    exact_across_processes: bool = True

    def _needs_processes(self) -> None:
        if not self.exact_across_processes:
            pytest.skip("the backend is exact within one process only")

    # -- fixtures ---------------------------------------------------------------

    @pytest.fixture
    def mgr(self, open_manager: OpenManager) -> Iterator[sdb.Manager]:
        """Open a manager on the store under test."""
        manager = open_manager()
        yield manager
        manager.close()

    @pytest.fixture
    def session(self, mgr: sdb.Manager) -> sdb.Session:
        """Create a session of agent ``assistant`` for ``user-1``."""
        return mgr.create("assistant", user_id="user-1", metadata={"source": "test"})

    # -- sessions ---------------------------------------------------------------

    def test_create_and_get(self, mgr: sdb.Manager) -> None:
        created = mgr.create("assistant", user_id="user-1", metadata={"locale": "en-US"})
        got = mgr.get(created.id)
        assert (got.id, got.agent_name, got.user_id, got.metadata) == (
            created.id,
            "assistant",
            "user-1",
            {"locale": "en-US"},
        )
        info = got.info()
        assert info.message_count == 0
        assert info.current_leaf is None
        assert info.created_at.tzinfo is not None
        assert info.created_at.utcoffset() == timedelta(0)
        assert abs(info.created_at - datetime.now(UTC)) < timedelta(minutes=5)

    def test_session_ids_are_uuid4(self, mgr: sdb.Manager) -> None:
        import uuid

        ids = {mgr.create("assistant").id for _ in range(5)}
        assert len(ids) == 5
        assert all(uuid.UUID(i).version == 4 for i in ids)

    def test_get_unknown_session(self, mgr: sdb.Manager) -> None:
        with pytest.raises(sdb.SessionNotFoundError):
            mgr.get("00000000-0000-4000-8000-000000000000")

    @pytest.mark.parametrize(
        "bad",
        [
            "",
            "../../etc/passwd",
            "..",
            "/abs/path",
            "a/b",
            "not-a-uuid",
            "00000000-0000-4000-8000-00000000000G",
            "00000000-0000-4000-8000-000000000000/..",
            "00000000-0000-4000-8000-000000000000\x00",
            "' OR 1=1 --",
            None,
            42,
        ],
    )
    def test_malformed_session_ids(self, mgr: sdb.Manager, bad: Any) -> None:
        with pytest.raises(sdb.InvalidIDError):
            mgr.get(bad)
        with pytest.raises(sdb.InvalidIDError):
            mgr.delete(bad)

    @pytest.mark.parametrize("bad", ["", "../x", ".hidden", "a/b", "a\\b", "a\x00", "x" * 200, 7])
    def test_malformed_agent_names(self, mgr: sdb.Manager, bad: Any) -> None:
        with pytest.raises(sdb.InvalidIDError):
            mgr.create(bad)
        with pytest.raises(sdb.InvalidIDError):
            mgr.list(bad)

    @pytest.mark.parametrize("bad", ["a\x00b", "line\nbreak", "x" * 300, "\ud800", 5])
    def test_malformed_user_ids(self, mgr: sdb.Manager, bad: Any) -> None:
        with pytest.raises(sdb.InvalidIDError):
            mgr.create("assistant", user_id=bad)
        assert mgr.list("assistant") == []

    def test_get_with_user_id_never_reveals_other_users(self, mgr: sdb.Manager) -> None:
        mine = mgr.create("assistant", user_id="alice")
        anonymous = mgr.create("assistant")
        assert mgr.get(mine.id, user_id="alice").id == mine.id
        with pytest.raises(sdb.SessionNotFoundError):
            mgr.get(mine.id, user_id="bob")
        with pytest.raises(sdb.SessionNotFoundError):
            mgr.get(anonymous.id, user_id="bob")
        assert [s.id for s in mgr.list("assistant", user_id="bob")] == []

    def test_get_or_create(self, mgr: sdb.Manager) -> None:
        first = mgr.get_or_create("assistant", "user-1")
        assert mgr.get_or_create("assistant", "user-1").id == first.id
        second = mgr.create("assistant", user_id="user-1")
        # the most recently updated one wins
        assert mgr.get_or_create("assistant", "user-1").id == second.id
        first.append_message(msg("newer"))
        assert mgr.get_or_create("assistant", "user-1").id == first.id
        # other user, other agent, and no user: new sessions
        assert mgr.get_or_create("assistant", "user-2").id not in (first.id, second.id)
        assert mgr.get_or_create("other", "user-1").id not in (first.id, second.id)
        anonymous = {mgr.get_or_create("assistant", None).id, mgr.get_or_create("assistant", "").id}
        assert len(anonymous) == 2
        assert len(mgr.list("assistant")) == 5

    def test_list_order_filter_and_paging(self, mgr: sdb.Manager) -> None:
        made = [mgr.create("assistant", user_id="u" if i % 2 else "v") for i in range(6)]
        mgr.create("other-agent", user_id="u")
        made[0].append_message(msg("bump"))  # now the most recently updated
        listed = mgr.list("assistant")
        assert listed[0].id == made[0].id
        assert len(listed) == 6
        stamps = [m.updated_at for m in listed]
        assert stamps == sorted(stamps, reverse=True)
        assert {m.id for m in mgr.list("assistant", user_id="u")} == {
            s.id for s in made if s.user_id == "u"
        }
        pages = [mgr.list("assistant", limit=4, offset=0), mgr.list("assistant", limit=4, offset=4)]
        assert [len(p) for p in pages] == [4, 2]
        assert [m.id for p in pages for m in p] == [m.id for m in listed]
        assert mgr.list("assistant", limit=0) == []
        assert mgr.list("nobody") == []
        assert listed[0].message_count == 1
        with pytest.raises(sdb.InvalidArgumentError):
            mgr.list("assistant", limit=-1)
        with pytest.raises(sdb.InvalidArgumentError):
            mgr.list("assistant", offset=-1)

    def test_delete(self, mgr: sdb.Manager, session: sdb.Session) -> None:
        keep = mgr.create("assistant")
        keep.append_message(msg("kept"))
        session.append_message(msg("gone"))
        checkpoint = session.checkpoint()
        mgr.delete(session.id)
        with pytest.raises(sdb.SessionNotFoundError):
            mgr.get(session.id)
        with pytest.raises(sdb.SessionNotFoundError):
            mgr.delete(session.id)
        with pytest.raises(sdb.SessionNotFoundError):
            session.get_messages()
        with pytest.raises(sdb.SessionNotFoundError):
            session.append_message(msg("late"))
        with pytest.raises(sdb.CheckpointNotFoundError):
            mgr.backend.load_checkpoint(checkpoint.id)
        assert [m.id for m in mgr.list("assistant")] == [keep.id]
        assert contents(mgr.get(keep.id)) == ["kept"]

    def test_list_agents(self, mgr: sdb.Manager) -> None:
        if not self.lists_agents:
            mgr.create("alpha")
            with pytest.raises(sdb.UnsupportedOperationError):
                mgr.list_agents()
            return
        assert mgr.list_agents() == []
        for agent in ["beta", "alpha", "beta"]:
            mgr.create(agent)
        assert mgr.list_agents() == ["alpha", "beta"]

    def test_prune(self, open_manager: OpenManager) -> None:
        clock = _Clock(datetime(2026, 1, 1, tzinfo=UTC))
        with open_manager() as plain:
            backend = plain.backend
            mgr = type(plain)(backend, clock=clock)  # the same API, with a clock of ours
            old = mgr.create("assistant")
            old.append_message(msg("old"))
            old.checkpoint()
            other_agent_old = mgr.create("other")
            clock.now += timedelta(days=40)
            fresh = mgr.create("assistant")
            fresh.append_message(msg("fresh"))
            if self.lists_agents:
                assert mgr.prune(timedelta(days=30), dry_run=True) == sorted(
                    [old.id, other_agent_old.id]
                )
            else:
                for dry_run in (True, False):
                    with pytest.raises(sdb.UnsupportedOperationError):
                        mgr.prune(timedelta(days=30), dry_run=dry_run)
                assert mgr.prune(timedelta(days=30), agent_name="assistant", dry_run=True) == [
                    old.id
                ]
            assert len(mgr.list("assistant")) == 2
            assert mgr.prune(timedelta(days=30), agent_name="assistant") == [old.id]
            assert [s.id for s in mgr.list("assistant")] == [fresh.id]
            assert [s.id for s in mgr.list("other")] == [other_agent_old.id]
            everyone = None if self.lists_agents else "other"
            assert mgr.prune(clock.now - timedelta(days=30), agent_name=everyone) == [
                other_agent_old.id
            ]
            with pytest.raises(sdb.SessionNotFoundError):
                mgr.get(old.id)
            assert contents(mgr.get(fresh.id)) == ["fresh"]
            with pytest.raises(sdb.InvalidArgumentError):
                mgr.prune(timedelta(days=-1))

    # -- messages ---------------------------------------------------------------

    def test_messages_read_back_identical(self, mgr: sdb.Manager, session: sdb.Session) -> None:
        sent = [
            Message.new(role, p)
            for (_, p), role in zip(GOOD_PAYLOADS, ["user", "assistant"] * 9, strict=False)
        ]
        for message in sent:
            session.append_message(message)
        got = mgr.get(session.id).get_messages()
        assert got == sent
        assert [m.payload for m in got] == [m.payload for m in sent]
        assert all(m.timestamp.tzinfo is not None for m in got)

    def test_message_count_and_updated_at(self, session: sdb.Session) -> None:
        before = session.info().updated_at
        session.append_message(msg("one"))
        session.append_messages([msg("two"), msg("three")])
        info = session.info()
        assert info.message_count == 3
        assert info.updated_at >= before
        assert info.current_leaf == session.get_messages()[-1].id

    def test_batch_is_ordered(self, session: sdb.Session) -> None:
        session.append_messages([msg(str(i)) for i in range(20)])
        assert contents(session) == [str(i) for i in range(20)]
        session.append_messages([])
        assert session.info().message_count == 20

    @pytest.mark.parametrize(("name", "bad"), BAD_PAYLOADS, ids=[n for n, _ in BAD_PAYLOADS])
    def test_bad_payload_at_new(self, name: str, bad: Any) -> None:
        with pytest.raises(sdb.PayloadError):
            Message.new("user", bad)

    @pytest.mark.parametrize(
        ("name", "bad"), BAD_PAYLOADS[:13], ids=[n for n, _ in BAD_PAYLOADS[:13]]
    )
    def test_bad_payload_at_append_stores_nothing(
        self, session: sdb.Session, name: str, bad: dict[Any, Any]
    ) -> None:
        session.append_message(msg("before"))
        message = msg("placeholder")
        message.payload.clear()
        message.payload.update(bad)  # changed after it was checked
        with pytest.raises(sdb.PayloadError):
            session.append_message(message)
        with pytest.raises(sdb.PayloadError):
            session.append_messages([msg("ok"), message, msg("ok too")])
        assert contents(session) == ["before"]
        assert session.info().message_count == 1

    def test_bad_metadata(self, mgr: sdb.Manager, session: sdb.Session) -> None:
        with pytest.raises(sdb.PayloadError):
            mgr.create("assistant", metadata={"x": float("nan")})
        with pytest.raises(sdb.PayloadError):
            session.checkpoint(metadata={"x": "\x00"})
        assert session.list_checkpoints() == []

    def test_not_a_message(self, session: sdb.Session) -> None:
        with pytest.raises(sdb.PayloadError):
            session.append_message({"type": "user", "payload": {}})  # type: ignore[arg-type]
        assert session.get_messages() == []

    def test_bad_message_fields(self) -> None:
        with pytest.raises(sdb.PayloadError):
            Message.new("", {})
        with pytest.raises(sdb.InvalidIDError):
            Message.new("user", {}, id="../escape")
        with pytest.raises(sdb.PayloadError):
            Message.new("user", {}, timestamp=datetime(2024, 1, 1))  # naive
        with pytest.raises(sdb.PayloadError):
            Message(type="user", payload={})  # type: ignore[call-arg]

    def test_duplicate_message_id(self, session: sdb.Session) -> None:
        first = msg("once")
        session.append_message(first)
        with pytest.raises(sdb.DuplicateEntryError):
            session.append_message(first)
        with pytest.raises(sdb.DuplicateEntryError):
            session.append_messages([msg("new"), first])
        twice = msg("twice")
        with pytest.raises(sdb.DuplicateEntryError):
            session.append_messages([twice, twice])
        assert contents(session) == ["once"]
        assert session.info().message_count == 1

    def test_limit_and_before_paging(self, session: sdb.Session) -> None:
        session.append_messages([msg(str(i)) for i in range(10)])
        session.checkpoint()  # a non-message entry at the leaf
        assert contents(session, limit=3) == ["7", "8", "9"]
        assert contents(session, limit=100) == [str(i) for i in range(10)]
        assert contents(session, limit=0) == []
        pages: list[list[str]] = []
        cursor: str | None = None
        while True:
            page = session.get_messages(limit=4, before=cursor)
            if not page:
                break
            pages.append([m.payload["content"] for m in page])
            cursor = page[0].id
        assert pages == [["6", "7", "8", "9"], ["2", "3", "4", "5"], ["0", "1"]]
        third = session.get_messages()[3]
        assert contents(session, before=third.id) == ["0", "1", "2"]
        with pytest.raises(sdb.InvalidArgumentError):
            session.get_messages(limit=-1)
        with pytest.raises(sdb.EntryNotFoundError):
            session.get_messages(before="no-such-message")
        with pytest.raises(sdb.InvalidIDError):
            session.get_messages(before="../x")
        checkpoint_entry = session.list_checkpoints()[0].entry_id
        with pytest.raises(sdb.EntryNotFoundError):
            session.get_messages(before=checkpoint_entry)

    def test_empty_session(self, session: sdb.Session) -> None:
        assert session.get_messages() == []
        assert session.get_messages(limit=5) == []
        assert session.get_entries() == []
        assert session.list_checkpoints() == []

    # -- checkpoints and branches -------------------------------------------------

    def test_checkpoint_restore_branch(
        self, open_manager: OpenManager, mgr: sdb.Manager, session: sdb.Session
    ) -> None:
        session.append_messages([msg("q1"), msg("a1", "assistant")])
        cp1 = session.checkpoint(metadata={"label": "after a1"})
        assert cp1.session_id == session.id
        assert cp1.metadata == {"label": "after a1"}
        assert cp1.checksum.startswith("sha256:")
        assert session.info().current_leaf == cp1.entry_id
        session.append_messages([msg("q2"), msg("a2-first", "assistant")])
        cp_a = session.checkpoint()
        assert session.restore(cp1.id).id == cp1.id
        assert contents(session) == ["q1", "a1"]
        assert session.info().message_count == 2
        session.append_messages([msg("q2b"), msg("a2-second", "assistant")])
        assert contents(session) == ["q1", "a1", "q2b", "a2-second"]
        # durable: a new manager (a restart) sees the restored branch
        with open_manager() as again:
            assert contents(again.get(session.id)) == ["q1", "a1", "q2b", "a2-second"]
        # nothing was deleted: the other branch comes back whole
        session.restore(cp_a.id)
        assert contents(session) == ["q1", "a1", "q2", "a2-first"]
        assert session.info().message_count == 4
        entries = session.get_entries()
        assert sum(e.type is sdb.EntryType.MESSAGE for e in entries) == 6
        assert [c.id for c in session.list_checkpoints()] == [cp1.id, cp_a.id]
        assert_one_chain(session)

    def test_restore_records_the_fork(self, session: sdb.Session) -> None:
        session.append_message(msg("q1"))
        checkpoint = session.checkpoint()
        session.append_message(msg("dropped"))
        session.restore(checkpoint.id)
        entries = session.get_entries()
        marker = entries[-1]
        assert marker.type is sdb.EntryType.METADATA
        assert marker.parent_id == checkpoint.entry_id
        assert marker.data == {"event": "restore", "checkpoint_id": checkpoint.id}
        cp_entry = next(e for e in entries if e.id == checkpoint.entry_id)
        assert cp_entry.type is sdb.EntryType.CHECKPOINT
        assert cp_entry.data == {"checkpoint_id": checkpoint.id}

    def test_checkpoint_of_empty_session(self, session: sdb.Session) -> None:
        checkpoint = session.checkpoint()
        session.append_message(msg("later"))
        session.restore(checkpoint.id)
        assert session.get_messages() == []
        assert session.info().message_count == 0

    def test_restore_errors(self, mgr: sdb.Manager, session: sdb.Session) -> None:
        other = mgr.create("assistant")
        other.append_message(msg("theirs"))
        theirs = other.checkpoint()
        session.append_message(msg("mine"))
        leaf = session.info().current_leaf
        with pytest.raises(sdb.CheckpointNotFoundError):
            session.restore(theirs.id)
        with pytest.raises(sdb.CheckpointNotFoundError):
            session.restore("00000000-0000-4000-8000-000000000000")
        with pytest.raises(sdb.InvalidIDError):
            session.restore("../../checkpoints/x")
        assert session.info().current_leaf == leaf
        assert contents(other) == ["theirs"]

    def test_tampering_is_caught(
        self, mgr: sdb.Manager, session: sdb.Session, tamper: Tamper
    ) -> None:
        session.append_messages([msg("q1"), msg("a1", "assistant")])
        checkpoint = session.checkpoint()
        session.append_message(msg("q2"))
        leaf = session.info().current_leaf
        first = session.get_messages()[0]
        tamper(mgr, session.id, first.id, {"role": "user", "payload": {"content": "forged"}})
        with pytest.raises(sdb.ChecksumMismatchError):
            session.restore(checkpoint.id)
        info = session.info()
        assert info.current_leaf == leaf
        assert info.message_count == 3

    def test_checksum_is_stable_across_reads(self, session: sdb.Session) -> None:
        session.append_message(Message.new("user", dict(GOOD_PAYLOADS[2][1])))
        checkpoint = session.checkpoint()
        for _ in range(2):
            session.restore(checkpoint.id)  # verifies the checksum each time
        assert session.info().message_count == 1

    # -- lifecycle --------------------------------------------------------------

    def test_closed_manager(self, open_manager: OpenManager) -> None:
        mgr = open_manager()
        session = mgr.create("assistant")
        mgr.close()
        mgr.close()  # idempotent
        assert mgr.closed
        calls: list[Callable[[], Any]] = [
            lambda: mgr.create("assistant"),
            lambda: mgr.get(session.id),
            lambda: mgr.list("assistant"),
            lambda: mgr.delete(session.id),
            lambda: mgr.get_or_create("assistant", "u"),
            lambda: session.append_message(msg("x")),
            lambda: session.get_messages(),
            lambda: session.checkpoint(),
        ]
        for call in calls:
            with pytest.raises(sdb.StorageClosedError):
                call()
        with open_manager() as again:
            assert again.get(session.id).get_messages() == []

    def test_closed_session(self, mgr: sdb.Manager, session: sdb.Session) -> None:
        session.append_message(msg("kept"))
        session.close()
        session.close()
        with pytest.raises(sdb.StorageClosedError):
            session.get_messages()
        assert contents(mgr.get(session.id)) == ["kept"]

    def test_context_managers(self, open_manager: OpenManager) -> None:
        with open_manager() as mgr:
            with mgr.create("assistant") as session:
                session.append_message(msg("x"))
            sid = session.id
        assert mgr.closed
        with open_manager() as mgr:
            assert contents(mgr.get(sid)) == ["x"]

    # -- concurrency ------------------------------------------------------------

    def test_threads_append_to_one_session(self, mgr: sdb.Manager, session: sdb.Session) -> None:
        workers, each = 8, 25
        barrier = threading.Barrier(workers)

        def work(worker: int) -> None:
            mine = mgr.get(session.id)
            barrier.wait()
            for i in range(each):
                mine.append_message(msg(f"t{worker}-{i}"))

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, range(workers)))
        got = contents(session)
        assert sorted(got) == sorted(f"t{w}-{i}" for w in range(workers) for i in range(each))
        for w in range(workers):  # each writer's own order is kept
            assert [c for c in got if c.startswith(f"t{w}-")] == [f"t{w}-{i}" for i in range(each)]
        assert session.info().message_count == workers * each
        assert_one_chain(session)

    def test_threads_checkpoint_while_appending(
        self, mgr: sdb.Manager, session: sdb.Session
    ) -> None:
        def append(worker: int) -> None:
            for i in range(15):
                session.append_message(msg(f"w{worker}-{i}"))

        def checkpoint() -> None:
            for _ in range(5):
                session.checkpoint()

        with ThreadPoolExecutor(5) as pool:
            futures = [pool.submit(append, w) for w in range(4)] + [pool.submit(checkpoint)]
            for future in futures:
                future.result()
        assert session.info().message_count == 60
        assert len(session.list_checkpoints()) == 5
        for checkpoint_ in session.list_checkpoints():
            session.restore(checkpoint_.id)  # every checksum verifies
        assert_one_chain(session)

    def test_processes_append_to_one_session(
        self, open_manager: OpenManager, session: sdb.Session
    ) -> None:
        self._needs_processes()
        workers, each = 4, 20
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers) as pool:
            pool.starmap(
                _append_worker, [(open_manager, session.id, w, each) for w in range(workers)]
            )
        got = contents(session)
        assert sorted(got) == sorted(f"p{w}-{i}" for w in range(workers) for i in range(each))
        assert session.info().message_count == workers * each
        assert_one_chain(session)

    def test_get_or_create_races_to_one_session(self, open_manager: OpenManager) -> None:
        self._needs_processes()
        context = multiprocessing.get_context("spawn")
        with context.Pool(4) as pool:
            ids = pool.starmap(_create_worker, [(open_manager, "racing-user")] * 8)
        assert len(set(ids)) == 1

    # -- erasure ------------------------------------------------------------------

    def test_erase_user(self, mgr: sdb.Manager) -> None:
        mine = [mgr.create(agent, user_id="erased") for agent in ("alpha", "beta", "beta")]
        for sess in mine:
            sess.append_message(msg("forget me"))
            sess.checkpoint()
        others = [mgr.create("beta", user_id="kept"), mgr.create("beta")]
        for sess in others:
            sess.append_message(msg("keep me"))
        if not self.lists_agents:
            with pytest.raises(sdb.UnsupportedOperationError):
                mgr.erase_user("erased")
            assert len(mgr.list("beta", user_id="erased")) == 2
            return
        for bad in ("", " ", None):
            with pytest.raises(sdb.InvalidIDError):
                mgr.erase_user(bad)  # type: ignore[arg-type]
        assert mgr.erase_user("erased") == 3
        for sess in mine:
            with pytest.raises(sdb.SessionNotFoundError):
                mgr.get(sess.id)
        assert mgr.list("alpha") == []
        assert {m.id for m in mgr.list("beta")} == {s.id for s in others}
        assert [contents(mgr.get(s.id)) for s in others] == [["keep me"], ["keep me"]]
        assert mgr.erase_user("erased") == 0


__all__ = [
    "BAD_PAYLOADS",
    "GOOD_PAYLOADS",
    "OpenManager",
    "StorageContract",
    "Tamper",
    "assert_one_chain",
    "contents",
    "msg",
]
