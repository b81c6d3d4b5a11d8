"""``erase-user``: remove everything stored for one user (a request to be forgotten)."""

from __future__ import annotations

import sys

import click

from .. import ids
from ..errors import InvalidIDError
from ..types import SessionMetadata
from ..urls import redact_url
from ._app import main
from ._common import (
    EXIT_ERROR,
    EXIT_USAGE,
    CLIError,
    emit_json,
    json_option,
    open_store,
    url_option,
)
from ._render import plural


@main.command("erase-user")
@click.argument("user")
@url_option
@click.option("--yes", is_flag=True, help="Erase without asking (for scripts).")
@json_option
def erase_user(user: str, url: str, yes: bool, as_json: bool) -> None:
    """Remove every session of USER on every agent: messages, checkpoints and memory.

    Shows on stderr what will be removed and asks first: --yes skips the
    question, and without it the command refuses when stdin is not a terminal.
    Sessions of other users, and of no user, are untouched. See
    Manager.erase_user for what remains in a database's files and backups.
    """
    uid = ids.user_id(user)
    if uid is None:  # pragma: no cover - click always passes a string
        raise InvalidIDError("erase-user needs a user ID")
    with open_store(url) as manager:
        backend = manager.backend  # as stored: erasing needs no keys
        found = {
            agent: backend.list_sessions(agent, user_id=uid) for agent in backend.list_agents()
        }
        found = {agent: sessions for agent, sessions in found.items() if sessions}
        _describe(uid, url, found)
        erased = 0
        if found:
            if not yes:
                _confirm()
            erased = manager.erase_user(uid)
    if as_json:
        emit_json(
            {
                "user_id": uid,
                "erased": erased,
                "agents": {agent: len(sessions) for agent, sessions in found.items()},
            }
        )
    else:
        click.echo(f"erased {plural(erased, 'session')} of user {uid}")


def _describe(uid: str, url: str, found: dict[str, list[SessionMetadata]]) -> None:
    """Tell, on stderr, what the erasure removes (the user ID is printable: checked)."""
    total = sum(len(sessions) for sessions in found.values())
    if not found:
        click.echo(f"nothing is stored for user {uid} in {redact_url(url)}", err=True)
        return
    click.echo(
        f"Erasing user {uid} from {redact_url(url)}: {plural(total, 'session')} "
        "with all their messages, checkpoints and memory:",
        err=True,
    )
    width = max(len(agent) for agent in found)
    for agent, sessions in sorted(found.items()):
        messages = sum(meta.message_count for meta in sessions)
        click.echo(
            f"  agent {agent:<{width}}  {plural(len(sessions), 'session')}, "
            f"{plural(messages, 'message')} on their current branches",
            err=True,
        )


def _confirm() -> None:
    if not sys.stdin.isatty():
        raise CLIError(
            "refusing to erase without --yes: stdin is not a terminal to confirm on", EXIT_USAGE
        )
    if not click.confirm("Erase?", default=False, err=True):
        raise CLIError("erasure cancelled: nothing changed", EXIT_ERROR)
