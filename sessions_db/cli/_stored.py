"""What an imported or copied session becomes in the target store.

``import`` and ``copy`` write through the backend (to keep IDs, timestamps and
every branch), so they apply here what the manager applies on every write: the
``redact`` hook on message payloads and, with a keyring, encryption of payloads
and metadata (the target manager's :class:`~sessions_db.privacy.Privacy`).

An export holds payloads as its store kept them. Those that are encrypted are
decrypted with the keyring (``EncryptionError`` without one, or with the wrong
one); clear ones are taken as they are. ``copy`` reads its source through the
source manager's privacy. Checkpoint checksums are verified against the
history as given, before anything is written, and then recomputed over the
history as stored, so a checkpoint of an encrypted or redacted session restores.
"""

from __future__ import annotations

from typing import Any

from ..checksum import branch_checksum
from ..crypto import is_envelope
from ..errors import EncryptionError
from ..privacy import Privacy
from ..types import Checkpoint, EntryType, Message, SessionEntry, SessionMetadata
from ._archive import SessionDump


def _branch(by_id: dict[str, SessionEntry], leaf: str) -> list[SessionEntry] | None:
    """Return the entries from the root to ``leaf``; ``None`` if one is missing."""
    branch: list[SessionEntry] = []
    node: str | None = leaf
    while node is not None:
        entry = by_id.get(node)
        if entry is None or len(branch) > len(by_id):
            return None
        branch.append(entry)
        node = entry.parent_id
    branch.reverse()
    return branch


def checksum_problems(dump: SessionDump) -> list[tuple[str, str]]:
    """Return (checkpoint ID, problem) for each checkpoint its history does not match."""
    by_id = {entry.id: entry for entry in dump.entries}
    problems: list[tuple[str, str]] = []
    for checkpoint in dump.checkpoints:
        branch = _branch(by_id, checkpoint.entry_id)
        if branch is None:
            problems.append((checkpoint.id, f"its entry {checkpoint.entry_id} is missing"))
            continue
        actual = branch_checksum(branch)
        if actual != checkpoint.checksum:
            problems.append(
                (checkpoint.id, f"checksum {checkpoint.checksum} given, {actual} computed")
            )
    return problems


class _Opener:
    """Opens what an export or a source store holds."""

    def __init__(self, privacy: Privacy, *, everything: bool) -> None:
        self.privacy = privacy
        # A source store is read as its manager reads it; an export's clear
        # payloads are taken as they are.
        self.everything = everything

    def _wanted(self, value: dict[str, Any], what: str) -> bool:
        if self.everything:
            return True
        if not is_envelope(value):
            return False
        if not self.privacy.encrypted:
            raise EncryptionError(
                f"{what} is encrypted and no keyring is configured: give the keys it was "
                "encrypted with (SESSIONS_DB_ENCRYPTION_KEYS or session.encryption)"
            )
        return True

    def meta(self, meta: SessionMetadata) -> SessionMetadata:
        if not self._wanted(meta.metadata, f"session {meta.id}: its metadata"):
            return meta
        return self.privacy.open_meta(meta)

    def entry(self, session_id: str, entry: SessionEntry, owner: str | None) -> SessionEntry:
        if entry.type is not EntryType.MESSAGE:
            return entry
        what = f"session {session_id}: the payload of message {entry.id}"
        if not self._wanted(entry.data["payload"], what):
            return entry
        opened = self.privacy.open_entry(session_id, entry, owner=owner)
        if opened is not entry:
            # What decrypts is checked like any payload the API takes.
            Message(
                type=opened.data["role"],
                payload=opened.data["payload"],
                id=opened.id,
                timestamp=opened.timestamp,
            )
        return opened

    def checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        what = f"session {checkpoint.session_id}: the metadata of checkpoint {checkpoint.id}"
        if not self._wanted(checkpoint.metadata, what):
            return checkpoint
        return self.privacy.open_checkpoint(checkpoint)


def stored_form(dump: SessionDump, target: Privacy, source: Privacy | None = None) -> SessionDump:
    """Return ``dump`` as ``target`` stores it: redacted, encrypted, checksums recomputed.

    ``source`` is the privacy of the store ``dump`` was read from (``copy``);
    without it ``dump`` comes from an export. ``EncryptionError`` if an
    encrypted payload does not decrypt.
    """
    opener = _Opener(source or target, everything=source is not None)
    session_id = dump.meta.id
    meta = target.seal_meta(opener.meta(dump.meta))
    entries: list[SessionEntry] = []
    for entry in dump.entries:
        opened = opener.entry(session_id, entry, dump.meta.user_id)
        if opened.type is EntryType.MESSAGE:
            opened = target.redact_entry(opened)
        entries.append(target.seal_entry(session_id, opened, owner=dump.meta.user_id))
    changed = any(new is not old for new, old in zip(entries, dump.entries, strict=True))
    by_id = {entry.id: entry for entry in entries}
    checkpoints: list[Checkpoint] = []
    for checkpoint in dump.checkpoints:
        stored = target.seal_checkpoint(opener.checkpoint(checkpoint))
        if changed:
            branch = _branch(by_id, checkpoint.entry_id) or []
            stored = stored.model_copy(update={"checksum": branch_checksum(branch)})
        checkpoints.append(stored)
    return SessionDump(meta, entries, checkpoints)
