"""The asyncio API: :class:`AsyncManager` and :class:`AsyncSession`.

They do the very work of :mod:`sessions_db.rules` that the synchronous
:class:`~sessions_db.Manager` does, in one unit of work of an
:class:`AsyncStorageBackend` (through ``run_sync`` on SQL, in a worker thread
on the other stores): every validation, payload check, checksum and branching
rule is the same code. Methods have the names and meaning of the sync ones.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, Iterable
from datetime import datetime, timedelta
from functools import partial
from types import TracebackType
from typing import Any, Self, TypeVar

from .. import rules
from .._handles import ManagerFields, SessionFields
from ..crypto import Keyring
from ..errors import StorageClosedError
from ..privacy import Privacy, Redactor
from ..rules import DEFAULT_PRUNE_BATCH, Clock, TokenCounter
from ..storage import Work
from ..types import Checkpoint, Message, SessionEntry, SessionMetadata, utcnow
from .backend import AsyncStorageBackend
from .memory import AsyncSessionMemory

T = TypeVar("T")


class AsyncManager(ManagerFields[AsyncStorageBackend]):
    """Creates, finds, lists and deletes sessions: :class:`~sessions_db.Manager`, awaited.

    Use it from one event loop; any number of tasks may share it. ``async with``
    closes it.
    """

    def __init__(
        self,
        backend: AsyncStorageBackend,
        *,
        clock: Clock = utcnow,
        redact: Redactor | None = None,
        keyring: Keyring | None = None,
        auto_checkpoint: timedelta | None = None,
    ) -> None:
        super().__init__(
            backend,
            clock=clock,
            privacy=Privacy(redact, keyring),
            auto_checkpoint=auto_checkpoint,
        )

    def memory(self, user_id: str, *, agent_name: str | None = None) -> AsyncSessionMemory:
        """See :meth:`Manager.memory`; the memory's methods are awaited."""
        return AsyncSessionMemory(self, user_id, agent_name=agent_name)

    async def run(self, work: Work[T], *, write: bool = True) -> T:
        """Do ``work`` (a rule of :mod:`sessions_db.rules`) in one unit of work and commit it."""
        if self._closed:
            raise StorageClosedError("the session manager is closed")
        return await self._backend.run(work, write=write)

    async def create(
        self,
        agent_name: str,
        *,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> AsyncSession:
        """See :meth:`Manager.create`."""
        work = self._create_work(agent_name, user_id, metadata, key)
        return AsyncSession(self, await self.run(work))

    async def get_by_key(
        self, agent_name: str, key: str, *, user_id: str | None = None
    ) -> AsyncSession:
        """See :meth:`Manager.get_by_key`."""
        work = self._get_by_key_work(agent_name, key, user_id)
        return AsyncSession(self, await self.run(work, write=False))

    async def get(self, session_id: str, *, user_id: str | None = None) -> AsyncSession:
        """See :meth:`Manager.get`."""
        return AsyncSession(self, await self.run(self._get_work(session_id, user_id), write=False))

    async def get_or_create(
        self, agent_name: str, user_id: str | None, *, key: str | None = None
    ) -> AsyncSession:
        """See :meth:`Manager.get_or_create`."""
        work = self._get_or_create_work(agent_name, user_id, key)
        return AsyncSession(self, await self.run(work))

    async def list(
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
        """See :meth:`Manager.list`."""
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
        return await self.run(work, write=False)

    async def delete(self, session_id: str) -> None:
        """See :meth:`Manager.delete`."""
        await self.run(partial(rules.delete, session_id=session_id))

    async def list_agents(self) -> builtins.list[str]:
        """See :meth:`Manager.list_agents`."""
        return await self.run(rules.list_agents, write=False)

    async def prune(
        self,
        older_than: timedelta | datetime,
        *,
        agent_name: str | None = None,
        dry_run: bool = False,
        batch_size: int = DEFAULT_PRUNE_BATCH,
    ) -> builtins.list[str]:
        """See :meth:`Manager.prune`."""
        if dry_run:
            return await self.run(self._prune_work(older_than, agent_name, True), write=False)
        deleted: builtins.list[str] = []
        async for batch in self.prune_batches(
            older_than, agent_name=agent_name, batch_size=batch_size
        ):
            deleted += batch
        return sorted(deleted)

    async def prune_batches(
        self,
        older_than: timedelta | datetime,
        *,
        agent_name: str | None = None,
        batch_size: int = DEFAULT_PRUNE_BATCH,
    ) -> AsyncGenerator[builtins.list[str], None]:
        """See :meth:`Manager.prune_batches`: an async iterator of the committed batches."""
        cutoff, size = self._prune_plan(older_than, batch_size)
        while True:
            batch = await self.run(self._prune_batch_work(cutoff, agent_name, size))
            if not batch:
                return
            yield batch

    async def close(self) -> None:
        """Close the manager and its backend (after the calls under way). Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._backend.close()

    async def erase_user(self, user_id: str) -> int:
        """See :meth:`Manager.erase_user`."""
        return await self.run(partial(rules.erase_user, user_id=user_id))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncSession(SessionFields):
    """One conversation: :class:`~sessions_db.Session`, awaited; from :class:`AsyncManager`."""

    def __init__(self, manager: AsyncManager, meta: SessionMetadata) -> None:
        super().__init__(manager, meta)
        self._manager = manager

    @property
    def manager(self) -> AsyncManager:
        """The manager this session came from."""
        return self._manager

    async def _run(self, work: Work[T], *, write: bool = True) -> T:
        if self._closed:
            raise StorageClosedError(f"session {self.id} is closed; get it again from the manager")
        return await self._manager.run(work, write=write)

    async def append_message(self, message: Message) -> None:
        """See :meth:`Session.append_message`."""
        await self._run(self._append_work([message]))

    async def append_messages(self, messages: Iterable[Message]) -> None:
        """See :meth:`Session.append_messages`."""
        await self._run(self._append_work(messages))

    async def get_messages(
        self,
        *,
        limit: int | None = None,
        before: str | None = None,
        max_tokens: int | None = None,
        token_counter: TokenCounter | None = None,
    ) -> list[Message]:
        """See :meth:`Session.get_messages`."""
        work = self._get_messages_work(limit, before, max_tokens, token_counter)
        return await self._run(work, write=False)

    async def fork(
        self,
        *,
        at: str | None = None,
        checkpoint_id: str | None = None,
        agent_name: str | None = None,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> AsyncSession:
        """See :meth:`Session.fork`."""
        work = self._fork_work(at, checkpoint_id, agent_name, user_id, metadata)
        return AsyncSession(self._manager, await self._run(work))

    async def rewind(self, to: str) -> None:
        """See :meth:`Session.rewind`."""
        await self._run(self._rewind_work(to))

    async def pop_message(self) -> Message | None:
        """See :meth:`Session.pop_message`."""
        return await self._run(self._pop_work())

    async def clear(self) -> None:
        """See :meth:`Session.clear`."""
        await self._run(self._clear_work())

    async def update_metadata(
        self, patch: dict[str, Any], *, replace: bool = False
    ) -> SessionMetadata:
        """See :meth:`Session.update_metadata`."""
        return await self._run(self._update_metadata_work(patch, replace))

    async def checkpoint(self, *, metadata: dict[str, Any] | None = None) -> Checkpoint:
        """See :meth:`Session.checkpoint`."""
        return await self._run(self._checkpoint_work(metadata))

    async def restore(self, checkpoint_id: str) -> Checkpoint:
        """See :meth:`Session.restore`."""
        return await self._run(self._restore_work(checkpoint_id))

    async def list_checkpoints(self) -> list[Checkpoint]:
        """See :meth:`Session.list_checkpoints`."""
        return await self._run(self._list_checkpoints_work(), write=False)

    async def info(self) -> SessionMetadata:
        """See :meth:`Session.info`."""
        return await self._run(self._info_work(), write=False)

    async def get_entries(self) -> list[SessionEntry]:
        """See :meth:`Session.get_entries`."""
        return await self._run(self._entries_work(), write=False)

    async def close(self) -> None:
        """See :meth:`Session.close`."""
        if not self._closed:
            self._closed = True
            if not self._manager.closed:
                await self._manager.backend.release(self.id)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
