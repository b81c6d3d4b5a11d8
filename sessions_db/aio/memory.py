"""Long-term memory for asyncio: :class:`AsyncSessionMemory`.

The twin of :class:`sessions_db.memory.SessionMemory`: the same work (the
same validation, search, ranking and decryption), awaited.
"""

from __future__ import annotations

import builtins

from .._handles import AsyncRunner
from ..memory import MemoryFields, MemoryHit
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
        return await self._manager.run(self._search_work(query, limit), write=False)

    async def read(self, message_id: str) -> Message:
        """See :meth:`SessionMemory.read`."""
        return await self._manager.run(self._read_work(message_id), write=False)

    async def list(self, *, limit: int | None = 20, offset: int = 0) -> builtins.list[MemoryHit]:
        """See :meth:`SessionMemory.list`."""
        return await self._manager.run(self._list_work(limit, offset), write=False)
