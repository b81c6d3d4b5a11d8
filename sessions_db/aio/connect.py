"""``await connect()``: an AsyncManager from a store URL (or from the environment)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from ..config import ConfigSource
from ..connect import (
    backend_for_url,
    check_read_url,
    configured,
    configured_read_url,
    migrate_on_open,
    sql_timeouts,
)
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
    read_url: str | None = None,
    replica_max_lag: float | None = None,
) -> AsyncStorageBackend:
    """Return the started asyncio backend a store URL names.

    SQL URLs give an :class:`AsyncSQLBackend` (migrated on open as the sync
    :func:`sessions_db.connect` decides); any other store the sync API knows is
    opened in a worker thread and wrapped in a :class:`ThreadedBackend`.
    """
    scheme = url.split(":", 1)[0].lower()
    check_read_url(url, read_url)
    if scheme.startswith(("sqlite", "postgres")):
        statement, lock = sql_timeouts((statement_timeout, lock_timeout))
        backend = (AsyncSQLBackend if read_url is None else _replicated(read_url, replica_max_lag))(
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


def _replicated(read_url: str, max_lag: float | None) -> Any:
    from ..sql.replica import MAX_LAG  # noqa: PLC0415 - only when asked for
    from .replica import ReplicatedAsyncSQLBackend  # noqa: PLC0415

    lag = MAX_LAG if max_lag is None else max_lag
    return partial(ReplicatedAsyncSQLBackend, read_url=read_url, max_lag=lag)


async def connect(
    url: str | None = None,
    *,
    config: ConfigSource | None = None,
    migrate: bool | None = None,
    statement_timeout: float | None = None,
    lock_timeout: float | None = None,
    pooled: bool | None = None,
    read_url: str | None = None,
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
        read_url=configured_read_url(url, cfg, read_url),
        replica_max_lag=cfg.replica_max_lag,
    )
    return AsyncManager(backend, **options)
