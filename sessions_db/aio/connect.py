"""``await connect()``: an AsyncManager from a store URL (or from the environment)."""

from __future__ import annotations

import asyncio

from ..config import ConfigSource
from ..connect import backend_for_url, configured, migrate_on_open
from ..null import NullBackend
from .backend import AsyncStorageBackend
from .manager import AsyncManager
from .sql import AsyncSQLBackend
from .threaded import ThreadedBackend


async def backend_for_url_async(
    url: str, *, migrate: bool | None = None, schema: str | None = None
) -> AsyncStorageBackend:
    """Return the started asyncio backend a store URL names.

    SQL URLs give an :class:`AsyncSQLBackend` (migrated on open as the sync
    :func:`sessions_db.connect` decides); any other store the sync API knows is
    opened in a worker thread and wrapped in a :class:`ThreadedBackend`.
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme.startswith(("sqlite", "postgres")):
        backend = AsyncSQLBackend(url, migrate=migrate_on_open(url, migrate), schema=schema)
        try:
            await backend.start()
        except BaseException:
            await backend.close()
            raise
        return backend
    return ThreadedBackend(
        await asyncio.to_thread(backend_for_url, url, migrate=migrate, schema=schema)
    )


async def connect(
    url: str | None = None,
    *,
    config: ConfigSource | None = None,
    migrate: bool | None = None,
) -> AsyncManager:
    """Return an :class:`AsyncManager` on the store ``url`` names, or on the configured store.

    The asyncio twin of :func:`sessions_db.connect`, with the same URLs,
    configuration and defaults.
    """
    store, cfg = configured(url, config)
    if store is None:
        return AsyncManager(ThreadedBackend(NullBackend()), auto_checkpoint=cfg.auto_checkpoint)
    options = cfg.manager_options()
    backend = await backend_for_url_async(store, migrate=migrate, schema=cfg.db_schema)
    return AsyncManager(backend, **options)
