"""The storage interface, declared once: the operations on sessions, entries and checkpoints.

:class:`Storage` is the seed's interface in Python, with the few calls a store
needs to be exact under concurrency: appends link entries to the current leaf
inside the store (so concurrent appends form one chain), and checkpoints are
taken at the leaf atomically. A :class:`UnitOfWork` offers these operations
inside one transaction; a :class:`~sessions_db.StorageBackend` offers them each
in a transaction of its own, and opens units of work. The contract suite in
:mod:`sessions_db.testing` checks any implementation against these docstrings.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from . import search
from .errors import EntryNotFoundError, SessionNotFoundError, SessionsDBError
from .types import Checkpoint, EntryType, Message, MessageHit, SessionEntry, SessionMetadata

if TYPE_CHECKING:
    from .privacy import Privacy


@dataclass(frozen=True, slots=True)
class BranchQuery:
    """Which part of a branch :meth:`StorageBackend.load_branch` returns.

    The branch ends at ``leaf`` (the session's current leaf when ``None``), or,
    with ``before``, at the parent of that entry. ``messages_only`` keeps message
    entries; ``limit`` keeps the newest ``limit`` of what is kept.
    """

    leaf: str | None = None
    before: str | None = None
    messages_only: bool = False
    limit: int | None = None


#: Where a listing continues: the ``(updated_at, id)`` of the last session it returned.
Cursor = tuple[datetime, str]


def contains(metadata: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether ``metadata`` has every key of ``wanted`` with the same (JSON) value."""
    return all(key in metadata and metadata[key] == value for key, value in wanted.items())


def select_sessions(
    sessions: Iterable[SessionMetadata],
    *,
    user_id: str | None = None,
    limit: int | None = None,
    offset: int = 0,
    updated_after: datetime | None = None,
    updated_before: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    after: Cursor | None = None,
) -> list[SessionMetadata]:
    """Return a page of ``sessions`` as :meth:`Storage.list_sessions` defines it, in Python.

    For stores that list by reading their sessions (the file store, a
    :class:`~sessions_db.SimpleBackend`): the SQL stores do the same in SQL.
    """
    picked = [
        meta
        for meta in sessions
        if (user_id is None or meta.user_id == user_id)
        and (updated_after is None or meta.updated_at > updated_after)
        and (updated_before is None or meta.updated_at < updated_before)
        and (metadata is None or contains(meta.metadata, metadata))
        and (after is None or (meta.updated_at, meta.id) < after)
    ]
    picked.sort(key=lambda meta: (meta.updated_at, meta.id), reverse=True)
    end = None if limit is None else offset + limit
    return picked[offset:end]


#: The whole current branch, every entry type.
WHOLE_BRANCH = BranchQuery()


@dataclass(frozen=True, slots=True)
class NewCheckpoint:
    """What :meth:`StorageBackend.create_checkpoint` needs to take a checkpoint."""

    id: str
    entry_id: str
    timestamp: datetime
    metadata: dict[str, Any] = field(default_factory=dict)


class Storage(ABC):
    """The operations on stored sessions, their entry trees and checkpoints.

    Every method raises :class:`~sessions_db.StorageClosedError` once its store
    is closed, and leaves what was stored intact when it raises.
    """

    @abstractmethod
    def save_session(self, meta: SessionMetadata) -> None:
        """Create the session, or update the ``user_id`` and ``metadata`` of an existing one.

        The history fields (``current_leaf``, ``message_count``) of an existing
        session are the store's own, kept by :meth:`append_entries`; the agent
        name of a session never changes.
        """

    @abstractmethod
    def load_session(self, session_id: str) -> SessionMetadata:
        """Return the session's metadata; ``SessionNotFoundError`` if absent."""

    def lock_session(self, session_id: str) -> None:  # noqa: B027 - stores without locks
        """Hold the session against other writers until the unit of work's transaction ends.

        Called after :meth:`UnitOfWork.begin` by operations that read, decide
        and then write (a restore, an automatic checkpoint). SQL stores lock
        the session's row (SQLite's write transaction already excludes every
        other writer); a store whose calls are each a transaction of its own
        does nothing here, and those operations are exact only as far as its
        own calls are. ``SessionNotFoundError`` if the session is absent, on
        stores that lock.
        """

    @abstractmethod
    def delete_session(self, session_id: str) -> None:
        """Remove the session, its entries and checkpoints; ``SessionNotFoundError`` if absent."""

    @abstractmethod
    def list_sessions(
        self,
        agent_name: str,
        *,
        user_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        metadata: dict[str, Any] | None = None,
        after: Cursor | None = None,
    ) -> list[SessionMetadata]:
        """Return the agent's sessions (of ``user_id`` if given), most recently updated first.

        Ties in ``updated_at`` are ordered by ID, descending, so that pages are
        stable. ``updated_after`` / ``updated_before`` keep the sessions updated
        strictly after / before those times; ``metadata`` keeps those whose
        metadata has every given key with the given value; ``after`` (the
        ``(updated_at, id)`` of the last session of the previous page) keeps
        those that come after it in this order (keyset paging). See
        :func:`select_sessions` for the rule in Python.
        """

    @abstractmethod
    def load_session_by_key(self, agent_name: str, key: str) -> SessionMetadata:
        """Return the agent's session with external key ``key`` (``SessionNotFoundError``: none)."""

    @abstractmethod
    def list_agents(self) -> list[str]:
        """Return the names of the agents that have at least one session, sorted."""

    @abstractmethod
    def prune_sessions(
        self, updated_before: datetime, *, agent_name: str | None = None, dry_run: bool = False
    ) -> list[str]:
        """Delete the sessions last updated before ``updated_before`` (of ``agent_name`` if given).

        Returns the IDs deleted (with ``dry_run``, the IDs that would be, deleting
        nothing). Entries and checkpoints go with their sessions.
        """

    def find_or_create_session(self, meta: SessionMetadata) -> SessionMetadata:
        """Return the session ``meta`` describes if one exists, else save ``meta``.

        With ``meta.key``, the session is the agent's session with that key;
        without, the latest session of ``meta``'s agent and user. Stores that can
        should do this atomically, so that concurrent callers get one session.
        This default is not atomic.
        """
        if meta.key is not None:
            try:
                return self.load_session_by_key(meta.agent_name, meta.key)
            except SessionNotFoundError:
                self.save_session(meta)
                return meta
        found = self.list_sessions(meta.agent_name, user_id=meta.user_id, limit=1)
        if found:
            return found[0]
        self.save_session(meta)
        return meta

    def create_session(self, meta: SessionMetadata, entries: Sequence[SessionEntry]) -> None:
        """Create the session with ``entries`` as its history, linked one after the other.

        ``DuplicateKeyError`` if the agent has a session with ``meta.key``. A
        store with transactions does it in the unit's transaction; this
        default saves the session, then appends (a store whose calls are each a
        transaction of its own may keep the session without its entries if it
        fails in between).
        """
        self.save_session(meta)
        if entries:
            self.append_entries(meta.id, entries, updated_at=meta.updated_at)

    @abstractmethod
    def append_entries(
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        *,
        fork_from: str | None = None,
        at_root: bool = False,
        updated_at: datetime,
    ) -> None:
        """Append ``entries`` to the session, all or nothing, in order.

        The entries' own ``parent_id`` is ignored: the first entry is linked to the
        current leaf (or, with ``fork_from``, to that entry of the session; with
        ``at_root``, to nothing: it starts a new tree), each
        next one to the one before, and the last becomes the current leaf. The
        session's ``message_count`` becomes the number of messages on the new
        branch and ``updated_at`` becomes ``updated_at``. Concurrent appends are
        serialized: each sees the leaf the one before it left.
        ``SessionNotFoundError`` if the session is absent, ``EntryNotFoundError`` if
        ``fork_from`` is not one of its entries, ``DuplicateEntryError`` if an entry
        ID is already in the session. Durable when it returns.
        """

    def append_entry(
        self,
        session_id: str,
        entry: SessionEntry,
        *,
        fork_from: str | None = None,
        at_root: bool = False,
        updated_at: datetime,
    ) -> None:
        """Append one entry; see :meth:`append_entries`."""
        self.append_entries(
            session_id, [entry], fork_from=fork_from, at_root=at_root, updated_at=updated_at
        )

    @abstractmethod
    def load_entries(self, session_id: str) -> list[SessionEntry]:
        """Return every entry of the session (all branches) in the order they were appended.

        ``SessionNotFoundError`` if the session is absent.
        """

    @abstractmethod
    def load_branch(
        self, session_id: str, query: BranchQuery = BranchQuery()
    ) -> list[SessionEntry]:
        """Return the entries of one branch, root first (see :class:`BranchQuery`).

        ``SessionNotFoundError`` if the session is absent; ``EntryNotFoundError`` if
        ``query.leaf`` or ``query.before`` is not an entry of the session (``before``
        must be a message).
        """

    def load_messages(self, session_id: str, query: BranchQuery) -> list[Message]:
        """Return the messages of one branch as :class:`Message` objects, root first.

        The same as ``load_branch`` with ``messages_only`` (which is implied), each
        entry turned into its message; stores may build them more cheaply (the SQL
        store builds one object per row). Raises as :meth:`load_branch` does.
        """
        entries = self.load_branch(session_id, replace(query, messages_only=True))
        return [entry.to_message() for entry in entries]

    def load_entries_by_id(self, session_id: str, entry_ids: Sequence[str]) -> list[SessionEntry]:
        """Return the session's entries that have one of ``entry_ids``, in append order.

        IDs that are not entries of the session are left out (each entry comes
        once, however often its ID is given). ``SessionNotFoundError`` if the
        session is absent. This default reads every entry of the session; stores
        with an index on entry IDs override it (the SQL stores read only those rows).
        """
        wanted = set(entry_ids)
        entries: list[SessionEntry] = self.load_entries(session_id)
        return [entry for entry in entries if entry.id in wanted]

    def load_children(self, session_id: str, entry_id: str) -> list[SessionEntry]:
        """Return the entries whose parent is ``entry_id``, in append order.

        ``SessionNotFoundError`` if the session is absent, ``EntryNotFoundError``
        if ``entry_id`` is not one of its entries. This default reads every entry
        of the session; stores with an index on parents override it (the SQL
        stores read only those rows).
        """
        entries: list[SessionEntry] = self.load_entries(session_id)
        if all(entry.id != entry_id for entry in entries):
            raise EntryNotFoundError(f"entry {entry_id} not found in session {session_id}")
        return [entry for entry in entries if entry.parent_id == entry_id]

    @abstractmethod
    def create_checkpoint(self, session_id: str, new: NewCheckpoint) -> Checkpoint:
        """Take a checkpoint at the current leaf, atomically, and return it.

        Appends a ``checkpoint`` entry with ID ``new.entry_id`` (data
        ``{"checkpoint_id": new.id}``) at the current leaf, computes the checksum
        of the branch that ends with it (:func:`sessions_db.checksum.branch_checksum`)
        and stores the checkpoint, all while no other append can move the leaf.
        ``SessionNotFoundError`` if the session is absent.
        """

    @abstractmethod
    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store a checkpoint as given (its entry must already be in the session).

        ``SessionNotFoundError`` / ``EntryNotFoundError`` if its session or entry is absent.
        """

    @abstractmethod
    def load_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        """Return the checkpoint; ``CheckpointNotFoundError`` if absent."""

    @abstractmethod
    def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        """Return the session's checkpoints, oldest first; ``SessionNotFoundError`` if absent."""

    def search_messages(
        self,
        user_id: str,
        query: str,
        *,
        agent_name: str | None = None,
        limit: int = 5,
    ) -> list[MessageHit]:
        """Return the user's message entries that match ``query``, most relevant first.

        Searches the messages (every branch) of the sessions whose ``user_id`` is
        ``user_id`` (and whose agent is ``agent_name`` if given), at most
        ``limit`` of them; see :mod:`sessions_db.search` for the text searched and
        the matching. This default reads every message of the user; stores with
        a full-text index override it.
        """
        return scan(self, user_id, query, agent_name, limit)

    def list_messages(
        self,
        user_id: str,
        *,
        agent_name: str | None = None,
        message_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[MessageHit]:
        """Return the user's message entries, newest first (by timestamp, then session and order).

        With ``message_id``, only the entries with that ID. This default reads
        every message of the user; SQL stores override it with one query.
        """
        return scan_list(self, user_id, agent_name, message_id, limit, offset)

    def erase_user(self, user_id: str) -> int:
        """Remove every session of ``user_id`` on every agent; return how many were removed.

        Each session goes with its entries, checkpoints and whatever the store
        keeps for it (its full-text index rows); sessions of other users and of
        no user are untouched. ``user_id`` is a checked user ID, never ``None``.
        Stores that can should do this in one transaction. This default lists
        the agents (:meth:`list_agents`) and deletes the user's sessions one by
        one, which is not atomic: a session created for the user meanwhile may
        stay.
        """
        count = 0
        for agent in self.list_agents():
            for meta in self.list_sessions(agent, user_id=user_id):
                if meta.user_id != user_id:
                    continue
                try:
                    self.delete_session(meta.id)
                except SessionNotFoundError:
                    continue  # deleted meanwhile: not counted
                count += 1
        return count


W = TypeVar("W")


class UnitOfWork(Storage):
    """The operations of :class:`Storage` inside one transaction of one store.

    Use it as a context manager: what it did is kept only if :meth:`commit` is
    called before the block ends; otherwise (or when the block raises) it is
    rolled back. A store that cannot span several operations with one
    transaction says how far it goes in its own documentation; every single
    operation is still atomic on every store.

    An operation that makes more than one call and must see no other writer
    between them (verify, then write) calls :meth:`begin` first.
    """

    def begin(self) -> None:
        """Make the rest of the unit one transaction, isolated from other writers.

        SQL stores open their transaction here (a savepoint inside a host's
        transaction); stores whose calls are each a transaction of their own
        do nothing. Calling it twice is harmless.
        """

    @abstractmethod
    def commit(self) -> None:
        """Keep what the unit did. A host's own transaction is never committed here."""

    @abstractmethod
    def rollback(self) -> None:
        """Undo what the unit did since it began (or since its last commit)."""

    @abstractmethod
    def end(self) -> None:
        """End the unit: roll back what was not committed and release what it holds."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.end()
            return
        # The block's own error says what went wrong; ending the unit failed as a result.
        with suppress(SessionsDBError):
            self.end()


#: A piece of work done in one unit of work, returning a value.
Work = Callable[[UnitOfWork], W]


def event_marker(entry_id: str, timestamp: datetime, event: str, **data: Any) -> SessionEntry:
    """Return the metadata entry that records ``event`` (restore, rewind, pop, clear).

    Its data is ``{"event": event, **data}``: what SQL counts and ``show --tree`` marks.
    """
    return SessionEntry.model_construct(
        id=entry_id,
        parent_id=None,
        timestamp=timestamp,
        type=EntryType.METADATA,
        data={"event": event, **data},
    )


def restore_marker(entry_id: str, checkpoint_id: str, timestamp: datetime) -> SessionEntry:
    """Return the metadata entry that records a restore of ``checkpoint_id``."""
    return event_marker(entry_id, timestamp, "restore", checkpoint_id=checkpoint_id)


def checkpoint_entry(new: NewCheckpoint, parent_id: str | None) -> SessionEntry:
    """Return the checkpoint entry that ``create_checkpoint`` appends for ``new``."""
    return SessionEntry.model_construct(
        id=new.entry_id,
        parent_id=parent_id,
        timestamp=new.timestamp,
        type=EntryType.CHECKPOINT,
        data={"checkpoint_id": new.id},
    )


# -- scanning a user's messages (the default search and listing) --------------------


def _user_sessions(store: Storage, user_id: str, agent_name: str | None) -> list[SessionMetadata]:
    agents = [agent_name] if agent_name is not None else store.list_agents()
    found: list[SessionMetadata] = []
    for agent in agents:
        found.extend(store.list_sessions(agent, user_id=user_id))
    return found


def _user_messages(
    store: Storage, user_id: str, agent_name: str | None, privacy: Privacy | None
) -> list[tuple[MessageHit, int]]:
    """Return every message entry of the user's sessions, with its place in its session.

    Payloads are opened with ``privacy`` (as ``user_id``'s); with ``None``, as stored.
    """
    found: list[tuple[MessageHit, int]] = []
    for meta in _user_sessions(store, user_id, agent_name):
        try:
            entries: list[SessionEntry] = store.load_entries(meta.id)
        except SessionNotFoundError:
            continue  # deleted since it was listed
        for seq, entry in enumerate(entries):
            if entry.type is EntryType.MESSAGE:
                if privacy is None:
                    found.append((MessageHit(meta.id, entry), seq))
                else:
                    opened = privacy.open_entry(meta.id, entry, owner=user_id)
                    found.append((MessageHit(meta.id, opened), seq))
    return found


def _newest_first(item: tuple[MessageHit, int]) -> tuple[Any, ...]:
    hit, seq = item
    return (hit.entry.timestamp, hit.session_id, seq)


def scan(
    store: Storage,
    user_id: str,
    query: str,
    agent_name: str | None,
    limit: int,
    privacy: Privacy | None = None,
) -> list[MessageHit]:
    """Search the user's messages by reading them all (any backend).

    With ``privacy``, payloads are decrypted (and checked) first and the hits
    hold them opened; without, the stored payloads are searched and returned.
    """
    words = search.terms(query)
    if not words or limit <= 0:
        return []
    scored: list[tuple[MessageHit, int]] = []
    for hit, seq in _user_messages(store, user_id, agent_name, privacy):
        value = search.score(words, search.payload_text(hit.entry.data["payload"]))
        if value > 0:
            scored.append((MessageHit(hit.session_id, hit.entry, value), seq))
    scored.sort(key=_newest_first, reverse=True)
    scored.sort(key=lambda item: item[0].score, reverse=True)
    return [hit for hit, _ in scored[:limit]]


def scan_list(
    store: Storage,
    user_id: str,
    agent_name: str | None,
    message_id: str | None,
    limit: int | None,
    offset: int,
) -> list[MessageHit]:
    """List the user's messages newest first by reading them all (any backend)."""
    found = _user_messages(store, user_id, agent_name, None)
    if message_id is not None:
        found = [item for item in found if item[0].entry.id == message_id]
    found.sort(key=_newest_first, reverse=True)
    end = None if limit is None else offset + limit
    return [hit for hit, _ in found[offset:end]]
