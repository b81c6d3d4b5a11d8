"""Copying every session of one store into another, through both managers' privacy.

``sessions-db reencrypt`` and ``sessions-db copy`` are built on
:func:`copy_sessions`: each session is copied in one unit of work of the target,
so a failure leaves no half-copied session behind.
"""

from __future__ import annotations

from functools import partial

from .backend import StorageBackend
from .checksum import branch_checksum
from .errors import ChecksumMismatchError
from .manager import Manager
from .storage import BranchQuery, UnitOfWork
from .types import EntryType, SessionEntry, SessionMetadata


def copy_sessions(source: Manager, target: Manager) -> int:
    """Copy every session of ``source`` into ``target``; return how many were copied.

    Entries keep their IDs, timestamps and tree (every branch), sessions their
    IDs, users and times, checkpoints their IDs. Payloads are decrypted with the
    source's keyring and stored the way the target stores them: with its active
    key as version 2 envelopes (re-encryption for key rotation, or to bind roles
    and owners), or in clear if it has no keyring, and redacted if it has a
    ``redact`` hook. A source without a keyring reads a store in clear (so
    copying it into a target with one encrypts it); a source keyring refuses
    payloads in clear unless made with ``allow_plaintext``. Each checkpoint's
    checksum is verified on the source (``ChecksumMismatchError`` if the history
    was altered) and recomputed over what the target stored. ``target`` should
    be an empty store.
    """
    src, dst = source.backend, target.backend
    copied = 0
    for agent in src.list_agents():
        for meta in src.list_sessions(agent):
            dst.run(partial(_copy_session, src=src, meta=meta, source=source, target=target))
            copied += 1
    return copied


def _copy_session(
    dst: UnitOfWork, *, src: StorageBackend, meta: SessionMetadata, source: Manager, target: Manager
) -> None:
    """Copy one session of ``src`` through the target's unit of work ``dst`` (see above)."""
    sp, tp = source.privacy, target.privacy
    sid, owner = meta.id, meta.user_id
    dst.begin()
    dst.save_session(tp.seal_meta(sp.open_meta(meta)))
    entries = src.load_entries(sid)
    leaf: str | None = None
    run: list[SessionEntry] = []
    fork: str | None = None
    for entry in entries:
        opened = sp.open_entry(sid, entry, owner=owner)
        if opened.type is EntryType.MESSAGE:
            opened = tp.redact_entry(opened)
        stored = tp.seal_entry(sid, opened, owner=owner)
        if run and entry.parent_id != run[-1].id:
            dst.append_entries(sid, run, fork_from=fork, updated_at=run[-1].timestamp)
            leaf, run = run[-1].id, []
        if not run:
            fork = entry.parent_id if entry.parent_id != leaf else None
        run.append(stored)
    if run:
        dst.append_entries(sid, run, fork_from=fork, updated_at=meta.updated_at)
    for checkpoint in src.list_checkpoints(sid):
        old = branch_checksum(src.load_branch(sid, BranchQuery(leaf=checkpoint.entry_id)))
        if old != checkpoint.checksum:
            raise ChecksumMismatchError(
                f"checkpoint {checkpoint.id}: the stored history no longer matches "
                "its checksum; not copied"
            )
        new = branch_checksum(dst.load_branch(sid, BranchQuery(leaf=checkpoint.entry_id)))
        opened_cp = sp.open_checkpoint(checkpoint)
        dst.save_checkpoint(tp.seal_checkpoint(opened_cp).model_copy(update={"checksum": new}))
