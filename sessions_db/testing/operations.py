"""The contract of the session operations frameworks build on (see :mod:`sessions_db.testing`).

Fork, rewind, pop, clear, metadata updates, the token budget, external keys and
filtered, keyset-paged listing: the same on every store, sync and async.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

import sessions_db as sdb
from sessions_db import Message

from .helpers import contents, msg


def _events(session: sdb.Session) -> list[str]:
    return [
        e.data["event"]
        for e in session.get_entries()
        if e.type is sdb.EntryType.METADATA and "event" in e.data
    ]


class OperationsContract:
    """Fork, rewind, pop, clear, metadata, token budgets, keys and listing, on one store.

    Uses the ``mgr`` and ``session`` fixtures of :class:`~sessions_db.testing.StorageContract`.
    """

    # -- fork -------------------------------------------------------------------

    def test_fork_copies_the_branch_and_leaves_the_source(
        self, mgr: sdb.Manager, session: sdb.Session
    ) -> None:
        first = [msg("a"), msg("b", "assistant"), msg("c")]
        session.append_messages(first)
        fork = session.fork()
        assert fork.id != session.id
        assert contents(fork) == ["a", "b", "c"]
        assert [m.id for m in fork.get_messages()] == [m.id for m in first]
        info = fork.info()
        assert (info.forked_from, info.forked_at) == (session.id, first[-1].id)
        assert (info.agent_name, info.user_id, info.metadata) == (
            "assistant",
            "user-1",
            {"source": "test"},
        )
        assert info.message_count == 3
        fork.append_message(msg("only in the fork"))
        session.append_message(msg("only in the source"))
        assert contents(fork) == ["a", "b", "c", "only in the fork"]
        assert contents(mgr.get(session.id)) == ["a", "b", "c", "only in the source"]

    def test_fork_at_an_entry_or_a_checkpoint(self, mgr: sdb.Manager, session: sdb.Session) -> None:
        session.append_messages([msg("a"), msg("b")])
        cp = session.checkpoint(metadata={"n": 1})
        second = msg("c")
        session.append_messages([second, msg("d")])
        at_message = session.fork(at=second.id)
        assert contents(at_message) == ["a", "b", "c"]
        at_checkpoint = session.fork(checkpoint_id=cp.id, user_id="user-2", agent_name="other")
        assert contents(at_checkpoint) == ["a", "b"]
        assert (at_checkpoint.agent_name, at_checkpoint.user_id) == ("other", "user-2")
        assert at_checkpoint.list_checkpoints() == []  # checkpoints are not carried
        assert at_checkpoint.info().forked_at == cp.entry_id
        # An entry of an older branch: the branch that ends there is copied.
        session.restore(cp.id)
        session.append_message(msg("new branch"))
        assert contents(session.fork(at=second.id)) == ["a", "b", "c"]
        assert len(mgr.list("other")) == 1

    def test_fork_refuses_what_is_not_there(self, mgr: sdb.Manager, session: sdb.Session) -> None:
        session.append_message(msg("a"))
        other = mgr.create("assistant")
        other.append_message(msg("x"))
        foreign = other.checkpoint()
        with pytest.raises(sdb.EntryNotFoundError):
            session.fork(at="no-such-entry")
        with pytest.raises(sdb.CheckpointNotFoundError):
            session.fork(checkpoint_id=foreign.id)
        with pytest.raises(sdb.InvalidArgumentError):
            session.fork(at="x", checkpoint_id=foreign.id)
        assert len(mgr.list("assistant")) == 2  # nothing was created

    def test_fork_of_an_empty_session_is_empty(self, session: sdb.Session) -> None:
        fork = session.fork()
        assert fork.get_messages() == []
        assert fork.info().forked_from == session.id

    def test_fork_of_a_long_branch(self, session: sdb.Session) -> None:
        batch = [msg(f"m{i}") for i in range(10_000)]
        session.append_messages(batch)
        fork = session.fork()
        copied = fork.get_messages()
        assert len(copied) == 10_000
        assert [m.id for m in copied[:3] + copied[-3:]] == [m.id for m in batch[:3] + batch[-3:]]
        assert fork.info().message_count == 10_000

    # -- rewind, pop, clear -----------------------------------------------------

    def test_rewind_moves_the_leaf_back_and_records_it(self, session: sdb.Session) -> None:
        kept = msg("b")
        session.append_messages([msg("a"), kept, msg("c")])
        session.rewind(kept.id)
        assert contents(session) == ["a", "b"]
        assert session.info().message_count == 2
        session.append_message(msg("d"))
        assert contents(session) == ["a", "b", "d"]
        assert _events(session) == ["rewind"]
        assert len(session.get_entries()) == 5  # nothing deleted

    def test_rewind_needs_an_entry_of_the_current_branch(self, session: sdb.Session) -> None:
        session.append_message(msg("a"))
        cp = session.checkpoint()
        off_branch = msg("b")
        session.append_message(off_branch)
        session.restore(cp.id)
        with pytest.raises(sdb.EntryNotFoundError):
            session.rewind(off_branch.id)
        with pytest.raises(sdb.EntryNotFoundError):
            session.rewind("no-such-entry")
        assert contents(session) == ["a"]

    def test_pop_takes_the_newest_message(self, session: sdb.Session) -> None:
        first, second = msg("a"), msg("b", "assistant")
        session.append_messages([first, second])
        popped = session.pop_message()
        assert popped is not None
        assert (popped.id, popped.type, popped.payload) == (
            second.id,
            "assistant",
            {"content": "b"},
        )
        assert contents(session) == ["a"]
        assert session.info().message_count == 1
        again = session.pop_message()
        assert again is not None
        assert again.id == first.id
        assert session.pop_message() is None
        assert session.get_messages() == []
        assert _events(session) == ["pop", "pop"]
        session.append_message(msg("c"))
        assert contents(session) == ["c"]

    def test_concurrent_pops_take_different_messages(
        self, mgr: sdb.Manager, session: sdb.Session
    ) -> None:
        batch = [msg(f"m{i}") for i in range(12)]
        session.append_messages(batch)
        barrier = threading.Barrier(6)

        def pop_twice() -> list[str]:
            barrier.wait(timeout=30)
            handle = mgr.get(session.id)
            return [m.id for m in (handle.pop_message(), handle.pop_message()) if m is not None]

        with ThreadPoolExecutor(6) as pool:
            popped = [i for ids in pool.map(lambda _: pop_twice(), range(6)) for i in ids]
        assert sorted(popped) == sorted(m.id for m in batch)
        assert session.get_messages() == []

    def test_clear_empties_the_branch_and_keeps_the_past(self, session: sdb.Session) -> None:
        session.append_messages([msg("a"), msg("b")])
        cp = session.checkpoint()
        session.clear()
        assert session.get_messages() == []
        assert session.info().message_count == 0
        session.append_message(msg("fresh"))
        assert contents(session) == ["fresh"]
        session.restore(cp.id)  # the older branch is still there
        assert contents(session) == ["a", "b"]
        assert _events(session) == ["clear", "restore"]

    # -- metadata ---------------------------------------------------------------

    def test_update_metadata_merges_or_replaces(self, session: sdb.Session) -> None:
        merged = session.update_metadata({"team": "x", "n": 1})
        assert merged.metadata == {"source": "test", "team": "x", "n": 1}
        assert session.info().metadata == merged.metadata
        replaced = session.update_metadata({"only": True}, replace=True)
        assert replaced.metadata == {"only": True}
        with pytest.raises(sdb.PayloadError):
            session.update_metadata({"bad": float("nan")})
        assert session.info().metadata == {"only": True}

    def test_concurrent_metadata_updates_all_land(
        self, mgr: sdb.Manager, session: sdb.Session
    ) -> None:
        barrier = threading.Barrier(8)

        def update(i: int) -> None:
            barrier.wait(timeout=30)
            mgr.get(session.id).update_metadata({f"k{i}": i})

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(update, range(8)))
        assert session.info().metadata == {"source": "test", **{f"k{i}": i for i in range(8)}}

    # -- token budget -----------------------------------------------------------

    def test_max_tokens_keeps_the_newest_that_fit(self, session: sdb.Session) -> None:
        words = ["one", "two two", "three three three", "four four four four"]
        session.append_messages([msg(w) for w in words])

        def count(message: Message) -> int:
            return len(str(message.payload["content"]).split())

        assert contents(session, max_tokens=7, token_counter=count) == words[2:]
        assert contents(session, max_tokens=6, token_counter=count) == words[3:]
        assert contents(session, max_tokens=4, token_counter=count) == ["four four four four"]
        assert contents(session, max_tokens=3, token_counter=count) == []
        assert contents(session, max_tokens=10, token_counter=count) == words
        assert contents(session, max_tokens=9, token_counter=count) == words[1:]
        assert contents(session, max_tokens=100, token_counter=count, limit=2) == words[2:]
        default = session.get_messages(max_tokens=1_000)
        assert [m.payload["content"] for m in default] == words
        assert session.get_messages(max_tokens=0) == []

    def test_max_tokens_on_a_long_history(self, session: sdb.Session) -> None:
        session.append_messages([msg(f"m{i}") for i in range(500)])
        newest = session.get_messages(max_tokens=100, token_counter=lambda m: 1)
        assert [m.payload["content"] for m in newest] == [f"m{i}" for i in range(400, 500)]

    # -- external keys ----------------------------------------------------------

    def test_keys_name_sessions_per_agent(self, mgr: sdb.Manager) -> None:
        key = "user:42/chat#1 — ünïcode " + "k" * 170
        created = mgr.create("assistant", user_id="u1", key=key)
        assert created.key == key
        found = mgr.get_by_key("assistant", key)
        assert found.id == created.id
        assert found.info().key == key
        assert mgr.get_by_key("assistant", key, user_id="u1").id == created.id
        with pytest.raises(sdb.SessionNotFoundError):
            mgr.get_by_key("assistant", key, user_id="u2")
        with pytest.raises(sdb.SessionNotFoundError):
            mgr.get_by_key("assistant", "other key")
        with pytest.raises(sdb.DuplicateKeyError):
            mgr.create("assistant", key=key)
        elsewhere = mgr.create("other-agent", key=key)  # keys are unique per agent
        assert mgr.get_by_key("other-agent", key).id == elsewhere.id
        assert [m.key for m in mgr.list("assistant")] == [key]
        for bad in ("", "nul\x00", "x" * 1025):
            with pytest.raises(sdb.InvalidIDError):
                mgr.create("assistant", key=bad)
        with pytest.raises(sdb.InvalidIDError):
            mgr.get_by_key("assistant", key, user_id=" ")

    def test_get_or_create_by_key(self, mgr: sdb.Manager) -> None:
        first = mgr.get_or_create("assistant", "u1", key="thread-1")
        again = mgr.get_or_create("assistant", "u1", key="thread-1")
        assert again.id == first.id
        assert first.key == "thread-1"
        with pytest.raises(sdb.SessionNotFoundError):
            mgr.get_or_create("assistant", "u2", key="thread-1")
        anonymous = mgr.get_or_create("assistant", None, key="thread-2")
        assert mgr.get_or_create("assistant", None, key="thread-2").id == anonymous.id
        assert len(mgr.list("assistant")) == 2

    def test_racing_get_or_create_by_key_makes_one_session(self, mgr: sdb.Manager) -> None:
        barrier = threading.Barrier(8)

        def racer(_: int) -> str:
            barrier.wait(timeout=30)
            return mgr.get_or_create("assistant", "u1", key="shared").id

        with ThreadPoolExecutor(8) as pool:
            found = set(pool.map(racer, range(8)))
        assert len(found) == 1
        assert [m.id for m in mgr.list("assistant")] == list(found)

    # -- listing ----------------------------------------------------------------

    def _made(self, mgr: sdb.Manager, count: int) -> list[sdb.Session]:
        made = []
        for i in range(count):
            sess = mgr.create("lister", user_id=f"u{i % 2}", metadata={"i": i, "team": f"t{i % 3}"})
            sess.append_message(msg(f"s{i}"))
            made.append(sess)
        return made

    def test_list_filters_by_time_and_metadata(self, mgr: sdb.Manager) -> None:
        made = self._made(mgr, 9)
        infos = [s.info() for s in made]
        middle = sorted(i.updated_at for i in infos)[4]
        later = {i.id for i in infos if i.updated_at > middle}
        earlier = {i.id for i in infos if i.updated_at < middle}
        assert {m.id for m in mgr.list("lister", updated_after=middle)} == later
        assert {m.id for m in mgr.list("lister", updated_before=middle)} == earlier
        team = {s.id for i, s in enumerate(made) if i % 3 == 1}
        assert {m.id for m in mgr.list("lister", metadata={"team": "t1"})} == team
        both = {s.id for i, s in enumerate(made) if i % 3 == 1 and i % 2 == 0}
        assert {m.id for m in mgr.list("lister", metadata={"team": "t1"}, user_id="u0")} == both
        assert mgr.list("lister", metadata={"team": "t1", "i": 4}) == [made[4].info()]
        assert mgr.list("lister", metadata={"team": "nobody"}) == []
        assert mgr.list("lister", updated_after=middle + timedelta(days=1)) == []

    def test_keyset_paging_neither_repeats_nor_skips(self, mgr: sdb.Manager) -> None:
        made = self._made(mgr, 11)
        first = mgr.list("lister", limit=4)
        # A session of the first page is updated: it moves to the top, and must
        # not come back on a later page; nothing else may be skipped.
        mgr.get(first[1].id).append_message(msg("touched"))
        seen = list(first)
        page = first
        while page:
            page = mgr.list("lister", limit=4, after=page[-1])
            seen += page
        assert sorted(m.id for m in seen) == sorted(s.id for s in made)
        assert len(seen) == len(made)
        # The cursor may also be the (updated_at, id) a page's link carries.
        listed = mgr.list("lister")
        cursor = (listed[3].updated_at, listed[3].id)
        assert mgr.list("lister", limit=2, after=cursor) == listed[4:6]

    def test_listing_arguments_are_checked(self, mgr: sdb.Manager) -> None:
        bad: list[dict[str, Any]] = [
            {"after": "not metadata"},
            {"metadata": {"x": float("nan")}},
        ]
        for kwargs in bad:
            with pytest.raises((sdb.InvalidArgumentError, sdb.PayloadError)):
                mgr.list("lister", **kwargs)
