"""The contract of the entry reads by ID and by parent (see :mod:`sessions_db.testing`).

``load_entries_by_id`` and ``load_children`` read a few entries of a session's
tree without reading its branches: the same answers on every store, sync and
async, whichever branch the entries are on.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

import sessions_db as sdb
from sessions_db.storage import BranchQuery, UnitOfWork
from sessions_db.types import EntryType, SessionEntry, utcnow

from .helpers import msg


def _marker(entry_id: str, **data: object) -> SessionEntry:
    return SessionEntry(
        id=entry_id,
        parent_id=None,
        timestamp=utcnow(),
        type=EntryType.METADATA,
        data={"event": "test", **data},
    )


def _tree(mgr: sdb.Manager) -> tuple[sdb.Session, str]:
    """Return a session whose tree is ``a - b - c``, ``b - x - y``, ``b - z`` and a root ``r``.

    ``a`` and ``b`` are messages, the others metadata entries; ``x`` is appended
    after ``c`` (a branch grown from ``b``), ``z`` after ``y``, ``r`` last.
    Returns the session and the ID of ``b``.
    """
    session = mgr.create("assistant", user_id="user-1")
    session.append_messages([sdb.Message.new("user", {"content": "a"}, id="a"), msg("b")])
    b = session.get_messages()[-1].id
    now = utcnow()

    def grow(uow: UnitOfWork) -> None:
        uow.begin()
        uow.append_entries(session.id, [_marker("c")], updated_at=now)
        uow.append_entries(session.id, [_marker("x"), _marker("y")], fork_from=b, updated_at=now)
        uow.append_entries(session.id, [_marker("z")], fork_from=b, updated_at=now)
        uow.append_entries(session.id, [_marker("r")], at_root=True, updated_at=now)

    mgr.run(grow)
    return session, b


class EntryReadsContract:
    """Entries read by ID and by parent, on one store (``mgr`` fixture of the contract)."""

    def test_entries_by_id_in_append_order(self, mgr: sdb.Manager) -> None:
        session, b = _tree(mgr)
        found = mgr.run(
            lambda uow: uow.load_entries_by_id(session.id, ["y", "unknown", "a", b, "y", "r"]),
            write=False,
        )
        assert [e.id for e in found] == ["a", b, "y", "r"]
        by_id = {e.id: e for e in found}
        assert by_id["a"].type is EntryType.MESSAGE
        assert by_id["a"].data == {"role": "user", "payload": {"content": "a"}}
        assert by_id["y"].parent_id == "x"
        assert by_id["y"].data == {"event": "test"}
        assert by_id["r"].parent_id is None
        whole = {e.id: e for e in session.get_entries()}
        assert all(whole[e.id] == e for e in found)

    def test_entries_by_id_of_nothing(self, mgr: sdb.Manager) -> None:
        session, _ = _tree(mgr)
        assert mgr.run(lambda uow: uow.load_entries_by_id(session.id, []), write=False) == []
        none = mgr.run(lambda uow: uow.load_entries_by_id(session.id, ["nope"]), write=False)
        assert none == []
        empty = mgr.create("assistant")
        assert mgr.run(lambda uow: uow.load_entries_by_id(empty.id, ["a"]), write=False) == []

    def test_children_on_every_branch(self, mgr: sdb.Manager) -> None:
        session, b = _tree(mgr)

        def children(entry_id: str) -> list[str]:
            found = mgr.run(lambda uow: uow.load_children(session.id, entry_id), write=False)
            assert all(e.parent_id == entry_id for e in found)
            return [e.id for e in found]

        assert children(b) == ["c", "x", "z"]
        assert children("a") == [b]
        assert children("x") == ["y"]
        assert children("y") == []
        assert children("r") == []

    def test_reads_of_what_is_not_there(self, mgr: sdb.Manager) -> None:
        session, _ = _tree(mgr)
        with pytest.raises(sdb.EntryNotFoundError):
            mgr.run(lambda uow: uow.load_children(session.id, "unknown"), write=False)
        absent = "00000000-0000-4000-8000-000000000000"
        with pytest.raises(sdb.SessionNotFoundError):
            mgr.run(lambda uow: uow.load_children(absent, "a"), write=False)
        with pytest.raises(sdb.SessionNotFoundError):
            mgr.run(lambda uow: uow.load_entries_by_id(absent, ["a"]), write=False)

    def test_reads_see_what_another_manager_appended(
        self, mgr: sdb.Manager, session: sdb.Session, open_manager: Callable[[], sdb.Manager]
    ) -> None:
        session.append_message(msg("first"))
        first = session.get_messages()[-1].id
        assert mgr.run(lambda uow: uow.load_children(session.id, first), write=False) == []
        later = utcnow() + timedelta(seconds=1)
        with open_manager() as other:
            other.run(
                lambda uow: uow.append_entries(
                    session.id, [_marker("m1", n=1)], fork_from=first, updated_at=later
                )
            )
        found = mgr.run(lambda uow: uow.load_children(session.id, first), write=False)
        assert [(e.id, e.data) for e in found] == [("m1", {"event": "test", "n": 1})]
        again = mgr.run(lambda uow: uow.load_entries_by_id(session.id, ["m1"]), write=False)
        assert [e.parent_id for e in again] == [first]

    def test_messages_of_a_branch_that_ends_at_another_entry(self, mgr: sdb.Manager) -> None:
        session, b = _tree(mgr)

        def messages(query: BranchQuery) -> list[str]:
            found = mgr.run(lambda uow: uow.load_messages(session.id, query), write=False)
            return [m.id for m in found]

        def branch(query: BranchQuery) -> list[str]:
            found = mgr.run(lambda uow: uow.load_branch(session.id, query), write=False)
            return [e.id for e in found]

        for limit in (None, 1, 5):
            wanted = ["a", b][-limit:] if limit else ["a", b]
            for leaf in ("y", "c", "z", b):
                assert messages(BranchQuery(leaf=leaf, limit=limit)) == wanted, (leaf, limit)
                only = BranchQuery(leaf=leaf, messages_only=True, limit=limit)
                assert branch(only) == wanted, (leaf, limit)
            assert messages(BranchQuery(leaf="r", limit=limit)) == []
        for query in (
            BranchQuery(leaf="unknown"),
            BranchQuery(leaf="unknown", limit=1),
            BranchQuery(before="x", limit=1),  # ``before`` must be a message
            BranchQuery(before="x"),
        ):
            with pytest.raises(sdb.EntryNotFoundError):
                messages(query)
