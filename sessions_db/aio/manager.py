"""The asyncio API: :class:`AsyncManager` and :class:`AsyncSession`.

They do the very work of :mod:`sessions_db.rules` that the synchronous
:class:`~sessions_db.Manager` does, in one unit of work of an
:class:`AsyncStorageBackend` (in a worker thread, or through ``run_sync`` on a
host's async SQL engine): every validation, payload check, checksum and branching
rule is the same code. Methods have the names and meaning of the sync ones.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from .. import rules
from .._handles import ManagerFields, SessionFields
from ..crypto import Keyring
from ..errors import StorageClosedError
from ..privacy import Privacy, Redactor
from ..rules import DEFAULT_PRUNE_BATCH, Clock, TokenCounter
from ..storage import Cursor, UnitOfWork, Work
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
        created = await self.run(
            lambda uow: rules.create(
                uow, agent_name, user_id, metadata, self._clock, self._privacy, key
            )
        )
        return AsyncSession(self, created)

    async def get_by_key(
        self, agent_name: str, key: str, *, user_id: str | None = None
    ) -> AsyncSession:
        """See :meth:`Manager.get_by_key`."""
        found = await self.run(
            lambda uow: rules.get_by_key(uow, agent_name, key, user_id, self._privacy),
            write=False,
        )
        return AsyncSession(self, found)

    async def get(self, session_id: str, *, user_id: str | None = None) -> AsyncSession:
        """See :meth:`Manager.get`."""
        found = await self.run(
            lambda uow: rules.get(uow, session_id, user_id, self._privacy), write=False
        )
        return AsyncSession(self, found)

    async def get_or_create(
        self, agent_name: str, user_id: str | None, *, key: str | None = None
    ) -> AsyncSession:
        """See :meth:`Manager.get_or_create`."""
        found = await self.run(
            lambda uow: rules.get_or_create(
                uow, agent_name, user_id, self._clock, self._privacy, key
            )
        )
        return AsyncSession(self, found)

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
        after: SessionMetadata | Cursor | None = None,
    ) -> builtins.list[SessionMetadata]:
        """See :meth:`Manager.list`."""
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

        return await self.run(page, write=False)

    async def delete(self, session_id: str) -> None:
        """See :meth:`Manager.delete`."""
        await self.run(lambda uow: rules.delete(uow, session_id))

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
            return await self.run(
                lambda uow: rules.prune(uow, older_than, agent_name, True, self._clock),
                write=False,
            )
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
        cutoff = rules.prune_cutoff(older_than, self._clock)
        size = rules.prune_batch_size(batch_size)
        while True:
            batch = await self.run(lambda uow: rules.prune_batch(uow, cutoff, agent_name, size))
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
        return await self.run(lambda uow: rules.erase_user(uow, user_id))

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
        await self.append_messages([message])

    async def append_messages(self, messages: Iterable[Message]) -> None:
        """See :meth:`Session.append_messages`."""
        m = self._manager
        await self._run(
            lambda uow: rules.append_messages(
                uow, self.id, messages, m.clock, m.privacy, m.auto_checkpoint, owner=self.user_id
            )
        )

    async def get_messages(
        self,
        *,
        limit: int | None = None,
        before: str | None = None,
        max_tokens: int | None = None,
        token_counter: TokenCounter | None = None,
    ) -> list[Message]:
        """See :meth:`Session.get_messages`."""
        m = self._manager
        return await self._run(
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
        m = self._manager
        forked = await self._run(
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
        return AsyncSession(m, forked)

    async def rewind(self, to: str) -> None:
        """See :meth:`Session.rewind`."""
        await self._run(lambda uow: rules.rewind(uow, self.id, to, self._manager.clock))

    async def pop_message(self) -> Message | None:
        """See :meth:`Session.pop_message`."""
        m = self._manager
        return await self._run(
            lambda uow: rules.pop_message(uow, self.id, m.clock, m.privacy, owner=self.user_id)
        )

    async def clear(self) -> None:
        """See :meth:`Session.clear`."""
        await self._run(lambda uow: rules.clear(uow, self.id, self._manager.clock))

    async def update_metadata(
        self, patch: dict[str, Any], *, replace: bool = False
    ) -> SessionMetadata:
        """See :meth:`Session.update_metadata`."""
        privacy = self._manager.privacy
        return await self._run(
            lambda uow: rules.update_metadata(uow, self.id, patch, replace, privacy)
        )

    async def checkpoint(self, *, metadata: dict[str, Any] | None = None) -> Checkpoint:
        """See :meth:`Session.checkpoint`."""
        m = self._manager
        return await self._run(
            lambda uow: rules.checkpoint(uow, self.id, metadata, m.clock, m.privacy)
        )

    async def restore(self, checkpoint_id: str) -> Checkpoint:
        """See :meth:`Session.restore`."""
        m = self._manager
        return await self._run(
            lambda uow: rules.restore(uow, self.id, checkpoint_id, m.clock, m.privacy)
        )

    async def list_checkpoints(self) -> list[Checkpoint]:
        """See :meth:`Session.list_checkpoints`."""
        privacy = self._manager.privacy
        return await self._run(
            lambda uow: rules.list_checkpoints(uow, self.id, privacy), write=False
        )

    async def info(self) -> SessionMetadata:
        """See :meth:`Session.info`."""
        privacy = self._manager.privacy
        return await self._run(lambda uow: rules.load_session(uow, self.id, privacy), write=False)

    async def get_entries(self) -> list[SessionEntry]:
        """See :meth:`Session.get_entries`."""
        privacy = self._manager.privacy
        return await self._run(
            lambda uow: rules.load_entries(uow, self.id, privacy, owner=self.user_id), write=False
        )

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
