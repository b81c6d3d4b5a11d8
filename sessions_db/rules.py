"""The rules of every Manager and Session operation, written once.

Each function here is a plan (see :mod:`sessions_db._plan`): it validates its
arguments, yields the backend calls it needs as :class:`Call` objects and
decides on their results. :class:`~sessions_db.Manager` runs the plans against a
:class:`~sessions_db.StorageBackend`; the asyncio manager runs the same plans
against an async backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from . import ids, payload
from ._plan import Plan
from .backend import BranchQuery, NewCheckpoint, restore_marker
from .checksum import branch_checksum
from .errors import (
    CheckpointNotFoundError,
    ChecksumMismatchError,
    DuplicateEntryError,
    InvalidArgumentError,
    PayloadError,
    SessionNotFoundError,
)
from .privacy import PLAIN, Privacy
from .types import Checkpoint, Message, SessionEntry, SessionMetadata, as_utc

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Call:
    """One backend call a plan asks for: ``backend.<method>(*args, **kwargs)``."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def target(self, backend: object) -> Any:
        """Return the bound method of ``backend`` this call names."""
        return getattr(backend, self.method)


def _call(method: str, *args: Any, **kwargs: Any) -> Call:
    return Call(method, args, kwargs)


def _count(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"{what} must be a non-negative integer or None, got {value!r}")
    return value


def create(
    agent_name: str,
    user_id: str | None,
    metadata: dict[str, Any] | None,
    clock: Clock,
    privacy: Privacy = PLAIN,
) -> Plan[Call, SessionMetadata]:
    """Create a session."""
    now = clock()
    meta = SessionMetadata.model_construct(
        id=ids.new_id(),
        agent_name=ids.agent_name(agent_name),
        user_id=ids.user_id(user_id),
        created_at=now,
        updated_at=now,
        message_count=0,
        current_leaf=None,
        metadata=payload.check({} if metadata is None else metadata, "metadata"),
    )
    yield _call("save_session", privacy.seal_meta(meta))
    return meta


def get(
    session_id: str, user_id: str | None, privacy: Privacy = PLAIN
) -> Plan[Call, SessionMetadata]:
    """Load a session; with ``user_id``, another user's session is not found."""
    sid = ids.session_id(session_id)
    uid = ids.user_id(user_id)
    meta: SessionMetadata = yield _call("load_session", sid)
    if uid is not None and meta.user_id != uid:
        raise SessionNotFoundError(f"session {sid} not found")
    return privacy.open_meta(meta)


def get_or_create(
    agent_name: str, user_id: str | None, clock: Clock, privacy: Privacy = PLAIN
) -> Plan[Call, SessionMetadata]:
    """Return the user's most recently updated session of the agent, else a new one."""
    uid = ids.user_id(user_id)
    if uid is None:
        return (yield from create(agent_name, None, None, clock, privacy))
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
    found: SessionMetadata = yield _call("find_or_create_session", privacy.seal_meta(candidate))
    return privacy.open_meta(found)


def list_sessions(
    agent_name: str,
    user_id: str | None,
    limit: int | None,
    offset: int,
    privacy: Privacy = PLAIN,
) -> Plan[Call, list[SessionMetadata]]:
    """List an agent's sessions, most recently updated first."""
    result: list[SessionMetadata] = yield _call(
        "list_sessions",
        ids.agent_name(agent_name),
        user_id=ids.user_id(user_id),
        limit=_count(limit, "limit"),
        offset=_count(offset, "offset") or 0,
    )
    return [privacy.open_meta(meta) for meta in result]


def list_agents() -> Plan[Call, list[str]]:
    """Return the names of the agents that have sessions."""
    result: list[str] = yield _call("list_agents")
    return result


def prune(
    older_than: timedelta | datetime,
    agent_name: str | None,
    dry_run: bool,
    clock: Clock,
) -> Plan[Call, list[str]]:
    """Delete the sessions not updated for ``older_than`` (or since a given time)."""
    if isinstance(older_than, timedelta):
        if older_than < timedelta(0):
            raise InvalidArgumentError("older_than must not be negative")
        cutoff = clock() - older_than
    else:
        cutoff = as_utc(older_than, "older_than")
    result: list[str] = yield _call(
        "prune_sessions",
        cutoff,
        agent_name=None if agent_name is None else ids.agent_name(agent_name),
        dry_run=dry_run,
    )
    return result


def delete(session_id: str) -> Plan[Call, None]:
    """Delete a session with its entries and checkpoints."""
    yield _call("delete_session", ids.session_id(session_id))


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
    session_id: str, messages: Iterable[Message], clock: Clock, privacy: Privacy = PLAIN
) -> Plan[Call, None]:
    """Append messages on the current branch, all or nothing (redacted, encrypted if set)."""
    entries = [privacy.seal_entry(session_id, e) for e in message_entries(messages, privacy)]
    if entries:
        yield _call("append_entries", session_id, entries, updated_at=clock())


def get_messages(
    session_id: str, limit: int | None, before: str | None, privacy: Privacy = PLAIN
) -> Plan[Call, list[Message]]:
    """Return the current branch's messages, oldest first."""
    query = BranchQuery(
        before=None if before is None else ids.entry_id(before),
        messages_only=True,
        limit=_count(limit, "limit"),
    )
    if query.limit == 0:
        return []
    entries: list[SessionEntry] = yield _call("load_branch", session_id, query)
    return [privacy.open_entry(session_id, entry).to_message() for entry in entries]


def checkpoint(
    session_id: str, metadata: dict[str, Any] | None, clock: Clock, privacy: Privacy = PLAIN
) -> Plan[Call, Checkpoint]:
    """Take a checkpoint at the current leaf."""
    checkpoint_id = ids.new_id()
    new = NewCheckpoint(
        id=checkpoint_id,
        entry_id=ids.new_id(),
        timestamp=clock(),
        metadata=privacy.seal_checkpoint_metadata(
            session_id,
            checkpoint_id,
            payload.check({} if metadata is None else metadata, "checkpoint metadata"),
        ),
    )
    result: Checkpoint = yield _call("create_checkpoint", session_id, new)
    return privacy.open_checkpoint(result)


def restore(
    session_id: str, checkpoint_id: str, clock: Clock, privacy: Privacy = PLAIN
) -> Plan[Call, Checkpoint]:
    """Make the checkpoint's entry the current leaf, after verifying its checksum."""
    cid = ids.checkpoint_id(checkpoint_id)
    try:
        found: Checkpoint = yield _call("load_checkpoint", cid)
    except CheckpointNotFoundError:
        raise CheckpointNotFoundError(f"checkpoint {cid} not found") from None
    if found.session_id != session_id:
        raise CheckpointNotFoundError(f"checkpoint {cid} not found in session {session_id}")
    branch: list[SessionEntry] = yield _call(
        "load_branch", session_id, BranchQuery(leaf=found.entry_id)
    )
    actual = branch_checksum(branch)
    if actual != found.checksum:
        raise ChecksumMismatchError(
            f"checkpoint {cid}: the stored history no longer matches its checksum "
            f"(stored {found.checksum}, computed {actual})"
        )
    now = clock()
    marker = restore_marker(ids.new_id(), cid, now)
    yield _call("append_entries", session_id, [marker], fork_from=found.entry_id, updated_at=now)
    return privacy.open_checkpoint(found)


def list_checkpoints(session_id: str, privacy: Privacy = PLAIN) -> Plan[Call, list[Checkpoint]]:
    """Return the session's checkpoints, oldest first."""
    result: list[Checkpoint] = yield _call("list_checkpoints", session_id)
    return [privacy.open_checkpoint(cp) for cp in result]


def load_session(session_id: str, privacy: Privacy = PLAIN) -> Plan[Call, SessionMetadata]:
    """Return the session's current metadata."""
    result: SessionMetadata = yield _call("load_session", session_id)
    return privacy.open_meta(result)


def load_entries(session_id: str, privacy: Privacy = PLAIN) -> Plan[Call, list[SessionEntry]]:
    """Return every entry of the session, in append order (payloads decrypted)."""
    result: list[SessionEntry] = yield _call("load_entries", session_id)
    return [privacy.open_entry(session_id, entry) for entry in result]
