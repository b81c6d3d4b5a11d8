"""``connect()``: a Manager from a URL."""

from __future__ import annotations

from .errors import ConfigurationError
from .manager import Manager
from .sql.backend import SQLBackend


def backend_for_url(url: str, *, migrate: bool | None = None) -> SQLBackend:
    """Return the backend a store URL names.

    ``sqlite:///path`` and ``postgresql://...`` give a :class:`SQLBackend`. SQLite
    files are migrated on open by default (the library owns them); PostgreSQL
    schemas are migrated only with ``migrate=True`` (or ``sessions-db migrate``).
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme.startswith("sqlite"):
        return SQLBackend(url, migrate=True if migrate is None else migrate)
    if scheme.startswith("postgres"):
        return SQLBackend(url, migrate=bool(migrate))
    raise ConfigurationError(f"unsupported store URL {url!r}: use file://, sqlite:// or postgresql://")


def connect(url: str, *, migrate: bool | None = None) -> Manager:
    """Return a :class:`Manager` on the store ``url`` names."""
    return Manager(backend_for_url(url, migrate=migrate))
