"""``LoggingBackend``: logs every call of a backend, without what is private.

Each call is logged with :mod:`logging` as one record: the operation, the first
8 characters of the session (or checkpoint) ID, counts and entry types, and the
duration; a failed call is logged with the error's class. Payloads, metadata,
user IDs, error messages (they may quote IDs) and full IDs are never logged::

    import logging
    logging.basicConfig(level=logging.DEBUG)
    mgr = sdb.Manager(sdb.LoggingBackend(sdb.SQLBackend("sqlite:///sessions.db")))
    # DEBUG sessions_db.storage: append_entries session=3f2a9c1e entries=1 (message) 1.8ms
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from .backend import WHOLE_BRANCH, BranchQuery, MessageHit, NewCheckpoint, StorageBackend
from .simple import SimpleBackend, as_storage
from .storage import Cursor, Storage, UnitOfWork
from .types import Checkpoint, Message, SessionEntry, SessionMetadata

T = TypeVar("T")

#: How many characters of an ID are logged.
SHORT_ID = 8


def short_id(value: object) -> str:
    """Return the first :data:`SHORT_ID` characters of an ID, for logs."""
    return str(value)[:SHORT_ID]


def _entry_types(entries: Sequence[SessionEntry]) -> str:
    counts = Counter(str(getattr(e, "type", "?")) for e in entries)
    return ",".join(t if n == 1 else f"{t}x{n}" for t, n in sorted(counts.items()))


class _LoggedCalls(Storage):
    """Every :class:`~sessions_db.storage.Storage` call of ``_inner``, logged."""

    _inner: Storage
    _logger: logging.Logger
    _level: int
    _error_level: int

    def _run(self, op: str, target: str, detail: str, call: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            result = call()
        except Exception as exc:
            elapsed = (time.perf_counter() - start) * 1000
            if self._logger.isEnabledFor(self._error_level):
                self._logger.log(
                    self._error_level,
                    "%s%s%s failed: %s %.1fms",
                    op,
                    target,
                    detail,
                    type(exc).__name__,
                    elapsed,
                )
            raise
        if self._logger.isEnabledFor(self._level):
            elapsed = (time.perf_counter() - start) * 1000
            self._logger.log(self._level, "%s%s%s %.1fms", op, target, detail, elapsed)
        return result

    @staticmethod
    def _session(session_id: object) -> str:
        return f" session={short_id(session_id)}"

    def lock_session(self, session_id: str) -> None:
        """See :meth:`Storage.lock_session`."""
        self._run(
            "lock_session",
            self._session(session_id),
            "",
            lambda: self._inner.lock_session(session_id),
        )

    def save_session(self, meta: SessionMetadata) -> None:
        """See :meth:`StorageBackend.save_session`."""
        self._run(
            "save_session",
            self._session(meta.id),
            f" agent={meta.agent_name}",
            lambda: self._inner.save_session(meta),
        )

    def load_session(self, session_id: str) -> SessionMetadata:
        """See :meth:`StorageBackend.load_session`."""
        return self._run(
            "load_session",
            self._session(session_id),
            "",
            lambda: self._inner.load_session(session_id),
        )

    def delete_session(self, session_id: str) -> None:
        """See :meth:`StorageBackend.delete_session`."""
        self._run(
            "delete_session",
            self._session(session_id),
            "",
            lambda: self._inner.delete_session(session_id),
        )

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
        """See :meth:`StorageBackend.list_sessions`."""
        return self._run(
            "list_sessions",
            "",
            f" agent={agent_name} by_user={user_id is not None} limit={limit} offset={offset}",
            lambda: self._inner.list_sessions(
                agent_name,
                user_id=user_id,
                limit=limit,
                offset=offset,
                updated_after=updated_after,
                updated_before=updated_before,
                metadata=metadata,
                after=after,
            ),
        )

    def list_agents(self) -> list[str]:
        """See :meth:`StorageBackend.list_agents`."""
        return self._run("list_agents", "", "", self._inner.list_agents)

    def prune_sessions(
        self, updated_before: datetime, *, agent_name: str | None = None, dry_run: bool = False
    ) -> list[str]:
        """See :meth:`StorageBackend.prune_sessions`."""
        return self._run(
            "prune_sessions",
            "",
            f" before={updated_before.isoformat()} agent={agent_name} dry_run={dry_run}",
            lambda: self._inner.prune_sessions(
                updated_before, agent_name=agent_name, dry_run=dry_run
            ),
        )

    def prune_batch(
        self, updated_before: datetime, *, agent_name: str | None = None, limit: int
    ) -> list[str]:
        """See :meth:`Storage.prune_batch`."""
        return self._run(
            "prune_batch",
            "",
            f" before={updated_before.isoformat()} agent={agent_name} limit={limit}",
            lambda: self._inner.prune_batch(updated_before, agent_name=agent_name, limit=limit),
        )

    def load_session_by_key(self, agent_name: str, key: str) -> SessionMetadata:
        """See :meth:`Storage.load_session_by_key` (the key is not logged)."""
        return self._run(
            "load_session_by_key",
            "",
            f" agent={agent_name}",
            lambda: self._inner.load_session_by_key(agent_name, key),
        )

    def create_session(self, meta: SessionMetadata, entries: Sequence[SessionEntry]) -> None:
        """See :meth:`Storage.create_session`."""
        self._run(
            "create_session",
            self._session(meta.id),
            f" agent={meta.agent_name} entries={len(entries)}",
            lambda: self._inner.create_session(meta, entries),
        )

    def find_or_create_session(self, meta: SessionMetadata) -> SessionMetadata:
        """See :meth:`StorageBackend.find_or_create_session` (the wrapped one, atomic if it is)."""
        return self._run(
            "find_or_create_session",
            "",
            f" agent={meta.agent_name}",
            lambda: self._inner.find_or_create_session(meta),
        )

    def append_entries(
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        *,
        fork_from: str | None = None,
        at_root: bool = False,
        updated_at: datetime,
    ) -> None:
        """See :meth:`StorageBackend.append_entries`."""
        detail = f" entries={len(entries)} ({_entry_types(entries)})"
        if fork_from is not None:
            detail += " fork"
        self._run(
            "append_entries",
            self._session(session_id),
            detail,
            lambda: self._inner.append_entries(
                session_id, entries, fork_from=fork_from, at_root=at_root, updated_at=updated_at
            ),
        )

    def append_entry(
        self,
        session_id: str,
        entry: SessionEntry,
        *,
        fork_from: str | None = None,
        at_root: bool = False,
        updated_at: datetime,
    ) -> None:
        """See :meth:`StorageBackend.append_entry`."""
        self._run(
            "append_entry",
            self._session(session_id),
            f" ({_entry_types([entry])})" + (" fork" if fork_from is not None else ""),
            lambda: self._inner.append_entry(
                session_id, entry, fork_from=fork_from, at_root=at_root, updated_at=updated_at
            ),
        )

    def load_entries(self, session_id: str) -> list[SessionEntry]:
        """See :meth:`StorageBackend.load_entries`."""
        return self._run(
            "load_entries",
            self._session(session_id),
            "",
            lambda: self._inner.load_entries(session_id),
        )

    def load_branch(self, session_id: str, query: BranchQuery = WHOLE_BRANCH) -> list[SessionEntry]:
        """See :meth:`StorageBackend.load_branch`."""
        return self._run(
            "load_branch",
            self._session(session_id),
            _branch_detail(query),
            lambda: self._inner.load_branch(session_id, query),
        )

    def load_messages(self, session_id: str, query: BranchQuery) -> list[Message]:
        """See :meth:`StorageBackend.load_messages`."""
        return self._run(
            "load_messages",
            self._session(session_id),
            _branch_detail(query),
            lambda: self._inner.load_messages(session_id, query),
        )

    def create_checkpoint(self, session_id: str, new: NewCheckpoint) -> Checkpoint:
        """See :meth:`StorageBackend.create_checkpoint`."""
        return self._run(
            "create_checkpoint",
            self._session(session_id),
            f" checkpoint={short_id(new.id)}",
            lambda: self._inner.create_checkpoint(session_id, new),
        )

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """See :meth:`StorageBackend.save_checkpoint`."""
        self._run(
            "save_checkpoint",
            self._session(checkpoint.session_id),
            f" checkpoint={short_id(checkpoint.id)}",
            lambda: self._inner.save_checkpoint(checkpoint),
        )

    def load_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        """See :meth:`StorageBackend.load_checkpoint`."""
        return self._run(
            "load_checkpoint",
            "",
            f" checkpoint={short_id(checkpoint_id)}",
            lambda: self._inner.load_checkpoint(checkpoint_id),
        )

    def load_session_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint:
        """See :meth:`Storage.load_session_checkpoint`."""
        return self._run(
            "load_session_checkpoint",
            self._session(session_id),
            f" checkpoint={short_id(checkpoint_id)}",
            lambda: self._inner.load_session_checkpoint(session_id, checkpoint_id),
        )

    def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        """See :meth:`StorageBackend.list_checkpoints`."""
        return self._run(
            "list_checkpoints",
            self._session(session_id),
            "",
            lambda: self._inner.list_checkpoints(session_id),
        )

    def search_messages(
        self,
        user_id: str,
        query: str,
        *,
        agent_name: str | None = None,
        limit: int = 5,
    ) -> list[MessageHit]:
        """See :meth:`StorageBackend.search_messages` (the wrapped store's own search)."""
        return self._run(
            "search_messages",
            "",
            f" agent={agent_name} limit={limit}",
            lambda: self._inner.search_messages(user_id, query, agent_name=agent_name, limit=limit),
        )

    def list_messages(
        self,
        user_id: str,
        *,
        agent_name: str | None = None,
        message_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[MessageHit]:
        """See :meth:`StorageBackend.list_messages` (the wrapped store's own listing)."""
        detail = f" agent={agent_name} by_message={message_id is not None}"
        return self._run(
            "list_messages",
            "",
            f"{detail} limit={limit} offset={offset}",
            lambda: self._inner.list_messages(
                user_id, agent_name=agent_name, message_id=message_id, limit=limit, offset=offset
            ),
        )

    def erase_user(self, user_id: str) -> int:
        """See :meth:`StorageBackend.erase_user` (the user ID is not logged)."""
        return self._run("erase_user", "", "", lambda: self._inner.erase_user(user_id))


class LoggingBackend(_LoggedCalls, StorageBackend):
    """Wraps any :class:`StorageBackend` and logs each call (see the module's documentation).

    Successful calls are logged at ``level`` (``DEBUG`` by default), failed ones at
    ``error_level`` (``WARNING``); the logger is ``sessions_db.storage`` unless
    one is given (a :class:`~sessions_db.SimpleBackend` is wrapped in a
    :class:`~sessions_db.SimpleStorage` first). Behaviour is the wrapped
    backend's, unchanged: every method of :class:`StorageBackend` is forwarded,
    including those with a default (a store's own full-text search, its atomic
    ``find_or_create_session``), so
    that a wrapped store keeps every capability it has.
    """

    def __init__(
        self,
        inner: StorageBackend | SimpleBackend,
        logger: logging.Logger | None = None,
        level: int = logging.DEBUG,
        *,
        error_level: int = logging.WARNING,
    ) -> None:
        self._backend = as_storage(inner)
        self._inner: Storage = self._backend
        self._logger = logger or logging.getLogger("sessions_db.storage")
        self._level = level
        self._error_level = error_level

    @property
    def inner(self) -> StorageBackend:
        """The wrapped backend."""
        return self._backend

    def release(self, session_id: str) -> None:
        """See :meth:`StorageBackend.release`."""
        self._run(
            "release", self._session(session_id), "", lambda: self._backend.release(session_id)
        )

    def close(self) -> None:
        """See :meth:`StorageBackend.close`."""
        self._run("close", "", "", self._backend.close)

    def unit_of_work(self, *, write: bool = True) -> UnitOfWork:
        """Open a unit of work of the wrapped backend whose calls are logged."""
        return LoggingUnitOfWork(self._backend.unit_of_work(write=write), self)


class LoggingUnitOfWork(_LoggedCalls, UnitOfWork):
    """A unit of work of the wrapped backend whose calls are logged as the backend logs them."""

    def __init__(self, inner: UnitOfWork, backend: LoggingBackend) -> None:
        self._inner = self._unit = inner
        self._logger = backend._logger
        self._level = backend._level
        self._error_level = backend._error_level

    def begin(self) -> None:  # noqa: D102 - see UnitOfWork
        self._unit.begin()

    def commit(self) -> None:  # noqa: D102
        self._unit.commit()

    def rollback(self) -> None:  # noqa: D102
        self._unit.rollback()

    def end(self) -> None:  # noqa: D102
        self._unit.end()


def _branch_detail(query: BranchQuery) -> str:
    detail = f" messages_only={query.messages_only} limit={query.limit}"
    return detail + " paged" if query.before is not None else detail
