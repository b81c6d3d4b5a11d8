"""The asyncio storage adapter interface: units of work, awaited.

An :class:`AsyncStorageBackend` does a piece of synchronous work (a rule of
:mod:`sessions_db.rules`, taking a :class:`~sessions_db.storage.UnitOfWork`)
without blocking the event loop: in a worker thread, or through SQLAlchemy's
``run_sync`` on a host's async SQL engine or connection. So the asyncio API runs the very
code the synchronous one runs. Every storage call is available awaited too,
each in a unit of work of its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from ..storage import WHOLE_BRANCH, BranchQuery, Cursor, NewCheckpoint, Work
from ..types import Checkpoint, Message, MessageHit, SessionEntry, SessionMetadata

T = TypeVar("T")


class AsyncStorageBackend(ABC):
    """Where sessions are kept, for asyncio (see the module).

    Calls must not block the event loop, and a call whose task is cancelled
    either takes full effect or none. :class:`ThreadedBackend` gives any
    synchronous backend this interface.
    """

    @abstractmethod
    async def run(self, work: Work[T], *, write: bool = True) -> T:
        """Do ``work`` in one unit of work, commit it, and return what it returned.

        See :meth:`sessions_db.StorageBackend.run`; ``work`` is synchronous code
        that this method runs off the event loop.
        """

    async def release(self, session_id: str) -> None:  # noqa: B027 - optional hook
        """See :meth:`StorageBackend.release`."""

    @abstractmethod
    async def close(self) -> None:
        """See :meth:`StorageBackend.close`; waits for the calls under way."""

    # -- every storage call, awaited (see sessions_db.storage.Storage) -----------------

    async def save_session(self, meta: SessionMetadata) -> None:
        """See :meth:`Storage.save_session`."""
        await self.run(lambda uow: uow.save_session(meta))

    async def load_session(self, session_id: str) -> SessionMetadata:
        """See :meth:`Storage.load_session`."""
        return await self.run(lambda uow: uow.load_session(session_id), write=False)

    async def delete_session(self, session_id: str) -> None:
        """See :meth:`Storage.delete_session`."""
        await self.run(lambda uow: uow.delete_session(session_id))

    async def list_sessions(
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
        """See :meth:`Storage.list_sessions`."""
        return await self.run(
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

    async def list_agents(self) -> list[str]:
        """See :meth:`Storage.list_agents`."""
        return await self.run(lambda uow: uow.list_agents(), write=False)

    async def prune_sessions(
        self, updated_before: datetime, *, agent_name: str | None = None, dry_run: bool = False
    ) -> list[str]:
        """See :meth:`Storage.prune_sessions`."""
        return await self.run(
            lambda uow: uow.prune_sessions(updated_before, agent_name=agent_name, dry_run=dry_run),
            write=not dry_run,
        )

    async def load_session_by_key(self, agent_name: str, key: str) -> SessionMetadata:
        """See :meth:`Storage.load_session_by_key`."""
        return await self.run(lambda uow: uow.load_session_by_key(agent_name, key), write=False)

    async def find_or_create_session(self, meta: SessionMetadata) -> SessionMetadata:
        """See :meth:`Storage.find_or_create_session`."""
        return await self.run(lambda uow: uow.find_or_create_session(meta))

    async def create_session(self, meta: SessionMetadata, entries: Sequence[SessionEntry]) -> None:
        """See :meth:`Storage.create_session`."""
        await self.run(lambda uow: uow.create_session(meta, entries))

    async def append_entries(
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        *,
        fork_from: str | None = None,
        at_root: bool = False,
        updated_at: datetime,
    ) -> None:
        """See :meth:`Storage.append_entries`."""
        await self.run(
            lambda uow: uow.append_entries(
                session_id, entries, fork_from=fork_from, at_root=at_root, updated_at=updated_at
            )
        )

    async def append_entry(
        self,
        session_id: str,
        entry: SessionEntry,
        *,
        fork_from: str | None = None,
        at_root: bool = False,
        updated_at: datetime,
    ) -> None:
        """See :meth:`Storage.append_entry`."""
        await self.append_entries(
            session_id, [entry], fork_from=fork_from, at_root=at_root, updated_at=updated_at
        )

    async def load_entries(self, session_id: str) -> list[SessionEntry]:
        """See :meth:`Storage.load_entries`."""
        return await self.run(lambda uow: uow.load_entries(session_id), write=False)

    async def load_branch(
        self, session_id: str, query: BranchQuery = WHOLE_BRANCH
    ) -> list[SessionEntry]:
        """See :meth:`Storage.load_branch`."""
        return await self.run(lambda uow: uow.load_branch(session_id, query), write=False)

    async def load_messages(self, session_id: str, query: BranchQuery) -> list[Message]:
        """See :meth:`Storage.load_messages`."""
        return await self.run(lambda uow: uow.load_messages(session_id, query), write=False)

    async def load_entries_by_id(
        self, session_id: str, entry_ids: Sequence[str]
    ) -> list[SessionEntry]:
        """See :meth:`Storage.load_entries_by_id`."""
        return await self.run(
            lambda uow: uow.load_entries_by_id(session_id, entry_ids), write=False
        )

    async def load_children(self, session_id: str, entry_id: str) -> list[SessionEntry]:
        """See :meth:`Storage.load_children`."""
        return await self.run(lambda uow: uow.load_children(session_id, entry_id), write=False)

    async def create_checkpoint(self, session_id: str, new: NewCheckpoint) -> Checkpoint:
        """See :meth:`Storage.create_checkpoint`."""
        return await self.run(lambda uow: uow.create_checkpoint(session_id, new))

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """See :meth:`Storage.save_checkpoint`."""
        await self.run(lambda uow: uow.save_checkpoint(checkpoint))

    async def load_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        """See :meth:`Storage.load_checkpoint`."""
        return await self.run(lambda uow: uow.load_checkpoint(checkpoint_id), write=False)

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        """See :meth:`Storage.list_checkpoints`."""
        return await self.run(lambda uow: uow.list_checkpoints(session_id), write=False)

    async def search_messages(
        self,
        user_id: str,
        query: str,
        *,
        agent_name: str | None = None,
        limit: int = 5,
    ) -> list[MessageHit]:
        """See :meth:`Storage.search_messages`."""
        return await self.run(
            lambda uow: uow.search_messages(user_id, query, agent_name=agent_name, limit=limit),
            write=False,
        )

    async def list_messages(
        self,
        user_id: str,
        *,
        agent_name: str | None = None,
        message_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[MessageHit]:
        """See :meth:`Storage.list_messages`."""
        return await self.run(
            lambda uow: uow.list_messages(
                user_id, agent_name=agent_name, message_id=message_id, limit=limit, offset=offset
            ),
            write=False,
        )

    async def erase_user(self, user_id: str) -> int:
        """See :meth:`Storage.erase_user`."""
        return await self.run(lambda uow: uow.erase_user(user_id))
