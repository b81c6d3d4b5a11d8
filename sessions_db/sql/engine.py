"""Engines: building one from a URL, and preparing a host's engine for our use."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..errors import ConfigurationError


def normalize_url(url: str) -> str:
    """Return a SQLAlchemy URL for ``url``, choosing psycopg 3 for PostgreSQL.

    Accepts ``postgres://`` and ``postgresql://`` (as the seed's
    ``POSTGRES_CONNECTION_STRING`` does) and ``sqlite:///path``.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"not a database URL: {url!r}") from exc
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend != "sqlite":
        raise ConfigurationError(
            f"unsupported database {backend!r}: use postgresql://, sqlite:// or file://"
        )
    return parsed.render_as_string(hide_password=False)


def build_engine(url: str, *, connect_timeout: float = 10.0, **kwargs: Any) -> Engine:
    """Create the engine sessions_db owns for ``url``."""
    url = normalize_url(url)
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT", **kwargs}
    if url.startswith("postgresql"):
        connect_args = dict(options.pop("connect_args", {}))
        connect_args.setdefault("connect_timeout", max(1, round(connect_timeout)))
        options["connect_args"] = connect_args
        options.setdefault("pool_size", 10)
        options.setdefault("max_overflow", 20)
        options.setdefault("pool_timeout", connect_timeout)
    return create_engine(url, **options)


SYNCHRONOUS = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})


def sqlite_prepare(conn: Connection, busy_timeout_ms: int, synchronous: str) -> None:
    """Set the per-connection SQLite pragmas once per DBAPI connection."""
    info = conn.connection.info
    if info.get("sessions_db_ready"):
        return
    conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.exec_driver_sql("PRAGMA foreign_keys = ON")
    if synchronous.upper() not in SYNCHRONOUS:
        raise ConfigurationError(f"SQLite synchronous must be one of {sorted(SYNCHRONOUS)}")
    conn.exec_driver_sql(f"PRAGMA synchronous = {synchronous.upper()}")
    info["sessions_db_ready"] = True
