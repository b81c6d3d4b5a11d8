"""Applying the sessions_db migrations, alone or from a host's alembic environment.

The migrations are alembic scripts with their own version table
(``sessions_db_alembic_version``), so they never touch the host's
``alembic_version``. Apply them with ``sessions-db migrate``, or from the host's
``env.py`` with :func:`run_with_host` (which follows the host's command), and
keep the host's autogenerate away from our tables with :func:`include_object`.

A ``schema`` is checked with :func:`sessions_db.ids.schema_name` before it
reaches SQL: an invalid one raises :class:`~sessions_db.ConfigurationError`.
"""

from __future__ import annotations

import functools
import io
import re
import shlex
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import alembic.context
import alembic.op
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, func, inspect, select, table
from sqlalchemy.exc import SQLAlchemyError

from .errors import InvalidArgumentError, SchemaError
from .ids import schema_name
from .models import Base
from .sql.engine import normalize_url, private_sqlite_file
from .sql.errors import translate
from .sql.fulltext import read_search, search_option
from .sql.partitions import Layout, partition_count, read_layout
from .sql.schema import PREFIX, VERSION_TABLE, is_fts_object
from .sql.writelock import write_transaction

#: Held while alembic runs in this process. alembic keeps the running
#: environment (``alembic.context``, ``alembic.op``) in module-level state, so two
#: runs at once, in any two threads, read each other's configuration and
#: connection (and can crash the interpreter inside the SQLite driver).
ALEMBIC_LOCK = threading.Lock()

__all__ = [
    "ALEMBIC_LOCK",
    "VERSION_TABLE",
    "check",
    "current",
    "downgrade",
    "head",
    "include_object",
    "include_own_object",
    "is_partition",
    "layout",
    "run_with_host",
    "script_location",
    "search_on",
    "tables_dropped",
    "upgrade",
]


def script_location() -> str:
    """Return the directory holding ``env.py`` and ``versions/``.

    In an installed wheel the scripts ship as ``sessions_db/_alembic``; in a
    source checkout they are the top-level ``alembic/`` directory.
    """
    packaged = resources.files("sessions_db") / "_alembic"
    if packaged.is_dir():
        return str(packaged)
    source = Path(__file__).resolve().parent.parent / "alembic"
    if (source / "env.py").is_file():
        return str(source)
    raise SchemaError("the sessions_db migration scripts are missing from this installation")


def config(
    connectable: Engine | Connection | str | None = None,
    *,
    schema: str | None = None,
    output: TextIO | None = None,
    partitions: int | None = None,
    search: bool | None = None,
) -> Config:
    """Return an alembic :class:`Config` for our scripts, bound to ``connectable``.

    ``partitions`` asks for a layout of the entries and checkpoints tables
    (:mod:`sessions_db.sql.partitions`), ``search`` for full-text search on or
    off (:mod:`sessions_db.sql.fulltext`); ``None`` keeps the store's.
    """
    schema = schema_name(schema)
    cfg = Config(output_buffer=output) if output is not None else Config()
    cfg.set_main_option("script_location", script_location())
    if isinstance(connectable, str):
        cfg.set_main_option("sqlalchemy.url", connectable.replace("%", "%%"))
    elif connectable is not None:
        cfg.attributes["connection"] = connectable
    cfg.attributes["sessions_db_schema"] = schema
    if partitions is not None:
        cfg.attributes["sessions_db_partitions"] = partition_count(partitions)
    if search is not None:
        cfg.attributes["sessions_db_search"] = search_option(search)
    return cfg


@contextmanager
def _connection(
    connectable: Engine | Connection | str, *, write: bool = False
) -> Iterator[Connection]:
    """Yield a connection in a transaction (PostgreSQL migrates in one transaction).

    ``write=True`` makes it a :func:`~sessions_db.sql.writelock.write_transaction`,
    so that migrations started at once from several processes run one after
    the other. A connection the caller hands in is used as it is.
    Database errors come out as :class:`SessionsDBError` subclasses.
    """
    if isinstance(connectable, Connection):
        with _translated(connectable.dialect.name):
            yield connectable
        return
    owned = isinstance(connectable, str)
    if isinstance(connectable, str):
        private_sqlite_file(normalize_url(connectable))
    engine = (
        create_engine(normalize_url(connectable)) if isinstance(connectable, str) else connectable
    )
    try:
        with _translated(engine.dialect.name):
            if write:
                autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
                with autocommit.connect() as conn, write_transaction(conn):
                    yield conn
            else:
                if engine.dialect.name == "postgresql":
                    engine = engine.execution_options(isolation_level="READ COMMITTED")
                with engine.begin() as conn:
                    yield conn
    finally:
        if owned:
            engine.dispose()


@contextmanager
def _translated(dialect: str) -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as exc:
        raise translate(exc, dialect) from exc


@contextmanager
def _keep_host_proxies() -> Iterator[None]:
    # alembic's `context` and `op` are module-level proxies; running our scripts
    # from inside a host's env.py would otherwise leave the host's unset.
    previous = [getattr(alembic.context, "_proxy", None), getattr(alembic.op, "_proxy", None)]
    try:
        yield
    finally:
        for proxy in previous:
            if proxy is not None:
                proxy._install_proxy()


def upgrade(
    connectable: Engine | Connection | str,
    *,
    schema: str | None = None,
    revision: str = "head",
    partitions: int | None = None,
    search: bool | None = None,
) -> None:
    """Upgrade the sessions_db tables to ``revision`` (default: the newest).

    ``partitions`` (PostgreSQL, at the newest revision) lays the entries and
    checkpoints tables out in that many hash partitions by ``session_id``
    (``0``: plain tables), in the same transaction; ``None`` keeps the
    store's layout. See :mod:`sessions_db.sql.partitions`. ``search`` (at the
    newest revision) turns full-text search on (indexing every message stored)
    or off (dropping its index); ``None`` keeps it as it is. See
    :mod:`sessions_db.sql.fulltext`.
    """
    schema = schema_name(schema)
    if partitions is not None:
        partitions = partition_count(partitions)
    if search is not None:
        search = search_option(search)
    with ALEMBIC_LOCK, _connection(connectable, write=True) as conn:
        upgrade_holding_lock(
            conn, schema=schema, revision=revision, partitions=partitions, search=search
        )


def upgrade_holding_lock(
    conn: Connection,
    *,
    schema: str | None = None,
    revision: str = "head",
    partitions: int | None = None,
    search: bool | None = None,
) -> None:
    """:func:`upgrade` on ``conn``, for a caller that already holds :data:`ALEMBIC_LOCK`."""
    schema = schema_name(schema)
    with _keep_host_proxies():
        cfg = config(conn, schema=schema, partitions=partitions, search=search)
        command.upgrade(cfg, revision)


def downgrade(
    connectable: Engine | Connection | str,
    *,
    schema: str | None = None,
    revision: str,
) -> None:
    """Downgrade the sessions_db tables to ``revision`` (``"base"`` removes them).

    There is no default: a downgrade drops data, so the target is always named.
    :func:`tables_dropped` tells beforehand which tables go.
    """
    schema = schema_name(schema)
    with ALEMBIC_LOCK, _keep_host_proxies(), _connection(connectable, write=True) as conn:
        command.downgrade(config(conn, schema=schema), revision)


def upgrade_sql(
    url: str,
    *,
    schema: str | None = None,
    revision: str = "head",
    partitions: int | None = None,
    search: bool | None = None,
) -> str:
    """Return the SQL an upgrade would run, for a DBA to apply by hand (offline mode).

    The script starts from an empty database; with ``partitions``, it ends by
    making the entries and checkpoints tables again in that layout; with
    ``search=False``, by dropping the full-text search objects.
    """
    schema = schema_name(schema)
    out = io.StringIO()
    cfg = config(url, schema=schema, output=out, partitions=partitions, search=search)
    with ALEMBIC_LOCK, _keep_host_proxies():
        command.upgrade(cfg, revision, sql=True)
    return out.getvalue()


@functools.cache
def head() -> str:
    """Return the newest migration revision (read once per process)."""
    script = ScriptDirectory(script_location())
    revision = script.get_current_head()
    if revision is None:  # pragma: no cover - the package ships migrations
        raise SchemaError("no sessions_db migrations found")
    return revision


def current(connectable: Engine | Connection | str, *, schema: str | None = None) -> str | None:
    """Return the revision the database is at, or ``None`` if never migrated."""
    schema = schema_name(schema)
    with _connection(connectable) as conn:
        return _current(conn, schema)


def layout(connectable: Engine | Connection | str, *, schema: str | None = None) -> Layout:
    """Return the layout of the entries and checkpoints tables (partitions, from the catalog).

    ``Layout(0)`` for plain tables, SQLite, or a database without our tables.
    """
    schema = schema_name(schema)
    with _connection(connectable) as conn:
        return read_layout(conn, schema)


def search_on(connectable: Engine | Connection | str, *, schema: str | None = None) -> bool:
    """Whether the store has its full-text search objects (see :mod:`sessions_db.sql.fulltext`)."""
    schema = schema_name(schema)
    with _connection(connectable) as conn:
        return read_search(conn, schema)


def _current(conn: Connection, schema: str | None) -> str | None:
    context = MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE, "version_table_schema": schema}
    )
    return context.get_current_revision()


def tables_dropped(
    connectable: Engine | Connection | str, *, schema: str | None = None, revision: str
) -> dict[str, int]:
    """Return the tables a downgrade to ``revision`` would drop, with their row counts.

    Only the tables present are listed, in the order the downgrade drops them;
    an empty result means no table goes (indexes may). An unknown revision, or
    one the database is not above, raises :class:`~sessions_db.InvalidArgumentError`.
    """
    schema = schema_name(schema)
    script = ScriptDirectory(script_location())
    with _connection(connectable) as conn:
        at = _current(conn, schema)
        try:
            steps = list(script.iterate_revisions(at, revision, select_for_downgrade=True))
        except (CommandError, RevisionError) as exc:
            raise InvalidArgumentError(
                f"cannot downgrade from {at or 'base'} to {revision!r}: {exc}"
            ) from None
        present = set(inspect(conn).get_table_names(schema=schema))
        names = [
            name
            for step in steps
            if step is not None
            for name in reversed(getattr(step.module, "TABLES", ()))
            if name in present
        ]
        count = select(func.count())
        return {
            name: conn.execute(count.select_from(table(name, schema=schema))).scalar_one()
            for name in names
        }


def check(connectable: Engine | Connection, *, schema: str | None = None) -> None:
    """Raise :class:`SchemaError` unless the database is at the newest revision."""
    schema = schema_name(schema)
    at = current(connectable, schema=schema)
    want = head()
    if at != want:
        where = f" in schema {schema!r}" if schema else ""
        state = "not migrated" if at is None else f"at revision {at}"
        raise SchemaError(
            f"the sessions_db tables{where} are {state}, this version needs {want}: "
            f"run `{migrate_command(connectable, schema=schema)}` or connect with migrate=True"
        )


def migrate_command(connectable: Engine | Connection, *, schema: str | None = None) -> str:
    """Return the ``sessions-db migrate`` command line for this database, password hidden."""
    url = connectable.engine.url
    url = url.set(drivername=url.get_backend_name())
    command_line = ["sessions-db", "migrate", "--url", url.render_as_string(hide_password=True)]
    if schema:
        command_line += ["--schema", schema]
    return shlex.join(command_line)


#: The name of a partition of one of our tables: ``<table>_p<digits>``.
_PARTITION = re.compile(
    "^(?:" + "|".join(re.escape(name) for name in sorted(Base.metadata.tables)) + r")_p[0-9]+$"
)


def is_partition(name: str | None) -> bool:
    """Whether ``name`` is a partition of one of our tables (``sessions_db_entries_p0``).

    A store whose tables are partitioned has child tables named after their
    parent, ``<table>_p<digits>``. They are made by the migration that
    partitions a table and are not models: autogenerate leaves them alone.
    """
    return bool(name) and _PARTITION.match(str(name)) is not None


def _table_of(obj: Any, name: str | None, type_: str) -> str:
    """Return the name of the table ``obj`` is, or belongs to (an index, a constraint)."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table or ""


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Tell a host's alembic autogenerate to leave the sessions_db tables alone.

    Pass it as ``context.configure(include_object=sessions_db.migrations.include_object)``
    (or call it from the host's own filter). It hides every table whose name
    starts with ``sessions_db_``, with its indexes and constraints: our tables,
    the full-text search tables of SQLite, and the partitions of a partitioned
    store (:func:`is_partition`).
    """
    return not _table_of(obj, name, type_).startswith(PREFIX)


def include_own_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Tell alembic autogenerate, run on our own migrations, which objects are ours.

    Only our tables take part, whatever else the database holds; the full-text
    search objects (dialect-specific, made by hand in the migrations) and the
    partitions of a partitioned store (:func:`is_partition`) do not, as they are
    not models. Our migration environment (``env.py``) uses it.

    Neither do the foreign keys PostgreSQL derives, on a table that references
    a partitioned one, for each of its partitions (``..._fkey1`` referencing
    ``sessions_db_entries_p1``): the one the model declares, on the parent, does.
    """
    if is_fts_object(name):
        return False
    if type_ == "foreign_key_constraint":
        referred = getattr(getattr(obj, "referred_table", None), "name", None)
        if is_partition(referred):
            return False
    table = _table_of(obj, name, type_)
    return table.startswith(PREFIX) and not is_partition(table)


def run_with_host(
    *, schema: str | None = None, partitions: int | None = None, search: bool | None = None
) -> None:
    """Apply the sessions_db migrations from a host's alembic ``env.py``, as its command asks.

    ``partitions`` chooses the layout of the entries and checkpoints tables
    (hash partitions by ``session_id``; ``0``: plain tables; ``None``: as the
    store has them); when it is ``None``, the host's command line may give it:
    ``alembic -x sessions_db_partitions=8 upgrade head``. ``search`` turns
    full-text search on or off (``None``: as the store has it; from the command
    line, ``-x sessions_db_search=off``).

    Call it in the host's ``with context.begin_transaction():`` block, after
    ``context.run_migrations()``, in both the online and the offline function:

    * ``alembic upgrade``: our tables go to the newest revision on the host's
      connection, in its transaction; with ``--sql`` (offline), our SQL (from an
      empty database up) is written to the host's output, inside its transaction.
    * every other command (``current``, ``history``, ``check``, ``stamp``,
      ``revision --autogenerate``, and ``downgrade``): nothing. Our tables are
      downgraded only on purpose, with ``sessions-db migrate downgrade``.
    """
    host = alembic.context.get_context()
    step = getattr(host.opts.get("fn"), "__name__", None)
    if step != "upgrade" or host.opts.get("revision_context") is not None:
        return
    if partitions is None:
        asked = alembic.context.get_x_argument(as_dictionary=True).get("sessions_db_partitions")
        if asked is not None:
            partitions = partition_count(asked, what="sessions_db_partitions")
    if search is None:
        wanted = alembic.context.get_x_argument(as_dictionary=True).get("sessions_db_search")
        if wanted is not None:
            search = search_option(wanted, what="sessions_db_search")
    if not host.as_sql:
        assert host.connection is not None
        upgrade(host.connection, schema=schema, partitions=partitions, search=search)
        return
    cfg = config(schema=schema, output=host.output_buffer, partitions=partitions, search=search)
    cfg.attributes["sessions_db_dialect"] = host.dialect.name
    with _keep_host_proxies():
        command.upgrade(cfg, "head", sql=True)
