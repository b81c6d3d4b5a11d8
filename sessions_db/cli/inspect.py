"""Reading a store: ``list``, ``agents``, ``show`` and ``checkpoints``."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import ids
from ..backend import WHOLE_BRANCH
from ..types import SessionMetadata
from ._app import main
from ._common import (
    EXIT_USAGE,
    CLIError,
    check_lookup,
    console,
    emit_json,
    iso,
    json_option,
    key_lookup_options,
    lookup,
    open_store,
    parse_metadata,
    parse_time,
    summarize,
    url_option,
    when,
)
from ._lineage import Fork, forks_of
from ._render import (
    checkpoint_json,
    checkpoint_labels,
    entry_json,
    entry_role,
    entry_text,
    plain_text,
    plural,
    session_info_json,
    short,
    tree_lines,
    tree_text,
)


@main.command("list")
@click.argument("agent")
@click.option("--user", "user_id", default=None, help="Only this user's sessions.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most N sessions.")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip the first N.")
@click.option(
    "--updated-after",
    metavar="TIME",
    default=None,
    help="Only sessions updated after TIME (2026-03-01, 2026-03-01T09:00:00Z, or 7d ago).",
)
@click.option(
    "--updated-before", metavar="TIME", default=None, help="Only sessions updated before TIME."
)
@click.option(
    "--metadata",
    "metadata_pairs",
    metavar="KEY=VALUE",
    multiple=True,
    help="Only sessions whose metadata has KEY equal to VALUE (JSON if it parses, else "
    "a string); repeatable, all must match.",
)
@click.option(
    "--after",
    "after_id",
    metavar="SESSION",
    default=None,
    help="The next page: the sessions listed after SESSION (the last of the previous page).",
)
@url_option
@json_option
def list_(
    agent: str,
    user_id: str | None,
    limit: int | None,
    offset: int,
    updated_after: str | None,
    updated_before: str | None,
    metadata_pairs: tuple[str, ...],
    after_id: str | None,
    url: str,
    as_json: bool,
) -> None:
    """List AGENT's sessions, most recently updated first.

    Times are exclusive bounds on the last update. For the next page, pass the
    last session listed as --after (with the same filters and --limit): the
    listing continues after that session as it is now, by its update time and
    ID, so other sessions updated in between are neither repeated nor skipped.
    If that session itself was updated since, it moved to the front, and the
    listing continues after its new place: sessions already listed come again.
    """
    low = None if updated_after is None else parse_time(updated_after)
    high = None if updated_before is None else parse_time(updated_before)
    wanted = parse_metadata(metadata_pairs) if metadata_pairs else None
    if after_id is not None:
        ids.session_id(after_id)
    with open_store(url) as manager:
        after = None
        if after_id is not None:
            after = manager.get(after_id).info()
            if after.agent_name != agent:
                raise CLIError(
                    f"--after: session {after_id} is a session of agent {after.agent_name}, "
                    f"not {agent}",
                    EXIT_USAGE,
                )
        sessions = manager.list(
            agent,
            user_id=user_id,
            limit=limit,
            offset=offset,
            updated_after=low,
            updated_before=high,
            metadata=wanted,
            after=after,
        )
    # A full page may have a next one: it starts after the last session listed.
    full = bool(sessions) and limit is not None and len(sessions) == limit
    following = sessions[-1].id if full else None
    if as_json:
        emit_json(
            {
                "agent": agent,
                "user_id": user_id,
                "limit": limit,
                "offset": offset,
                "updated_after": iso(low),
                "updated_before": iso(high),
                "metadata": wanted,
                "after": after_id,
                "next_after": following,
                "sessions": [session_info_json(meta) for meta in sessions],
            }
        )
        return
    out = console()
    if not sessions:
        filtered = low or high or wanted or after_id
        out.print(
            plain_text(
                f"no sessions of agent {agent}"
                + (f" for user {user_id}" if user_id else "")
                + (" match the filters" if filtered else "")
            )
        )
        return
    table = Table(title=f"Sessions of {agent}", title_justify="left")
    table.add_column("session", no_wrap=True)
    table.add_column("user", min_width=6, overflow="fold")
    table.add_column("messages", justify="right", no_wrap=True)
    table.add_column("updated (UTC)", no_wrap=True)
    keys = any(meta.key is not None for meta in sessions)
    forks = any(meta.forked_from is not None for meta in sessions)
    if keys:
        table.add_column("key", min_width=6, overflow="fold")
    if forks:
        table.add_column("forked from", no_wrap=True)
    table.add_column("metadata", min_width=8, overflow="ellipsis")
    for meta in sessions:
        cells: list[Text | str] = [
            plain_text(meta.id),
            plain_text(meta.user_id or "-"),
            str(meta.message_count),
            when(meta.updated_at),
        ]
        if keys:
            cells.append(plain_text(meta.key if meta.key is not None else "-"))
        if forks:
            cells.append(plain_text(meta.forked_from or "-"))
        table.add_row(*cells, plain_text(summarize(meta.metadata)))
    out.print(table)
    if following is not None:
        out.print(plain_text(f"next page: --after {following}", style="dim"))


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
@click.argument("session_id", metavar="[SESSION]", required=False)
@key_lookup_options
@click.option(
    "--tree", is_flag=True, help="The whole entry tree, every branch, not only the current."
)
@url_option
@json_option
def show(
    session_id: str | None,
    key_agent: str | None,
    key: str | None,
    tree: bool,
    url: str,
    as_json: bool,
) -> None:
    """Show a session: its current branch, or with --tree every branch and where they fork.

    Name the session by its ID, or by --agent and --key (its external key). The
    tree marks restores and rewinds (↺), pops (↶), clears (∅), the session this
    one was forked from and the forks taken of it (⑂).
    """
    check_lookup(session_id, key_agent, key)
    forks: list[Fork] = []
    with open_store(url) as manager:
        session = lookup(manager, session_id, key_agent, key)
        meta = session.info()
        entries = (
            session.get_entries() if tree else manager.backend.load_branch(session.id, WHOLE_BRANCH)
        )
        checkpoints = session.list_checkpoints()
        if tree:
            forks = forks_of(manager, meta)
    out = console()
    labels = checkpoint_labels(checkpoints)
    if tree:
        lines = tree_lines(entries, meta.current_leaf)
        if as_json:
            by_id = {line.entry.id: line for line in lines if line.entry is not None}
            emit_json(
                {
                    "session": session_info_json(meta),
                    "entries": [
                        {
                            **entry_json(entry),
                            "depth": by_id[entry.id].depth,
                            "on_current_branch": by_id[entry.id].current,
                        }
                        for entry in entries
                    ],
                    "checkpoints": [checkpoint_json(cp) for cp in checkpoints],
                    "forks": [
                        {"session_id": fork.session_id, "forked_at": fork.forked_at}
                        for fork in forks
                    ],
                }
            )
            return
        known = {entry.id for entry in entries}
        notes: dict[str, list[str]] = {}
        if meta.forked_from is not None and meta.forked_at in known:
            notes.setdefault(meta.forked_at, []).append(
                f"forked from session {meta.forked_from} here"
            )
        for fork in forks:
            if fork.forked_at in known:
                notes.setdefault(fork.forked_at, []).append(f"fork {fork.session_id} taken here")
        _header(out, meta, len(entries), len(checkpoints), forks, known)
        out.print(tree_text(lines, meta.current_leaf, out.width, labels, notes), end="")
        return
    if as_json:
        emit_json(
            {
                "session": session_info_json(meta),
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


def _header(
    out: Console,
    meta: SessionMetadata,
    entries: int,
    checkpoints: int,
    forks: list[Fork] | None = None,
    known: set[str] | None = None,
) -> None:
    out.print(plain_text(f"session {meta.id}", style="bold"))
    details = [
        f"agent {meta.agent_name}",
        f"user {meta.user_id or '-'}",
        f"{plural(meta.message_count, 'message')} on the current branch",
        f"{plural(entries, 'entry', 'entries')} shown",
        plural(checkpoints, "checkpoint"),
    ]
    if forks:
        details.append(plural(len(forks), "fork"))
    details += [f"created {when(meta.created_at)}", f"updated {when(meta.updated_at)} UTC"]
    out.print(plain_text(", ".join(details), style="dim"))
    if meta.key is not None:
        out.print(plain_text(f"key {meta.key}", style="dim"))
    if meta.forked_from is not None:
        point = f"at entry {meta.forked_at}" if meta.forked_at else "when it was empty"
        out.print(plain_text(f"forked from {meta.forked_from} {point}", style="dim"))
    for fork in forks or []:
        if fork.forked_at is None or fork.forked_at not in (known or set()):
            point = f"at entry {fork.forked_at}" if fork.forked_at else "when it was empty"
            out.print(plain_text(f"fork {fork.session_id} taken {point}", style="dim"))
    if meta.metadata:
        out.print(plain_text(f"metadata {summarize(meta.metadata, 200)}", style="dim"))
    out.print()


@main.command()
@click.argument("session_id", metavar="[SESSION]", required=False)
@key_lookup_options
@url_option
@json_option
def checkpoints(
    session_id: str | None, key_agent: str | None, key: str | None, url: str, as_json: bool
) -> None:
    """List a session's checkpoints, oldest first (SESSION, or --agent and --key)."""
    check_lookup(session_id, key_agent, key)
    with open_store(url) as manager:
        session = lookup(manager, session_id, key_agent, key)
        session_id = session.id
        found = session.list_checkpoints()
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
