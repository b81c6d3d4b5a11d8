"""The asyncio API of sessions_db: the same contract as the sync one, awaited.

::

    import sessions_db as sdb

    async with await sdb.aio.connect("postgresql://user@host/app") as mgr:
        sess = await mgr.get_or_create("assistant", "user-123")
        await sess.append_message(sdb.Message.new("user", {"content": "Hello"}))
        print(await sess.get_messages())

:class:`AsyncManager` and :class:`AsyncSession` run the same rules as
:class:`~sessions_db.Manager` and :class:`~sessions_db.Session`;
:class:`AsyncSQLBackend` runs the same SQL as :class:`~sessions_db.SQLBackend` (on a
URL, that very backend, in worker threads);
:class:`ThreadedBackend` gives any synchronous backend an asyncio face;
:class:`Runtime` runs agents (``async def`` or plain) with their sessions, and
``AsyncManager.memory`` reads a user's long-term memory, both with the sync
API's plans.
"""

from .backend import AsyncStorageBackend
from .connect import connect
from .manager import AsyncManager, AsyncSession
from .memory import AsyncSessionMemory
from .runtime import Runtime
from .sql import AsyncSQLBackend
from .threaded import ThreadedBackend

__all__ = [
    "AsyncManager",
    "AsyncSQLBackend",
    "AsyncSession",
    "AsyncSessionMemory",
    "AsyncStorageBackend",
    "Runtime",
    "ThreadedBackend",
    "connect",
]
