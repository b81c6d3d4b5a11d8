"""Engines: building one from a URL, and preparing a host's engine for our use.

The sync and asyncio backends build their engines with the same options
(:func:`engine_options`) and prepare SQLite connections with the same pragmas
(:func:`sqlite_pragmas`); only the engine factory differs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..errors import ConfigurationError

#: Drivers per database: (sync, asyncio).
_DRIVERS = {
    "postgresql": ("postgresql+psycopg", "postgresql+psycopg"),
    "sqlite": ("sqlite", "sqlite+aiosqlite"),
}


def normalize_url(url: str, *, asyncio: bool = False) -> str:
    """Return a SQLAlchemy URL for ``url``, choosing psycopg 3 for PostgreSQL.

    Accepts ``postgres://`` and ``postgresql://`` (as the seed's
    ``POSTGRES_CONNECTION_STRING`` does) and ``sqlite:///path``, with or without
    a driver. ``asyncio=True`` chooses the asyncio drivers (psycopg's async
    connection, aiosqlite).
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"not a database URL: {url!r}") from exc
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend not in _DRIVERS:
        raise ConfigurationError(
            f"unsupported database {backend!r}: use postgresql://, sqlite:// or file://"
        )
    parsed = parsed.set(drivername=_DRIVERS[backend][1 if asyncio else 0])
    return parsed.render_as_string(hide_password=False)


def engine_options(url: str, *, connect_timeout: float = 10.0, **kwargs: Any) -> dict[str, Any]:
    """Return the engine options sessions_db uses for ``url`` (a normalized URL).

    Every statement runs in autocommit (transactions are opened explicitly). On
    PostgreSQL the pool is sized for a service, checks a connection before
    handing it out (``pool_pre_ping``: connections broken by a server restart
    are replaced instead of failing a call), and bounds the wait for a new
    connection and for a free one by ``connect_timeout`` seconds.
    """
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT", **kwargs}
    if url.startswith("postgresql"):
        connect_args = dict(options.pop("connect_args", {}))
        connect_args.setdefault("connect_timeout", max(1, round(connect_timeout)))
        options["connect_args"] = connect_args
        options.setdefault("pool_size", 10)
        options.setdefault("max_overflow", 20)
        options.setdefault("pool_timeout", connect_timeout)
        options.setdefault("pool_pre_ping", True)
    return options


def build_engine(url: str, *, connect_timeout: float = 10.0, **kwargs: Any) -> Engine:
    """Create the engine sessions_db owns for ``url``."""
    url = normalize_url(url)
    return create_engine(url, **engine_options(url, connect_timeout=connect_timeout, **kwargs))


SYNCHRONOUS = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})

#: Where a prepared SQLite connection is marked (``PoolProxiedConnection.info``).
PREPARED = "sessions_db_ready"


def sqlite_pragmas(busy_timeout: float, synchronous: str) -> tuple[str, ...]:
    """Return the pragmas each SQLite connection gets once, when first used.

    ``busy_timeout`` is in seconds; ``synchronous`` is one of :data:`SYNCHRONOUS`.
    """
    level = synchronous.upper()
    if level not in SYNCHRONOUS:
        raise ConfigurationError(f"SQLite synchronous must be one of {sorted(SYNCHRONOUS)}")
    return (
        f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}",
        "PRAGMA foreign_keys = ON",
        f"PRAGMA synchronous = {level}",
    )
