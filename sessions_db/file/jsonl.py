"""The ``.jsonl`` session file: its lines, and reading it with torn-line handling.

Every line is one JSON object with ``id``, ``parent_id``, ``timestamp``, ``type``
and ``data``. Entry lines have the entry's type (``message``, ``checkpoint``,
``metadata``). Lines of type ``session`` carry the session itself: the first
line of every file has ``id`` = the session ID, ``timestamp`` = its creation
time and ``data`` = ``{"agent_name", "user_id", "metadata"}`` (with ``key``,
``forked_from`` and ``forked_at`` when the session has them); a later
``session`` line records a change of ``user_id`` or ``metadata``.

Each write (one append call, which may hold a batch of entries) ends with a
*commit line*: its last line also carries ``updated_at`` and ``message_count``
(the session's values after the write). A reader takes only what ends with a
commit line, so:

* a torn last line (the writer was killed mid-write) is ignored, and so is a
  batch whose last line never made it: a batch is read whole or not at all;
* the session's changing metadata (``updated_at``, ``message_count``, current
  leaf) is read from the file, so the index can always be rebuilt from it.

A writer, holding the session's lock, cuts such an unfinished tail off before it
appends, so new lines never glue onto a torn one. An unreadable line *followed*
by a commit line is damage, not a crash, and is reported, never skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import payload
from ..errors import SessionsDBError
from ..types import EntryType, SessionEntry

SESSION = "session"
_TYPES = {t.value: t for t in EntryType}
_TS = "%Y-%m-%dT%H:%M:%S.%fZ"
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.JSONDecoder().decode


class DamagedFileError(SessionsDBError):
    """A session file has an unreadable line before committed data."""


def ts_text(value: datetime) -> str:
    """Return the stored text of a timestamp (UTC, microseconds)."""
    return value.astimezone(UTC).strftime(_TS)


def parse_ts(value: object) -> datetime:
    """Parse a stored timestamp."""
    if not isinstance(value, str):
        raise ValueError("timestamp is not a string")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("timestamp has no time zone")
    return parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Commit:
    """What the last line of a write records about the session after it."""

    updated_at: datetime
    message_count: int


def _line(
    id: str,
    parent_id: str | None,
    timestamp: datetime,
    type: str,
    data: dict[str, Any],
    commit: Commit | None,
) -> str:
    head = (
        f'{{"id":{_encode(id)},"parent_id":{_encode(parent_id)},'
        f'"timestamp":"{ts_text(timestamp)}","type":"{type}",'
    )
    if commit is not None:
        head += (
            f'"updated_at":"{ts_text(commit.updated_at)}",'
            f'"message_count":{int(commit.message_count)},'
        )
    return f'{head}"data":{payload.dumps(data)}}}\n'


def entry_lines(
    entries: list[SessionEntry], parent_id: str | None, commit: Commit
) -> tuple[bytes, str | None]:
    """Return the lines of ``entries`` linked after ``parent_id``, and the last entry's ID."""
    parts = []
    last = len(entries) - 1
    for i, entry in enumerate(entries):
        parts.append(
            _line(
                entry.id,
                parent_id,
                entry.timestamp,
                entry.type.value,
                entry.data,
                commit if i == last else None,
            )
        )
        parent_id = entry.id
    return "".join(parts).encode("utf-8"), parent_id


def session_line(
    session_id: str,
    created_at: datetime,
    agent_name: str,
    user_id: str | None,
    metadata: dict[str, Any],
    commit: Commit | None,
    *,
    lineage: dict[str, str] | None = None,
) -> bytes:
    """Return a ``session`` line (the file's first line, or a change of user or metadata).

    ``lineage`` holds what the first line alone records when the session has
    it: ``key`` (its external key), ``forked_from`` and ``forked_at``.
    Without ``commit`` the line is part of a write that ends later.
    """
    data: dict[str, Any] = {"agent_name": agent_name, "user_id": user_id, "metadata": metadata}
    if lineage:
        data.update(lineage)
    return _line(session_id, None, created_at, SESSION, data, commit).encode("utf-8")


@dataclass(slots=True)
class Record:
    """One entry of a loaded session: its links, and its line (parsed again when read)."""

    id: str
    parent: int  # index of the parent record, -1 for a root
    type: EntryType
    depth: int  # messages on the path from the root to this entry, itself included
    line: bytes

    def entry(self, parent_id: str | None) -> SessionEntry:
        """Return the entry (a fresh object: callers may change its data)."""
        obj = _loads(self.line.decode("utf-8"))
        return SessionEntry.model_construct(
            id=self.id,
            parent_id=parent_id,
            timestamp=parse_ts(obj["timestamp"]),
            type=self.type,
            data=obj["data"],
        )


@dataclass(slots=True)
class SessionLog:
    """A session as read from its file, up to the last commit line.

    With ``keep_entries`` it holds every entry (for branch walks and appends);
    without, only the session's metadata (for listing).
    """

    session_id: str
    keep_entries: bool = True
    agent_name: str | None = None
    user_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    message_count: int = 0
    leaf: str | None = None
    key: str | None = None
    forked_from: str | None = None
    forked_at: str | None = None
    offset: int = 0  # bytes read and committed
    seen: int = 0  # bytes of the file when it was last read (committed or not)
    ino: int = 0
    records: list[Record] = field(default_factory=list)
    by_id: dict[str, int] = field(default_factory=dict)

    @property
    def pending(self) -> bool:
        """Whether the file had bytes after the last commit line when last read."""
        return self.seen > self.offset

    def is_current(self, ino: int, size: int) -> bool:
        """Whether the file (inode ``ino``, ``size`` bytes) holds nothing this log has not read."""
        return self.ino == ino and self.seen == size and not self.pending

    def feed(self, data: bytes) -> None:
        """Read ``data``, the bytes of the file from :attr:`offset` on."""
        start = self.offset
        pos = 0
        pending: list[tuple[dict[str, Any], bytes]] = []
        bad: int | None = None
        skim = not self.keep_entries
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            line = data[pos:nl]
            if skim and b'"updated_at"' not in line and b'"session"' not in line:
                # Listing needs only commit and session lines: skip parsing the rest.
                pos = nl + 1
                continue
            try:
                obj = _parse(line)
            except ValueError:
                if bad is None:
                    bad = start + pos
                pos = nl + 1
                continue
            pos = nl + 1
            pending.append((obj, line))
            if "updated_at" in obj:
                if bad is not None:
                    raise DamagedFileError(
                        f"session file {self.session_id}.jsonl is damaged: unreadable line at "
                        f"byte {bad}, before committed data; run repair to see the damage, "
                        "then fix or remove that line"
                    )
                self._apply(pending)
                pending = []
                self.offset = start + pos
        self.seen = start + len(data)

    def feed_own(self, entries: list[SessionEntry], parent_id: str | None, data: bytes) -> None:
        """Take in the lines this process just appended (``entry_lines``), without parsing them."""
        lines = data.split(b"\n")
        for entry, line in zip(entries, lines, strict=False):
            parent = -1 if parent_id is None else self.by_id.get(parent_id, -1)
            depth = self.records[parent].depth if parent >= 0 else 0
            if entry.type is EntryType.MESSAGE:
                depth += 1
            self.by_id[entry.id] = len(self.records)
            self.records.append(Record(entry.id, parent, entry.type, depth, line))
            parent_id = entry.id
        commit = _parse(lines[len(entries) - 1])
        self.leaf = parent_id
        self.updated_at = parse_ts(commit["updated_at"])
        self.message_count = self.records[-1].depth
        self.offset += len(data)
        self.seen = self.offset

    def _apply(self, lines: list[tuple[dict[str, Any], bytes]]) -> None:
        for obj, line in lines:
            kind = obj["type"]
            if kind == SESSION:
                data = obj["data"]
                if self.created_at is None:
                    self.created_at = parse_ts(obj["timestamp"])
                    self.key = data.get("key")
                    self.forked_from = data.get("forked_from")
                    self.forked_at = data.get("forked_at")
                self.agent_name = data.get("agent_name", self.agent_name)
                self.user_id = data.get("user_id")
                self.metadata = data.get("metadata") or {}
                continue
            entry_type = _TYPES[kind]
            self.leaf = obj["id"]
            if self.created_at is None:
                self.created_at = parse_ts(obj["timestamp"])
            if self.keep_entries:
                parent_id = obj["parent_id"]
                parent = -1 if parent_id is None else self.by_id.get(parent_id, -1)
                depth = self.records[parent].depth if parent >= 0 else 0
                if entry_type is EntryType.MESSAGE:
                    depth += 1
                self.by_id[obj["id"]] = len(self.records)
                self.records.append(Record(obj["id"], parent, entry_type, depth, line))
        last = lines[-1][0]
        self.updated_at = parse_ts(last["updated_at"])
        # The count the last write recorded, whether or not the entries are kept,
        # so that every read of one file agrees (even one edited behind our back).
        self.message_count = int(last["message_count"])

    # -- walking the tree ----------------------------------------------------------

    def parent_id(self, record: Record) -> str | None:
        """Return the ID of a record's parent."""
        return None if record.parent < 0 else self.records[record.parent].id

    def entry(self, index: int) -> SessionEntry:
        """Return the entry at ``index`` (append order)."""
        record = self.records[index]
        return record.entry(self.parent_id(record))


def _parse(line: bytes) -> dict[str, Any]:
    """Parse and check one line; ``ValueError`` if it is not a well-formed line."""
    obj = _loads(line.decode("utf-8"))  # JSONDecodeError, UnicodeDecodeError: ValueErrors
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    if not isinstance(obj.get("id"), str) or not isinstance(obj.get("data"), dict):
        raise ValueError("missing id or data")
    parent = obj.get("parent_id")
    if parent is not None and not isinstance(parent, str):
        raise ValueError("bad parent_id")
    if obj.get("type") != SESSION and obj.get("type") not in _TYPES:
        raise ValueError("bad type")
    if not isinstance(obj.get("timestamp"), str):
        raise ValueError("bad timestamp")
    if "updated_at" in obj:
        parse_ts(obj["updated_at"])
        if not isinstance(obj.get("message_count"), int):
            raise ValueError("bad message_count")
    return obj
