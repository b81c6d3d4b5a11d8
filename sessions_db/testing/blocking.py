"""A synchronous facade over the asyncio API, to run sync test suites against it.

:func:`open_blocking` connects an :class:`~sessions_db.aio.AsyncManager` on a
private event loop in a background thread and returns a :class:`BlockingManager`:
a :class:`~sessions_db.Manager` whose every method runs the async one on that
loop and waits. The contract suite runs against the async API this way,
unchanged; an async backend of your own can do the same::

    open_manager = functools.partial(open_blocking, functools.partial(my_async_connect, url))

Both ``partial`` objects pickle, so the suite's multi-process tests work too.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ..aio import AsyncManager, AsyncSession, AsyncSessionMemory, AsyncStorageBackend
from ..backend import StorageBackend
from ..manager import Manager, Session
from ..memory import SessionMemory
from ..rules import Clock
from ..storage import Work
from ..types import utcnow

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread; :meth:`run` waits for a coroutine on it."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="sessions_db-loop", daemon=True
        )
        self._thread.start()
        self._stopped = False

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and return its result (blocking the calling thread).

        Once the loop is stopped, ``coro`` runs on a loop of its own in the caller's
        thread (a closed manager still answers with its own errors).
        """
        if self._stopped:
            return asyncio.run(coro)
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def stop(self) -> None:
        """Stop the loop and its thread. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def _awaited(name: str, *, session: bool = False) -> Any:
    """Return a method that runs ``self._target.<name>(...)`` on ``self._loop`` and waits."""

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = self._loop.run(getattr(self._target, name)(*args, **kwargs))
        return BlockingSession(self, result) if session else result

    method.__name__ = name
    method.__doc__ = f"Await ``{name}`` of the async object on the private loop."
    return method


class BlockingBackend(StorageBackend):
    """An :class:`~sessions_db.aio.AsyncStorageBackend` seen as a sync ``StorageBackend``."""

    def __init__(self, target: AsyncStorageBackend, loop: LoopThread) -> None:
        self._target = target
        self._loop = loop

    @property
    def target(self) -> AsyncStorageBackend:
        """The async backend the calls go to."""
        return self._target

    @property
    def loop(self) -> LoopThread:
        """The loop the calls run on."""
        return self._loop

    save_session = _awaited("save_session")
    load_session = _awaited("load_session")
    delete_session = _awaited("delete_session")
    list_sessions = _awaited("list_sessions")
    list_agents = _awaited("list_agents")
    prune_sessions = _awaited("prune_sessions")
    find_or_create_session = _awaited("find_or_create_session")
    load_session_by_key = _awaited("load_session_by_key")
    create_session = _awaited("create_session")
    append_entries = _awaited("append_entries")
    load_entries = _awaited("load_entries")
    load_branch = _awaited("load_branch")
    load_entries_by_id = _awaited("load_entries_by_id")
    load_children = _awaited("load_children")
    create_checkpoint = _awaited("create_checkpoint")
    save_checkpoint = _awaited("save_checkpoint")
    load_checkpoint = _awaited("load_checkpoint")
    list_checkpoints = _awaited("list_checkpoints")
    search_messages = _awaited("search_messages")
    list_messages = _awaited("list_messages")
    release = _awaited("release")
    close = _awaited("close")
    erase_user = _awaited("erase_user")


class BlockingMemory(SessionMemory):
    """A :class:`~sessions_db.SessionMemory` running an ``AsyncSessionMemory``'s methods."""

    def __init__(self, manager: BlockingManager, target: AsyncSessionMemory) -> None:
        super().__init__(manager, target.user_id, agent_name=target.agent_name)
        self._loop = manager._loop
        self._target = target

    search = _awaited("search")
    read = _awaited("read")
    list = _awaited("list")


class BlockingManager(Manager):
    """A :class:`~sessions_db.Manager` whose methods are those of an ``AsyncManager``, awaited.

    ``BlockingManager(backend, clock=...)`` (with the :class:`BlockingBackend` of
    another one) makes a new ``AsyncManager`` on the same backend and loop, as
    ``Manager(backend, clock=...)`` does for the sync API.
    """

    def __init__(self, backend: StorageBackend, *, clock: Clock = utcnow) -> None:
        if not isinstance(backend, BlockingBackend):
            raise TypeError("a BlockingManager needs the BlockingBackend of another one")
        super().__init__(backend, clock=clock)
        self._loop = backend.loop
        self._target = AsyncManager(backend.target, clock=clock)
        self._owns_loop = False

    @property
    def target(self) -> AsyncManager:
        """The async manager the calls go to."""
        return self._target

    def memory(self, user_id: str, *, agent_name: str | None = None) -> SessionMemory:
        """Return the async manager's memory, behind the blocking facade."""
        return BlockingMemory(self, self._target.memory(user_id, agent_name=agent_name))

    def run(self, work: Work[T], *, write: bool = True) -> T:
        """Do a piece of work in a unit of work of the async manager."""
        return self._loop.run(self._target.run(work, write=write))

    create = _awaited("create", session=True)
    get = _awaited("get", session=True)
    get_or_create = _awaited("get_or_create", session=True)
    get_by_key = _awaited("get_by_key", session=True)
    list = _awaited("list")
    delete = _awaited("delete")
    list_agents = _awaited("list_agents")
    prune = _awaited("prune")
    erase_user = _awaited("erase_user")

    @property
    def closed(self) -> bool:
        """Whether the async manager is closed."""
        return self._target.closed

    def close(self) -> None:
        """Close the async manager (and stop the loop if this facade started it)."""
        self._loop.run(self._target.close())
        if self._owns_loop:
            self._loop.stop()


class BlockingSession(Session):
    """A :class:`~sessions_db.Session` whose methods are those of an ``AsyncSession``, awaited."""

    def __init__(self, manager: BlockingManager, target: AsyncSession) -> None:
        super().__init__(manager, target._meta)
        self._loop = manager._loop
        self._target = target

    append_message = _awaited("append_message")
    append_messages = _awaited("append_messages")
    get_messages = _awaited("get_messages")
    checkpoint = _awaited("checkpoint")
    restore = _awaited("restore")
    list_checkpoints = _awaited("list_checkpoints")
    info = _awaited("info")
    get_entries = _awaited("get_entries")
    rewind = _awaited("rewind")
    pop_message = _awaited("pop_message")
    clear = _awaited("clear")
    update_metadata = _awaited("update_metadata")
    close = _awaited("close")

    def fork(self, **kwargs: Any) -> Session:
        """Await ``fork`` of the async session; return the new session behind the facade."""
        manager = self._manager
        assert isinstance(manager, BlockingManager)
        return BlockingSession(manager, self._loop.run(self._target.fork(**kwargs)))


def open_blocking(connect: Callable[[], Awaitable[AsyncManager]]) -> BlockingManager:
    """Run ``connect()`` on a new private loop and return the facade of its manager."""
    loop = LoopThread()

    async def opened() -> AsyncManager:
        return await connect()

    try:
        manager = loop.run(opened())
    except BaseException:
        loop.stop()
        raise
    facade = BlockingManager(BlockingBackend(manager.backend, loop), clock=manager.clock)
    facade._target = manager
    facade._owns_loop = True
    return facade


__all__ = [
    "BlockingBackend",
    "BlockingManager",
    "BlockingMemory",
    "BlockingSession",
    "LoopThread",
    "open_blocking",
]
