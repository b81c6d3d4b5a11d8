"""Reading a store: ``list``, ``agents``, ``show`` and ``checkpoints``."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from .. import ids
from ..backend import WHOLE_BRANCH
from ..types import SessionMetadata
from ._app import main
from ._common import console, emit_json, json_option, open_store, summarize, url_option, when
from ._render import (
    checkpoint_json,
    checkpoint_labels,
    entry_json,
    entry_role,
    entry_text,
    plain_text,
    plural,
    session_json,
    short,
    tree_lines,
    tree_text,
)


@main.command("list")
@click.argument("agent")
@click.option("--user", "user_id", default=None, help="Only this user's sessions.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most N sessions.")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip the first N.")
@url_option
@json_option
def list_(
    agent: str, user_id: str | None, limit: int | None, offset: int, url: str, as_json: bool
) -> None:
    """List AGENT's sessions, most recently updated first."""
    with open_store(url) as manager:
        sessions = manager.list(agent, user_id=user_id, limit=limit, offset=offset)
    if as_json:
        emit_json(
            {
                "agent": agent,
                "user_id": user_id,
                "limit": limit,
                "offset": offset,
                "sessions": [session_json(meta) for meta in sessions],
            }
        )
        return
    out = console()
    if not sessions:
        out.print(
            plain_text(
                f"no sessions of agent {agent}" + (f" for user {user_id}" if user_id else "")
            )
        )
        return
    table = Table(title=f"Sessions of {agent}", title_justify="left")
    table.add_column("session", no_wrap=True)
    table.add_column("user", min_width=6, overflow="fold")
    table.add_column("messages", justify="right", no_wrap=True)
    table.add_column("updated (UTC)", no_wrap=True)
    table.add_column("metadata", min_width=8, overflow="ellipsis")
    for meta in sessions:
        table.add_row(
            plain_text(meta.id),
            plain_text(meta.user_id or "-"),
            str(meta.message_count),
            when(meta.updated_at),
            plain_text(summarize(meta.metadata)),
        )
    out.print(table)


@main.command()
@url_option
@json_option
def agents(url: str, as_json: bool) -> None:
    """List the agents that have sessions."""
    with open_store(url) as manager:
        names = manager.list_agents()
    if as_json:
        emit_json({"agents": names})
        return
    out = console()
    if not names:
        out.print("no agents (the store is empty)")
        return
    table = Table(title="Agents", title_justify="left")
    table.add_column("agent", no_wrap=True)
    for name in names:
        table.add_row(plain_text(name))
    out.print(table)


@main.command()
@click.argument("session_id", metavar="SESSION")
@click.option(
    "--tree", is_flag=True, help="The whole entry tree, every branch, not only the current."
)
@url_option
@json_option
def show(session_id: str, tree: bool, url: str, as_json: bool) -> None:
    """Show a session: its current branch, or with --tree every branch and where they fork."""
    ids.session_id(session_id)
    with open_store(url) as manager:
        session = manager.get(session_id)
        meta = session.info()
        entries = (
            session.get_entries() if tree else manager.backend.load_branch(session_id, WHOLE_BRANCH)
        )
        checkpoints = session.list_checkpoints()
    out = console()
    labels = checkpoint_labels(checkpoints)
    if tree:
        lines = tree_lines(entries, meta.current_leaf)
        if as_json:
            by_id = {line.entry.id: line for line in lines if line.entry is not None}
            emit_json(
                {
                    "session": session_json(meta),
                    "entries": [
                        {
                            **entry_json(entry),
                            "depth": by_id[entry.id].depth,
                            "on_current_branch": by_id[entry.id].current,
                        }
                        for entry in entries
                    ],
                    "checkpoints": [checkpoint_json(cp) for cp in checkpoints],
                }
            )
            return
        _header(out, meta, len(entries), len(checkpoints))
        out.print(tree_text(lines, meta.current_leaf, out.width, labels), end="")
        return
    if as_json:
        emit_json(
            {
                "session": session_json(meta),
                "entries": [entry_json(entry) for entry in entries],
            }
        )
        return
    _header(out, meta, len(entries), len(checkpoints))
    table = Table(show_header=True, box=None, pad_edge=False)
    table.add_column("time (UTC)", no_wrap=True, style="dim")
    table.add_column("role", no_wrap=True, style="bold")
    table.add_column("content", overflow="fold")
    for entry in entries:
        text = plain_text(entry_text(entry, labels), lines=True)
        if entry.type.value != "message":
            text.stylize("cyan")
        table.add_row(when(entry.timestamp), plain_text(entry_role(entry)), text)
    out.print(table)


def _header(out: Console, meta: SessionMetadata, entries: int, checkpoints: int) -> None:
    out.print(plain_text(f"session {meta.id}", style="bold"))
    details = [
        f"agent {meta.agent_name}",
        f"user {meta.user_id or '-'}",
        f"{plural(meta.message_count, 'message')} on the current branch",
        f"{plural(entries, 'entry', 'entries')} shown",
        plural(checkpoints, "checkpoint"),
        f"created {when(meta.created_at)}",
        f"updated {when(meta.updated_at)} UTC",
    ]
    out.print(plain_text(", ".join(details), style="dim"))
    if meta.metadata:
        out.print(plain_text(f"metadata {summarize(meta.metadata, 200)}", style="dim"))
    out.print()


@main.command()
@click.argument("session_id", metavar="SESSION")
@url_option
@json_option
def checkpoints(session_id: str, url: str, as_json: bool) -> None:
    """List a session's checkpoints, oldest first."""
    ids.session_id(session_id)
    with open_store(url) as manager:
        found = manager.get(session_id).list_checkpoints()
    if as_json:
        emit_json({"session_id": session_id, "checkpoints": [checkpoint_json(cp) for cp in found]})
        return
    out = console()
    if not found:
        out.print(plain_text(f"session {session_id} has no checkpoints"))
        return
    table = Table(
        title=f"Checkpoints of {session_id}",
        title_justify="left",
    )
    table.add_column("checkpoint", no_wrap=True)
    table.add_column("entry", no_wrap=True)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("checksum", no_wrap=True)
    table.add_column("metadata", overflow="fold")
    for cp in found:
        table.add_row(
            plain_text(cp.id),
            plain_text(short(cp.entry_id)),
            when(cp.timestamp),
            plain_text(cp.checksum[:23] + "…"),
            plain_text(summarize(cp.metadata)),
        )
    out.print(table)
