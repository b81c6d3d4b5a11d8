"""Turning sessions, entries and checkpoints into JSON documents and readable text."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from ..types import Checkpoint, EntryType, Message, SessionEntry, SessionMetadata
from ._common import iso, plain, when


def plain_text(text: str, *, lines: bool = False, style: str = "") -> Text:
    """Return stored text as a rich ``Text``: never read as markup, controls escaped."""
    return Text(plain(text, lines=lines), style=style)


def session_json(meta: SessionMetadata) -> dict[str, Any]:
    """Return the JSON form of a session's metadata (also the export's session record).

    ``key``, ``forked_from`` and ``forked_at`` are there only when the session
    has them, so that an export of sessions without them reads as before.
    """
    record: dict[str, Any] = {
        "id": meta.id,
        "agent_name": meta.agent_name,
        "user_id": meta.user_id,
        "created_at": iso(meta.created_at),
        "updated_at": iso(meta.updated_at),
        "message_count": meta.message_count,
        "current_leaf": meta.current_leaf,
        "metadata": meta.metadata,
    }
    for name in ("key", "forked_from", "forked_at"):
        value = getattr(meta, name)
        if value is not None:
            record[name] = value
    return record


def session_info_json(meta: SessionMetadata) -> dict[str, Any]:
    """Return the JSON form of a session for reading commands: with its key and lineage.

    ``key`` is the external key (``None``: none); ``forked_from`` and
    ``forked_at`` name the session and the entry a fork was taken from.
    """
    return {
        **session_json(meta),
        "key": meta.key,
        "forked_from": meta.forked_from,
        "forked_at": meta.forked_at,
    }


def message_json(message: Message) -> dict[str, Any]:
    """Return the JSON form of a message."""
    return {
        "id": message.id,
        "role": message.type,
        "timestamp": iso(message.timestamp),
        "payload": message.payload,
    }


def entry_json(entry: SessionEntry) -> dict[str, Any]:
    """Return the JSON form of an entry."""
    return {
        "id": entry.id,
        "parent_id": entry.parent_id,
        "timestamp": iso(entry.timestamp),
        "type": entry.type.value,
        "data": entry.data,
    }


def checkpoint_json(checkpoint: Checkpoint) -> dict[str, Any]:
    """Return the JSON form of a checkpoint."""
    return {
        "id": checkpoint.id,
        "session_id": checkpoint.session_id,
        "timestamp": iso(checkpoint.timestamp),
        "entry_id": checkpoint.entry_id,
        "checksum": checkpoint.checksum,
        "metadata": checkpoint.metadata,
    }


def content_text(payload: dict[str, Any]) -> str:
    """Return what a person reads of a message payload.

    ``content`` when it is text (or a list of parts with text), else the payload as JSON.
    """
    content = payload.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
        if texts:
            return "\n".join(texts)
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def short(identifier: str | None) -> str:
    """Return the first 8 characters of an ID, enough to tell entries apart on screen."""
    return "-" if identifier is None else identifier[:8]


def entry_role(entry: SessionEntry) -> str:
    """Return the role of a message entry, or the kind of another entry."""
    if entry.type is EntryType.MESSAGE:
        return str(entry.data.get("role", "?"))
    if entry.type is EntryType.CHECKPOINT:
        return "checkpoint"
    return str(entry.data.get("event", "metadata"))


def checkpoint_labels(checkpoints: Iterable[Checkpoint]) -> dict[str, str]:
    """Return what to show next to each checkpoint: its ``label``, else its metadata."""
    labels = {}
    for checkpoint in checkpoints:
        label = checkpoint.metadata.get("label")
        if isinstance(label, str):
            labels[checkpoint.id] = label
        elif checkpoint.metadata:
            labels[checkpoint.id] = json.dumps(
                checkpoint.metadata, ensure_ascii=False, separators=(",", ":")
            )
    return labels


def entry_text(entry: SessionEntry, labels: dict[str, str] | None = None) -> str:
    """Return the readable content of an entry.

    Checkpoints and restores name the checkpoint; rewinds, pops and clears say
    what they did to the branch; other entries show their data as JSON.
    """
    if entry.type is EntryType.MESSAGE:
        return content_text(entry.data.get("payload", {}))
    checkpoint_id = str(entry.data.get("checkpoint_id"))
    label = (labels or {}).get(checkpoint_id)
    suffix = f" ({label})" if label else ""
    if entry.type is EntryType.CHECKPOINT:
        return f"{checkpoint_id}{suffix}"
    event = entry.data.get("event")
    if event == "restore":
        return f"to checkpoint {checkpoint_id}{suffix}"
    if event == "rewind" and isinstance(entry.data.get("to"), str):
        return f"back to entry {entry.data['to']}"
    if event == "pop" and isinstance(entry.data.get("message_id"), str):
        return f"took message {entry.data['message_id']} off the branch"
    if event == "clear" and set(entry.data) == {"event"}:
        return "emptied the branch: it starts again here"
    return json.dumps(entry.data, ensure_ascii=False, separators=(",", ":"))


#: The mark of each event entry in a tree: leaf moves, pops and clears.
EVENT_MARKERS = {"restore": "↺", "rewind": "↺", "pop": "↶", "clear": "∅"}


def entry_marker(entry: SessionEntry) -> str:
    """Return the one-character mark of an entry in a tree."""
    if entry.type is EntryType.MESSAGE:
        return "•"
    if entry.type is EntryType.CHECKPOINT:
        return "◆"
    return EVENT_MARKERS.get(str(entry.data.get("event")), "·")


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """Return ``"1 checkpoint"``, ``"2 checkpoints"`` (``nouns``: an irregular plural)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def one_line(text: str, width: int) -> str:
    """Return ``text`` on one line, cut to ``width`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# -- the entry tree ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TreeLine:
    """One line of a rendered entry tree: an entry or the header of a branch."""

    prefix: str
    entry: SessionEntry | None
    depth: int
    current: bool
    label: str = ""


def current_path(entries: Iterable[SessionEntry], leaf: str | None) -> set[str]:
    """Return the IDs of the entries from the root to ``leaf`` (the current branch)."""
    parents = {entry.id: entry.parent_id for entry in entries}
    path: set[str] = set()
    node = leaf
    while node is not None and node not in path:
        path.add(node)
        node = parents.get(node)
    return path


def tree_lines(entries: list[SessionEntry], leaf: str | None) -> list[TreeLine]:
    """Lay out the entry tree: chains straight down, each fork's branches indented under it.

    Branches appear in the order they were started; the one holding the current
    leaf is marked current. A tree with several roots (a clear, or a pop of the
    first message, starts the branch again from nothing) shows each root as a
    branch. Iterative, so deeply forked sessions do not recurse.
    """
    known = {entry.id for entry in entries}
    children: dict[str | None, list[SessionEntry]] = {}
    for entry in entries:
        parent = entry.parent_id if entry.parent_id in known else None
        children.setdefault(parent, []).append(entry)
    on_path = current_path(entries, leaf)
    lines: list[TreeLine] = []
    # Work to do: a branch header to print, or an entry to lay out with its chain.
    stack: list[TreeLine | tuple[SessionEntry, str, int]] = []

    def branches(kids: list[SessionEntry], prefix: str, depth: int) -> None:
        for number, kid in reversed(list(enumerate(kids, start=1))):
            last = number == len(kids)
            current = kid.id in on_path
            label = f"branch {number}/{len(kids)}" + (" (current)" if current else "")
            stack.append((kid, prefix + ("   " if last else "│  "), depth + 1))
            head = prefix + ("└─ " if last else "├─ ")
            stack.append(TreeLine(head, None, depth + 1, current, label))

    roots = children.get(None, [])
    if len(roots) == 1:
        stack.append((roots[0], "", 0))
    else:
        branches(roots, "", 0)
    while stack:
        item = stack.pop()
        if isinstance(item, TreeLine):
            lines.append(item)
            continue
        node, prefix, depth = item
        while True:
            lines.append(TreeLine(prefix, node, depth, node.id in on_path))
            kids = children.get(node.id, [])
            if len(kids) != 1:
                break
            node = kids[0]
        branches(kids, prefix, depth)
    return lines


def tree_text(
    lines: list[TreeLine],
    leaf: str | None,
    width: int,
    labels: dict[str, str] | None = None,
    notes: dict[str, list[str]] | None = None,
) -> Text:
    """Return the rich text of a laid-out tree.

    ``notes`` maps entry IDs to lines shown under the entry (where forks were taken).
    """
    out = Text()
    for line in lines:
        style = "" if line.current else "dim"
        if line.entry is None:
            out.append(line.prefix, style="dim")
            out.append(line.label + "\n", style="bold cyan" if line.current else "cyan")
            continue
        entry = line.entry
        out.append(line.prefix, style="dim")
        out.append(f"{entry_marker(entry)} {short(entry.id)} {when(entry.timestamp)} ", style=style)
        out.append(f"{plain(entry_role(entry)):<10} ", style=("bold " + style).strip())
        text = plain(entry_text(entry, labels), lines=True)
        room = width - len(line.prefix) - 43 - (16 if entry.id == leaf else 0)
        room = max(20, room)
        out.append(one_line(text, room), style=style)
        if entry.id == leaf:
            out.append("  ◀ current leaf", style="bold green")
        out.append("\n")
        for note in (notes or {}).get(entry.id, []):
            out.append(line.prefix, style="dim")
            out.append(f"  ⑂ {plain(note)}\n", style="magenta")
    return out
