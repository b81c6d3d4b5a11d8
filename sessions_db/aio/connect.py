"""``await connect()``: an AsyncManager from a store URL (or from the environment)."""

from __future__ import annotations

import asyncio

from ..connect import backend_for_url, default_url, migrate_on_open
from .backend import AsyncStorageBackend
from .manager import AsyncManager
from .sql import AsyncSQLBackend
from .threaded import ThreadedBackend


async def backend_for_url_async(url: str, *, migrate: bool | None = None) -> AsyncStorageBackend:
    """Return the started asyncio backend a store URL names.

    SQL URLs give an :class:`AsyncSQLBackend` (migrated on open as the sync
    :func:`sessions_db.connect` decides); any other store the sync API knows is
    opened in a worker thread and wrapped in a :class:`ThreadedBackend`.
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme.startswith(("sqlite", "postgres")):
        backend = AsyncSQLBackend(url, migrate=migrate_on_open(url, migrate))
        try:
            await backend.start()
        except BaseException:
            await backend.close()
            raise
        return backend
    return ThreadedBackend(await asyncio.to_thread(backend_for_url, url, migrate=migrate))


async def connect(url: str | None = None, *, migrate: bool | None = None) -> AsyncManager:
    """Return an :class:`AsyncManager` on the store ``url`` names (the default store if ``None``).

    The asyncio twin of :func:`sessions_db.connect`, with the same URLs and defaults.
    """
    return AsyncManager(await backend_for_url_async(url or default_url(), migrate=migrate))
