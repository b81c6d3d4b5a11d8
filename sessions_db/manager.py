"""The synchronous API: :class:`Manager` and :class:`Session`."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Generator, Iterable
from datetime import datetime, timedelta
from functools import partial
from types import TracebackType
from typing import Any, Self, TypeVar

from . import rules
from ._handles import ManagerFields, SessionFields
from .backend import StorageBackend
from .crypto import Keyring
from .errors import StorageClosedError
from .memory import SessionMemory
from .privacy import Privacy, Redactor
from .rules import DEFAULT_PRUNE_BATCH, Clock, TokenCounter
from .simple import SimpleBackend, as_storage
from .storage import Work
from .types import Checkpoint, Message, SessionEntry, SessionMetadata, utcnow

T = TypeVar("T")


class _ClosesOnExit:
    """``with x:`` closes ``x`` on exit."""

    def close(self) -> None:
        """Release what this object holds."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Manager(ManagerFields[StorageBackend], _ClosesOnExit):
    """Creates, finds, lists and deletes sessions kept by a :class:`StorageBackend`.

    Thread-safe. Closing the manager closes its backend; it is also a context manager.
    ``backend`` may also be a :class:`~sessions_db.SimpleBackend` (the seed's nine
    methods), which the manager wraps in a :class:`~sessions_db.SimpleStorage`.

    ``redact`` (a function ``payload -> payload``) runs on every message payload
    before it is stored; ``keyring`` (a :class:`~sessions_db.crypto.Keyring`)
    stores payloads and metadata encrypted. See :mod:`sessions_db.privacy`.
    With ``auto_checkpoint`` (an interval), appends of messages take automatic
    checkpoints (see :func:`sessions_db.rules.auto_checkpoint_due`); ``clock``
    gives the time of every timestamp and of that rule.
    """

    def __init__(
        self,
        backend: StorageBackend | SimpleBackend,
        *,
        clock: Clock = utcnow,
        redact: Redactor | None = None,
        keyring: Keyring | None = None,
        auto_checkpoint: timedelta | None = None,
    ) -> None:
        super().__init__(
            as_storage(backend),
            clock=clock,
            privacy=Privacy(redact, keyring),
            auto_checkpoint=auto_checkpoint,
        )
        self._lock = threading.Lock()

    def memory(self, user_id: str, *, agent_name: str | None = None) -> SessionMemory:
        """Return the long-term memory of ``user_id`` (across their sessions; of one agent).

        ``None`` raises ``InvalidArgumentError``; ``""`` or blank, ``InvalidIDError``.
        """
        return SessionMemory(self, user_id, agent_name=agent_name)

    def run(self, work: Work[T], *, write: bool = True) -> T:
        """Do ``work`` (a rule of :mod:`sessions_db.rules`) in one unit of work and commit it."""
        if self._closed:
            raise StorageClosedError("the session manager is closed")
        return self._backend.run(work, write=write)

    def create(
        self,
        agent_name: str,
        *,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> Session:
        """Create a new session for ``agent_name`` (of no user if ``user_id`` is empty or blank).

        ``key`` gives it an external key (any string of up to 1,024 characters,
        unique per agent: ``DuplicateKeyError`` if another session has it).
        """
        return Session(self, self.run(self._create_work(agent_name, user_id, metadata, key)))

    def get_by_key(self, agent_name: str, key: str, *, user_id: str | None = None) -> Session:
        """Return the agent's session with external key ``key``; ``SessionNotFoundError`` if none.

        With a ``user_id``, a session of another user (or of no user) is not found.
        """
        return Session(self, self.run(self._get_by_key_work(agent_name, key, user_id), write=False))

    def get(self, session_id: str, *, user_id: str | None = None) -> Session:
        """Return the session; ``SessionNotFoundError`` if absent or another user's.

        With a ``user_id``, a session of another user or of no user is not found.
        ``""`` or a blank ``user_id`` raises ``InvalidIDError``: only ``None`` skips
        the ownership check.
        """
        return Session(self, self.run(self._get_work(session_id, user_id), write=False))

    def get_or_create(
        self, agent_name: str, user_id: str | None, *, key: str | None = None
    ) -> Session:
        """Return the user's most recently updated session of the agent, else a new one.

        ``None``, ``""`` or a blank ``user_id`` always creates a new session of no
        user. With ``key``, the session is the agent's session with that key
        (created if absent; racing callers get one session); a key owned by
        another user is ``SessionNotFoundError``.
        """
        return Session(self, self.run(self._get_or_create_work(agent_name, user_id, key)))

    def list(
        self,
        agent_name: str,
        *,
        user_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        metadata: dict[str, Any] | None = None,
        after: SessionMetadata | None = None,
    ) -> builtins.list[SessionMetadata]:
        """Return the agent's sessions, most recently updated first.

        With a ``user_id``, only that user's; ``""`` or blank raises ``InvalidIDError``.
        ``updated_after`` / ``updated_before`` bound the update time (exclusive);
        ``metadata`` keeps the sessions whose metadata has every given key with
        the given value; ``after`` (the last :class:`SessionMetadata` of the
        previous page) continues the listing after it, as it was seen: keyset
        paging, where a session updated in between is neither repeated nor
        skipped and a late page costs what the first does.
        """
        work = self._list_work(
            agent_name,
            user_id,
            limit,
            offset,
            updated_after=updated_after,
            updated_before=updated_before,
            metadata=metadata,
            after=after,
        )
        return self.run(work, write=False)

    def delete(self, session_id: str) -> None:
        """Delete the session, its entries and checkpoints; ``SessionNotFoundError`` if absent."""
        self.run(partial(rules.delete, session_id=session_id))

    def list_agents(self) -> builtins.list[str]:
        """Return the names of the agents that have sessions, sorted."""
        return self.run(rules.list_agents, write=False)

    def prune(
        self,
        older_than: timedelta | datetime,
        *,
        agent_name: str | None = None,
        dry_run: bool = False,
        batch_size: int = DEFAULT_PRUNE_BATCH,
    ) -> builtins.list[str]:
        """Delete the sessions not updated for ``older_than`` (a duration, or a UTC time).

        Returns the deleted session IDs, sorted (with ``dry_run``, those that
        would be, in one read). The sessions go in batches of ``batch_size``
        (:meth:`prune_batches`), each its own transaction: on SQL stores one
        statement per batch, so no lock is held for long and no transaction
        grows with the store.
        """
        if dry_run:
            return self.run(self._prune_work(older_than, agent_name, True), write=False)
        batches = self.prune_batches(older_than, agent_name=agent_name, batch_size=batch_size)
        return sorted(session_id for batch in batches for session_id in batch)

    def prune_batches(
        self,
        older_than: timedelta | datetime,
        *,
        agent_name: str | None = None,
        batch_size: int = DEFAULT_PRUNE_BATCH,
    ) -> Generator[builtins.list[str], None, None]:
        """Delete the sessions :meth:`prune` would, one batch at a time; yield each batch's IDs.

        Each batch is committed before it is yielded, with its entries and
        checkpoints (nothing is left behind). The cutoff is fixed when the
        first batch is asked for. Stop iterating to stop the prune: what was
        yielded is deleted, the rest is untouched, and the same prune run
        again later goes on (batches are idempotent). Progress is for the
        caller to show (``sessions-db prune`` does).
        """
        cutoff, size = self._prune_plan(older_than, batch_size)
        while True:
            batch = self.run(self._prune_batch_work(cutoff, agent_name, size))
            if not batch:
                return
            yield batch

    def close(self) -> None:
        """Close the manager and its backend. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._backend.close()

    def erase_user(self, user_id: str) -> int:
        """Remove everything stored for ``user_id`` across agents; return the sessions removed.

        Every session of the user, on every agent, goes with its entries,
        checkpoints and long-term memory (the full-text index rows of its
        messages); nothing else holds a user's data today (sessions_db has no
        forks or framework adapters with state of their own yet: when they come,
        this removes theirs too). Sessions of other users are untouched, even
        where their messages mention this user. ``None``, ``""`` or a blank
        ``user_id`` raises ``InvalidIDError``.

        On SQL stores this is one transaction; a SQLite database also purges
        the freed pages, its full-text index and its write-ahead log, so that
        the user's data is gone from the files. PostgreSQL keeps the bytes of
        deleted rows in its data files until ``VACUUM`` reuses them (and in
        WAL archives and backups). The file store deletes the user's session
        and checkpoint files and rewrites the agents' indexes, fsyncing each
        directory; it is not one transaction. With ``SimpleBackend`` stores it
        needs ``list_agents`` (else ``UnsupportedOperationError``). A session
        created for the user while this runs may stay: stop serving the user
        first.
        """
        return self.run(partial(rules.erase_user, user_id=user_id))


class Session(SessionFields, _ClosesOnExit):
    """One conversation: its messages, checkpoints and branches.

    Get one from :class:`Manager`. Every method reads or writes the store, so
    several ``Session`` objects for one session (in threads or processes) agree.
    """

    def __init__(self, manager: Manager, meta: SessionMetadata) -> None:
        super().__init__(manager, meta)
        self._manager = manager

    @property
    def manager(self) -> Manager:
        """The manager this session came from."""
        return self._manager

    def _run(self, work: Work[T], *, write: bool = True) -> T:
        if self._closed:
            raise StorageClosedError(f"session {self.id} is closed; get it again from the manager")
        return self._manager.run(work, write=write)

    def append_message(self, message: Message) -> None:
        """Append ``message`` on the current branch; durable when this returns."""
        self._run(self._append_work([message]))

    def append_messages(self, messages: Iterable[Message]) -> None:
        """Append ``messages`` in order, all or nothing."""
        self._run(self._append_work(messages))

    def get_messages(
        self,
        *,
        limit: int | None = None,
        before: str | None = None,
        max_tokens: int | None = None,
        token_counter: TokenCounter | None = None,
    ) -> list[Message]:
        """Return the current branch's messages, oldest first.

        ``limit`` keeps the newest ``limit``; ``before`` (a message ID) keeps the
        messages older than that message on its branch, for paging back through a
        long session. ``max_tokens`` keeps the newest messages whose total cost
        fits (``token_counter(message) -> int``, by default
        :func:`~sessions_db.rules.approximate_tokens`), never part of one; only
        as much of the history as that needs is read.
        """
        work = self._get_messages_work(limit, before, max_tokens, token_counter)
        return self._run(work, write=False)

    def fork(
        self,
        *,
        at: str | None = None,
        checkpoint_id: str | None = None,
        agent_name: str | None = None,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Session:
        """Return a new session whose current branch is this one's, up to ``at`` or a checkpoint.

        ``at`` is an entry or message ID (of any branch: the branch ending there
        is copied), ``checkpoint_id`` a checkpoint of this session; without
        either, the whole current branch. Message IDs and payloads are kept;
        this session is untouched; the new one records ``forked_from`` and
        ``forked_at``, and its agent, user and metadata default to this one's.
        Checkpoints are not carried over. One transaction, however long the branch.
        """
        work = self._fork_work(at, checkpoint_id, agent_name, user_id, metadata)
        return Session(self._manager, self._run(work))

    def rewind(self, to: str) -> None:
        """Move the current leaf back to ``to``, an entry of the current branch (recorded).

        Later appends continue from there; nothing is deleted.
        ``EntryNotFoundError`` if ``to`` is not on the current branch.
        """
        self._run(self._rewind_work(to))

    def pop_message(self) -> Message | None:
        """Take the newest message off the current branch and return it (``None``: none left).

        Nothing is deleted (a ``pop`` event is recorded); two concurrent pops
        return two different messages.
        """
        return self._run(self._pop_work())

    def clear(self) -> None:
        """Make the current branch empty (``get_messages()`` is ``[]``); nothing is deleted."""
        self._run(self._clear_work())

    def update_metadata(self, patch: dict[str, Any], *, replace: bool = False) -> SessionMetadata:
        """Merge ``patch`` into the session's metadata (or replace it), atomically.

        Returns the session's metadata after the change; concurrent updates of
        different keys all land. A merge is shallow (top-level keys).
        """
        return self._run(self._update_metadata_work(patch, replace))

    def checkpoint(self, *, metadata: dict[str, Any] | None = None) -> Checkpoint:
        """Take a checkpoint at the current leaf."""
        return self._run(self._checkpoint_work(metadata))

    def restore(self, checkpoint_id: str) -> Checkpoint:
        """Make the checkpoint's entry the current leaf; later appends start a new branch.

        Nothing is deleted. ``CheckpointNotFoundError`` for an unknown checkpoint or
        one of another session, ``ChecksumMismatchError`` when the stored history no
        longer matches the checkpoint's checksum (then nothing changes).
        """
        return self._run(self._restore_work(checkpoint_id))

    def list_checkpoints(self) -> list[Checkpoint]:
        """Return the session's checkpoints, oldest first."""
        return self._run(self._list_checkpoints_work(), write=False)

    def info(self) -> SessionMetadata:
        """Return the session's current metadata (message count, leaf, times)."""
        return self._run(self._info_work(), write=False)

    def get_entries(self) -> list[SessionEntry]:
        """Return every entry of the session's tree, all branches, in append order."""
        return self._run(self._entries_work(), write=False)

    def close(self) -> None:
        """Release cached state. The session can be fetched again with :meth:`Manager.get`."""
        if not self._closed:
            self._closed = True
            if not self._manager.closed:
                self._manager.backend.release(self.id)
