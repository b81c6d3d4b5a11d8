"""``sessions-db migrate``: the schema of SQL stores."""

from __future__ import annotations

import sys

import click

from .. import migrations
from ..ids import schema_name
from ..sql.partitions import MAX_PARTITIONS
from ..urls import redact_url
from ._app import main
from ._common import (
    EXIT_ERROR,
    EXIT_USAGE,
    CLIError,
    check_sqlite_file,
    emit_json,
    json_option,
    url_option,
)


def _schema(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return schema_name(value)


schema_option = click.option(
    "--schema",
    envvar="SESSIONS_DB_SCHEMA",
    default=None,
    callback=_schema,
    help="PostgreSQL schema of the tables (letters, digits and _).",
)


@main.command()
@click.argument("action", type=click.Choice(["upgrade", "current", "downgrade"]), default="upgrade")
@url_option
@schema_option
@click.option("--sql", "as_sql", is_flag=True, help="Print the upgrade SQL instead of running it.")
@click.option(
    "--revision",
    default=None,
    help="Target revision (upgrade: head by default; downgrade: required, base drops the tables).",
)
@click.option("--yes", is_flag=True, help="Downgrade without asking (for scripts).")
@click.option(
    "--partitions",
    type=click.IntRange(0, MAX_PARTITIONS),
    default=None,
    help="PostgreSQL: hash-partition the entries and checkpoints tables by session_id "
    "into N partitions (0: plain tables). Without it the store keeps its layout.",
)
@click.option(
    "--search/--no-search",
    default=None,
    help="Full-text search of messages on (indexes every message stored) or off (drops its "
    "index; searches then raise an error). Without either the store keeps what it has.",
)
@json_option
def migrate(
    action: str,
    url: str,
    schema: str | None,
    as_sql: bool,
    revision: str | None,
    yes: bool,
    partitions: int | None,
    search: bool | None,
    as_json: bool,
) -> None:
    """Upgrade the sessions_db tables (default), show the current revision, or downgrade.

    The migrations keep their own version table, sessions_db_alembic_version.
    A downgrade needs --revision (base drops every table), shows the tables it
    drops with their row counts, and asks first: --yes skips the question, and
    without it a downgrade is refused when stdin is not a terminal.

    --partitions N (PostgreSQL, upgrading to the newest revision) lays the
    entries and checkpoints tables out in N hash partitions by session_id,
    named <table>_p0 ... <table>_p<N-1>; 0 makes them plain tables again. A
    change of layout rewrites both tables in the migration's transaction: for
    a large store, copy it into a new database instead (docs/production.md).

    --no-search (upgrading to the newest revision) drops the full-text search
    index of messages (PostgreSQL; the FTS5 tables on SQLite), which saves
    space and work on every append; memory searches then raise an error.
    --search makes it again, indexing every message stored so far.
    """
    check_sqlite_file(url)
    if partitions is not None and action != "upgrade":
        raise CLIError("--partitions applies to upgrade only", EXIT_USAGE)
    if search is not None and action != "upgrade":
        raise CLIError("--search and --no-search apply to upgrade only", EXIT_USAGE)
    if action == "current":
        at = migrations.current(url, schema=schema)
        head = migrations.head()
        layout = migrations.layout(url, schema=schema)
        searching = at is not None and migrations.search_on(url, schema=schema)
        if as_json:
            emit_json(
                {
                    "current": at,
                    "head": head,
                    "at_head": at == head,
                    "partitions": layout.partitions,
                    "search": searching,
                }
            )
        else:
            click.echo(f"{at or 'none'}{' (head)' if at == head else f' (head is {head})'}")
            if layout.partitioned:
                click.echo(f"entries and checkpoints {layout.describe()}")
            if at is not None and not searching:
                click.echo("full-text search off")
    elif action == "downgrade":
        _downgrade(url, schema, as_sql, revision, yes, as_json)
    elif as_sql:
        sql = migrations.upgrade_sql(
            url, schema=schema, revision=revision or "head", partitions=partitions, search=search
        )
        if as_json:
            emit_json({"action": "upgrade", "sql": sql})
        else:
            click.echo(sql, nl=False)
    else:
        migrations.upgrade(
            url,
            schema=schema,
            revision=revision or "head",
            partitions=partitions,
            search=search,
        )
        at = migrations.current(url, schema=schema)
        layout = migrations.layout(url, schema=schema)
        searching = migrations.search_on(url, schema=schema)
        if as_json:
            emit_json(
                {
                    "action": "upgrade",
                    "current": at,
                    "partitions": layout.partitions,
                    "search": searching,
                }
            )
        else:
            click.echo(f"migrated to {at}")
            if layout.partitioned:
                click.echo(f"entries and checkpoints {layout.describe()}")
            if not searching:
                click.echo("full-text search off")


def _downgrade(
    url: str, schema: str | None, as_sql: bool, revision: str | None, yes: bool, as_json: bool
) -> None:
    if as_sql:
        raise CLIError(
            "--sql prints the upgrade SQL only; it does not apply to downgrade", EXIT_USAGE
        )
    if revision is None:
        raise CLIError(
            "downgrade needs an explicit target: --revision REV (an older revision, "
            "or base, which drops every sessions_db table)",
            EXIT_USAGE,
        )
    at = migrations.current(url, schema=schema)
    if at is None:
        raise CLIError(f"{redact_url(url)} is not migrated: nothing to downgrade", EXIT_USAGE)
    dropped = migrations.tables_dropped(url, schema=schema, revision=revision)
    _describe(url, schema, at, revision, dropped)
    if not yes:
        if not sys.stdin.isatty():
            raise CLIError(
                "refusing to downgrade without --yes: stdin is not a terminal to confirm on",
                EXIT_USAGE,
            )
        if not click.confirm("Downgrade?", default=False, err=True):
            raise CLIError("downgrade cancelled: nothing changed", EXIT_ERROR)
    migrations.downgrade(url, schema=schema, revision=revision)
    now = migrations.current(url, schema=schema)
    if as_json:
        emit_json({"action": "downgrade", "current": now, "dropped": dropped})
    else:
        click.echo(f"downgraded to {now or 'base'}")


def _describe(
    url: str, schema: str | None, at: str, revision: str, dropped: dict[str, int]
) -> None:
    """Tell, on stderr, what the downgrade will do."""
    where = f"{redact_url(url)}{f' (schema {schema})' if schema else ''}"
    click.echo(f"Downgrading {where} from {at} to {revision}", err=True)
    if not dropped:
        click.echo("drops no table (indexes and triggers only)", err=True)
        return
    click.echo("drops these tables and every row in them:", err=True)
    width = max(len(name) for name in dropped)
    for name, rows in dropped.items():
        click.echo(f"  {name:<{width}}  {rows} row{'' if rows == 1 else 's'}", err=True)
