"""Tampering: history changed behind the library's back is caught at restore."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

import sessions_db as sdb

from . import tampering
from .support import COUNTS, snapshot

Change = Callable[[str, str, list[sdb.SessionEntry]], None]

CHANGES: dict[str, Change] = {
    "payload": lambda m, s, e: tampering.set_payload(m, s, e[1].id, {"content": "forged"}),
    "role": lambda m, s, e: tampering.set_role(m, s, e[1].id, "system"),
    "timestamp": lambda m, s, e: tampering.set_timestamp(
        m, s, e[1].id, datetime(2001, 1, 1, tzinfo=UTC)
    ),
    "parent": lambda m, s, e: tampering.set_parent(m, s, e[2].id, e[0].id),
    "deleted": lambda m, s, e: tampering.remove(m, s, e[1].id),
    "first-entry": lambda m, s, e: tampering.set_payload(m, s, e[0].id, {"content": "x"}),
    "checkpoint-entry": lambda m, s, e: tampering.set_payload(
        m, s, e[3].id, {"checkpoint_id": "00000000-0000-4000-8000-000000000000"}
    ),
}


@pytest.mark.parametrize("change", CHANGES)
def test_tampering_is_caught_and_restore_changes_nothing(
    open_manager: Callable[[], sdb.Manager], store_url: str, change: str
) -> None:
    with open_manager() as mgr:
        session = mgr.create("tamper")
        session.append_messages([sdb.Message.new("user", {"content": f"m{i}"}) for i in range(3)])
        cp = session.checkpoint()
        session.append_message(sdb.Message.new("user", {"content": "later"}))
        entries = session.get_entries()
        CHANGES[change](store_url, session.id, entries)
        before = snapshot(mgr)
        with pytest.raises(sdb.ChecksumMismatchError):
            session.restore(cp.id)
        assert snapshot(mgr) == before
        COUNTS["tamper: changes caught"] += 1


def test_tampering_elsewhere_leaves_other_checkpoints_valid(
    open_manager: Callable[[], sdb.Manager], store_url: str
) -> None:
    with open_manager() as mgr:
        session = mgr.create("tamper")
        session.append_messages([sdb.Message.new("user", {"content": f"m{i}"}) for i in range(2)])
        early = session.checkpoint()
        session.append_message(sdb.Message.new("user", {"content": "later"}))
        late = session.checkpoint()
        tampering.set_payload(
            store_url, session.id, session.get_messages()[-1].id, {"content": "x"}
        )
        with pytest.raises(sdb.ChecksumMismatchError):
            session.restore(late.id)
        session.restore(early.id)
        assert [m.payload["content"] for m in session.get_messages()] == ["m0", "m1"]
