"""ThreadedBackend: any synchronous StorageBackend, for asyncio."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..backend import StorageBackend
from ..errors import StorageClosedError
from ..simple import SimpleBackend, as_storage
from ..storage import Work
from ._tasks import run_to_completion
from .backend import AsyncStorageBackend

T = TypeVar("T")


class ThreadedBackend(AsyncStorageBackend):
    """Gives a synchronous :class:`~sessions_db.StorageBackend` the asyncio interface.

    Each unit of work runs in a worker thread of the adapter's own pool (at most
    ``max_workers`` at once), so the event loop never blocks on the store. This
    is how the file store and users' own backends plug into
    :class:`~sessions_db.aio.AsyncManager` (a :class:`~sessions_db.SimpleBackend`
    is wrapped in a :class:`~sessions_db.SimpleStorage`). A call whose task is cancelled still
    runs to its end before the cancellation is raised.
    """

    def __init__(self, backend: StorageBackend | SimpleBackend, *, max_workers: int = 16) -> None:
        self._backend = as_storage(backend)
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="sessions_db")
        self._calls: set[asyncio.Future[Any]] = set()
        self._closed = False

    @property
    def backend(self) -> StorageBackend:
        """The synchronous backend the calls go to."""
        return self._backend

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise StorageClosedError("the backend is closed")
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._pool, functools.partial(method, *args, **kwargs))
        self._calls.add(work)
        work.add_done_callback(self._calls.discard)
        return await run_to_completion(work)

    async def run(self, work: Work[T], *, write: bool = True) -> T:
        """Do ``work`` in a unit of work of the synchronous backend, in a worker thread."""
        result: T = await self._call(self._backend.run, work, write=write)
        return result

    async def release(self, session_id: str) -> None:  # noqa: D102
        await self._call(self._backend.release, session_id)

    async def close(self) -> None:
        """Close the backend after the calls under way, and stop the worker threads."""
        if self._closed:
            return
        self._closed = True
        if self._calls:
            await asyncio.wait(set(self._calls))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._backend.close)
        self._pool.shutdown(wait=False)
