"""How entries are marked in the tree picture and the entry lists.

Metadata entries record events by their ``event`` value. Each known event has a
:class:`Marker` in :data:`EVENT_MARKERS`; a new kind of event gets its row there
(and a colour in ``inspector.css`` under its ``css`` class), nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..types import EntryType, SessionEntry


@dataclass(frozen=True, slots=True)
class Marker:
    """A mark: the letter drawn in the node, what it means, and its style class."""

    glyph: str
    label: str
    css: str


#: Events recorded by metadata entries (``data["event"]``), by value.
EVENT_MARKERS: dict[str, Marker] = {
    "restore": Marker("R", "restore to a checkpoint", "ev-restore"),
    "fork": Marker("F", "fork of another session", "ev-fork"),
    "rewind": Marker("W", "rewind", "ev-rewind"),
    "pop": Marker("P", "message popped", "ev-pop"),
    "clear": Marker("C", "branch cleared", "ev-clear"),
}

#: A metadata entry whose event has no marker of its own.
OTHER_EVENT = Marker("?", "other event", "ev-other")

#: A checkpoint entry.
CHECKPOINT = Marker("", "checkpoint", "checkpoint")

#: Roles that have a colour of their own; any other role is drawn as ``role-other``.
KNOWN_ROLES = frozenset({"user", "assistant", "system", "tool"})


def event_of(entry: SessionEntry) -> str | None:
    """Return the event a metadata entry records (``None`` for other entries)."""
    if entry.type is not EntryType.METADATA:
        return None
    event = entry.data.get("event")
    return event if isinstance(event, str) else ""


def marker_of(entry: SessionEntry) -> Marker | None:
    """Return the marker of a checkpoint or metadata entry (``None`` for a message)."""
    if entry.type is EntryType.CHECKPOINT:
        return CHECKPOINT
    event = event_of(entry)
    if event is None:
        return None
    return EVENT_MARKERS.get(event, OTHER_EVENT)


def role_class(role: str) -> str:
    """Return the style class of a message role (a fixed set: roles are stored text)."""
    return f"role-{role}" if role in KNOWN_ROLES else "role-other"
