"""The synchronous API: :class:`Manager` and :class:`Session`."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from . import rules
from ._handles import ManagerFields, SessionFields
from .backend import StorageBackend
from .crypto import Keyring
from .errors import StorageClosedError
from .memory import SessionMemory
from .privacy import Privacy, Redactor
from .rules import Clock, TokenCounter
from .simple import SimpleBackend, as_storage
from .storage import Cursor, UnitOfWork, Work
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
        created = self.run(
            lambda uow: rules.create(
                uow, agent_name, user_id, metadata, self._clock, self._privacy, key
            )
        )
        return Session(self, created)

    def get_by_key(self, agent_name: str, key: str, *, user_id: str | None = None) -> Session:
        """Return the agent's session with external key ``key``; ``SessionNotFoundError`` if none.

        With a ``user_id``, a session of another user (or of no user) is not found.
        """
        found = self.run(
            lambda uow: rules.get_by_key(uow, agent_name, key, user_id, self._privacy),
            write=False,
        )
        return Session(self, found)

    def get(self, session_id: str, *, user_id: str | None = None) -> Session:
        """Return the session; ``SessionNotFoundError`` if absent or another user's.

        With a ``user_id``, a session of another user or of no user is not found.
        ``""`` or a blank ``user_id`` raises ``InvalidIDError``: only ``None`` skips
        the ownership check.
        """
        found = self.run(
            lambda uow: rules.get(uow, session_id, user_id, self._privacy), write=False
        )
        return Session(self, found)

    def get_or_create(
        self, agent_name: str, user_id: str | None, *, key: str | None = None
    ) -> Session:
        """Return the user's most recently updated session of the agent, else a new one.

        ``None``, ``""`` or a blank ``user_id`` always creates a new session of no
        user. With ``key``, the session is the agent's session with that key
        (created if absent; racing callers get one session); a key owned by
        another user is ``SessionNotFoundError``.
        """
        found = self.run(
            lambda uow: rules.get_or_create(
                uow, agent_name, user_id, self._clock, self._privacy, key
            )
        )
        return Session(self, found)

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
        after: SessionMetadata | Cursor | None = None,
    ) -> builtins.list[SessionMetadata]:
        """Return the agent's sessions, most recently updated first.

        With a ``user_id``, only that user's; ``""`` or blank raises ``InvalidIDError``.
        ``updated_after`` / ``updated_before`` bound the update time (exclusive);
        ``metadata`` keeps the sessions whose metadata has every given key with
        the given value; ``after`` (the last :class:`SessionMetadata` of the
        previous page, or its ``(updated_at, id)``) continues the listing after
        it, as it was seen: keyset
        paging, where a session updated in between is neither repeated nor
        skipped and a late page costs what the first does.
        """
        privacy = self._privacy

        def page(uow: UnitOfWork) -> builtins.list[SessionMetadata]:
            return rules.list_sessions(
                uow,
                agent_name,
                user_id,
                limit,
                offset,
                privacy,
                updated_after=updated_after,
                updated_before=updated_before,
                metadata=metadata,
                after=after,
            )

        return self.run(page, write=False)

    def delete(self, session_id: str) -> None:
        """Delete the session, its entries and checkpoints; ``SessionNotFoundError`` if absent."""
        self.run(lambda uow: rules.delete(uow, session_id))

    def list_agents(self) -> builtins.list[str]:
        """Return the names of the agents that have sessions, sorted."""
        return self.run(rules.list_agents, write=False)

    def prune(
        self,
        older_than: timedelta | datetime,
        *,
        agent_name: str | None = None,
        dry_run: bool = False,
    ) -> builtins.list[str]:
        """Delete the sessions not updated for ``older_than`` (a duration, or a UTC time).

        Returns the deleted session IDs (with ``dry_run``, those that would be).
        On SQL stores this is one statement, not one per session.
        """
        return self.run(
            lambda uow: rules.prune(uow, older_than, agent_name, dry_run, self._clock),
            write=not dry_run,
        )

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
        return self.run(lambda uow: rules.erase_user(uow, user_id))


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
        self.append_messages([message])

    def append_messages(self, messages: Iterable[Message]) -> None:
        """Append ``messages`` in order, all or nothing."""
        m = self._manager
        self._run(
            lambda uow: rules.append_messages(
                uow, self.id, messages, m.clock, m.privacy, m.auto_checkpoint, owner=self.user_id
            )
        )

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
        m = self._manager
        return self._run(
            lambda uow: rules.get_messages(
                uow,
                self.id,
                limit,
                before,
                m.privacy,
                owner=self.user_id,
                max_tokens=max_tokens,
                token_counter=token_counter,
            ),
            write=False,
        )

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
        m = self._manager
        forked = self._run(
            lambda uow: rules.fork(
                uow,
                self.id,
                self.user_id,
                at,
                checkpoint_id,
                agent_name,
                user_id,
                metadata,
                m.clock,
                m.privacy,
            )
        )
        return Session(m, forked)

    def rewind(self, to: str) -> None:
        """Move the current leaf back to ``to``, an entry of the current branch (recorded).

        Later appends continue from there; nothing is deleted.
        ``EntryNotFoundError`` if ``to`` is not on the current branch.
        """
        self._run(lambda uow: rules.rewind(uow, self.id, to, self._manager.clock))

    def pop_message(self) -> Message | None:
        """Take the newest message off the current branch and return it (``None``: none left).

        Nothing is deleted (a ``pop`` event is recorded); two concurrent pops
        return two different messages.
        """
        m = self._manager
        return self._run(
            lambda uow: rules.pop_message(uow, self.id, m.clock, m.privacy, owner=self.user_id)
        )

    def clear(self) -> None:
        """Make the current branch empty (``get_messages()`` is ``[]``); nothing is deleted."""
        self._run(lambda uow: rules.clear(uow, self.id, self._manager.clock))

    def update_metadata(self, patch: dict[str, Any], *, replace: bool = False) -> SessionMetadata:
        """Merge ``patch`` into the session's metadata (or replace it), atomically.

        Returns the session's metadata after the change; concurrent updates of
        different keys all land. A merge is shallow (top-level keys).
        """
        privacy = self._manager.privacy
        return self._run(lambda uow: rules.update_metadata(uow, self.id, patch, replace, privacy))

    def checkpoint(self, *, metadata: dict[str, Any] | None = None) -> Checkpoint:
        """Take a checkpoint at the current leaf."""
        m = self._manager
        return self._run(lambda uow: rules.checkpoint(uow, self.id, metadata, m.clock, m.privacy))

    def restore(self, checkpoint_id: str) -> Checkpoint:
        """Make the checkpoint's entry the current leaf; later appends start a new branch.

        Nothing is deleted. ``CheckpointNotFoundError`` for an unknown checkpoint or
        one of another session, ``ChecksumMismatchError`` when the stored history no
        longer matches the checkpoint's checksum (then nothing changes).
        """
        m = self._manager
        return self._run(lambda uow: rules.restore(uow, self.id, checkpoint_id, m.clock, m.privacy))

    def list_checkpoints(self) -> list[Checkpoint]:
        """Return the session's checkpoints, oldest first."""
        privacy = self._manager.privacy
        return self._run(lambda uow: rules.list_checkpoints(uow, self.id, privacy), write=False)

    def info(self) -> SessionMetadata:
        """Return the session's current metadata (message count, leaf, times)."""
        privacy = self._manager.privacy
        return self._run(lambda uow: rules.load_session(uow, self.id, privacy), write=False)

    def get_entries(self) -> list[SessionEntry]:
        """Return every entry of the session's tree, all branches, in append order."""
        privacy = self._manager.privacy
        return self._run(
            lambda uow: rules.load_entries(uow, self.id, privacy, owner=self.user_id), write=False
        )

    def close(self) -> None:
        """Release cached state. The session can be fetched again with :meth:`Manager.get`."""
        if not self._closed:
            self._closed = True
            if not self._manager.closed:
                self._manager.backend.release(self.id)
