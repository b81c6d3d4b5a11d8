"""The session handle an agent gets from ``call_with_session``: its history ends with the input.

The seed's ``CallWithSession`` appends the input before the agent runs, so an
agent that reads its session sees the message it is answering. The runtimes
give the agent that view without storing anything before the agent has
answered: the handle (the agent's ``session`` argument, and
:func:`~sessions_db.current_session` while it runs) holds the input *pending*.

* Reads through the handle show the pending input as the newest message of the
  current branch, exactly as it will be stored (redacted if the manager
  redacts): ``get_messages`` (with ``limit``, and ``before`` the input's ID),
  ``info`` (``message_count`` one more, ``current_leaf`` the input's ID) and
  ``get_entries`` (the input's entry under the stored leaf).
* The first write through the handle stores the input first: an append stores
  it in the same batch, before the agent's messages (all or nothing); a
  checkpoint or a restore appends it just before.
* When the agent has answered, :meth:`PendingInput._finish_work` appends the
  input and the answer in one batch (or the answer alone, if a write of the
  agent already stored the input). When the agent fails, the input is dropped.

Nothing is stored before the agent answers, so a failed call, and a process
that dies while the agent runs, leave the session exactly as it was (except
what the agent wrote itself), and no undo ever races other writers of the
session. Other handles (``Manager.get`` in another request, the memory search)
see the input once it is stored. Two threads of one agent that append at the
same moment are not ordered: one of them stores the input with its messages.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Self, TypeVar

from . import rules
from ._handles import SessionFields
from .backend import CallsUnitOfWork
from .storage import WHOLE_BRANCH, BranchQuery, NewCheckpoint, UnitOfWork, Work
from .types import Checkpoint, Message, SessionEntry, SessionMetadata

T = TypeVar("T")


class PendingInput(SessionFields):
    """A session handle whose history ends with an input not stored yet (see the module).

    Its operations run in a :class:`PendingInputUnit` around the manager's unit
    of work (the handle's ``_run`` does that), which shows the input to reads
    and stores it before the first write.
    """

    _input: Message | None
    _entry: SessionEntry
    _guard: threading.Lock

    @classmethod
    def around(cls, session: SessionFields, message: Message) -> Self:
        """Return a handle on ``session``'s session that holds ``message`` pending.

        ``PayloadError`` if ``message`` cannot be stored (checked now, before any agent runs).
        """
        (entry,) = rules.message_entries([message], session._settings.privacy)
        handle = cls(session._settings, session._meta)
        handle._input = message
        handle._entry = entry
        handle._guard = threading.Lock()
        return handle

    @property
    def pending(self) -> bool:
        """Whether the input is still held, not stored."""
        return self._input is not None

    def discard(self) -> None:
        """Drop the pending input: the call failed, so it is never stored."""
        self._take()

    def _take(self) -> Message | None:
        with self._guard:
            message, self._input = self._input, None
        return message

    def _put_back(self, message: Message) -> None:
        with self._guard:
            self._input = message

    def _sealed(self) -> SessionEntry:
        """Return the pending input's entry as the store would hold it (encrypted if it does)."""
        return self._settings.privacy.seal_entry(self.id, self._entry, owner=self.user_id)

    def _pending_unit(self, work: Work[T]) -> Work[T]:
        """Return ``work`` done in a :class:`PendingInputUnit` around the unit it is given."""
        return lambda uow: work(PendingInputUnit(uow, self))

    def _finish_work(self, output: Message) -> Work[None]:
        """Append the pending input and ``output`` together (``output`` alone if it is stored)."""
        m = self._settings

        def finish(uow: UnitOfWork) -> None:
            held = self._take()
            batch = [output] if held is None else [held, output]
            rules.append_messages(
                uow, self.id, batch, m.clock, m.privacy, m.auto_checkpoint, owner=self.user_id
            )

        return finish


class PendingInputUnit(CallsUnitOfWork):
    """A unit of work that shows a handle's pending input to reads and stores it on a write.

    Reads of the handle's session see the input as the newest entry of the
    current branch; a plain append stores it in the same batch, first; any other
    write (a checkpoint, a restore, a pop ...) stores it just before, in the
    same transaction. Other sessions go straight through.
    """

    def __init__(self, uow: UnitOfWork, handle: PendingInput) -> None:
        super().__init__(uow)
        self._uow = uow
        self._handle = handle

    def _mine(self, session_id: str) -> bool:
        return session_id == self._handle.id and self._handle.pending

    def _store_input(self, session_id: str) -> None:
        if not self._mine(session_id):
            return
        held = self._handle._take()
        if held is None:
            return
        try:
            self._uow.begin()
            now = self._handle._settings.clock()
            self._uow.append_entries(session_id, [self._handle._sealed()], updated_at=now)
        except BaseException:
            self._handle._put_back(held)
            raise

    # -- the transaction is the unit's underneath --------------------------------------

    def begin(self) -> None:
        self._uow.begin()

    def commit(self) -> None:
        self._uow.commit()

    def rollback(self) -> None:
        self._uow.rollback()

    def end(self) -> None:
        self._uow.end()

    # -- writes store the input first ------------------------------------------------------

    def append_entries(
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        *,
        fork_from: str | None = None,
        at_root: bool = False,
        updated_at: datetime,
    ) -> None:
        if self._mine(session_id) and fork_from is None and not at_root:
            held = self._handle._take()
            batch = list(entries) if held is None else [self._handle._sealed(), *entries]
            try:
                self._uow.append_entries(session_id, batch, updated_at=updated_at)
            except BaseException:
                if held is not None:
                    self._handle._put_back(held)
                raise
            return
        self._store_input(session_id)
        self._uow.append_entries(
            session_id, entries, fork_from=fork_from, at_root=at_root, updated_at=updated_at
        )

    def create_checkpoint(self, session_id: str, new: NewCheckpoint) -> Checkpoint:
        self._store_input(session_id)
        return self._uow.create_checkpoint(session_id, new)

    def lock_session(self, session_id: str) -> None:
        self._store_input(session_id)
        self._uow.lock_session(session_id)

    def save_session(self, meta: SessionMetadata) -> None:
        self._store_input(meta.id)
        self._uow.save_session(meta)

    # -- reads show the input ------------------------------------------------------------

    def load_session(self, session_id: str) -> SessionMetadata:
        meta = self._uow.load_session(session_id)
        entry = self._handle._entry
        if not self._mine(session_id) or meta.current_leaf == entry.id:
            return meta
        return meta.model_copy(
            update={"message_count": meta.message_count + 1, "current_leaf": entry.id}
        )

    def load_messages(self, session_id: str, query: BranchQuery) -> list[Message]:
        if not self._mine(session_id) or query.leaf is not None:
            return self._uow.load_messages(session_id, query)
        entry = self._handle._entry
        if query.before == entry.id:
            # Every stored message is older than the input.
            return self._uow.load_messages(session_id, BranchQuery(limit=query.limit))
        stored = self._uow.load_messages(session_id, query)
        if query.before is not None or any(m.id == entry.id for m in stored):
            return stored
        shown = [*stored, self._handle._sealed().to_message()]
        return shown if query.limit is None else shown[len(shown) - query.limit :]

    def load_branch(self, session_id: str, query: BranchQuery = WHOLE_BRANCH) -> list[SessionEntry]:
        entry = self._handle._entry
        mine = self._mine(session_id) and query.before is None
        if not mine or query.leaf not in (None, entry.id):
            return self._uow.load_branch(session_id, query)
        stored = self._uow.load_branch(
            session_id, BranchQuery(messages_only=query.messages_only, limit=query.limit)
        )
        parent = self._uow.load_session(session_id).current_leaf
        shown = [*stored, self._handle._sealed().model_copy(update={"parent_id": parent})]
        return shown if query.limit is None else shown[len(shown) - query.limit :]

    def load_entries(self, session_id: str) -> list[SessionEntry]:
        entries = self._uow.load_entries(session_id)
        entry = self._handle._entry
        if not self._mine(session_id) or any(e.id == entry.id for e in entries):
            return entries
        parent = entries[-1].id if entries else None  # the current leaf is the newest entry
        return [*entries, self._handle._sealed().model_copy(update={"parent_id": parent})]
