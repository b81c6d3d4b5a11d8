"""ThreadedBackend: any synchronous StorageBackend, for asyncio."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from ..backend import WHOLE_BRANCH, BranchQuery, MessageHit, NewCheckpoint, StorageBackend
from ..errors import StorageClosedError
from ..simple import SimpleBackend, as_storage
from ..types import Checkpoint, Message, SessionEntry, SessionMetadata
from ._tasks import run_to_completion
from .backend import AsyncStorageBackend


class ThreadedBackend(AsyncStorageBackend):
    """Gives a synchronous :class:`~sessions_db.StorageBackend` the asyncio interface.

    Each call runs in a worker thread of the adapter's own pool (at most
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

    async def save_session(self, meta: SessionMetadata) -> None:  # noqa: D102 - see the ABC
        await self._call(self._backend.save_session, meta)

    async def load_session(self, session_id: str) -> SessionMetadata:  # noqa: D102
        result: SessionMetadata = await self._call(self._backend.load_session, session_id)
        return result

    async def delete_session(self, session_id: str) -> None:  # noqa: D102
        await self._call(self._backend.delete_session, session_id)

    async def list_sessions(  # noqa: D102
        self,
        agent_name: str,
        *,
        user_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[SessionMetadata]:
        result: list[SessionMetadata] = await self._call(
            self._backend.list_sessions, agent_name, user_id=user_id, limit=limit, offset=offset
        )
        return result

    async def list_agents(self) -> list[str]:  # noqa: D102
        result: list[str] = await self._call(self._backend.list_agents)
        return result

    async def prune_sessions(  # noqa: D102
        self, updated_before: datetime, *, agent_name: str | None = None, dry_run: bool = False
    ) -> list[str]:
        result: list[str] = await self._call(
            self._backend.prune_sessions, updated_before, agent_name=agent_name, dry_run=dry_run
        )
        return result

    async def find_or_create_session(self, meta: SessionMetadata) -> SessionMetadata:  # noqa: D102
        result: SessionMetadata = await self._call(self._backend.find_or_create_session, meta)
        return result

    async def append_entries(  # noqa: D102
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        *,
        fork_from: str | None = None,
        updated_at: datetime,
    ) -> None:
        await self._call(
            self._backend.append_entries,
            session_id,
            entries,
            fork_from=fork_from,
            updated_at=updated_at,
        )

    async def append_entry(  # noqa: D102
        self,
        session_id: str,
        entry: SessionEntry,
        *,
        fork_from: str | None = None,
        updated_at: datetime,
    ) -> None:
        await self._call(
            self._backend.append_entry,
            session_id,
            entry,
            fork_from=fork_from,
            updated_at=updated_at,
        )

    async def load_entries(self, session_id: str) -> list[SessionEntry]:  # noqa: D102
        result: list[SessionEntry] = await self._call(self._backend.load_entries, session_id)
        return result

    async def load_branch(  # noqa: D102
        self, session_id: str, query: BranchQuery = WHOLE_BRANCH
    ) -> list[SessionEntry]:
        result: list[SessionEntry] = await self._call(self._backend.load_branch, session_id, query)
        return result

    async def load_messages(self, session_id: str, query: BranchQuery) -> list[Message]:  # noqa: D102
        result: list[Message] = await self._call(self._backend.load_messages, session_id, query)
        return result

    async def create_checkpoint(self, session_id: str, new: NewCheckpoint) -> Checkpoint:  # noqa: D102
        result: Checkpoint = await self._call(self._backend.create_checkpoint, session_id, new)
        return result

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:  # noqa: D102
        await self._call(self._backend.save_checkpoint, checkpoint)

    async def load_checkpoint(self, checkpoint_id: str) -> Checkpoint:  # noqa: D102
        result: Checkpoint = await self._call(self._backend.load_checkpoint, checkpoint_id)
        return result

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:  # noqa: D102
        result: list[Checkpoint] = await self._call(self._backend.list_checkpoints, session_id)
        return result

    async def search_messages(  # noqa: D102
        self,
        user_id: str,
        query: str,
        *,
        agent_name: str | None = None,
        limit: int = 5,
    ) -> list[MessageHit]:
        result: list[MessageHit] = await self._call(
            self._backend.search_messages, user_id, query, agent_name=agent_name, limit=limit
        )
        return result

    async def list_messages(  # noqa: D102
        self,
        user_id: str,
        *,
        agent_name: str | None = None,
        message_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[MessageHit]:
        result: list[MessageHit] = await self._call(
            self._backend.list_messages,
            user_id,
            agent_name=agent_name,
            message_id=message_id,
            limit=limit,
            offset=offset,
        )
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

    async def erase_user(self, user_id: str) -> int:  # noqa: D102
        result: int = await self._call(self._backend.erase_user, user_id)
        return result
