"""The ``sessions-db`` command line (also ``python -m sessions_db``)."""

from __future__ import annotations

import sys
from typing import Any

import click

from . import migrations
from .errors import (
    CheckpointNotFoundError,
    ConfigurationError,
    EntryNotFoundError,
    InvalidIDError,
    SchemaError,
    SessionNotFoundError,
    SessionsDBError,
    StorageUnavailableError,
)
from .file import DEFAULT_BASE, FileBackend

#: Exit codes scripts can rely on.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4
EXIT_SCHEMA = 5


def _exit_code(error: SessionsDBError) -> int:
    if isinstance(error, SessionNotFoundError | CheckpointNotFoundError | EntryNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(error, StorageUnavailableError):
        return EXIT_UNAVAILABLE
    if isinstance(error, SchemaError):
        return EXIT_SCHEMA
    if isinstance(error, ConfigurationError | InvalidIDError):
        return EXIT_USAGE
    return EXIT_ERROR


class _Group(click.Group):
    """A group that reports sessions_db errors as one line and a meaningful exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SessionsDBError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(_exit_code(error))


url_option = click.option(
    "--url",
    envvar="SESSIONS_DB_URL",
    required=True,
    help="Store URL (postgresql://..., sqlite:///path); default $SESSIONS_DB_URL.",
)
schema_option = click.option(
    "--schema", envvar="SESSIONS_DB_SCHEMA", default=None, help="PostgreSQL schema of the tables."
)


@click.group(cls=_Group)
@click.version_option(package_name="sessions_db")
def main() -> None:
    """Operate a sessions_db store."""


@main.command()
@click.argument("action", type=click.Choice(["upgrade", "current", "downgrade"]), default="upgrade")
@url_option
@schema_option
@click.option("--sql", "as_sql", is_flag=True, help="Print the upgrade SQL instead of running it.")
@click.option(
    "--revision",
    default=None,
    help="Target revision (upgrade: head by default; downgrade: base, which drops the tables).",
)
def migrate(action: str, url: str, schema: str | None, as_sql: bool, revision: str | None) -> None:
    """Upgrade the sessions_db tables (default), show the current revision, or downgrade.

    The migrations keep their own version table, sessions_db_alembic_version.
    """
    if action == "current":
        at = migrations.current(url, schema=schema)
        head = migrations.head()
        click.echo(f"{at or 'none'}{' (head)' if at == head else f' (head is {head})'}")
    elif action == "downgrade":
        migrations.downgrade(url, schema=schema, revision=revision or "base")
        click.echo(f"downgraded to {migrations.current(url, schema=schema) or 'base'}")
    elif as_sql:
        click.echo(
            migrations.upgrade_sql(url, schema=schema, revision=revision or "head"), nl=False
        )
    else:
        migrations.upgrade(url, schema=schema, revision=revision or "head")
        click.echo(f"migrated to {migrations.current(url, schema=schema)}")


@main.command()
@click.option(
    "--dir",
    "directory",
    envvar="AIXGO_SESSION_DIR",
    default=None,
    help="The file store's directory (default: $AIXGO_SESSION_DIR, else ~/.sessions_db/sessions).",
)
def repair(directory: str | None) -> None:
    """Rebuild a file store's indexes from its .jsonl files and clean up after crashes.

    Exits with 1 if a session file is damaged in a way repair cannot fix.
    """
    backend = FileBackend(directory or DEFAULT_BASE)
    try:
        report = backend.repair()
    finally:
        backend.close()
    for line in report.lines():
        click.echo(line)
    if report.damaged_sessions:
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
