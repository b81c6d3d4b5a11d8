"""Engines: building one from a URL, and preparing a host's engine for our use.

The sync and asyncio backends build their engines with the same options
(:func:`engine_options`) and prepare SQLite connections with the same pragmas
(:func:`sqlite_pragmas`); only the engine factory differs.
"""

from __future__ import annotations

import os
import select
from typing import Any

import psycopg
from psycopg.types.json import set_json_loads
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError

from .. import payload
from ..errors import ConfigurationError
from ..urls import shown
from .timeouts import Timeouts, at_startup, with_startup_options

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
    except (ArgumentError, ValueError):  # not chained: its text shows the URL
        raise ConfigurationError(f"not a database URL: {shown(url)}") from None
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend not in _DRIVERS:
        raise ConfigurationError(
            f"unsupported database {backend!r}: use postgresql://, sqlite:// or file://"
        )
    parsed = parsed.set(drivername=_DRIVERS[backend][1 if asyncio else 0])
    return parsed.render_as_string(hide_password=False)


#: libpq's TCP settings for our connections (a URL's own ``?keepalives_idle=...`` wins):
#: a server host that vanished, or a network that dropped the connection, is
#: noticed within about a minute, waiting for an answer (keepalives) or sending
#: (``tcp_user_timeout``, milliseconds), instead of after the system's hours.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}


def engine_options(
    url: str,
    *,
    connect_timeout: float = 10.0,
    pooled: bool = False,
    timeouts: Timeouts | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Return the engine options sessions_db uses for ``url`` (a normalized URL).

    Every statement runs in autocommit (transactions are opened explicitly). On
    PostgreSQL the pool is sized for a service and bounds the wait for a new
    connection and for a free one by ``connect_timeout`` seconds, and TCP
    keepalives are on (:data:`KEEPALIVES`). Connections are checked before use
    by :func:`drop_dead_connections`, which costs no round trip
    (``pool_pre_ping`` would double the round trips of an append).

    ``pooled`` says the URL leads to a pooler in transaction mode (PgBouncer
    ``pool_mode = transaction``), which hands each transaction whichever server
    connection is free: psycopg's automatic prepared statements, which live
    on one server connection, are then off (``prepare_threshold=None``).
    Nothing else of ours outlives a transaction (timeouts are ``SET LOCAL``,
    advisory locks are transaction locks, no temporary tables).

    ``timeouts``, on a connection straight to the server (not ``pooled``),
    become startup parameters of each connection (see
    :mod:`sessions_db.sql.timeouts`; the engine must then be passed to
    :func:`~sessions_db.sql.timeouts.at_startup`).
    """
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT", **kwargs}
    if url.startswith("postgresql"):
        connect_args = dict(options.pop("connect_args", {}))
        connect_args.setdefault("connect_timeout", max(1, round(connect_timeout)))
        in_url = make_url(url).query
        if pooled:
            connect_args["prepare_threshold"] = None
        elif timeouts is not None and timeouts.startup_options is not None:
            given = connect_args.get("options", in_url.get("options"))
            connect_args["options"] = with_startup_options(
                timeouts, given if isinstance(given, str) else None
            )
        for name, value in KEEPALIVES.items():
            if name not in in_url:
                connect_args.setdefault(name, value)
        options["connect_args"] = connect_args
        options.setdefault("pool_size", 10)
        options.setdefault("max_overflow", 20)
        options.setdefault("pool_timeout", connect_timeout)
    return options


def build_engine(
    url: str,
    *,
    connect_timeout: float = 10.0,
    pooled: bool = False,
    timeouts: Timeouts | None = None,
    **kwargs: Any,
) -> Engine:
    """Create the engine sessions_db owns for ``url`` (the options: see :func:`engine_options`)."""
    url = normalize_url(url)
    private_sqlite_file(url)
    options = engine_options(
        url, connect_timeout=connect_timeout, pooled=pooled, timeouts=timeouts, **kwargs
    )
    engine = create_engine(url, **options)
    drop_dead_connections(engine)
    parse_json_faster(engine)
    if timeouts is not None and not pooled and url.startswith("postgresql"):
        at_startup(engine, timeouts)
    return engine


def parse_json_faster(engine: Engine) -> None:
    """Have psycopg parse ``json``/``jsonb`` on ``engine``'s connections with :func:`payload.loads`.

    The same values as :func:`json.loads`, in about half the time for our
    compact payloads; only on engines sessions_db builds (a host's engine keeps
    its own loaders).
    """
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "connect")
    def _loads(dbapi_connection: Any, record: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None) or dbapi_connection
        set_json_loads(payload.loads, driver)


def drop_dead_connections(engine: Engine) -> None:
    """Make ``engine``'s pool replace PostgreSQL connections the server has closed.

    An idle connection has nothing to read; when the server restarts or ends a
    backend, it sends a last message and closes the socket, which then reads
    as ready. Checking that is a local ``select`` with no wait, not a round
    trip; a connection found dead is discarded and the pool hands out another
    (a new one after a restart), so the call does not fail.
    """
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        conn = getattr(dbapi_connection, "driver_connection", None) or dbapi_connection
        try:
            fd = conn.pgconn.socket
            readable, _, _ = select.select([fd], [], [], 0)
        except (OSError, ValueError, AttributeError, psycopg.OperationalError) as exc:
            raise DisconnectionError("the connection's socket is closed") from exc
        if readable:
            raise DisconnectionError("the server closed the connection")


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


#: The permissions of a SQLite file sessions_db creates (as the file store's files).
SQLITE_FILE_MODE = 0o600


def private_sqlite_file(url: str) -> None:
    """Create the SQLite file ``url`` names, readable by its owner only, if it is absent.

    SQLite would create it with the umask's permissions (``0644`` under the
    usual ``022``), and gives its ``-wal`` and ``-shm`` files the permissions of
    the database file: so all three are ``0600``. An existing file keeps its
    permissions; PostgreSQL URLs, ``:memory:`` and ``file:`` URIs are left alone,
    as is a path SQLite will refuse anyway (it reports that itself).
    """
    parsed = make_url(url)
    database = parsed.database
    if (
        parsed.get_backend_name() != "sqlite"
        or not database
        or database == ":memory:"
        or database.startswith("file:")
        or parsed.query.get("uri")
    ):
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        os.close(os.open(database, flags, SQLITE_FILE_MODE))
    except OSError:
        return  # it exists, or SQLite will say why it cannot be opened
