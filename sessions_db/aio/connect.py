"""``await connect()``: an AsyncManager from a store URL (or from the environment)."""

from __future__ import annotations

import asyncio

from ..config import ConfigSource
from ..connect import backend_for_url, configured, migrate_on_open, sql_timeouts
from ..null import NullBackend
from .backend import AsyncStorageBackend
from .manager import AsyncManager
from .sql import AsyncSQLBackend
from .threaded import ThreadedBackend


async def backend_for_url_async(
    url: str,
    *,
    migrate: bool | None = None,
    schema: str | None = None,
    statement_timeout: float | None = None,
    lock_timeout: float | None = None,
    pooled: bool = False,
) -> AsyncStorageBackend:
    """Return the started asyncio backend a store URL names.

    SQL URLs give an :class:`AsyncSQLBackend` (migrated on open as the sync
    :func:`sessions_db.connect` decides); any other store the sync API knows is
    opened in a worker thread and wrapped in a :class:`ThreadedBackend`.
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme.startswith(("sqlite", "postgres")):
        statement, lock = sql_timeouts((statement_timeout, lock_timeout))
        backend = AsyncSQLBackend(
            url,
            migrate=migrate_on_open(url, migrate),
            schema=schema,
            statement_timeout=statement,
            lock_timeout=lock,
            pooled=pooled and scheme.startswith("postgres"),
        )
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
    statement_timeout: float | None = None,
    lock_timeout: float | None = None,
    pooled: bool | None = None,
) -> AsyncManager:
    """Return an :class:`AsyncManager` on the store ``url`` names, or on the configured store.

    The asyncio twin of :func:`sessions_db.connect`, with the same URLs,
    configuration and defaults.
    """
    store, cfg = configured(url, config)
    if store is None:
        return AsyncManager(ThreadedBackend(NullBackend()), auto_checkpoint=cfg.auto_checkpoint)
    options = cfg.manager_options()
    statement, lock = sql_timeouts(
        (statement_timeout, lock_timeout), (cfg.statement_timeout, cfg.lock_timeout)
    )
    backend = await backend_for_url_async(
        store,
        migrate=migrate,
        schema=cfg.db_schema,
        statement_timeout=statement,
        lock_timeout=lock,
        pooled=cfg.pooled if pooled is None else pooled,
    )
    return AsyncManager(backend, **options)
