"""The ``sessions-db`` command group."""

from __future__ import annotations

import click

from ._common import EXIT_CODES_HELP, Group


@click.group(cls=Group, epilog=EXIT_CODES_HELP, context_settings={"max_content_width": 100})
@click.version_option(package_name="sessions_db")
def main() -> None:
    """Operate a sessions_db store: migrate, inspect, move and clean up.

    Every command takes the store as --url (or $SESSIONS_DB_URL): postgresql://...,
    sqlite:///path or file:///dir. Add --json for one JSON document on stdout.
    """
