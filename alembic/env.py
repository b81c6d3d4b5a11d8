"""Alembic environment of the sessions_db tables.

It runs on a connection handed in by sessions_db (``config.attributes["connection"]``,
as ``sessions_db.migrations.upgrade`` and ``sessions-db migrate`` do), or on
``sqlalchemy.url`` / ``SESSIONS_DB_URL`` when run with the alembic command.
Its version table is ``sessions_db_alembic_version``, never the host's.
"""

from __future__ import annotations

import os

from alembic import context
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine
from sqlalchemy.schema import CreateSchema

from sessions_db.errors import ConfigurationError, InvalidArgumentError
from sessions_db.ids import schema_name
from sessions_db.migrations import include_own_object
from sessions_db.models import Base
from sessions_db.sql.engine import normalize_url
from sessions_db.sql.fulltext import drop_sql, search_option, set_search
from sessions_db.sql.partitions import partition_count, relayout, replace_sql
from sessions_db.sql.schema import VERSION_TABLE

config = context.config
# Checked here too: alembic.ini and the environment reach this file directly.
schema = schema_name(
    config.attributes.get("sessions_db_schema")
    or config.get_main_option("sessions_db_schema")
    or os.environ.get("SESSIONS_DB_SCHEMA")
    or None
)
# The layout of the entries and checkpoints tables, when one is asked for
# (sessions_db.sql.partitions): hash partitions by session_id, or 0 for plain
# tables. From sessions_db (upgrade(..., partitions=N)) or `alembic -x partitions=N`.
_asked = config.attributes.get("sessions_db_partitions")
if _asked is None:
    _asked = context.get_x_argument(as_dictionary=True).get("partitions")
partitions = None if _asked is None else partition_count(_asked)
# Full-text search on or off, when asked (sessions_db.sql.fulltext): from
# sessions_db (upgrade(..., search=False)) or `alembic -x search=off`.
_search = config.attributes.get("sessions_db_search")
if _search is None:
    _search = context.get_x_argument(as_dictionary=True).get("search")
search = None if _search is None else search_option(_search)


def _head() -> str | None:
    return ScriptDirectory.from_config(config).get_current_head()


def _refuse_below_head(at: object, what: str = "partitions are") -> None:
    if at not in (_head(), "head"):
        raise InvalidArgumentError(
            f"{what} chosen at the newest revision: upgrade to head with them"
        )


def _configure(**kwargs):
    context.configure(
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        version_table_schema=schema,
        # Only our own tables, without the full-text search objects and partitions.
        include_object=include_own_object,
        compare_type=True,
        **kwargs,
    )


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("SESSIONS_DB_URL")
    if not url:
        raise SystemExit("set sqlalchemy.url in alembic.ini or SESSIONS_DB_URL")
    return normalize_url(url)


def _run(connection: Connection) -> None:
    if schema is not None:
        connection.execute(CreateSchema(schema, if_not_exists=True))
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
        if partitions is not None:
            _refuse_below_head(context.get_context().get_current_revision())
            relayout(connection, schema, partitions)
        if search is not None:
            _refuse_below_head(context.get_context().get_current_revision(), "search on or off is")
            set_search(connection, schema, search)


if context.is_offline_mode():
    within_host = config.attributes.get("sessions_db_dialect")
    if within_host:
        # Written into a host's offline script, inside the host's own transaction.
        _configure(dialect_name=within_host, literal_binds=True, transactional_ddl=False)
    else:
        _configure(url=_url(), literal_binds=True)
    with context.begin_transaction():
        if schema is not None:
            context.execute(CreateSchema(schema, if_not_exists=True))
        context.run_migrations()
        if partitions:
            # A script from an empty database up: the tables just made are made again.
            _refuse_below_head(context.get_revision_argument())
            if context.get_context().dialect.name != "postgresql":
                raise ConfigurationError("partitions need PostgreSQL; SQLite tables are plain")
            for statement in replace_sql(schema, partitions, search=search is not False):
                context.execute(statement)
        elif search is False:
            _refuse_below_head(context.get_revision_argument(), "search on or off is")
            for statement in drop_sql(context.get_context().dialect.name, schema):
                context.execute(statement)
else:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
    else:
        engine = create_engine(_url())
        try:
            with engine.connect() as conn:
                _run(conn)
                conn.commit()
        finally:
            engine.dispose()
