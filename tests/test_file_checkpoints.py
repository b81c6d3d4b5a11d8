"""The file store's checkpoint files: one per checkpoint ID, never shared between sessions.

A session whose history names another session's checkpoint ID (an import, or a
file edited by hand) can neither overwrite that session's checkpoint file nor
delete it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import sessions_db as sdb
from sessions_db import Message
from sessions_db.checksum import branch_checksum
from sessions_db.types import Checkpoint, EntryType, SessionEntry

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _victim(mgr: sdb.Manager) -> tuple[str, Checkpoint]:
    victim = mgr.create("support", user_id="alice")
    victim.append_message(Message.new("user", {"content": "the victim's history"}))
    checkpoint = victim.checkpoint(metadata={"label": "victim"})
    victim.append_message(Message.new("user", {"content": "later"}))
    return victim.id, checkpoint


def _claimant(mgr: sdb.Manager, agent: str, checkpoint_id: str) -> tuple[str, Checkpoint]:
    """A session whose history has a checkpoint entry naming ``checkpoint_id``.

    Returns its ID and the checkpoint record that would point at that entry.
    """
    session = mgr.create(agent, user_id="mallory")
    first = SessionEntry(
        id="m1",
        parent_id=None,
        timestamp=NOW,
        type=EntryType.MESSAGE,
        data={"role": "user", "payload": {"content": "mine"}},
    )
    marker = SessionEntry(
        id="cp",
        parent_id="m1",
        timestamp=NOW,
        type=EntryType.CHECKPOINT,
        data={"checkpoint_id": checkpoint_id},
    )
    mgr.backend.append_entries(session.id, [first, marker], updated_at=NOW)
    forged = Checkpoint(
        id=checkpoint_id,
        session_id=session.id,
        timestamp=NOW,
        entry_id="cp",
        checksum=branch_checksum([first, marker]),
        metadata={"label": "mallory"},
    )
    return session.id, forged


def _file(base: Path, checkpoint_id: str) -> Path:
    return base / "support" / "checkpoints" / f"{checkpoint_id}.json"


@pytest.mark.parametrize("agent", ["support", "other"])
def test_a_checkpoint_id_cannot_be_taken_over(tmp_path: Path, agent: str) -> None:
    base = tmp_path / "store"
    with sdb.Manager(sdb.FileBackend(base)) as mgr:
        victim_id, checkpoint = _victim(mgr)
        before = _file(base, checkpoint.id).read_bytes()
        _, forged = _claimant(mgr, agent, checkpoint.id)
        with pytest.raises(sdb.DuplicateEntryError, match=checkpoint.id):
            mgr.backend.save_checkpoint(forged)
        assert _file(base, checkpoint.id).read_bytes() == before
        victim = mgr.get(victim_id)
        assert victim.list_checkpoints() == [checkpoint]
        assert victim.restore(checkpoint.id) == checkpoint


def test_deleting_a_session_leaves_other_sessions_checkpoint_files(tmp_path: Path) -> None:
    base = tmp_path / "store"
    with sdb.Manager(sdb.FileBackend(base)) as mgr:
        victim_id, checkpoint = _victim(mgr)
        claimant_id, _ = _claimant(mgr, "support", checkpoint.id)
        mgr.delete(claimant_id)
        assert _file(base, checkpoint.id).exists()
        assert mgr.get(victim_id).restore(checkpoint.id) == checkpoint
        # The victim's own delete still removes its file.
        mgr.delete(victim_id)
        assert not _file(base, checkpoint.id).exists()


def test_a_file_left_by_a_deleted_session_is_replaced(tmp_path: Path) -> None:
    """A delete cut short by a crash leaves a checkpoint file whose session is gone."""
    base = tmp_path / "store"
    with sdb.Manager(sdb.FileBackend(base)) as mgr:
        gone_id, checkpoint = _victim(mgr)
    (base / "support" / f"{gone_id}.jsonl").unlink()
    with sdb.Manager(sdb.FileBackend(base)) as mgr:
        claimant_id, forged = _claimant(mgr, "support", checkpoint.id)
        mgr.backend.save_checkpoint(forged)
        assert mgr.get(claimant_id).list_checkpoints() == [forged]
        assert mgr.get(claimant_id).restore(checkpoint.id) == forged
