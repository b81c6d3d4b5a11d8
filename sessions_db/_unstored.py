"""A new session that is stored on its first write, for callers that may never write.

The ASGI middleware gives every request without a session ID a session, but a
request that only reads (or does nothing) must not leave an empty session
behind. :class:`PendingSession` has its ID and metadata from the start; until
something is written, reads are answered as the store would answer them for a
new, empty session, without touching the store. The first call that is not such
a read stores the session, then goes to the store like any other.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from . import rules
from .backend import CallsUnitOfWork
from .errors import CheckpointNotFoundError, EntryNotFoundError
from .manager import Manager, Session
from .storage import WHOLE_BRANCH, BranchQuery, NewCheckpoint, UnitOfWork, Work
from .types import Checkpoint, Message, SessionEntry, SessionMetadata

T = TypeVar("T")


class _EmptyUntilWritten(CallsUnitOfWork):
    """A unit of work that answers the reads of a session not stored yet, and stores it first.

    Reads of the pending session are answered as the store would answer them
    for a new, empty session; every write stores the session first, then goes
    to the unit of work underneath. Other sessions go straight through.
    """

    def __init__(self, uow: UnitOfWork, pending: PendingSession) -> None:
        super().__init__(uow)
        self._uow = uow
        self._pending = pending

    def _empty(self, session_id: str) -> bool:
        return session_id == self._pending.id and not self._pending.stored

    def _store_first(self, session_id: str) -> None:
        if self._empty(session_id):
            self._pending.store_in(self._uow)

    def begin(self) -> None:
        self._uow.begin()

    def commit(self) -> None:
        self._uow.commit()

    def rollback(self) -> None:
        self._uow.rollback()

    def end(self) -> None:
        self._uow.end()

    def load_session(self, session_id: str) -> SessionMetadata:
        if self._empty(session_id):
            return self._pending.sealed
        return super().load_session(session_id)

    def load_entries(self, session_id: str) -> list[SessionEntry]:
        return [] if self._empty(session_id) else super().load_entries(session_id)

    def load_branch(self, session_id: str, query: BranchQuery = WHOLE_BRANCH) -> list[SessionEntry]:
        return [] if self._empty(session_id) else super().load_branch(session_id, query)

    def load_entries_by_id(self, session_id: str, entry_ids: Sequence[str]) -> list[SessionEntry]:
        if self._empty(session_id):
            return []
        return super().load_entries_by_id(session_id, entry_ids)

    def load_children(self, session_id: str, entry_id: str) -> list[SessionEntry]:
        if self._empty(session_id):
            raise EntryNotFoundError(f"entry {entry_id} not found in session {session_id}")
        return super().load_children(session_id, entry_id)

    def load_messages(self, session_id: str, query: BranchQuery) -> list[Message]:
        if not self._empty(session_id):
            return super().load_messages(session_id, query)
        if query.before is not None:
            raise EntryNotFoundError(f"message {query.before} not found in session {session_id}")
        return []

    def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        return [] if self._empty(session_id) else super().list_checkpoints(session_id)

    def load_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        if not self._pending.stored:
            raise CheckpointNotFoundError(f"checkpoint {checkpoint_id} not found")
        return super().load_checkpoint(checkpoint_id)

    def lock_session(self, session_id: str) -> None:
        self._store_first(session_id)
        self._uow.lock_session(session_id)

    def append_entries(
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        *,
        fork_from: str | None = None,
        at_root: bool = False,
        updated_at: datetime,
    ) -> None:
        self._store_first(session_id)
        super().append_entries(
            session_id, entries, fork_from=fork_from, at_root=at_root, updated_at=updated_at
        )

    def create_checkpoint(self, session_id: str, new: NewCheckpoint) -> Checkpoint:
        self._store_first(session_id)
        return super().create_checkpoint(session_id, new)

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._store_first(checkpoint.session_id)
        super().save_checkpoint(checkpoint)

    def delete_session(self, session_id: str) -> None:
        self._store_first(session_id)
        super().delete_session(session_id)


class PendingSession(Session):
    """A :class:`~sessions_db.Session` that is stored only when something is first written."""

    def __init__(self, manager: Manager, meta: SessionMetadata) -> None:
        super().__init__(manager, meta)
        self._sealed = manager.privacy.seal_meta(meta)
        self._stored = False
        self._store_lock = threading.Lock()

    @classmethod
    def new(cls, manager: Manager, agent_name: str, user_id: str | None) -> PendingSession:
        """Return a new session of ``agent_name`` (and ``user_id``), not stored yet."""
        return cls(manager, rules.new_session(agent_name, user_id, None, manager.clock))

    @property
    def stored(self) -> bool:
        """Whether the session is in the store (something was written)."""
        return self._stored

    @property
    def sealed(self) -> SessionMetadata:
        """The session's metadata as it is (or will be) stored."""
        return self._sealed

    def store_in(self, uow: UnitOfWork) -> None:
        """Store the session through ``uow`` and commit that, unless it is stored already."""
        with self._store_lock:
            if not self._stored:
                uow.save_session(self._sealed)
                uow.commit()
                self._stored = True

    def _run(self, work: Work[T], *, write: bool = True) -> T:
        if self._stored or self._closed or self._manager.closed:
            return super()._run(work, write=write)
        return super()._run(lambda uow: work(_EmptyUntilWritten(uow, self)), write=write)
