"""Alembic environment of the sessions_db tables.

It runs on a connection handed in by sessions_db (``config.attributes["connection"]``,
as ``sessions_db.migrations.upgrade`` and ``sessions-db migrate`` do), or on
``sqlalchemy.url`` / ``SESSIONS_DB_URL`` when run with the alembic command.
Its version table is ``sessions_db_alembic_version``, never the host's.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.schema import CreateSchema

from sessions_db.ids import schema_name
from sessions_db.migrations import include_own_object
from sessions_db.models import Base
from sessions_db.sql.engine import normalize_url
from sessions_db.sql.schema import VERSION_TABLE

config = context.config
# Checked here too: alembic.ini and the environment reach this file directly.
schema = schema_name(
    config.attributes.get("sessions_db_schema")
    or config.get_main_option("sessions_db_schema")
    or os.environ.get("SESSIONS_DB_SCHEMA")
    or None
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
