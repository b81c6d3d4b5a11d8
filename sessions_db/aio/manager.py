"""The asyncio API: :class:`AsyncManager` and :class:`AsyncSession`.

They run the very plans of :mod:`sessions_db.rules` that the synchronous
:class:`~sessions_db.Manager` runs, with :func:`~sessions_db._plan.adrive`
instead of ``drive``: every validation, payload check, checksum and branching
rule is the same code. Methods have the names and meaning of the sync ones.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from .. import rules
from .._handles import ManagerFields, SessionFields
from .._plan import Plan, adrive
from ..errors import StorageClosedError
from ..rules import Call, Clock
from ..types import Checkpoint, Message, SessionEntry, SessionMetadata, utcnow
from .backend import AsyncStorageBackend

T = TypeVar("T")


class AsyncManager(ManagerFields[AsyncStorageBackend]):
    """Creates, finds, lists and deletes sessions: :class:`~sessions_db.Manager`, awaited.

    Use it from one event loop; any number of tasks may share it. ``async with``
    closes it.
    """

    def __init__(self, backend: AsyncStorageBackend, *, clock: Clock = utcnow) -> None:
        super().__init__(backend, clock=clock)

    async def run(self, plan: Plan[Call, T]) -> T:
        """Run a plan of backend calls (see :mod:`sessions_db.rules`)."""
        if self._closed:
            plan.close()
            raise StorageClosedError("the session manager is closed")
        return await adrive(plan, rules.performer(self._backend))

    async def create(
        self,
        agent_name: str,
        *,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> AsyncSession:
        """See :meth:`Manager.create`."""
        plan = rules.create(agent_name, user_id, metadata, self._clock)
        return AsyncSession(self, await self.run(plan))

    async def get(self, session_id: str, *, user_id: str | None = None) -> AsyncSession:
        """See :meth:`Manager.get`."""
        return AsyncSession(self, await self.run(rules.get(session_id, user_id)))

    async def get_or_create(self, agent_name: str, user_id: str | None) -> AsyncSession:
        """See :meth:`Manager.get_or_create`."""
        plan = rules.get_or_create(agent_name, user_id, self._clock)
        return AsyncSession(self, await self.run(plan))

    async def list(
        self,
        agent_name: str,
        *,
        user_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[SessionMetadata]:
        """See :meth:`Manager.list`."""
        return await self.run(rules.list_sessions(agent_name, user_id, limit, offset))

    async def delete(self, session_id: str) -> None:
        """See :meth:`Manager.delete`."""
        await self.run(rules.delete(session_id))

    async def list_agents(self) -> builtins.list[str]:
        """See :meth:`Manager.list_agents`."""
        return await self.run(rules.list_agents())

    async def prune(
        self,
        older_than: timedelta | datetime,
        *,
        agent_name: str | None = None,
        dry_run: bool = False,
    ) -> builtins.list[str]:
        """See :meth:`Manager.prune`."""
        return await self.run(rules.prune(older_than, agent_name, dry_run, self._clock))

    async def close(self) -> None:
        """Close the manager and its backend (after the calls under way). Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._backend.close()

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
        super().__init__(meta)
        self._manager = manager

    @property
    def manager(self) -> AsyncManager:
        """The manager this session came from."""
        return self._manager

    async def _run(self, plan: Plan[Call, T]) -> T:
        if self._closed:
            plan.close()
            raise StorageClosedError(f"session {self.id} is closed; get it again from the manager")
        return await self._manager.run(plan)

    async def append_message(self, message: Message) -> None:
        """See :meth:`Session.append_message`."""
        await self._run(rules.append_messages(self.id, [message], self._manager.clock))

    async def append_messages(self, messages: Iterable[Message]) -> None:
        """See :meth:`Session.append_messages`."""
        await self._run(rules.append_messages(self.id, messages, self._manager.clock))

    async def get_messages(
        self, *, limit: int | None = None, before: str | None = None
    ) -> list[Message]:
        """See :meth:`Session.get_messages`."""
        return await self._run(rules.get_messages(self.id, limit, before))

    async def checkpoint(self, *, metadata: dict[str, Any] | None = None) -> Checkpoint:
        """See :meth:`Session.checkpoint`."""
        return await self._run(rules.checkpoint(self.id, metadata, self._manager.clock))

    async def restore(self, checkpoint_id: str) -> Checkpoint:
        """See :meth:`Session.restore`."""
        return await self._run(rules.restore(self.id, checkpoint_id, self._manager.clock))

    async def list_checkpoints(self) -> list[Checkpoint]:
        """See :meth:`Session.list_checkpoints`."""
        return await self._run(rules.list_checkpoints(self.id))

    async def info(self) -> SessionMetadata:
        """See :meth:`Session.info`."""
        return await self._run(rules.load_session(self.id))

    async def get_entries(self) -> list[SessionEntry]:
        """See :meth:`Session.get_entries`."""
        return await self._run(rules.load_entries(self.id))

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
