"""``connect()``: a Manager from a store URL (or from the environment)."""

from __future__ import annotations

import os
from pathlib import Path

from .backend import StorageBackend
from .errors import ConfigurationError
from .manager import Manager
from .sql.backend import SQLBackend

#: Where the embedded default store lives.
DEFAULT_DIR = Path("~/.sessions_db")


def default_url() -> str:
    """Return the store URL used when none is given: ``SESSIONS_DB_URL``, else the default."""
    url = os.environ.get("SESSIONS_DB_URL")
    if url:
        return url
    path = DEFAULT_DIR.expanduser() / "sessions.db"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return f"sqlite:///{path}"


def backend_for_url(url: str, *, migrate: bool | None = None) -> StorageBackend:
    """Return the backend a store URL names.

    ``sqlite:///path`` and ``postgresql://...`` give a :class:`SQLBackend`. SQLite
    files are migrated on open by default (the library owns them); PostgreSQL
    schemas are migrated only with ``migrate=True`` (or ``sessions-db migrate``).
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme.startswith(("sqlite", "postgres")):
        return SQLBackend(url, migrate=migrate_on_open(url, migrate))
    raise ConfigurationError(
        f"unsupported store URL {url!r}: use file://, sqlite:// or postgresql://"
    )


def migrate_on_open(url: str, migrate: bool | None) -> bool:
    """Whether opening the SQL store ``url`` migrates it: ``migrate``, else SQLite only."""
    if migrate is not None:
        return migrate
    return url.split(":", 1)[0].lower().startswith("sqlite")


def connect(url: str | None = None, *, migrate: bool | None = None) -> Manager:
    """Return a :class:`Manager` on the store ``url`` names (the default store if ``None``)."""
    return Manager(backend_for_url(url or default_url(), migrate=migrate))
