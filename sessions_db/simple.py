"""A backend of your own from the seed's nine methods: :class:`SimpleBackend`.

Subclass :class:`SimpleBackend` and implement the seed's ``StorageBackend``
methods, with the seed's meaning (store and load what you are given), and the
result plugs into :class:`~sessions_db.Manager` (and, through
:class:`~sessions_db.aio.ThreadedBackend`, into the asyncio manager)::

    class MyBackend(sdb.SimpleBackend):
        def save_session(self, meta): ...       # create or replace, as given
        def load_session(self, session_id): ...
        def delete_session(self, session_id): ...   # with its entries and checkpoints
        def list_sessions(self, agent_name, *, user_id=None): ...
        def append_entry(self, session_id, entry): ...   # store as given, at the end
        def load_entries(self, session_id): ...     # in the order they were appended
        def save_checkpoint(self, checkpoint): ...
        def load_checkpoint(self, checkpoint_id): ...
        def close(self): ...

    mgr = sdb.Manager(MyBackend())

:class:`SimpleStorage` derives everything else the manager needs (linking
entries to the current leaf, branches, message counts, checkpoints and their
checksums, paging and ordering of listings, get-or-create) from those nine
calls. Each derived operation runs inside :meth:`SimpleBackend.unit_of_work`.

**Guarantees.**

* *Exact within one process, for one backend object.* The default unit of work
  is a lock of the backend object: operations through it are serialized, so
  concurrent appends form one chain, checkpoints are taken at the leaf, and
  get-or-create makes one session. Two backend objects on the same storage, or
  several processes, are not coordinated: override :meth:`~SimpleBackend.unit_of_work`
  with a lock that spans them (a file lock, a database's advisory lock or
  transaction) to extend the guarantee to them.
* *Not atomic against crashes.* An append is several calls: ``append_entry``
  for each entry, then ``save_session`` with the new current leaf and message
  count, which is what commits it. If the process dies in between, the session
  (its current branch, message count, ``updated_at``) is as it was before the
  append; entries stored after the current leaf are left over from such an
  append and are ignored, so the same messages can be appended again. (If no
  later append re-uses their IDs, an earlier leftover can show in
  ``get_entries`` as a branch that was never current.)
* *Reads are as fast as your backend's ``load_entries``*: every branch read
  loads the session's entries. Listings load every session of the agent.

**Unsupported without a tenth method.** The nine methods cannot name the
agents a store holds, so :meth:`SimpleStorage.list_agents` raises
:class:`~sessions_db.UnsupportedOperationError`, and with it everything that
spans agents: ``Manager.list_agents``, ``Manager.prune`` without an
``agent_name``, memory searches and listings without an ``agent_name``, and
copying or exporting the whole store. Implement
:meth:`SimpleBackend.list_agents` to support them all.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from datetime import datetime
from typing import Any

from .backend import (
    WHOLE_BRANCH,
    BranchQuery,
    CallsUnitOfWork,
    NewCheckpoint,
    StorageBackend,
    UnitOfWork,
    checkpoint_entry,
)
from .checksum import branch_checksum
from .errors import (
    CheckpointNotFoundError,
    DuplicateEntryError,
    DuplicateKeyError,
    EntryNotFoundError,
    SessionNotFoundError,
    StorageClosedError,
    UnsupportedOperationError,
)
from .storage import Cursor, select_sessions
from .types import Checkpoint, EntryType, SessionEntry, SessionMetadata

_LOCKS_GUARD = threading.Lock()


class SimpleBackend(ABC):
    """The seed's nine storage methods; see the module's documentation for what is derived.

    Implement them with plain storage semantics: each stores or returns what
    it is given, nothing more. They are only ever called inside
    :meth:`unit_of_work`, and never after :meth:`close`.
    """

    @abstractmethod
    def save_session(self, meta: SessionMetadata) -> None:
        """Store the session's metadata as given: create it, or replace what is stored."""

    @abstractmethod
    def load_session(self, session_id: str) -> SessionMetadata:
        """Return the metadata last saved; ``SessionNotFoundError`` if absent."""

    @abstractmethod
    def delete_session(self, session_id: str) -> None:
        """Remove the session, its entries and checkpoints; ``SessionNotFoundError`` if absent."""

    @abstractmethod
    def list_sessions(
        self, agent_name: str, *, user_id: str | None = None
    ) -> list[SessionMetadata]:
        """Return every session of ``agent_name`` (of ``user_id`` if given), in any order."""

    @abstractmethod
    def append_entry(self, session_id: str, entry: SessionEntry) -> None:
        """Store ``entry`` as given (its ``parent_id`` is set) after the session's other entries."""

    @abstractmethod
    def load_entries(self, session_id: str) -> list[SessionEntry]:
        """Return the session's entries in the order they were appended (``[]`` if none)."""

    @abstractmethod
    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store the checkpoint as given."""

    @abstractmethod
    def load_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        """Return the checkpoint; ``CheckpointNotFoundError`` if absent."""

    @abstractmethod
    def close(self) -> None:
        """Release the backend's resources (called once)."""

    def list_agents(self) -> list[str]:
        """Return the agents that have sessions. Optional: by default it is not supported.

        ``UnsupportedOperationError`` unless overridden; see the module's documentation.
        """
        raise UnsupportedOperationError(
            f"{type(self).__name__} cannot list its agents (implement SimpleBackend.list_agents): "
            "list_agents, prune without agent_name, memory without agent_name and copying "
            "the whole store need it"
        )

    def unit_of_work(self) -> AbstractContextManager[Any]:
        """Return the context every derived operation runs in (not re-entered).

        By default a lock of this backend object: exact within one process,
        for operations through this object. Override it with a lock that spans
        processes (or a transaction of your store) to be exact across them.
        """
        lock = self.__dict__.get("_sessions_db_lock")
        if lock is None:
            with _LOCKS_GUARD:
                lock = self.__dict__.setdefault("_sessions_db_lock", threading.Lock())
        assert isinstance(lock, AbstractContextManager)
        return lock


def committed(entries: Sequence[SessionEntry], leaf: str | None) -> list[SessionEntry]:
    """Return the entries that completed appends stored, in order (see the module's guarantees).

    The current leaf is always the newest entry of a completed append, so
    what follows it was left by an append that did not finish; an ID stored
    twice was left over once and then appended again, and its last copy counts.
    """
    if leaf is None:
        return []
    end = max((i for i, e in enumerate(entries) if e.id == leaf), default=-1)
    prefix = entries[: end + 1]
    last = {e.id: i for i, e in enumerate(prefix)}
    return [e for i, e in enumerate(prefix) if last[e.id] == i]


def _branch(by_id: dict[str, SessionEntry], leaf: str | None) -> list[SessionEntry]:
    branch: list[SessionEntry] = []
    while leaf is not None:
        entry = by_id[leaf]
        branch.append(entry)
        leaf = entry.parent_id
    branch.reverse()
    return branch


class SimpleStorage(StorageBackend):
    """A :class:`~sessions_db.StorageBackend` derived from a :class:`SimpleBackend`.

    :class:`~sessions_db.Manager` and :class:`~sessions_db.aio.ThreadedBackend`
    wrap a ``SimpleBackend`` in one themselves. See the module's documentation
    for the guarantees it keeps.
    """

    def __init__(self, backend: SimpleBackend) -> None:
        self._simple = backend
        self._closed = False
        self._holder: int | None = None  # the thread whose unit of work holds the backend

    @property
    def simple(self) -> SimpleBackend:
        """The backend of nine methods underneath."""
        return self._simple

    def _work(self) -> AbstractContextManager[Any]:
        if self._closed:
            raise StorageClosedError("the storage backend is closed")
        if self._holder == threading.get_ident():
            return nullcontext()  # inside a unit of work of this thread that holds it
        return self._simple.unit_of_work()

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Hold the backend's unit of work while the block runs (calls of this thread join it)."""
        with self._work():
            self._holder = threading.get_ident()
            try:
                yield
            finally:
                self._holder = None

    def unit_of_work(self, *, write: bool = True) -> UnitOfWork:
        """Open a unit of work (see :class:`SimpleUnitOfWork`)."""
        return SimpleUnitOfWork(self)

    def _history(self, session_id: str) -> tuple[SessionMetadata, list[SessionEntry]]:
        meta = self._simple.load_session(session_id)
        return meta, committed(self._simple.load_entries(session_id), meta.current_leaf)

    def _commit(self, meta: SessionMetadata, **changes: Any) -> None:
        self._simple.save_session(meta.model_copy(update=changes))

    # -- sessions --------------------------------------------------------------------

    def save_session(self, meta: SessionMetadata) -> None:  # noqa: D102 - see StorageBackend
        with self._work():
            try:
                stored = self._simple.load_session(meta.id)
            except SessionNotFoundError:
                if meta.key is not None and self._keyed(meta.agent_name, meta.key) is not None:
                    raise DuplicateKeyError("another session of the agent has this key") from None
                self._commit(meta, message_count=0, current_leaf=None)
            else:
                self._commit(stored, user_id=meta.user_id, metadata=meta.metadata)

    def load_session(self, session_id: str) -> SessionMetadata:  # noqa: D102
        with self._work():
            return self._simple.load_session(session_id)

    def delete_session(self, session_id: str) -> None:  # noqa: D102
        with self._work():
            self._simple.load_session(session_id)
            self._simple.delete_session(session_id)

    def _keyed(self, agent_name: str, key: str) -> SessionMetadata | None:
        return next((m for m in self._listed(agent_name, None) if m.key == key), None)

    def load_session_by_key(self, agent_name: str, key: str) -> SessionMetadata:  # noqa: D102
        with self._work():
            found = self._keyed(agent_name, key)
        if found is None:
            raise SessionNotFoundError(f"no session of agent {agent_name!r} has this key")
        return found

    def _listed(self, agent_name: str, user_id: str | None) -> list[SessionMetadata]:
        found = [
            meta
            for meta in self._simple.list_sessions(agent_name, user_id=user_id)
            if meta.agent_name == agent_name and (user_id is None or meta.user_id == user_id)
        ]
        found.sort(key=lambda meta: (meta.updated_at, meta.id), reverse=True)
        return found

    def list_sessions(  # noqa: D102
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
        with self._work():
            found = self._listed(agent_name, user_id)
        return select_sessions(
            found,
            limit=limit,
            offset=offset,
            updated_after=updated_after,
            updated_before=updated_before,
            metadata=metadata,
            after=after,
        )

    def list_agents(self) -> list[str]:  # noqa: D102
        with self._work():
            return sorted(set(self._simple.list_agents()))

    def prune_sessions(  # noqa: D102
        self, updated_before: datetime, *, agent_name: str | None = None, dry_run: bool = False
    ) -> list[str]:
        return self._prune(updated_before, agent_name, dry_run, None)

    def prune_batch(  # noqa: D102 - see Storage
        self, updated_before: datetime, *, agent_name: str | None = None, limit: int
    ) -> list[str]:
        return self._prune(updated_before, agent_name, False, limit)

    def _prune(
        self, updated_before: datetime, agent_name: str | None, dry_run: bool, limit: int | None
    ) -> list[str]:
        with self._work():
            agents = [agent_name] if agent_name is not None else self._simple.list_agents()
            old = sorted(
                (
                    meta
                    for agent in agents
                    for meta in self._listed(agent, None)
                    if meta.updated_at < updated_before
                ),
                key=lambda meta: (meta.updated_at, meta.id),
            )[:limit]
            if not dry_run:
                for meta in old:
                    self._simple.delete_session(meta.id)
        return sorted(meta.id for meta in old)

    def find_or_create_session(self, meta: SessionMetadata) -> SessionMetadata:
        """Atomic within the unit of work (see :meth:`SimpleBackend.unit_of_work`)."""
        with self._work():
            if meta.key is not None:
                keyed = self._keyed(meta.agent_name, meta.key)
                if keyed is not None:
                    return keyed
                self._commit(meta, message_count=0, current_leaf=None)
                return meta
            found = self._listed(meta.agent_name, meta.user_id)
            if found:
                return found[0]
            self._commit(meta, message_count=0, current_leaf=None)
            return meta

    # -- entries -------------------------------------------------------------------------

    def append_entries(  # noqa: D102
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        *,
        fork_from: str | None = None,
        at_root: bool = False,
        updated_at: datetime,
    ) -> None:
        with self._work():
            meta, stored = self._history(session_id)
            by_id = {e.id: e for e in stored}
            if fork_from is not None and fork_from not in by_id:
                raise EntryNotFoundError(f"entry {fork_from} not found in session {session_id}")
            new_ids = [e.id for e in entries]
            if len(set(new_ids)) != len(new_ids) or any(i in by_id for i in new_ids):
                raise DuplicateEntryError(f"an entry ID is already in session {session_id}")
            if not entries:
                return
            parent = meta.current_leaf if fork_from is None else fork_from
            if at_root:
                parent, count = None, 0
            elif fork_from is None:
                count = meta.message_count
            else:
                branch = _branch(by_id, parent)
                count = sum(e.type is EntryType.MESSAGE for e in branch)
            link: str | None = parent
            for entry in entries:
                self._simple.append_entry(session_id, entry.model_copy(update={"parent_id": link}))
                link = entry.id
            parent = link
            count += sum(e.type is EntryType.MESSAGE for e in entries)
            self._commit(meta, current_leaf=parent, message_count=count, updated_at=updated_at)

    def load_entries(self, session_id: str) -> list[SessionEntry]:  # noqa: D102
        with self._work():
            return self._history(session_id)[1]

    def load_branch(  # noqa: D102
        self, session_id: str, query: BranchQuery = WHOLE_BRANCH
    ) -> list[SessionEntry]:
        with self._work():
            meta, stored = self._history(session_id)
        by_id = {e.id: e for e in stored}
        leaf = meta.current_leaf if query.leaf is None else query.leaf
        if leaf is not None and leaf not in by_id:
            raise EntryNotFoundError(f"entry {leaf} not found in session {session_id}")
        if query.before is not None:
            before = by_id.get(query.before)
            if before is None or before.type is not EntryType.MESSAGE:
                raise EntryNotFoundError(
                    f"message {query.before} not found in session {session_id}"
                )
            leaf = before.parent_id
        branch = _branch(by_id, leaf)
        if query.messages_only:
            branch = [e for e in branch if e.type is EntryType.MESSAGE]
        if query.limit is not None:
            branch = branch[len(branch) - query.limit :] if query.limit else []
        return branch

    # -- checkpoints ------------------------------------------------------------------------

    def create_checkpoint(self, session_id: str, new: NewCheckpoint) -> Checkpoint:  # noqa: D102
        with self._work():
            meta, stored = self._history(session_id)
            if any(e.id == new.entry_id for e in stored):
                raise DuplicateEntryError(
                    f"entry {new.entry_id} is already in session {session_id}"
                )
            entry = checkpoint_entry(new, meta.current_leaf)
            branch = [*_branch({e.id: e for e in stored}, meta.current_leaf), entry]
            checkpoint = Checkpoint.model_construct(
                id=new.id,
                session_id=session_id,
                timestamp=new.timestamp,
                entry_id=new.entry_id,
                checksum=branch_checksum(branch),
                metadata=new.metadata,
            )
            self._simple.append_entry(session_id, entry)
            self._simple.save_checkpoint(checkpoint)
            self._commit(meta, current_leaf=entry.id, updated_at=new.timestamp)
        return checkpoint

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:  # noqa: D102
        with self._work():
            _, stored = self._history(checkpoint.session_id)
            if not any(e.id == checkpoint.entry_id for e in stored):
                raise EntryNotFoundError(
                    f"entry {checkpoint.entry_id} not found in session {checkpoint.session_id}"
                )
            self._simple.save_checkpoint(checkpoint)

    def load_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        """Return the checkpoint, if its session and entry are stored (else not found)."""
        with self._work():
            checkpoint = self._simple.load_checkpoint(checkpoint_id)
            try:
                _, stored = self._history(checkpoint.session_id)
            except SessionNotFoundError:
                stored = []
        if not any(e.id == checkpoint.entry_id for e in stored):
            raise CheckpointNotFoundError(f"checkpoint {checkpoint_id} not found")
        return checkpoint

    def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        """Return the checkpoints of the session's checkpoint entries, in the entries' order."""
        found: list[Checkpoint] = []
        with self._work():
            _, stored = self._history(session_id)
            for entry in stored:
                if entry.type is not EntryType.CHECKPOINT:
                    continue
                try:
                    checkpoint = self._simple.load_checkpoint(entry.data["checkpoint_id"])
                except CheckpointNotFoundError:
                    continue  # its entry is stored, the checkpoint not yet (a copy under way)
                if checkpoint.session_id == session_id and checkpoint.entry_id == entry.id:
                    found.append(checkpoint)
        return found

    def close(self) -> None:  # noqa: D102
        if self._closed:
            return
        self._closed = True
        self._simple.close()

    def erase_user(self, user_id: str) -> int:
        """Delete the user's sessions of every agent, in one unit of work.

        Needs :meth:`SimpleBackend.list_agents` (else ``UnsupportedOperationError``,
        and nothing is deleted).
        """
        with self._work():
            mine = [
                meta.id
                for agent in set(self._simple.list_agents())
                for meta in self._listed(agent, user_id)
            ]
            for session_id in mine:
                self._simple.delete_session(session_id)
        return len(mine)


def as_storage(backend: StorageBackend | SimpleBackend) -> StorageBackend:
    """Return ``backend``, or a :class:`SimpleStorage` on it if it is a :class:`SimpleBackend`."""
    if isinstance(backend, SimpleBackend):
        return SimpleStorage(backend)
    return backend


class SimpleUnitOfWork(CallsUnitOfWork):
    """A unit of work on a :class:`SimpleStorage`.

    Each call is a derived operation in the backend's own unit of work; once
    :meth:`begin` or :meth:`lock_session` is called, the unit holds the
    backend's unit of work until it ends, so that an operation that reads,
    decides and writes (a pop, a metadata update) is exact within one process,
    as every derived operation is. Nothing is rolled back: the nine methods
    have no transactions.
    """

    def __init__(self, storage: SimpleStorage) -> None:
        super().__init__(storage)
        self._storage = storage
        self._held = ExitStack()
        self._holding = False

    def begin(self) -> None:  # noqa: D102 - see UnitOfWork
        if not self._holding:
            self._held.enter_context(self._storage.holding())
            self._holding = True

    def lock_session(self, session_id: str) -> None:  # noqa: D102 - see Storage
        self.begin()

    def commit(self) -> None:  # noqa: D102
        self._release()

    def rollback(self) -> None:  # noqa: D102
        self._release()

    def end(self) -> None:  # noqa: D102
        self._release()

    def _release(self) -> None:
        self._holding = False
        self._held.close()
