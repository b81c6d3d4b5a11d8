"""``connect()``: a Manager from a store URL, or from the configuration."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .backend import StorageBackend
from .config import DEFAULT_BASE_DIR, ConfigSource, SessionConfig, load_config
from .errors import ConfigurationError
from .manager import Manager
from .null import NullBackend
from .sql.backend import SQLBackend
from .sql.timeouts import DEFAULT_LOCK_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT
from .urls import shown

#: Where the embedded default store (the file store) lives.
DEFAULT_DIR = Path(DEFAULT_BASE_DIR)
#: The SQLite file of ``store: sqlite`` when no URL is configured.
DEFAULT_SQLITE = Path("~/.sessions_db/sessions.db")


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
        raise ConfigurationError(f"file URL {shown(url)} names a host; use file:///absolute/path")
    if not path:
        raise ConfigurationError(f"file URL {shown(url)} names no directory")
    return Path(path).expanduser()


def backend_for_url(
    url: str,
    *,
    migrate: bool | None = None,
    schema: str | None = None,
    statement_timeout: float | None = None,
    lock_timeout: float | None = None,
    pooled: bool = False,
    read_url: str | None = None,
    replica_max_lag: float | None = None,
) -> StorageBackend:
    """Return the backend a store URL names.

    ``file:///path`` gives a :class:`FileBackend` on that directory;
    ``sqlite:///path`` and ``postgresql://...`` give a :class:`SQLBackend`. SQLite
    files are migrated on open by default (the library owns them); PostgreSQL
    schemas are migrated only with ``migrate=True`` (or ``sessions-db migrate``).
    ``schema`` is the PostgreSQL schema of the tables; ``statement_timeout``
    and ``lock_timeout`` (seconds, ``None``: the defaults) bound PostgreSQL
    statements (see :class:`SQLBackend`); ``pooled`` says a PostgreSQL URL
    leads to a pooler in transaction mode (PgBouncer); ``read_url`` names a
    streaming replica of a PostgreSQL ``url`` for reads
    (:class:`~sessions_db.sql.replica.ReplicatedSQLBackend`), whose reads are
    at most ``replica_max_lag`` seconds behind (``None``: the default).
    """
    scheme = url.split(":", 1)[0].lower()
    check_read_url(url, read_url)
    if read_url is not None:
        from .sql.replica import MAX_LAG, ReplicatedSQLBackend  # noqa: PLC0415 - when asked for

        statement, lock = sql_timeouts((statement_timeout, lock_timeout))
        return ReplicatedSQLBackend(
            url,
            read_url=read_url,
            max_lag=MAX_LAG if replica_max_lag is None else replica_max_lag,
            migrate=migrate_on_open(url, migrate),
            schema=schema,
            statement_timeout=statement,
            lock_timeout=lock,
            pooled=pooled,
        )
    if scheme == "file":
        from .file import FileBackend  # noqa: PLC0415 - POSIX only: imported when chosen

        return FileBackend(file_path(url))
    if scheme.startswith(("sqlite", "postgres")):
        statement, lock = sql_timeouts((statement_timeout, lock_timeout))
        return SQLBackend(
            url,
            migrate=migrate_on_open(url, migrate),
            schema=schema,
            statement_timeout=statement,
            lock_timeout=lock,
            pooled=pooled and scheme.startswith("postgres"),
        )
    raise ConfigurationError(
        f"unsupported store URL {shown(url)}: use file://, sqlite:// or postgresql://"
    )


def check_read_url(url: str, read_url: str | None) -> None:
    """Refuse a ``read_url`` for anything but a PostgreSQL store and a PostgreSQL replica."""
    if read_url is None:
        return
    for name, value in (("url", url), ("read_url", read_url)):
        if not value.split(":", 1)[0].lower().startswith("postgres"):
            raise ConfigurationError(
                f"{name}: read replicas are for PostgreSQL stores, not {shown(value)}"
            )


def configured_read_url(
    url: str | None, session: SessionConfig, read_url: str | None
) -> str | None:
    """Return the replica to read from: ``read_url``, else the configured one for its store.

    ``session.read_url`` is a replica of the configured store: it applies when
    that store is the one opened (no URL given to ``connect``, or the same one).
    """
    if read_url is not None:
        return read_url
    if session.read_url is not None and (url is None or url == session.url):
        return session.read_url
    return None


def sql_timeouts(*choices: tuple[float | None, float | None]) -> tuple[float, float]:
    """Return ``(statement_timeout, lock_timeout)``: for each, the first of ``choices`` set.

    ``choices`` are ``(statement, lock)`` pairs, most important first (the
    arguments, then the configuration); the defaults when none sets one.
    """
    statement, lock = DEFAULT_STATEMENT_TIMEOUT, DEFAULT_LOCK_TIMEOUT
    for choice in reversed(choices):
        statement = statement if choice[0] is None else choice[0]
        lock = lock if choice[1] is None else choice[1]
    return statement, lock


def migrate_on_open(url: str, migrate: bool | None) -> bool:
    """Whether opening the SQL store ``url`` migrates it: ``migrate``, else SQLite only."""
    if migrate is not None:
        return migrate
    return url.split(":", 1)[0].lower().startswith("sqlite")


def _kind_of(url: str) -> str:
    scheme = url.split(":", 1)[0].lower()
    for kind, prefix in (("file", "file"), ("sqlite", "sqlite"), ("postgres", "postgres")):
        if scheme.startswith(prefix):
            return kind
    return scheme


def configured_store_url(session: SessionConfig) -> str:
    """Return the URL of the store a ``session:`` block configures.

    ``url`` when set (``store``, if also set, must agree with it); for ``store:
    file`` the directory ``base_dir`` (default ``~/.sessions_db/sessions``); for
    ``store: sqlite`` without a URL the default SQLite file; with neither, the
    default store. ``store: postgres`` needs a URL.
    """
    if session.url:
        kind = _kind_of(session.url)
        if session.store is not None and session.store != kind:
            raise ConfigurationError(
                f"session.url: a {kind} URL, but session.store is {session.store!r}"
            )
        return session.url
    if session.store == "file":
        base = Path(session.base_dir or DEFAULT_BASE_DIR).expanduser().absolute()
        return base.as_uri()
    if session.store == "postgres":
        raise ConfigurationError(
            "session.url: store 'postgres' needs a URL (session.url, SESSIONS_DB_URL "
            "or POSTGRES_CONNECTION_STRING)"
        )
    if session.store == "sqlite":
        path = DEFAULT_SQLITE.expanduser().absolute()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return f"sqlite:///{path}"
    return default_url()


def configured(url: str | None, config: ConfigSource | None) -> tuple[str | None, SessionConfig]:
    """Return the store URL to open (``None`` when sessions are disabled) and the configuration.

    The one place both :func:`connect` and ``sessions_db.aio.connect`` read it.
    """
    cfg = load_config(config).session
    if not cfg.enabled:
        return None, cfg
    return url or configured_store_url(cfg), cfg


def connect(
    url: str | None = None,
    *,
    config: ConfigSource | None = None,
    migrate: bool | None = None,
    statement_timeout: float | None = None,
    lock_timeout: float | None = None,
    pooled: bool | None = None,
    read_url: str | None = None,
) -> Manager:
    """Return a :class:`Manager` on the store ``url`` names, or on the configured store.

    ``config`` is a YAML file's path or a dict: the whole document (with a
    ``session:`` key) or the ``session:`` block alone. The configuration is
    looked up, for each field, in this order (the first that sets it wins):

    1. ``config``, or, when it is ``None``, the YAML file named by the
       ``SESSIONS_DB_CONFIG`` environment variable;
    2. the environment variables ``SESSIONS_DB_ENABLED``, ``SESSIONS_DB_STORE``,
       ``SESSIONS_DB_URL``, ``SESSIONS_DB_BASE_DIR``, ``SESSIONS_DB_SCHEMA``,
       ``SESSIONS_DB_CHECKPOINT_AUTO_SAVE``, ``SESSIONS_DB_CHECKPOINT_INTERVAL``,
       ``SESSIONS_DB_REDACT``, ``SESSIONS_DB_ENCRYPTION_KEYS``,
       ``SESSIONS_DB_ENCRYPTION_ACTIVE``, ``SESSIONS_DB_ENCRYPTION_ALLOW_PLAINTEXT``,
       and the seed's ``AIXGO_SESSION_DIR``
       (file store directory) and ``POSTGRES_CONNECTION_STRING`` (URL of a
       ``postgres`` store);
    3. the defaults (sessions enabled, the embedded default store, no automatic
       checkpoints).

    ``url``, when given, wins over the configured store (``store``, ``url``,
    ``base_dir``); the rest of the configuration still applies: automatic
    checkpoints, and the ``redact`` hook and ``encryption`` keyring of
    :mod:`sessions_db.privacy`. With
    ``enabled: false`` the manager keeps nothing (see :class:`NullBackend`).
    ``ConfigurationError`` names any invalid field.

    ``statement_timeout`` and ``lock_timeout`` (seconds; ``0``: no limit) bound
    each PostgreSQL statement and its waits for locks; given here they win over
    the configured ``statement_timeout``/``lock_timeout``, else the defaults
    (60 s and 10 s) apply. A call past them raises
    :class:`~sessions_db.StorageTimeoutError`.

    ``pooled=True`` (or ``pooled: true``, ``SESSIONS_DB_POOLED=true``) is the
    one option to set when the PostgreSQL URL leads to PgBouncer, or another
    pooler, in transaction mode: psycopg's automatic prepared statements are
    then off. Given here it wins over the configuration.

    ``read_url`` (or ``session.read_url``, ``SESSIONS_DB_READ_URL``) names a
    streaming replica of the PostgreSQL store: reads that may be a little
    stale go there, and this process never reads its own writes backwards (see
    :mod:`sessions_db.sql.replica`). The configured one applies only to the
    configured store; ``session.replica_max_lag`` bounds how stale its reads may be.
    """
    store, cfg = configured(url, config)
    if store is None:
        return Manager(NullBackend())
    options = cfg.manager_options()
    statement, lock = sql_timeouts(
        (statement_timeout, lock_timeout), (cfg.statement_timeout, cfg.lock_timeout)
    )
    backend = backend_for_url(
        store,
        migrate=migrate,
        schema=cfg.db_schema,
        statement_timeout=statement,
        lock_timeout=lock,
        pooled=cfg.pooled if pooled is None else pooled,
        read_url=configured_read_url(url, cfg, read_url),
        replica_max_lag=cfg.replica_max_lag,
    )
    return Manager(backend, **options)
