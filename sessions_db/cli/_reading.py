"""Reading an export file: bounded lines, and every record checked as the API checks it.

An export is untrusted input. Lines are read with a bounded reader, so a line
longer than :data:`MAX_LINE_BYTES` is refused after reading that many bytes,
never loaded whole; the records of one session, which are held in memory until
the session is written, may not add up to more than :data:`MAX_SESSION_BYTES`.
Each record is validated by the very functions the API uses (a message entry
must be a valid :class:`~sessions_db.Message`), and each session's entry tree
must be one the API could have built.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import click

from .. import ids, payload
from ..errors import InvalidArgumentError, PayloadError, SessionsDBError
from ..types import Checkpoint, EntryType, Message, SessionEntry, SessionMetadata, as_utc
from ._archive import FORMAT, VERSION, SessionDump, starts_again
from ._common import EXIT_USAGE, CLIError

#: The longest line (one record: a session, an entry with its payload, or a
#: checkpoint) an import reads, in bytes without the line break. So also the
#: largest entry.
MAX_LINE_BYTES = 64 * 1024**2
#: The most bytes of records one session may take in an export (an import holds
#: a session in memory until it is written).
MAX_SESSION_BYTES = 512 * 1024**2

_CHECKSUM = re.compile(r"sha256:[0-9a-f]{64}")
_MAX_EVENT = 64


@dataclass(frozen=True)
class Limits:
    """The size limits of an import, in bytes."""

    line: int = MAX_LINE_BYTES
    session: int = MAX_SESSION_BYTES


_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def size_option(ctx: click.Context, param: click.Parameter, value: Any) -> int:
    """Read a size in bytes: ``65536``, ``512K``, ``64M`` or ``1G`` (powers of 1024)."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", str(value), re.IGNORECASE)
    if match is None or int(match.group(1)) < 1:
        raise click.BadParameter(f"{value!r} is not a size (e.g. 65536, 512K, 64M, 1G)")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


# -- records ----------------------------------------------------------------------


def _event(data: dict[str, Any], entry_id: str) -> None:
    event = data.get("event")
    if not isinstance(event, str) or not event or len(event) > _MAX_EVENT:
        raise PayloadError(f"metadata entry {entry_id}: event must be a short non-empty string")
    if not event.isprintable():
        raise PayloadError(f"metadata entry {entry_id}: event contains control characters")
    if event == "restore" and set(data) != {"event", "checkpoint_id"}:
        raise PayloadError(f"restore entry {entry_id} needs data with event and checkpoint_id")
    if "checkpoint_id" in data:
        ids.checkpoint_id(data["checkpoint_id"])


def parse_session(data: Any) -> SessionMetadata:
    """Return a session record's metadata, checked as ``Manager.create`` checks it."""
    meta = SessionMetadata.model_validate(data)
    ids.session_id(meta.id)
    ids.agent_name(meta.agent_name)
    payload.check(meta.metadata, "metadata")
    if meta.current_leaf is not None:
        ids.entry_id(meta.current_leaf)
    if meta.key is not None:
        ids.session_key(meta.key)
    if meta.forked_from is not None:
        ids.session_id(meta.forked_from)
    if meta.forked_at is not None:
        ids.entry_id(meta.forked_at)
    if meta.message_count < 0:
        raise PayloadError(f"session {meta.id}: message_count must not be negative")
    return meta.model_copy(
        update={
            # "" is no user, as for Manager.create.
            "user_id": ids.user_id(meta.user_id),
            "created_at": as_utc(meta.created_at, "created_at"),
            "updated_at": as_utc(meta.updated_at, "updated_at"),
        }
    )


def parse_entry(data: Any) -> SessionEntry:
    """Return an entry record, checked as the API checks what it stores.

    A message entry must make a valid :class:`Message` (role, payload, ID,
    timestamp); checkpoint and restore entries must have the form the API gives them.
    """
    entry = SessionEntry.model_validate(data)
    ids.entry_id(entry.id)
    if entry.parent_id is not None:
        ids.entry_id(entry.parent_id)
    timestamp = as_utc(entry.timestamp)
    if entry.type is EntryType.MESSAGE:
        if set(entry.data) != {"role", "payload"}:
            raise PayloadError(f"message entry {entry.id} needs data with role and payload")
        Message(
            type=entry.data["role"],
            payload=entry.data["payload"],
            id=entry.id,
            timestamp=timestamp,
        )
    elif entry.type is EntryType.CHECKPOINT:
        if set(entry.data) != {"checkpoint_id"}:
            raise PayloadError(f"checkpoint entry {entry.id} needs data with checkpoint_id only")
        ids.checkpoint_id(entry.data["checkpoint_id"])
    else:
        payload.check(entry.data, "entry data")
        _event(entry.data, entry.id)
    return entry.model_copy(update={"timestamp": timestamp})


def parse_checkpoint(data: Any) -> Checkpoint:
    """Return a checkpoint record, checked."""
    checkpoint = Checkpoint.model_validate(data)
    ids.checkpoint_id(checkpoint.id)
    ids.session_id(checkpoint.session_id)
    ids.entry_id(checkpoint.entry_id)
    if not _CHECKSUM.fullmatch(checkpoint.checksum):
        raise PayloadError(f"checkpoint {checkpoint.id}: checksum is not sha256:<64 hex digits>")
    payload.check(checkpoint.metadata, "checkpoint metadata")
    return checkpoint.model_copy(update={"timestamp": as_utc(checkpoint.timestamp)})


def check_tree(dump: SessionDump) -> None:
    """Check that a session's entries form a tree the API could have built.

    One root first (later roots only where a clear or a pop started the branch
    again), every parent before its children, IDs unique, the current leaf the
    newest entry, each checkpoint on a checkpoint entry that names it.
    """
    meta = dump.meta
    seen: dict[str, SessionEntry] = {}
    entry: SessionEntry | None
    for position, entry in enumerate(dump.entries):
        if entry.id in seen:
            raise InvalidArgumentError(f"entry {entry.id} appears twice")
        if entry.parent_id is None and position and not starts_again(entry):
            raise InvalidArgumentError(
                f"entry {entry.id} is a second root (only a clear or a pop starts a branch again)"
            )
        if entry.parent_id is not None and entry.parent_id not in seen:
            raise InvalidArgumentError(
                f"entry {entry.id} comes before its parent {entry.parent_id}"
            )
        seen[entry.id] = entry
    newest = dump.entries[-1].id if dump.entries else None
    if meta.current_leaf != newest:
        raise InvalidArgumentError(
            f"current_leaf {meta.current_leaf} is not the newest entry ({newest})"
        )
    checkpoint_ids: set[str] = set()
    for checkpoint in dump.checkpoints:
        if checkpoint.id in checkpoint_ids:
            raise InvalidArgumentError(f"checkpoint {checkpoint.id} appears twice")
        checkpoint_ids.add(checkpoint.id)
        entry = seen.get(checkpoint.entry_id)
        if (
            entry is None
            or entry.type is not EntryType.CHECKPOINT
            or entry.data.get("checkpoint_id") != checkpoint.id
        ):
            raise InvalidArgumentError(
                f"checkpoint {checkpoint.id}: entry {checkpoint.entry_id} is not its "
                "checkpoint entry"
            )


# -- the file -----------------------------------------------------------------------


def _lines(source: IO[bytes], name: str, limit: int) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, line without its break); never read more than ``limit`` + 1 bytes."""
    lineno = 0
    while True:
        raw = source.readline(limit + 1)
        if not raw:
            return
        lineno += 1
        line = raw[:-1] if raw.endswith(b"\n") else raw
        if len(line) > limit:
            raise CLIError(
                f"{name}:{lineno}: line {lineno} is longer than {limit} bytes, the most one "
                "record may take (--max-line-bytes)",
                EXIT_USAGE,
            )
        yield lineno, line


class _Reader:
    """The state of reading an export, record by record."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.current: SessionDump | None = None
        self.current_bytes = 0
        self.counts = [0, 0, 0]
        self.state = "start"

    def feed(self, record: Any, size: int, where: str) -> SessionDump | None:
        """Take one record of ``size`` bytes; return the session it completes, if any."""
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
            self.current = SessionDump(parse_session(record.get("session")))
            self.current_bytes = 0
            self.counts[0] += 1
            self._count(size, where)
            return current
        if kind == "entry":
            if current is None or record.get("session_id") != current.meta.id:
                raise CLIError(f"{where}: an entry outside its session", EXIT_USAGE)
            self._count(size, where)
            current.entries.append(parse_entry(record.get("entry")))
            self.counts[1] += 1
        elif kind == "checkpoint":
            checkpoint = parse_checkpoint(record.get("checkpoint"))
            if current is None or checkpoint.session_id != current.meta.id:
                raise CLIError(f"{where}: a checkpoint outside its session", EXIT_USAGE)
            self._count(size, where)
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

    def _count(self, size: int, where: str) -> None:
        self.current_bytes += size
        if self.current_bytes > self.limits.session:
            raise CLIError(
                f"{where}: session {self.current.meta.id if self.current else '?'} takes more "
                f"than {self.limits.session} bytes, the most one session may take "
                "(--max-session-bytes)",
                EXIT_USAGE,
            )


def _checked(dump: SessionDump, name: str) -> SessionDump:
    try:
        check_tree(dump)
    except SessionsDBError as error:
        raise CLIError(f"{name}: session {dump.meta.id}: {error}", EXIT_USAGE) from None
    return dump


def read_archive(source: IO[bytes], name: str, limits: Limits = Limits()) -> Iterator[SessionDump]:
    """Yield the sessions of an export, checking every record; ``CLIError`` on a bad file."""
    reader = _Reader(limits)
    lineno = 0
    for lineno, line in _lines(source, name, limits.line):
        if not line.strip():
            continue
        where = f"{name}:{lineno}"
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            raise CLIError(f"{where}: not UTF-8 text", EXIT_USAGE) from None
        except (ValueError, RecursionError):
            raise CLIError(f"{where}: not a JSON line", EXIT_USAGE) from None
        try:
            done = reader.feed(record, len(line), where)
        except SessionsDBError as error:
            raise CLIError(f"{where}: {error}", EXIT_USAGE) from None
        if done is not None:
            yield _checked(done, name)
    if reader.state == "start":
        raise CLIError(f"{name}: empty, not a sessions_db export", EXIT_USAGE)
    if reader.state != "end":
        raise CLIError(
            f"{name}:{lineno}: the file ends before its end record (cut off?)", EXIT_USAGE
        )
    if reader.current is not None:
        yield _checked(reader.current, name)
