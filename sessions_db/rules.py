"""The rules of every Manager and Session operation, written once.

Each function here validates its arguments, makes the storage calls it needs on
the unit of work it is given, and decides on their results. The synchronous
:class:`~sessions_db.Manager` runs it in a unit of work of its backend; the
asyncio manager runs the very same function, through ``run_sync`` on the SQL
stores and in a worker thread on the others. An operation that makes several
calls and must see no other writer between them calls ``uow.begin()`` first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from . import ids, payload
from .checksum import branch_checksum
from .errors import (
    CheckpointNotFoundError,
    ChecksumMismatchError,
    DuplicateEntryError,
    InvalidArgumentError,
    InvalidIDError,
    PayloadError,
    SessionNotFoundError,
    SessionsDBError,
)
from .privacy import PLAIN, Privacy
from .storage import BranchQuery, NewCheckpoint, Storage, UnitOfWork, restore_marker
from .types import Checkpoint, Message, SessionEntry, SessionMetadata, as_utc

Clock = Callable[[], datetime]

_log = logging.getLogger("sessions_db")


def _count(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"{what} must be a non-negative integer or None, got {value!r}")
    return value


def create(
    uow: Storage,
    agent_name: str,
    user_id: str | None,
    metadata: dict[str, Any] | None,
    clock: Clock,
    privacy: Privacy = PLAIN,
) -> SessionMetadata:
    """Create a session (``None``, ``""`` or a blank ``user_id``: it belongs to no user)."""
    meta = new_session(agent_name, user_id, metadata, clock)
    uow.save_session(privacy.seal_meta(meta))
    return meta


def new_session(
    agent_name: str, user_id: str | None, metadata: dict[str, Any] | None, clock: Clock
) -> SessionMetadata:
    """Return the checked metadata of a new session, not yet stored (see :func:`create`)."""
    now = clock()
    return SessionMetadata.model_construct(
        id=ids.new_id(),
        agent_name=ids.agent_name(agent_name),
        user_id=ids.owner(user_id),
        created_at=now,
        updated_at=now,
        message_count=0,
        current_leaf=None,
        metadata=payload.check({} if metadata is None else metadata, "metadata"),
    )


def get(
    uow: Storage, session_id: str, user_id: str | None, privacy: Privacy = PLAIN
) -> SessionMetadata:
    """Load a session; with ``user_id``, another user's session is not found.

    ``user_id`` ``""`` or blank raises ``InvalidIDError``: only ``None`` skips the check.
    """
    sid = ids.session_id(session_id)
    uid = ids.user_id(user_id)
    meta: SessionMetadata = uow.load_session(sid)
    if uid is not None and meta.user_id != uid:
        raise SessionNotFoundError(f"session {sid} not found")
    return privacy.open_meta(meta)


def get_or_create(
    uow: Storage, agent_name: str, user_id: str | None, clock: Clock, privacy: Privacy = PLAIN
) -> SessionMetadata:
    """Return the user's most recently updated session of the agent, else a new one.

    ``None``, ``""`` or a blank ``user_id`` always creates a session of no user.
    """
    uid = ids.owner(user_id)
    if uid is None:
        return create(uow, agent_name, None, None, clock, privacy)
    now = clock()
    candidate = SessionMetadata.model_construct(
        id=ids.new_id(),
        agent_name=ids.agent_name(agent_name),
        user_id=uid,
        created_at=now,
        updated_at=now,
        message_count=0,
        current_leaf=None,
        metadata={},
    )
    found: SessionMetadata = uow.find_or_create_session(privacy.seal_meta(candidate))
    return privacy.open_meta(found)


def list_sessions(
    uow: Storage,
    agent_name: str,
    user_id: str | None,
    limit: int | None,
    offset: int,
    privacy: Privacy = PLAIN,
) -> list[SessionMetadata]:
    """List an agent's sessions, most recently updated first (``""`` or blank user: refused)."""
    result: list[SessionMetadata] = uow.list_sessions(
        ids.agent_name(agent_name),
        user_id=ids.user_id(user_id),
        limit=_count(limit, "limit"),
        offset=_count(offset, "offset") or 0,
    )
    return [privacy.open_meta(meta) for meta in result]


def list_agents(uow: Storage) -> list[str]:
    """Return the names of the agents that have sessions."""
    result: list[str] = uow.list_agents()
    return result


def prune(
    uow: Storage,
    older_than: timedelta | datetime,
    agent_name: str | None,
    dry_run: bool,
    clock: Clock,
) -> list[str]:
    """Delete the sessions not updated for ``older_than`` (or since a given time)."""
    if isinstance(older_than, timedelta):
        if older_than < timedelta(0):
            raise InvalidArgumentError("older_than must not be negative")
        cutoff = clock() - older_than
    else:
        cutoff = as_utc(older_than, "older_than")
    result: list[str] = uow.prune_sessions(
        cutoff,
        agent_name=None if agent_name is None else ids.agent_name(agent_name),
        dry_run=dry_run,
    )
    return result


def delete(uow: Storage, session_id: str) -> None:
    """Delete a session with its entries and checkpoints."""
    uow.delete_session(ids.session_id(session_id))


def message_entries(messages: Iterable[Message], privacy: Privacy = PLAIN) -> list[SessionEntry]:
    """Check ``messages`` and return the entries that record them (payloads redacted).

    Payloads are checked again here: a message's payload is a dict, which the
    caller may have changed since the message was built.
    """
    entries: list[SessionEntry] = []
    seen: set[str] = set()
    for message in messages:
        if not isinstance(message, Message):
            raise PayloadError(f"expected a Message, got {type(message).__name__}")
        payload.check(message.payload)
        if message.id in seen:
            raise DuplicateEntryError(f"message {message.id} appears twice in the batch")
        seen.add(message.id)
        entries.append(privacy.redact_entry(SessionEntry.for_message(message)))
    return entries


def append_messages(
    uow: UnitOfWork,
    session_id: str,
    messages: Iterable[Message],
    clock: Clock,
    privacy: Privacy = PLAIN,
    auto_checkpoint: timedelta | None = None,
    *,
    owner: str | None,
) -> None:
    """Append messages on the current branch, all or nothing; then maybe an automatic checkpoint.

    Payloads are redacted and encrypted first when the manager says so (bound to
    ``owner``, the session's user ID). The append is committed on its own
    (durable before anything else is tried); see :func:`auto_checkpoint_due`
    for when ``auto_checkpoint`` then takes a checkpoint, in a transaction of
    its own.
    """
    entries = [
        privacy.seal_entry(session_id, e, owner=owner) for e in message_entries(messages, privacy)
    ]
    if not entries:
        return
    now = clock()
    uow.append_entries(session_id, entries, updated_at=now)
    if auto_checkpoint is not None:
        uow.commit()
        auto_checkpoint_due(uow, session_id, auto_checkpoint, now, privacy)


#: The metadata of an automatic checkpoint.
AUTO_CHECKPOINT_METADATA: dict[str, Any] = {"auto": True}


def auto_checkpoint_due(
    uow: UnitOfWork, session_id: str, interval: timedelta, now: datetime, privacy: Privacy = PLAIN
) -> Checkpoint | None:
    """Take an automatic checkpoint if ``interval`` has passed; return it (else ``None``).

    The rule, exactly: after a successful append of messages at time ``now``
    (the append's own ``updated_at``), a checkpoint is taken at the new leaf when
    ``now - last >= interval``, where ``last`` is the timestamp of the session's
    newest checkpoint of any kind (automatic or not), or the session's
    ``created_at`` when it has none. Its metadata is ``{"auto": True}`` and its
    timestamp ``now``, so the next one is due ``interval`` after it. Restores
    and checkpoints do not trigger one; only message appends do.

    The append is durable before this runs: if taking the checkpoint fails, the
    error is logged (never raised, so that a caller does not retry an append
    that was stored), what it wrote is rolled back, and the next append tries
    again. The check and the checkpoint are one transaction that holds the
    session against other writers, so two appends racing past the deadline
    take one checkpoint, not two (on stores whose units of work isolate).
    """
    if interval <= timedelta(0):
        raise InvalidArgumentError("the automatic checkpoint interval must be positive")
    try:
        uow.begin()
        uow.lock_session(session_id)
        existing: list[Checkpoint] = uow.list_checkpoints(session_id)
        if existing:
            last = max(c.timestamp for c in existing)
        else:
            meta: SessionMetadata = uow.load_session(session_id)
            last = meta.created_at
        if now - last < interval:
            return None
        new = _new_checkpoint(session_id, dict(AUTO_CHECKPOINT_METADATA), now, privacy)
        taken: Checkpoint = uow.create_checkpoint(session_id, new)
    except SessionsDBError as exc:
        uow.rollback()
        _log.warning(
            "automatic checkpoint of session %s... failed: %s", session_id[:8], type(exc).__name__
        )
        return None
    return privacy.open_checkpoint(taken)


def get_messages(
    uow: Storage,
    session_id: str,
    limit: int | None,
    before: str | None,
    privacy: Privacy = PLAIN,
    *,
    owner: str | None,
) -> list[Message]:
    """Return the current branch's messages, oldest first (``owner``: the session's user ID)."""
    query = BranchQuery(
        before=None if before is None else ids.entry_id(before),
        messages_only=True,
        limit=_count(limit, "limit"),
    )
    # Even with limit=0 the store is asked: an absent session or an unknown
    # ``before`` message raises, as it does for every other limit.
    messages: list[Message] = uow.load_messages(session_id, query)
    return [privacy.open_message(session_id, message, owner=owner) for message in messages]


def checkpoint(
    uow: Storage,
    session_id: str,
    metadata: dict[str, Any] | None,
    clock: Clock,
    privacy: Privacy = PLAIN,
) -> Checkpoint:
    """Take a checkpoint at the current leaf."""
    checked = payload.check({} if metadata is None else metadata, "checkpoint metadata")
    new = _new_checkpoint(session_id, checked, clock(), privacy)
    result: Checkpoint = uow.create_checkpoint(session_id, new)
    return privacy.open_checkpoint(result)


def _new_checkpoint(
    session_id: str, metadata: dict[str, Any], timestamp: datetime, privacy: Privacy
) -> NewCheckpoint:
    checkpoint_id, entry_id = ids.new_id(), ids.new_id()
    return NewCheckpoint(
        id=checkpoint_id,
        entry_id=entry_id,
        timestamp=timestamp,
        metadata=privacy.seal_checkpoint_metadata(
            session_id, checkpoint_id, metadata, entry_id=entry_id
        ),
    )


def restore(
    uow: UnitOfWork, session_id: str, checkpoint_id: str, clock: Clock, privacy: Privacy = PLAIN
) -> Checkpoint:
    """Make the checkpoint's entry the current leaf, after verifying its checksum.

    The verification and the restore are one transaction that holds the
    session, so no append can slip between them.
    """
    cid = ids.checkpoint_id(checkpoint_id)
    uow.begin()
    try:
        found: Checkpoint = uow.load_checkpoint(cid)
    except CheckpointNotFoundError:
        raise CheckpointNotFoundError(f"checkpoint {cid} not found") from None
    if found.session_id != session_id:
        raise CheckpointNotFoundError(f"checkpoint {cid} not found in session {session_id}")
    uow.lock_session(session_id)
    branch = uow.load_branch(session_id, BranchQuery(leaf=found.entry_id))
    actual = branch_checksum(branch)
    if actual != found.checksum:
        raise ChecksumMismatchError(
            f"checkpoint {cid}: the stored history no longer matches its checksum "
            f"(stored {found.checksum}, computed {actual})"
        )
    opened = privacy.open_checkpoint(found)  # before anything is written: it may not decrypt
    now = clock()
    marker = restore_marker(ids.new_id(), cid, now)
    uow.append_entries(session_id, [marker], fork_from=found.entry_id, updated_at=now)
    return opened


def list_checkpoints(uow: Storage, session_id: str, privacy: Privacy = PLAIN) -> list[Checkpoint]:
    """Return the session's checkpoints, oldest first."""
    result: list[Checkpoint] = uow.list_checkpoints(session_id)
    return [privacy.open_checkpoint(cp) for cp in result]


def load_session(uow: Storage, session_id: str, privacy: Privacy = PLAIN) -> SessionMetadata:
    """Return the session's current metadata."""
    result: SessionMetadata = uow.load_session(session_id)
    return privacy.open_meta(result)


def load_entries(
    uow: Storage, session_id: str, privacy: Privacy = PLAIN, *, owner: str | None
) -> list[SessionEntry]:
    """Return every entry of the session, in append order (payloads decrypted)."""
    result: list[SessionEntry] = uow.load_entries(session_id)
    return [privacy.open_entry(session_id, entry, owner=owner) for entry in result]


def erase_user(uow: Storage, user_id: str) -> int:
    """Remove everything stored for ``user_id``; return the number of sessions removed.

    ``None`` raises ``InvalidIDError`` (sessions of no user are no one's to
    erase), as do ``""`` and blank IDs.
    """
    uid = ids.user_id(user_id)
    if uid is None:
        raise InvalidIDError("erasing needs a user ID; None names no user")
    count: int = uow.erase_user(uid)
    return count
