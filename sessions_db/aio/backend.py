"""The asyncio storage adapter interface: :class:`StorageBackend`, awaited."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from .._plan import adrive
from ..backend import WHOLE_BRANCH, BranchQuery, MessageHit, NewCheckpoint
from ..rules import erase_fallback, find_or_create_fallback, performer
from ..search import scan, scan_list
from ..types import Checkpoint, Message, SessionEntry, SessionMetadata


class AsyncStorageBackend(ABC):
    """Where sessions are kept, for asyncio: the methods of :class:`~sessions_db.StorageBackend`.

    Each method means exactly what the synchronous one's docstring says, and is
    awaited. Calls must not block the event loop, and a call whose task is
    cancelled either takes full effect or none. :class:`ThreadedBackend` gives
    any synchronous backend this interface.
    """

    @abstractmethod
    async def save_session(self, meta: SessionMetadata) -> None:
        """See :meth:`StorageBackend.save_session`."""

    @abstractmethod
    async def load_session(self, session_id: str) -> SessionMetadata:
        """See :meth:`StorageBackend.load_session`."""

    @abstractmethod
    async def delete_session(self, session_id: str) -> None:
        """See :meth:`StorageBackend.delete_session`."""

    @abstractmethod
    async def list_sessions(
        self,
        agent_name: str,
        *,
        user_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[SessionMetadata]:
        """See :meth:`StorageBackend.list_sessions`."""

    @abstractmethod
    async def list_agents(self) -> list[str]:
        """See :meth:`StorageBackend.list_agents`."""

    @abstractmethod
    async def prune_sessions(
        self, updated_before: datetime, *, agent_name: str | None = None, dry_run: bool = False
    ) -> list[str]:
        """See :meth:`StorageBackend.prune_sessions`."""

    async def find_or_create_session(self, meta: SessionMetadata) -> SessionMetadata:
        """See :meth:`StorageBackend.find_or_create_session` (this default is not atomic)."""
        return await adrive(find_or_create_fallback(meta), performer(self))

    @abstractmethod
    async def append_entries(
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        *,
        fork_from: str | None = None,
        updated_at: datetime,
    ) -> None:
        """See :meth:`StorageBackend.append_entries`."""

    async def append_entry(
        self,
        session_id: str,
        entry: SessionEntry,
        *,
        fork_from: str | None = None,
        updated_at: datetime,
    ) -> None:
        """Append one entry; see :meth:`append_entries`."""
        await self.append_entries(session_id, [entry], fork_from=fork_from, updated_at=updated_at)

    @abstractmethod
    async def load_entries(self, session_id: str) -> list[SessionEntry]:
        """See :meth:`StorageBackend.load_entries`."""

    @abstractmethod
    async def load_branch(
        self, session_id: str, query: BranchQuery = WHOLE_BRANCH
    ) -> list[SessionEntry]:
        """See :meth:`StorageBackend.load_branch`."""

    async def load_messages(self, session_id: str, query: BranchQuery) -> list[Message]:
        """See :meth:`StorageBackend.load_messages`."""
        entries = await self.load_branch(session_id, replace(query, messages_only=True))
        return [entry.to_message() for entry in entries]

    @abstractmethod
    async def create_checkpoint(self, session_id: str, new: NewCheckpoint) -> Checkpoint:
        """See :meth:`StorageBackend.create_checkpoint`."""

    @abstractmethod
    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """See :meth:`StorageBackend.save_checkpoint`."""

    @abstractmethod
    async def load_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        """See :meth:`StorageBackend.load_checkpoint`."""

    @abstractmethod
    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        """See :meth:`StorageBackend.list_checkpoints`."""

    async def search_messages(
        self,
        user_id: str,
        query: str,
        *,
        agent_name: str | None = None,
        limit: int = 5,
    ) -> list[MessageHit]:
        """See :meth:`StorageBackend.search_messages`; this default scans, as the sync one does."""
        return await adrive(scan(user_id, query, agent_name, limit), performer(self))

    async def list_messages(
        self,
        user_id: str,
        *,
        agent_name: str | None = None,
        message_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[MessageHit]:
        """See :meth:`StorageBackend.list_messages`; this default scans, as the sync one does."""
        plan = scan_list(user_id, agent_name, message_id, limit, offset)
        return await adrive(plan, performer(self))

    async def release(self, session_id: str) -> None:  # noqa: B027 - optional hook
        """See :meth:`StorageBackend.release`."""

    @abstractmethod
    async def close(self) -> None:
        """See :meth:`StorageBackend.close`; waits for the calls under way."""

    async def erase_user(self, user_id: str) -> int:
        """See :meth:`StorageBackend.erase_user`; this default deletes one session at a time."""
        return await adrive(erase_fallback(user_id), performer(self))
