"""The rules of every Manager and Session operation, written once.

Each function here validates its arguments, makes the storage calls it needs on
the unit of work it is given, and decides on their results. The synchronous
:class:`~sessions_db.Manager` runs it in a unit of work of its backend; the
asyncio manager runs the very same function, in a worker thread (or through
``run_sync`` on a host's async SQL engine or connection). An operation that makes several
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
    ChecksumMismatchError,
    DuplicateEntryError,
    EntryNotFoundError,
    InvalidArgumentError,
    InvalidIDError,
    PayloadError,
    SessionNotFoundError,
    SessionsDBError,
)
from .privacy import PLAIN, Privacy
from .storage import (
    BranchQuery,
    Cursor,
    NewCheckpoint,
    Storage,
    UnitOfWork,
    event_marker,
    restore_marker,
    select_sessions,
)
from .types import Checkpoint, EntryType, Message, SessionEntry, SessionMetadata, as_utc

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
    key: str | None = None,
) -> SessionMetadata:
    """Create a session (``None``, ``""`` or a blank ``user_id``: it belongs to no user).

    With ``key``, the session has that external key: ``DuplicateKeyError`` if
    another session of the agent has it.
    """
    meta = new_session(agent_name, user_id, metadata, clock, key=key)
    uow.save_session(privacy.seal_meta(meta))
    return meta


def new_session(
    agent_name: str,
    user_id: str | None,
    metadata: dict[str, Any] | None,
    clock: Clock,
    *,
    key: str | None = None,
    forked_from: str | None = None,
    forked_at: str | None = None,
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
        key=None if key is None else ids.session_key(key),
        forked_from=forked_from,
        forked_at=forked_at,
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
    uow: Storage,
    agent_name: str,
    user_id: str | None,
    clock: Clock,
    privacy: Privacy = PLAIN,
    key: str | None = None,
) -> SessionMetadata:
    """Return the user's most recently updated session of the agent, else a new one.

    ``None``, ``""`` or a blank ``user_id`` always creates a session of no user.
    With ``key``, the session is the agent's session with that key, created
    (for ``user_id``) if there is none; a key owned by another user is
    ``SessionNotFoundError``.
    """
    uid = ids.owner(user_id)
    if uid is None and key is None:
        return create(uow, agent_name, None, None, clock, privacy)
    candidate = new_session(agent_name, uid, None, clock, key=key)
    found = privacy.open_meta(uow.find_or_create_session(privacy.seal_meta(candidate)))
    if key is not None and uid is not None and found.user_id != uid:
        raise SessionNotFoundError(f"no session of agent {candidate.agent_name!r} has this key")
    return found


def get_by_key(
    uow: Storage, agent_name: str, key: str, user_id: str | None, privacy: Privacy = PLAIN
) -> SessionMetadata:
    """Return the agent's session with external key ``key``; with ``user_id``, only theirs.

    ``user_id`` ``""`` or blank raises ``InvalidIDError``: only ``None`` skips the check.
    """
    agent = ids.agent_name(agent_name)
    checked = ids.session_key(key)
    uid = ids.user_id(user_id)
    meta = uow.load_session_by_key(agent, checked)
    if uid is not None and meta.user_id != uid:
        raise SessionNotFoundError(f"no session of agent {agent!r} has this key")
    return privacy.open_meta(meta)


def list_sessions(
    uow: Storage,
    agent_name: str,
    user_id: str | None,
    limit: int | None,
    offset: int,
    privacy: Privacy = PLAIN,
    *,
    updated_after: datetime | None = None,
    updated_before: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    after: SessionMetadata | Cursor | None = None,
) -> list[SessionMetadata]:
    """List an agent's sessions, most recently updated first (``""`` or blank user: refused).

    ``after`` is the last session of the previous page, as it was listed (or
    its ``(updated_at, id)``, e.g. from a page's link): the listing continues
    after that. With encrypted metadata,
    a ``metadata`` filter is applied here, after decryption, to every session
    of the agent (the store sees only ciphertext).
    """
    agent = ids.agent_name(agent_name)
    uid = ids.user_id(user_id)
    count = _count(limit, "limit")
    skip = _count(offset, "offset") or 0
    low = None if updated_after is None else as_utc(updated_after, "updated_after")
    high = None if updated_before is None else as_utc(updated_before, "updated_before")
    wanted = None if metadata is None else payload.check(metadata, "metadata filter")
    cursor: Cursor | None = None
    if isinstance(after, SessionMetadata):
        cursor = (after.updated_at, ids.session_id(after.id))
    elif isinstance(after, tuple) and len(after) == 2:
        cursor = (as_utc(after[0], "after"), ids.session_id(after[1]))
    elif after is not None:
        raise InvalidArgumentError(
            "after must be the last SessionMetadata of the previous page, or its (updated_at, id)"
        )
    if wanted and privacy.encrypted:
        found = uow.list_sessions(
            agent, user_id=uid, updated_after=low, updated_before=high, after=cursor
        )
        return select_sessions(
            (privacy.open_meta(meta) for meta in found), limit=count, offset=skip, metadata=wanted
        )
    result = uow.list_sessions(
        agent,
        user_id=uid,
        limit=count,
        offset=skip,
        updated_after=low,
        updated_before=high,
        metadata=wanted or None,
        after=cursor,
    )
    return [privacy.open_meta(meta) for meta in result]


def list_agents(uow: Storage) -> list[str]:
    """Return the names of the agents that have sessions."""
    result: list[str] = uow.list_agents()
    return result


def prune_cutoff(older_than: timedelta | datetime, clock: Clock) -> datetime:
    """Return the time before which a prune deletes: ``older_than`` ago, or that time."""
    if isinstance(older_than, timedelta):
        if older_than < timedelta(0):
            raise InvalidArgumentError("older_than must not be negative")
        return clock() - older_than
    return as_utc(older_than, "older_than")


def prune(
    uow: Storage,
    older_than: timedelta | datetime,
    agent_name: str | None,
    dry_run: bool,
    clock: Clock,
) -> list[str]:
    """Delete the sessions not updated for ``older_than`` (or since a given time)."""
    cutoff = prune_cutoff(older_than, clock)
    result: list[str] = uow.prune_sessions(
        cutoff,
        agent_name=None if agent_name is None else ids.agent_name(agent_name),
        dry_run=dry_run,
    )
    return result


#: How many sessions one batch of a prune deletes, by default.
DEFAULT_PRUNE_BATCH = 1000
#: The most sessions one batch of a prune may delete.
MAX_PRUNE_BATCH = 100_000


def prune_batch_size(batch_size: object) -> int:
    """Return ``batch_size`` checked: a number of sessions from 1 to :data:`MAX_PRUNE_BATCH`."""
    if (
        not isinstance(batch_size, int)
        or isinstance(batch_size, bool)
        or not 1 <= batch_size <= MAX_PRUNE_BATCH
    ):
        raise InvalidArgumentError(f"batch_size must be from 1 to {MAX_PRUNE_BATCH} sessions")
    return batch_size


def prune_batch(
    uow: Storage, cutoff: datetime, agent_name: str | None, batch_size: int
) -> list[str]:
    """Delete one batch of the sessions last updated before ``cutoff``; return their IDs."""
    result: list[str] = uow.prune_batch(
        cutoff,
        agent_name=None if agent_name is None else ids.agent_name(agent_name),
        limit=prune_batch_size(batch_size),
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
    max_tokens: int | None = None,
    token_counter: TokenCounter | None = None,
) -> list[Message]:
    """Return the current branch's messages, oldest first (``owner``: the session's user ID).

    With ``max_tokens``, only the newest messages whose total cost
    (``token_counter``, else :func:`approximate_tokens`) fits, never a part of
    one; they are read newest first in pages, so a long session is read only
    as far back as the budget reaches (plus the one message that no longer fits).
    """
    cap = _count(limit, "limit")
    start = None if before is None else ids.entry_id(before)
    if max_tokens is not None:
        budget = _count(max_tokens, "max_tokens")
        assert budget is not None
        count = approximate_tokens if token_counter is None else token_counter
        return _within_budget(uow, session_id, cap, start, budget, count, privacy, owner)
    query = BranchQuery(before=start, messages_only=True, limit=cap)
    # Even with limit=0 the store is asked: an absent session or an unknown
    # ``before`` message raises, as it does for every other limit.
    messages: list[Message] = uow.load_messages(session_id, query)
    return privacy.open_messages(session_id, messages, owner=owner)


#: A function that says what a message costs against ``max_tokens``.
TokenCounter = Callable[[Message], int]


def approximate_tokens(message: Message) -> int:
    """Return a rough token count of ``message``: 4 per message plus 1 per 4 characters.

    The characters are those of the payload's compact JSON; for English text
    this is near what common tokenizers count. Pass a ``token_counter`` (a
    real tokenizer) where the budget must be exact.
    """
    return 4 + (len(payload.dumps(message.payload)) + 3) // 4


#: How many messages a token-budgeted read asks for first (then twice as many each time).
_FIRST_PAGE = 16


def _within_budget(
    uow: Storage,
    session_id: str,
    limit: int | None,
    before: str | None,
    budget: int,
    count: TokenCounter,
    privacy: Privacy,
    owner: str | None,
) -> list[Message]:
    kept: list[Message] = []
    spent = 0
    page = _FIRST_PAGE
    while True:
        want = page if limit is None else min(page, limit - len(kept))
        older = uow.load_messages(
            session_id, BranchQuery(before=before, messages_only=True, limit=want)
        )
        for stored in reversed(older):
            message = privacy.open_message(session_id, stored, owner=owner)
            cost = count(message)
            if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
                raise InvalidArgumentError(
                    f"token_counter must return a non-negative integer, got {cost!r}"
                )
            if spent + cost > budget:
                kept.reverse()
                return kept
            spent += cost
            kept.append(message)
        if len(older) < want or (limit is not None and len(kept) >= limit) or not older:
            kept.reverse()
            return kept
        before = older[0].id
        page *= 2


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
    found: Checkpoint = uow.load_session_checkpoint(session_id, cid)
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


def fork(
    uow: UnitOfWork,
    session_id: str,
    owner: str | None,
    at: str | None,
    checkpoint_id: str | None,
    agent_name: str | None,
    user_id: str | None,
    metadata: dict[str, Any] | None,
    clock: Clock,
    privacy: Privacy = PLAIN,
) -> SessionMetadata:
    """Copy the session's current branch (up to ``at`` or a checkpoint) into a new session.

    The new session's branch holds the same entries (IDs, timestamps, payloads;
    checkpoint and event entries too) up to and including ``at`` (an entry of
    any branch: the branch that ends there is copied), the checkpoint's entry,
    or the current leaf; it records ``forked_from`` and ``forked_at``. The
    checkpoints themselves are not carried (``list_checkpoints()`` of the fork
    is empty). Its agent and user default to the source's; it has no external
    key. One transaction: the copy is there whole or not at all.
    """
    if at is not None and checkpoint_id is not None:
        raise InvalidArgumentError("give at= or checkpoint_id=, not both")
    uow.begin()
    source = uow.load_session(session_id)
    leaf: str | None = source.current_leaf
    if checkpoint_id is not None:
        found = uow.load_session_checkpoint(session_id, ids.checkpoint_id(checkpoint_id))
        leaf = found.entry_id
    elif at is not None:
        leaf = ids.entry_id(at)
    branch = [] if leaf is None else uow.load_branch(session_id, BranchQuery(leaf=leaf))
    meta = new_session(
        source.agent_name if agent_name is None else agent_name,
        source.user_id if user_id is None else user_id,
        privacy.open_meta(source).metadata if metadata is None else metadata,
        clock,
        forked_from=session_id,
        forked_at=leaf,
    )
    copies = [
        privacy.seal_entry(
            meta.id, privacy.open_entry(session_id, entry, owner=owner), owner=meta.user_id
        )
        for entry in branch
    ]
    uow.create_session(privacy.seal_meta(meta), copies)
    messages = sum(entry.type is EntryType.MESSAGE for entry in branch)
    return meta.model_copy(
        update={"message_count": messages, "current_leaf": branch[-1].id if branch else None}
    )


def rewind(uow: UnitOfWork, session_id: str, to: str, clock: Clock) -> None:
    """Move the current leaf back to ``to``, an entry of the current branch; record it.

    Like a restore without a checkpoint: a ``rewind`` event entry is appended
    under ``to``, so later appends continue from there; nothing is deleted.
    ``EntryNotFoundError`` if ``to`` is not on the current branch.
    """
    target = ids.entry_id(to)
    uow.begin()
    uow.lock_session(session_id)
    if all(entry.id != target for entry in uow.load_branch(session_id)):
        raise EntryNotFoundError(f"entry {target} is not on the current branch of {session_id}")
    now = clock()
    marker = event_marker(ids.new_id(), now, "rewind", to=target)
    uow.append_entries(session_id, [marker], fork_from=target, updated_at=now)


def pop_message(
    uow: UnitOfWork, session_id: str, clock: Clock, privacy: Privacy, *, owner: str | None
) -> Message | None:
    """Take the newest message off the current branch and return it (``None`` if there is none).

    A ``pop`` event entry is appended under the message's parent (or as a new
    root), so the branch ends before it; nothing is deleted. Under the
    session's lock: two pops at once take two different messages.
    """
    uow.begin()
    uow.lock_session(session_id)
    newest = uow.load_branch(session_id, BranchQuery(messages_only=True, limit=1))
    if not newest:
        return None
    entry = newest[0]
    message = privacy.open_message(session_id, entry.to_message(), owner=owner)
    now = clock()
    marker = event_marker(ids.new_id(), now, "pop", message_id=entry.id)
    if entry.parent_id is None:
        uow.append_entries(session_id, [marker], at_root=True, updated_at=now)
    else:
        uow.append_entries(session_id, [marker], fork_from=entry.parent_id, updated_at=now)
    return message


def clear(uow: UnitOfWork, session_id: str, clock: Clock) -> None:
    """Make the current branch empty: a ``clear`` event entry starts a new root.

    ``get_messages()`` is then ``[]`` and ``message_count`` 0; the older
    branches stay (checkpoints still restore them); nothing is deleted.
    """
    now = clock()
    marker = event_marker(ids.new_id(), now, "clear")
    uow.append_entries(session_id, [marker], at_root=True, updated_at=now)


def update_metadata(
    uow: UnitOfWork,
    session_id: str,
    patch: dict[str, Any],
    replace: bool,
    privacy: Privacy = PLAIN,
) -> SessionMetadata:
    """Merge ``patch`` into the session's metadata (or replace it), atomically; return the result.

    The read and the write are one transaction holding the session, so
    concurrent updates of different keys all land. A merge is shallow: each
    top-level key of ``patch`` replaces the stored value.
    """
    checked = payload.check(patch, "metadata")
    uow.begin()
    uow.lock_session(session_id)
    stored = privacy.open_meta(uow.load_session(session_id))
    merged = dict(checked) if replace else {**stored.metadata, **checked}
    updated = stored.model_copy(update={"metadata": payload.check(merged, "metadata")})
    uow.save_session(privacy.seal_meta(updated))
    return updated


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
