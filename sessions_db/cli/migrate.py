"""``sessions-db migrate``: the schema of SQL stores."""

from __future__ import annotations

import click

from .. import migrations
from ._app import main
from ._common import emit_json, json_option, url_option

schema_option = click.option(
    "--schema", envvar="SESSIONS_DB_SCHEMA", default=None, help="PostgreSQL schema of the tables."
)


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
@json_option
def migrate(
    action: str, url: str, schema: str | None, as_sql: bool, revision: str | None, as_json: bool
) -> None:
    """Upgrade the sessions_db tables (default), show the current revision, or downgrade.

    The migrations keep their own version table, sessions_db_alembic_version.
    """
    if action == "current":
        at = migrations.current(url, schema=schema)
        head = migrations.head()
        if as_json:
            emit_json({"current": at, "head": head, "at_head": at == head})
        else:
            click.echo(f"{at or 'none'}{' (head)' if at == head else f' (head is {head})'}")
    elif action == "downgrade":
        migrations.downgrade(url, schema=schema, revision=revision or "base")
        at = migrations.current(url, schema=schema)
        if as_json:
            emit_json({"action": "downgrade", "current": at})
        else:
            click.echo(f"downgraded to {at or 'base'}")
    elif as_sql:
        sql = migrations.upgrade_sql(url, schema=schema, revision=revision or "head")
        if as_json:
            emit_json({"action": "upgrade", "sql": sql})
        else:
            click.echo(sql, nl=False)
    else:
        migrations.upgrade(url, schema=schema, revision=revision or "head")
        at = migrations.current(url, schema=schema)
        if as_json:
            emit_json({"action": "upgrade", "current": at})
        else:
            click.echo(f"migrated to {at}")
