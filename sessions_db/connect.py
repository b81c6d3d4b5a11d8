"""``connect()``: a Manager from a store URL (or from the environment)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .backend import StorageBackend
from .errors import ConfigurationError
from .file import DEFAULT_BASE, FileBackend
from .manager import Manager
from .sql.backend import SQLBackend

#: Where the embedded default store (the file store) lives.
DEFAULT_DIR = Path(DEFAULT_BASE)


def default_url() -> str:
    """Return the store URL used when none is given.

    ``SESSIONS_DB_URL`` if set, else the file store in ``AIXGO_SESSION_DIR`` (the
    seed's variable), else the file store in ``~/.sessions_db/sessions``.
    """
    url = os.environ.get("SESSIONS_DB_URL")
    if url:
        return url
    directory = os.environ.get("AIXGO_SESSION_DIR") or str(DEFAULT_DIR)
    return Path(directory).expanduser().absolute().as_uri()


def file_path(url: str) -> Path:
    """Return the directory a ``file://`` URL names (``file:///abs/path``, ``file://~/dir``)."""
    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.netloc == "~":
        path = "~" + path
    elif parts.netloc not in ("", "localhost"):
        raise ConfigurationError(f"file URL {url!r} names a host; use file:///absolute/path")
    if not path:
        raise ConfigurationError(f"file URL {url!r} names no directory")
    return Path(path).expanduser()


def backend_for_url(url: str, *, migrate: bool | None = None) -> StorageBackend:
    """Return the backend a store URL names.

    ``file:///path`` gives a :class:`FileBackend` on that directory;
    ``sqlite:///path`` and ``postgresql://...`` give a :class:`SQLBackend`. SQLite
    files are migrated on open by default (the library owns them); PostgreSQL
    schemas are migrated only with ``migrate=True`` (or ``sessions-db migrate``).
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme == "file":
        return FileBackend(file_path(url))
    if scheme.startswith("sqlite"):
        return SQLBackend(url, migrate=True if migrate is None else migrate)
    if scheme.startswith("postgres"):
        return SQLBackend(url, migrate=bool(migrate))
    raise ConfigurationError(
        f"unsupported store URL {url!r}: use file://, sqlite:// or postgresql://"
    )


def connect(url: str | None = None, *, migrate: bool | None = None) -> Manager:
    """Return a :class:`Manager` on the store ``url`` names (the default store if ``None``)."""
    return Manager(backend_for_url(url or default_url(), migrate=migrate))
