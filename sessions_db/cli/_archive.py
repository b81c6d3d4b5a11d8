"""Sessions as portable records: reading them from one store, writing them into another.

The export format is JSON Lines: a header, then for each session a ``session``
record followed by its ``entry`` records (every branch, in the order they were
appended, with their original IDs, parents and timestamps) and its
``checkpoint`` records, and an ``end`` record with the counts, so that a cut-off
file is refused instead of half imported.

Writing goes through the public backend API only: ``save_session``, then
``append_entries`` in the original order (each entry's parent is either the
entry before it or a fork point, given as ``fork_from``), then
``save_checkpoint``. The store then holds the very same tree, and, since the
current leaf is always the newest entry, the same current leaf.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import ids, payload
from ..backend import BranchQuery, StorageBackend
from ..checksum import branch_checksum
from ..errors import EntryNotFoundError, SessionNotFoundError, SessionsDBError
from ..manager import Manager
from ..types import Checkpoint, EntryType, SessionEntry, SessionMetadata, as_utc, utcnow
from ._common import EXIT_CONFLICT, EXIT_ERROR, EXIT_MISMATCH, EXIT_USAGE, CLIError, iso
from ._render import checkpoint_json, entry_json, session_json

FORMAT = "sessions_db.export"
VERSION = 1
#: Entries appended per call when a chain is long.
CHUNK = 500
#: Sessions listed per page when walking a store.
PAGE = 500


@dataclass
class SessionDump:
    """One session with its whole entry tree and its checkpoints."""

    meta: SessionMetadata
    entries: list[SessionEntry] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)


@dataclass(frozen=True)
class Written:
    """What a store holds for a session after it was written, as read back."""

    entries: int
    checkpoints: int
    #: (checkpoint ID, problem) for each checkpoint whose checksum does not verify.
    mismatches: list[tuple[str, str]]


# -- reading a store --------------------------------------------------------------


def select_sessions(
    manager: Manager, *, session_id: str | None = None, agent: str | None = None
) -> list[SessionMetadata]:
    """Return the sessions to export: one, one agent's, or all of them (by agent)."""
    if session_id is not None:
        return [manager.get(session_id).info()]
    found: list[SessionMetadata] = []
    for name in [agent] if agent is not None else manager.list_agents():
        offset = 0
        while True:
            page = manager.list(name, limit=PAGE, offset=offset)
            found.extend(page)
            if len(page) < PAGE:
                break
            offset += PAGE
    return found


def read_session(backend: StorageBackend, session_id: str, attempts: int = 5) -> SessionDump:
    """Read one session consistently (checkpoints, then entries, then metadata).

    Checkpoints are read first so that every checkpoint's entry is among the
    entries; if the session moved on meanwhile (its leaf is not the newest entry
    read) it is read again.
    """
    for _ in range(attempts):
        checkpoints = backend.list_checkpoints(session_id)
        entries = backend.load_entries(session_id)
        meta = backend.load_session(session_id)
        if meta.current_leaf == (entries[-1].id if entries else None):
            return SessionDump(meta, entries, checkpoints)
    raise CLIError(f"session {session_id} kept changing while it was read; try again", EXIT_ERROR)


def header_record() -> dict[str, Any]:
    """Return the first record of an export."""
    return {"kind": "header", "format": FORMAT, "version": VERSION, "exported_at": iso(utcnow())}


def session_records(dump: SessionDump) -> Iterator[dict[str, Any]]:
    """Yield the records of one session."""
    yield {"kind": "session", "session": session_json(dump.meta)}
    for entry in dump.entries:
        yield {"kind": "entry", "session_id": dump.meta.id, "entry": entry_json(entry)}
    for checkpoint in dump.checkpoints:
        yield {"kind": "checkpoint", "checkpoint": checkpoint_json(checkpoint)}


def end_record(sessions: int, entries: int, checkpoints: int) -> dict[str, Any]:
    """Return the last record of an export, with its counts."""
    return {"kind": "end", "sessions": sessions, "entries": entries, "checkpoints": checkpoints}


def encode(record: dict[str, Any]) -> str:
    """Return one line of the export (compact JSON, floats that read back equal)."""
    return payload.dumps(record) + "\n"


# -- reading an export ------------------------------------------------------------


def _parse_session(data: Any) -> SessionMetadata:
    meta = SessionMetadata.model_validate(data)
    ids.session_id(meta.id)
    ids.agent_name(meta.agent_name)
    ids.user_id(meta.user_id)
    payload.check(meta.metadata, "session metadata")
    as_utc(meta.created_at, "created_at")
    as_utc(meta.updated_at, "updated_at")
    return meta


def _parse_entry(data: Any) -> SessionEntry:
    entry = SessionEntry.model_validate(data)
    ids.entry_id(entry.id)
    if entry.parent_id is not None:
        ids.entry_id(entry.parent_id)
    as_utc(entry.timestamp)
    if entry.type is EntryType.MESSAGE:
        if set(entry.data) != {"role", "payload"}:
            raise CLIError(f"message entry {entry.id} needs data with role and payload", EXIT_USAGE)
        payload.check(entry.data["payload"])
    else:
        payload.check(entry.data, "entry data")
    return entry


def _parse_checkpoint(data: Any) -> Checkpoint:
    checkpoint = Checkpoint.model_validate(data)
    ids.checkpoint_id(checkpoint.id)
    ids.session_id(checkpoint.session_id)
    ids.entry_id(checkpoint.entry_id)
    as_utc(checkpoint.timestamp)
    payload.check(checkpoint.metadata, "checkpoint metadata")
    return checkpoint


class _Reader:
    """The state of reading an export, record by record."""

    def __init__(self) -> None:
        self.current: SessionDump | None = None
        self.counts = [0, 0, 0]
        self.state = "start"

    def feed(self, record: Any, where: str) -> SessionDump | None:
        """Take one record; return the session it completes, if any."""
        kind = record.get("kind") if isinstance(record, dict) else None
        if self.state == "start":
            if kind != "header" or record.get("format") != FORMAT:
                raise CLIError(f"{where}: not a sessions_db export", EXIT_USAGE)
            if record.get("version") != VERSION:
                raise CLIError(
                    f"{where}: export version {record.get('version')!r} is not supported "
                    f"(this version reads {VERSION})",
                    EXIT_USAGE,
                )
            self.state = "body"
            return None
        if self.state == "end":
            raise CLIError(f"{where}: a record after the end record", EXIT_USAGE)
        current = self.current
        if kind == "session":
            self.current = SessionDump(_parse_session(record.get("session")))
            self.counts[0] += 1
            return current
        if kind == "entry":
            if current is None or record.get("session_id") != current.meta.id:
                raise CLIError(f"{where}: an entry outside its session", EXIT_USAGE)
            current.entries.append(_parse_entry(record.get("entry")))
            self.counts[1] += 1
        elif kind == "checkpoint":
            checkpoint = _parse_checkpoint(record.get("checkpoint"))
            if current is None or checkpoint.session_id != current.meta.id:
                raise CLIError(f"{where}: a checkpoint outside its session", EXIT_USAGE)
            current.checkpoints.append(checkpoint)
            self.counts[2] += 1
        elif kind == "end":
            expected = [record.get(key) for key in ("sessions", "entries", "checkpoints")]
            if expected != self.counts:
                raise CLIError(
                    f"{where}: the file holds {self.counts[0]} sessions, {self.counts[1]} "
                    f"entries and {self.counts[2]} checkpoints, its end record says {expected}",
                    EXIT_USAGE,
                )
            self.state = "end"
        else:
            raise CLIError(f"{where}: unknown record kind {kind!r}", EXIT_USAGE)
        return None


def read_archive(lines: Iterable[str], name: str) -> Iterator[SessionDump]:
    """Yield the sessions of an export, checking every record; ``CLIError`` on a bad file."""
    reader = _Reader()
    lineno = 0
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{name}:{lineno}"
        try:
            record = json.loads(line)
        except ValueError:
            raise CLIError(f"{where}: not a JSON line", EXIT_USAGE) from None
        try:
            done = reader.feed(record, where)
        except SessionsDBError as error:
            raise CLIError(f"{where}: {error}", EXIT_USAGE) from None
        if done is not None:
            yield done
    if reader.state == "start":
        raise CLIError(f"{name}: empty, not a sessions_db export", EXIT_USAGE)
    if reader.state != "end":
        raise CLIError(
            f"{name}:{lineno}: the file ends before its end record (cut off?)", EXIT_USAGE
        )
    if reader.current is not None:
        yield reader.current


# -- writing a store --------------------------------------------------------------


def _append_tree(backend: StorageBackend, dump: SessionDump) -> None:
    session_id = dump.meta.id
    updated_at = dump.meta.updated_at
    batch: list[SessionEntry] = []
    fork: str | None = None
    seen: set[str] = set()

    def flush() -> None:
        if batch:
            backend.append_entries(session_id, batch, fork_from=fork, updated_at=updated_at)

    for position, entry in enumerate(dump.entries):
        if entry.id in seen:
            raise CLIError(f"session {session_id}: entry {entry.id} appears twice", EXIT_USAGE)
        if batch and entry.parent_id == batch[-1].id:
            if len(batch) >= CHUNK:
                flush()
                batch, fork = [], None  # continues from the leaf the last batch left
            batch.append(entry)
        else:
            flush()
            if entry.parent_id is None:
                if position:
                    raise CLIError(
                        f"session {session_id}: entry {entry.id} is a second root", EXIT_USAGE
                    )
                fork = None
            elif entry.parent_id not in seen:
                raise CLIError(
                    f"session {session_id}: entry {entry.id} comes before its parent "
                    f"{entry.parent_id}",
                    EXIT_USAGE,
                )
            else:
                fork = entry.parent_id
            batch = [entry]
        seen.add(entry.id)
    flush()


def verify_checkpoints(
    backend: StorageBackend, session_id: str, checkpoints: Iterable[Checkpoint]
) -> list[tuple[str, str]]:
    """Return (checkpoint ID, problem) for each checkpoint whose checksum does not verify."""
    problems: list[tuple[str, str]] = []
    for checkpoint in checkpoints:
        try:
            branch = backend.load_branch(session_id, BranchQuery(leaf=checkpoint.entry_id))
        except EntryNotFoundError:
            problems.append((checkpoint.id, f"its entry {checkpoint.entry_id} is missing"))
            continue
        actual = branch_checksum(branch)
        if actual != checkpoint.checksum:
            problems.append(
                (checkpoint.id, f"checksum {checkpoint.checksum} stored, {actual} computed")
            )
    return problems


_COMPARED = ("agent_name", "user_id", "created_at", "updated_at", "message_count", "current_leaf")


def write_session(backend: StorageBackend, dump: SessionDump) -> Written:
    """Write one session into ``backend`` and read it back to check it is identical.

    ``CLIError`` (conflict) if the session already exists there; a session that
    fails half-way is removed again, so that the import can be run again.
    """
    session_id = dump.meta.id
    try:
        backend.load_session(session_id)
    except SessionNotFoundError:
        pass
    else:
        raise CLIError(f"session {session_id} already exists in the target store", EXIT_CONFLICT)
    backend.save_session(dump.meta)
    try:
        _append_tree(backend, dump)
        for checkpoint in dump.checkpoints:
            backend.save_checkpoint(checkpoint)
        stored = backend.load_session(session_id)
        differ = [name for name in _COMPARED if getattr(stored, name) != getattr(dump.meta, name)]
        if stored.metadata != dump.meta.metadata:
            differ.append("metadata")
        entries = backend.load_entries(session_id)
        if entries != dump.entries:
            differ.append("entries")
        checkpoints = backend.list_checkpoints(session_id)
        if sorted(checkpoints, key=lambda c: c.id) != sorted(dump.checkpoints, key=lambda c: c.id):
            differ.append("checkpoints")
        if differ:
            raise CLIError(
                f"session {session_id} did not read back identically ({', '.join(differ)})",
                EXIT_MISMATCH,
            )
        mismatches = verify_checkpoints(backend, session_id, checkpoints)
    except BaseException:
        with contextlib.suppress(SessionsDBError):
            backend.delete_session(session_id)
        raise
    return Written(len(entries), len(checkpoints), mismatches)
