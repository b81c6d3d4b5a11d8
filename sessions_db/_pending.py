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
from collections.abc import Iterable
from typing import Any, Self, TypeVar

from . import rules
from ._handles import SessionFields
from .storage import UnitOfWork, Work
from .types import Checkpoint, Message, SessionEntry, SessionMetadata

T = TypeVar("T")


class PendingInput(SessionFields):
    """A session handle whose history ends with an input not stored yet (see the module)."""

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

    def _finish_work(self, output: Message) -> Work[None]:
        """Append the pending input and ``output`` together (``output`` alone if it is stored)."""
        store = super()._append_work

        def finish(uow: UnitOfWork) -> None:
            held = self._take()
            store([output] if held is None else [held, output])(uow)

        return finish

    def _input_first(self, then: Work[T]) -> Work[T]:
        """Return ``then``, preceded by the append of the pending input (if still held)."""
        store = super()._append_work

        def work(uow: UnitOfWork) -> T:
            held = self._take()
            if held is not None:
                try:
                    store([held])(uow)
                    uow.commit()
                except BaseException:
                    self._put_back(held)
                    raise
            return then(uow)

        return work

    # -- writes store the input first ------------------------------------------------

    def _append_work(self, messages: Iterable[Message]) -> Work[None]:
        batch = list(messages)
        store = super()._append_work

        def append(uow: UnitOfWork) -> None:
            held = self._take()
            try:
                store(batch if held is None else [held, *batch])(uow)
            except BaseException:
                if held is not None:
                    self._put_back(held)
                raise

        return append

    def _checkpoint_work(self, metadata: dict[str, Any] | None) -> Work[Checkpoint]:
        return self._input_first(super()._checkpoint_work(metadata))

    def _restore_work(self, checkpoint_id: str) -> Work[Checkpoint]:
        return self._input_first(super()._restore_work(checkpoint_id))

    # -- reads show the input -------------------------------------------------------------

    def _get_messages_work(
        self,
        limit: int | None,
        before: str | None,
        max_tokens: int | None = None,
        token_counter: rules.TokenCounter | None = None,
    ) -> Work[list[Message]]:
        entry = self._entry
        if max_tokens is not None:
            # The budget is spent on stored messages and the pending input alike:
            # counted here, newest first, as the store would count them.
            return self._budgeted(limit, before, max_tokens, token_counter)
        if self.pending and before == entry.id:
            before, ahead = None, False  # every stored message is older than the input
        else:
            ahead = before is None
        stored_work = super()._get_messages_work(limit, before)

        def read(uow: UnitOfWork) -> list[Message]:
            stored = stored_work(uow)
            if not ahead or not self.pending or any(m.id == entry.id for m in stored):
                return stored
            shown = [*stored, entry.to_message()]
            return shown if limit is None else shown[len(shown) - limit :]

        return read

    def _budgeted(
        self,
        limit: int | None,
        before: str | None,
        max_tokens: int,
        token_counter: rules.TokenCounter | None,
    ) -> Work[list[Message]]:
        everything = self._get_messages_work(limit, before)
        count = rules.approximate_tokens if token_counter is None else token_counter

        def read(uow: UnitOfWork) -> list[Message]:
            kept: list[Message] = []
            spent = 0
            for message in reversed(everything(uow)):
                spent += count(message)
                if spent > max_tokens:
                    break
                kept.append(message)
            kept.reverse()
            return kept

        return read

    def _info_work(self) -> Work[SessionMetadata]:
        stored_work = super()._info_work()

        def read(uow: UnitOfWork) -> SessionMetadata:
            meta = stored_work(uow)
            if not self.pending or meta.current_leaf == self._entry.id:
                return meta
            return meta.model_copy(
                update={"message_count": meta.message_count + 1, "current_leaf": self._entry.id}
            )

        return read

    def _entries_work(self) -> Work[list[SessionEntry]]:
        stored_work = super()._entries_work()

        def read(uow: UnitOfWork) -> list[SessionEntry]:
            entries = stored_work(uow)
            if not self.pending or any(e.id == self._entry.id for e in entries):
                return entries
            parent = entries[-1].id if entries else None  # the current leaf is the newest entry
            return [*entries, self._entry.model_copy(update={"parent_id": parent})]

        return read
