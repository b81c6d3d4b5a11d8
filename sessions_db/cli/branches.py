"""Moving a session's branch: ``fork``, ``rewind``, ``pop`` and ``clear``.

None of them deletes anything: a fork copies a branch into a new session, and
rewind, pop and clear append an event entry (``show --tree`` marks it) that
moves the current branch. What a branch left behind stays stored: ``fork --at``
its last entry copies it into a new session.
"""

from __future__ import annotations

import click

from .. import ids
from ..types import SessionMetadata
from ._app import main
from ._common import EXIT_USAGE, CLIError, emit_json, json_option, open_store, plain, url_option
from ._render import content_text, message_json, plural, session_info_json


def _say(*lines: str) -> None:
    """Print status lines as they are (never wrapped), stored text escaped."""
    for line in lines:
        click.echo(plain(line))


def _left_behind(before: SessionMetadata) -> list[str]:
    """Say where the branch that was current before ends (``fork --at`` copies it)."""
    if before.current_leaf is None:
        return []
    return [f"the branch left behind ends at entry {before.current_leaf}"]


@main.command()
@click.argument("session_id", metavar="SESSION")
@click.option(
    "--at",
    metavar="ID",
    default=None,
    help="Fork at this entry or message (of any branch): the branch ending there is copied.",
)
@click.option(
    "--checkpoint", "checkpoint_id", metavar="ID", default=None, help="Fork at this checkpoint."
)
@click.option("--agent", default=None, help="The new session's agent (default: SESSION's).")
@click.option(
    "--user", "user_id", default=None, help="The new session's user (default: SESSION's)."
)
@url_option
@json_option
def fork(
    session_id: str,
    at: str | None,
    checkpoint_id: str | None,
    agent: str | None,
    user_id: str | None,
    url: str,
    as_json: bool,
) -> None:
    """Copy SESSION's current branch into a new session and print the new session's ID.

    With --at or --checkpoint, the branch up to that entry or checkpoint is
    copied instead. Message IDs and payloads are kept, SESSION is unchanged,
    and the new session records where it came from (forked_from, forked_at);
    checkpoints are not carried over. Its agent, user and metadata are
    SESSION's unless --agent or --user says otherwise.
    """
    if at is not None and checkpoint_id is not None:
        raise CLIError("fork: give --at or --checkpoint, not both", EXIT_USAGE)
    ids.session_id(session_id)
    if at is not None:
        ids.entry_id(at)
    if checkpoint_id is not None:
        ids.checkpoint_id(checkpoint_id)
    with open_store(url) as manager:
        source = manager.get(session_id)
        new = source.fork(at=at, checkpoint_id=checkpoint_id, agent_name=agent, user_id=user_id)
        meta = new.info()
    if as_json:
        emit_json({"session": session_info_json(meta)})
        return
    click.echo(meta.id)


@main.command()
@click.argument("session_id", metavar="SESSION")
@click.option(
    "--to", "to", metavar="ID", required=True, help="An entry or message of the current branch."
)
@url_option
@json_option
def rewind(session_id: str, to: str, url: str, as_json: bool) -> None:
    """Move SESSION's current branch back to an earlier entry; later appends continue there.

    Nothing is deleted: the rewind is recorded, and the entries after ID stay
    stored on the branch left behind. Exit 3 if ID is not on the current branch.
    """
    ids.session_id(session_id)
    ids.entry_id(to)
    with open_store(url) as manager:
        session = manager.get(session_id)
        before = session.info()
        session.rewind(to)
        after = session.info()
    if as_json:
        emit_json(
            {
                "session": session_info_json(after),
                "to": to,
                "previous_leaf": before.current_leaf,
            }
        )
        return
    _say(
        f"rewound session {session_id} to entry {to}: "
        f"{plural(after.message_count, 'message')} on the current branch",
        *_left_behind(before),
    )


@main.command()
@click.argument("session_id", metavar="SESSION")
@url_option
@json_option
def pop(session_id: str, url: str, as_json: bool) -> None:
    """Take the newest message off SESSION's current branch and print it.

    Nothing is deleted: the pop is recorded and the message stays stored, off
    the branch. A session with no message on its current branch has nothing to
    pop: that is said, and is no error (exit 0; "popped" is null with --json).
    """
    ids.session_id(session_id)
    with open_store(url) as manager:
        session = manager.get(session_id)
        popped = session.pop_message()
        after = session.info()
    if as_json:
        emit_json(
            {
                "session": session_info_json(after),
                "popped": None if popped is None else message_json(popped),
            }
        )
        return
    if popped is None:
        _say(f"session {session_id} has no message to pop")
        return
    _say(f"popped {popped.type} message {popped.id}:")
    click.echo(plain(content_text(popped.payload), lines=True))
    _say(f"{plural(after.message_count, 'message')} left on the current branch")


@main.command()
@click.argument("session_id", metavar="SESSION")
@url_option
@json_option
def clear(session_id: str, url: str, as_json: bool) -> None:
    """Empty SESSION's current branch: later appends start a new conversation.

    Nothing is deleted: the clear is recorded, checkpoints still restore the
    older branches, and `fork --at` copies one into a new session. Data is
    removed by `prune` and `erase-user` (or Manager.delete).
    """
    ids.session_id(session_id)
    with open_store(url) as manager:
        session = manager.get(session_id)
        before = session.info()
        session.clear()
        after = session.info()
    if as_json:
        emit_json({"session": session_info_json(after), "previous_leaf": before.current_leaf})
        return
    _say(f"cleared session {session_id}: the current branch is empty", *_left_behind(before))
