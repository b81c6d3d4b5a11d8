"""StorageBackend: a store that opens units of work, and the two ways to build one.

A backend offers every :class:`~sessions_db.storage.Storage` operation as a call
of its own (each atomic) and opens :class:`~sessions_db.storage.UnitOfWork`
objects for operations of several calls. The manager runs every operation
through :meth:`StorageBackend.run`: one unit of work per operation.

A store is written one of two ways:

* with its calls (the file store, a user's store): :meth:`StorageBackend.unit_of_work`
  then hands out a :class:`CallsUnitOfWork`, whose calls are each a transaction
  of their own;
* with a unit of work (the SQL stores): :class:`UnitOfWorkBackend` derives the
  calls, each run in a unit of work of its own.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from .storage import (
    WHOLE_BRANCH,
    BranchQuery,
    Cursor,
    NewCheckpoint,
    Storage,
    UnitOfWork,
    Work,
    checkpoint_entry,
    restore_marker,
)
from .types import Checkpoint, Message, MessageHit, SessionEntry, SessionMetadata

__all__ = [
    "WHOLE_BRANCH",
    "BranchQuery",
    "CallsUnitOfWork",
    "MessageHit",
    "NewCheckpoint",
    "StorageBackend",
    "UnitOfWork",
    "UnitOfWorkBackend",
    "checkpoint_entry",
    "restore_marker",
]

T = TypeVar("T")


class StorageBackend(Storage):
    """Where sessions, their entry trees and checkpoints are kept.

    Every method raises :class:`~sessions_db.StorageClosedError` after
    :meth:`close`, and leaves what was stored intact when it raises. Methods are
    safe to call from several threads at once.
    """

    def unit_of_work(self, *, write: bool = True) -> UnitOfWork:
        """Open a unit of work (``write``: it may change the store).

        This default runs each call of the unit as a transaction of its own
        (:class:`CallsUnitOfWork`); stores with transactions override it.
        """
        return CallsUnitOfWork(self)

    def run(self, work: Work[T], *, write: bool = True) -> T:
        """Do ``work`` in one unit of work, commit it, and return what it returned.

        When ``work`` raises, the unit is rolled back and the error goes on.
        """
        with self.unit_of_work(write=write) as uow:
            result = work(uow)
            uow.commit()
            return result

    def release(self, session_id: str) -> None:
        """Drop whatever the backend caches for the session (``Session.close``)."""

    @abstractmethod
    def close(self) -> None:
        """Release the backend's resources. Idempotent; later calls raise ``StorageClosedError``."""


class CallsUnitOfWork(UnitOfWork):
    """A unit of work whose calls go to a backend's own calls, each a transaction of its own.

    Every call is atomic and exact as the backend's contract says; the unit
    adds no isolation between its calls, and :meth:`commit` and
    :meth:`rollback` have nothing to do.
    """

    def __init__(self, backend: Storage) -> None:
        self._backend = backend

    def commit(self) -> None:  # noqa: D102 - see UnitOfWork
        pass

    def rollback(self) -> None:  # noqa: D102
        pass

    def end(self) -> None:  # noqa: D102
        pass

    def save_session(self, meta: SessionMetadata) -> None:  # noqa: D102 - see Storage
        self._backend.save_session(meta)

    def load_session(self, session_id: str) -> SessionMetadata:  # noqa: D102
        return self._backend.load_session(session_id)

    def delete_session(self, session_id: str) -> None:  # noqa: D102
        self._backend.delete_session(session_id)

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
        return self._backend.list_sessions(
            agent_name,
            user_id=user_id,
            limit=limit,
            offset=offset,
            updated_after=updated_after,
            updated_before=updated_before,
            metadata=metadata,
            after=after,
        )

    def list_agents(self) -> list[str]:  # noqa: D102
        return self._backend.list_agents()

    def prune_sessions(  # noqa: D102
        self, updated_before: datetime, *, agent_name: str | None = None, dry_run: bool = False
    ) -> list[str]:
        return self._backend.prune_sessions(updated_before, agent_name=agent_name, dry_run=dry_run)

    def prune_batch(  # noqa: D102
        self, updated_before: datetime, *, agent_name: str | None = None, limit: int
    ) -> list[str]:
        return self._backend.prune_batch(updated_before, agent_name=agent_name, limit=limit)

    def load_session_by_key(self, agent_name: str, key: str) -> SessionMetadata:  # noqa: D102
        return self._backend.load_session_by_key(agent_name, key)

    def find_or_create_session(self, meta: SessionMetadata) -> SessionMetadata:  # noqa: D102
        return self._backend.find_or_create_session(meta)

    def create_session(  # noqa: D102
        self, meta: SessionMetadata, entries: Sequence[SessionEntry]
    ) -> None:
        self._backend.create_session(meta, entries)

    def append_entries(  # noqa: D102
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        *,
        fork_from: str | None = None,
        at_root: bool = False,
        updated_at: datetime,
    ) -> None:
        self._backend.append_entries(
            session_id, entries, fork_from=fork_from, at_root=at_root, updated_at=updated_at
        )

    def append_entry(  # noqa: D102
        self,
        session_id: str,
        entry: SessionEntry,
        *,
        fork_from: str | None = None,
        at_root: bool = False,
        updated_at: datetime,
    ) -> None:
        self._backend.append_entry(
            session_id, entry, fork_from=fork_from, at_root=at_root, updated_at=updated_at
        )

    def load_entries(self, session_id: str) -> list[SessionEntry]:  # noqa: D102
        return self._backend.load_entries(session_id)

    def load_branch(  # noqa: D102
        self, session_id: str, query: BranchQuery = WHOLE_BRANCH
    ) -> list[SessionEntry]:
        return self._backend.load_branch(session_id, query)

    def load_messages(self, session_id: str, query: BranchQuery) -> list[Message]:  # noqa: D102
        return self._backend.load_messages(session_id, query)

    def create_checkpoint(self, session_id: str, new: NewCheckpoint) -> Checkpoint:  # noqa: D102
        return self._backend.create_checkpoint(session_id, new)

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:  # noqa: D102
        self._backend.save_checkpoint(checkpoint)

    def load_checkpoint(self, checkpoint_id: str) -> Checkpoint:  # noqa: D102
        return self._backend.load_checkpoint(checkpoint_id)

    def load_session_checkpoint(  # noqa: D102
        self, session_id: str, checkpoint_id: str
    ) -> Checkpoint:
        return self._backend.load_session_checkpoint(session_id, checkpoint_id)

    def list_checkpoints(self, session_id: str) -> list[Checkpoint]:  # noqa: D102
        return self._backend.list_checkpoints(session_id)

    def search_messages(  # noqa: D102
        self,
        user_id: str,
        query: str,
        *,
        agent_name: str | None = None,
        limit: int = 5,
    ) -> list[MessageHit]:
        return self._backend.search_messages(user_id, query, agent_name=agent_name, limit=limit)

    def list_messages(  # noqa: D102
        self,
        user_id: str,
        *,
        agent_name: str | None = None,
        message_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[MessageHit]:
        return self._backend.list_messages(
            user_id, agent_name=agent_name, message_id=message_id, limit=limit, offset=offset
        )

    def erase_user(self, user_id: str) -> int:  # noqa: D102
        return self._backend.erase_user(user_id)


class UnitOfWorkBackend(StorageBackend):
    """A backend written as a unit of work: each call runs in a unit of its own."""

    @abstractmethod
    def unit_of_work(self, *, write: bool = True) -> UnitOfWork:
        """Open a unit of work on the store (see :meth:`StorageBackend.unit_of_work`)."""

    def save_session(self, meta: SessionMetadata) -> None:  # noqa: D102 - see Storage
        self.run(lambda uow: uow.save_session(meta))

    def load_session(self, session_id: str) -> SessionMetadata:  # noqa: D102
        return self.run(lambda uow: uow.load_session(session_id), write=False)

    def delete_session(self, session_id: str) -> None:  # noqa: D102
        self.run(lambda uow: uow.delete_session(session_id))

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
        return self.run(
            lambda uow: uow.list_sessions(
                agent_name,
                user_id=user_id,
                limit=limit,
                offset=offset,
                updated_after=updated_after,
                updated_before=updated_before,
                metadata=metadata,
                after=after,
            ),
            write=False,
        )

    def list_agents(self) -> list[str]:  # noqa: D102
        return self.run(lambda uow: uow.list_agents(), write=False)

    def prune_sessions(  # noqa: D102
        self, updated_before: datetime, *, agent_name: str | None = None, dry_run: bool = False
    ) -> list[str]:
        return self.run(
            lambda uow: uow.prune_sessions(updated_before, agent_name=agent_name, dry_run=dry_run),
            write=not dry_run,
        )

    def prune_batch(  # noqa: D102
        self, updated_before: datetime, *, agent_name: str | None = None, limit: int
    ) -> list[str]:
        return self.run(
            lambda uow: uow.prune_batch(updated_before, agent_name=agent_name, limit=limit)
        )

    def load_session_by_key(self, agent_name: str, key: str) -> SessionMetadata:  # noqa: D102
        return self.run(lambda uow: uow.load_session_by_key(agent_name, key), write=False)

    def find_or_create_session(self, meta: SessionMetadata) -> SessionMetadata:  # noqa: D102
        return self.run(lambda uow: uow.find_or_create_session(meta))

    def create_session(  # noqa: D102
        self, meta: SessionMetadata, entries: Sequence[SessionEntry]
    ) -> None:
        self.run(lambda uow: uow.create_session(meta, entries))

    def append_entries(  # noqa: D102
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        *,
        fork_from: str | None = None,
        at_root: bool = False,
        updated_at: datetime,
    ) -> None:
        self.run(
            lambda uow: uow.append_entries(
                session_id, entries, fork_from=fork_from, at_root=at_root, updated_at=updated_at
            )
        )

    def load_entries(self, session_id: str) -> list[SessionEntry]:  # noqa: D102
        return self.run(lambda uow: uow.load_entries(session_id), write=False)

    def load_branch(  # noqa: D102
        self, session_id: str, query: BranchQuery = WHOLE_BRANCH
    ) -> list[SessionEntry]:
        return self.run(lambda uow: uow.load_branch(session_id, query), write=False)

    def load_messages(self, session_id: str, query: BranchQuery) -> list[Message]:  # noqa: D102
        return self.run(lambda uow: uow.load_messages(session_id, query), write=False)

    def create_checkpoint(self, session_id: str, new: NewCheckpoint) -> Checkpoint:  # noqa: D102
        return self.run(lambda uow: uow.create_checkpoint(session_id, new))

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:  # noqa: D102
        self.run(lambda uow: uow.save_checkpoint(checkpoint))

    def load_checkpoint(self, checkpoint_id: str) -> Checkpoint:  # noqa: D102
        return self.run(lambda uow: uow.load_checkpoint(checkpoint_id), write=False)

    def list_checkpoints(self, session_id: str) -> list[Checkpoint]:  # noqa: D102
        return self.run(lambda uow: uow.list_checkpoints(session_id), write=False)

    def search_messages(  # noqa: D102
        self,
        user_id: str,
        query: str,
        *,
        agent_name: str | None = None,
        limit: int = 5,
    ) -> list[MessageHit]:
        return self.run(
            lambda uow: uow.search_messages(user_id, query, agent_name=agent_name, limit=limit),
            write=False,
        )

    def list_messages(  # noqa: D102
        self,
        user_id: str,
        *,
        agent_name: str | None = None,
        message_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[MessageHit]:
        return self.run(
            lambda uow: uow.list_messages(
                user_id, agent_name=agent_name, message_id=message_id, limit=limit, offset=offset
            ),
            write=False,
        )

    def erase_user(self, user_id: str) -> int:  # noqa: D102
        return self.run(lambda uow: uow.erase_user(user_id))
