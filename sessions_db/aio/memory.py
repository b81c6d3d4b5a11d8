"""Long-term memory for asyncio: :class:`AsyncSessionMemory`.

The twin of :class:`sessions_db.memory.SessionMemory`: the same work (the
same validation, search, ranking and decryption), awaited.
"""

from __future__ import annotations

import builtins

from .._handles import AsyncRunner
from ..memory import MemoryFields, MemoryHit, list_memory, read_memory, search_memory
from ..types import Message


class AsyncSessionMemory(MemoryFields):
    """The long-term memory of one user, read through an :class:`~sessions_db.aio.AsyncManager`.

    See :class:`~sessions_db.memory.SessionMemory`; every method is awaited.
    """

    def __init__(
        self, manager: AsyncRunner, user_id: str, *, agent_name: str | None = None
    ) -> None:
        super().__init__(manager, user_id, agent_name=agent_name)
        self._manager = manager

    async def search(self, query: str, limit: int = 5) -> builtins.list[MemoryHit]:
        """See :meth:`SessionMemory.search`."""
        uid, agent, privacy = self._user_id, self._agent_name, self._privacy
        return await self._manager.run(
            lambda uow: search_memory(uow, uid, query, agent, limit, privacy), write=False
        )

    async def read(self, message_id: str) -> Message:
        """See :meth:`SessionMemory.read`."""
        uid, agent, privacy = self._user_id, self._agent_name, self._privacy
        return await self._manager.run(
            lambda uow: read_memory(uow, uid, agent, message_id, privacy), write=False
        )

    async def list(self, *, limit: int | None = 20, offset: int = 0) -> builtins.list[MemoryHit]:
        """See :meth:`SessionMemory.list`."""
        uid, agent, privacy = self._user_id, self._agent_name, self._privacy
        return await self._manager.run(
            lambda uow: list_memory(uow, uid, agent, None, limit, offset, privacy), write=False
        )
