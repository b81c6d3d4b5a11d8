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
from collections.abc import Callable
from typing import Any, TypeVar

from . import rules
from ._plan import Plan, drive
from .backend import BranchQuery
from .errors import CheckpointNotFoundError, EntryNotFoundError
from .manager import Manager, Session
from .rules import Call
from .types import SessionMetadata

T = TypeVar("T")


def _messages(meta: SessionMetadata, call: Call) -> list[Any]:
    query: BranchQuery = call.args[1]
    if query.before is not None:
        raise EntryNotFoundError(f"message {query.before} not found in session {meta.id}")
    return []


def _no_checkpoint(meta: SessionMetadata, call: Call) -> Any:
    raise CheckpointNotFoundError(f"checkpoint {call.args[0]} not found")


# The reads of a session's plans, answered for a session with nothing in it.
# Any other call (a write, or a call this table does not know) stores the session first.
_EMPTY: dict[str, Callable[[SessionMetadata, Call], Any]] = {
    "load_session": lambda meta, call: meta,
    "load_entries": lambda meta, call: [],
    "load_messages": _messages,
    "load_branch": lambda meta, call: [],
    "list_checkpoints": lambda meta, call: [],
    "load_checkpoint": _no_checkpoint,
}


class PendingSession(Session):
    """A :class:`~sessions_db.Session` that is stored only when something is first written."""

    def __init__(self, manager: Manager, meta: SessionMetadata) -> None:
        super().__init__(manager, meta)
        self._sealed = manager.privacy.seal_meta(meta)
        self._stored = False
        self._store_lock = threading.Lock()
        self._perform = rules.performer(manager.backend)

    @classmethod
    def new(cls, manager: Manager, agent_name: str, user_id: str | None) -> PendingSession:
        """Return a new session of ``agent_name`` (and ``user_id``), not stored yet."""
        return cls(manager, rules.new_session(agent_name, user_id, None, manager.clock))

    @property
    def stored(self) -> bool:
        """Whether the session is in the store (something was written)."""
        return self._stored

    def _run(self, plan: Plan[Call, T]) -> T:
        if self._stored or self._closed or self._manager.closed:
            return super()._run(plan)
        return drive(plan, self._perform_pending)

    def _perform_pending(self, call: Call) -> Any:
        if not self._stored:
            answer = _EMPTY.get(call.method)
            if answer is not None:
                return answer(self._sealed, call)
            self._store()
        return self._perform(call)

    def _store(self) -> None:
        with self._store_lock:
            if not self._stored:
                self._perform(Call("save_session", (self._sealed,)))
                self._stored = True
