"""Long-term memory: a user's past messages across all their sessions.

:class:`SessionMemory` is the ``MemoryReader`` an agent gets through
``set_memory``: ``search(query, limit)`` finds the user's most relevant past
messages, ``read(message_id)`` returns one, ``list(limit=, offset=)`` pages
through them newest first. It only ever sees the messages of its user (and of
its agent, if it is given one).

The search runs in the database where it can: PostgreSQL full-text search over
a GIN index, SQLite FTS5; other backends scan (see :mod:`sessions_db.search` for
the text searched and the ranking). With encryption at rest the database holds
only ciphertext, so the search decrypts and scans the user's messages instead:
it works on every backend, at the cost of reading all of the user's messages.
A SQL store migrated without full-text search (``sessions-db migrate
--no-search``) raises :class:`~sessions_db.UnsupportedOperationError` on
``search``; ``read`` and ``list`` work on every store.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass

from . import ids
from ._handles import AsyncRunner, Runner
from .errors import EntryNotFoundError, InvalidArgumentError
from .privacy import PLAIN, Privacy
from .storage import Storage, scan
from .types import Message, MessageHit


@dataclass(frozen=True, slots=True)
class MemoryHit:
    """A past message of the user: its session, the message, and its relevance (larger: better)."""

    session_id: str
    message: Message
    score: float


def _user(user_id: object) -> str:
    uid = ids.user_id(user_id)
    if uid is None:
        raise InvalidArgumentError("long-term memory needs a user ID")
    return uid


def _limit(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def _hits(
    found: builtins.list[MessageHit], privacy: Privacy, owner: str
) -> builtins.list[MemoryHit]:
    hits = []
    for h in found:
        opened = privacy.open_entry(h.session_id, h.entry, owner=owner)
        hits.append(MemoryHit(h.session_id, opened.to_message(), h.score))
    return hits


def search_memory(
    store: Storage,
    user_id: str,
    query: str,
    agent_name: str | None,
    limit: int,
    privacy: Privacy = PLAIN,
) -> builtins.list[MemoryHit]:
    """Find the user's messages most relevant to ``query``, best first."""
    uid = _user(user_id)
    agent = None if agent_name is None else ids.agent_name(agent_name)
    count = _limit(limit, "limit")
    if not isinstance(query, str):
        raise InvalidArgumentError(f"query must be a string, got {type(query).__name__}")
    if privacy.encrypted:
        opened = scan(store, uid, query, agent, count, privacy)
        return [MemoryHit(h.session_id, h.entry.to_message(), h.score) for h in opened]
    found = store.search_messages(uid, query, agent_name=agent, limit=count)
    return _hits(found, privacy, uid)


def list_memory(
    store: Storage,
    user_id: str,
    agent_name: str | None,
    message_id: str | None,
    limit: int | None,
    offset: int,
    privacy: Privacy = PLAIN,
) -> builtins.list[MemoryHit]:
    """List the user's messages newest first (only ``message_id``'s, if given)."""
    agent = None if agent_name is None else ids.agent_name(agent_name)
    message = None if message_id is None else ids.entry_id(message_id)
    count = None if limit is None else _limit(limit, "limit")
    skip = _limit(offset, "offset")
    uid = _user(user_id)
    found = store.list_messages(uid, agent_name=agent, message_id=message, limit=count, offset=skip)
    return _hits(found, privacy, uid)


def read_memory(
    store: Storage, user_id: str, agent_name: str | None, message_id: str, privacy: Privacy = PLAIN
) -> Message:
    """Return the user's message ``message_id``; ``EntryNotFoundError`` if it is not theirs."""
    found = list_memory(store, user_id, agent_name, message_id, 1, 0, privacy)
    if not found:
        raise EntryNotFoundError(f"message {message_id} not found")
    return found[0].message


class MemoryFields:
    """A memory's user, agent and privacy (shared by sync and asyncio)."""

    def __init__(
        self, manager: Runner | AsyncRunner, user_id: str, *, agent_name: str | None = None
    ) -> None:
        self._privacy = manager.privacy
        self._user_id = _user(user_id)
        self._agent_name = None if agent_name is None else ids.agent_name(agent_name)

    @property
    def user_id(self) -> str:
        """The user whose messages this memory reads."""
        return self._user_id

    @property
    def agent_name(self) -> str | None:
        """The agent whose sessions this memory is limited to (``None``: all of them)."""
        return self._agent_name


class SessionMemory(MemoryFields):
    """The long-term memory of one user (optionally of one agent), read through a manager.

    Implements the ``MemoryReader`` protocol: :meth:`read`, :meth:`search`, :meth:`list`.
    """

    def __init__(self, manager: Runner, user_id: str, *, agent_name: str | None = None) -> None:
        super().__init__(manager, user_id, agent_name=agent_name)
        self._manager = manager

    def search(self, query: str, limit: int = 5) -> builtins.list[MemoryHit]:
        """Return up to ``limit`` of the user's past messages most relevant to ``query``.

        Messages match when they contain any word of the query; more of the words,
        and more often, rank higher. Unrelated messages are not returned.
        """
        uid, agent, privacy = self._user_id, self._agent_name, self._privacy
        return self._manager.run(
            lambda uow: search_memory(uow, uid, query, agent, limit, privacy), write=False
        )

    def read(self, message_id: str) -> Message:
        """Return the user's message ``message_id``; ``EntryNotFoundError`` if it is not theirs."""
        uid, agent, privacy = self._user_id, self._agent_name, self._privacy
        return self._manager.run(
            lambda uow: read_memory(uow, uid, agent, message_id, privacy), write=False
        )

    def list(self, *, limit: int | None = 20, offset: int = 0) -> builtins.list[MemoryHit]:
        """Return the user's messages across their sessions, newest first (a page of them)."""
        uid, agent, privacy = self._user_id, self._agent_name, self._privacy
        return self._manager.run(
            lambda uow: list_memory(uow, uid, agent, None, limit, offset, privacy), write=False
        )
