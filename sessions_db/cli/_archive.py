"""Sessions as portable records: reading them from one store, writing them into another.

The export format is JSON Lines: a header, then for each session a ``session``
record followed by its ``entry`` records (every branch, in the order they were
appended, with their original IDs, parents and timestamps) and its
``checkpoint`` records, and an ``end`` record with the counts, so that a cut-off
file is refused instead of half imported.

Reading an export is :mod:`._reading`; what a session becomes in the target
store (privacy applied, checksums verified and recomputed) is :mod:`._stored`.
Each session is written in one unit of work of the target store:
``save_session``, then ``append_entries`` in the original order (each entry's
parent is either the entry before it or a fork point, given as ``fork_from``),
then ``save_checkpoint``, then read back and checked. The store then holds the
very same tree, and, since the current leaf is always the newest entry, the
same current leaf. On a store with transactions a session that fails is rolled
back whole; on the others (the file store) what was written is removed again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import ids, payload
from ..backend import BranchQuery, StorageBackend
from ..checksum import branch_checksum
from ..errors import (
    CheckpointNotFoundError,
    DuplicateEntryError,
    EntryNotFoundError,
    SessionNotFoundError,
    SessionsDBError,
)
from ..manager import Manager
from ..storage import Storage, UnitOfWork
from ..types import Checkpoint, EntryType, SessionEntry, SessionMetadata, utcnow
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
    #: (checkpoint ID, problem) for each checkpoint whose checksum does not verify;
    #: then the session was removed again.
    mismatches: list[tuple[str, str]]

    @property
    def stored(self) -> bool:
        """Whether the session is in the store."""
        return not self.mismatches


# -- reading a store --------------------------------------------------------------


def select_sessions(
    manager: Manager, *, session_id: str | None = None, agent: str | None = None
) -> list[SessionMetadata]:
    """Return the sessions to export: one, one agent's, or all of them (by agent).

    The metadata is read as stored (sealed if the store is encrypted), so that a
    store can be listed and exported without its keys.
    """
    backend = manager.backend
    if session_id is not None:
        return [backend.load_session(ids.session_id(session_id))]
    found: list[SessionMetadata] = []
    for name in [agent] if agent is not None else backend.list_agents():
        offset = 0
        while True:
            page = backend.list_sessions(name, limit=PAGE, offset=offset)
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


# -- writing a store --------------------------------------------------------------


def starts_again(entry: SessionEntry) -> bool:
    """Whether ``entry`` may be a later root of a session's tree.

    The API starts a branch again from nothing only with the event entry of a
    clear, or of a pop of the branch's first message.
    """
    return entry.type is EntryType.METADATA and entry.data.get("event") in ("clear", "pop")


def _append_tree(backend: Storage, dump: SessionDump) -> None:
    session_id = dump.meta.id
    updated_at = dump.meta.updated_at
    batch: list[SessionEntry] = []
    fork: str | None = None
    at_root = False
    seen: set[str] = set()

    def flush() -> None:
        if batch:
            backend.append_entries(
                session_id, batch, fork_from=fork, at_root=at_root, updated_at=updated_at
            )

    for position, entry in enumerate(dump.entries):
        if entry.id in seen:
            raise CLIError(f"session {session_id}: entry {entry.id} appears twice", EXIT_USAGE)
        if batch and entry.parent_id == batch[-1].id:
            if len(batch) >= CHUNK:
                flush()
                # Continues from the leaf the last batch left.
                batch, fork, at_root = [], None, False
            batch.append(entry)
        else:
            flush()
            at_root = False
            if entry.parent_id is None:
                if position and not starts_again(entry):
                    raise CLIError(
                        f"session {session_id}: entry {entry.id} is a second root", EXIT_USAGE
                    )
                fork, at_root = None, bool(position)
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
    backend: Storage, session_id: str, checkpoints: Iterable[Checkpoint]
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


_COMPARED = (
    "agent_name",
    "user_id",
    "created_at",
    "updated_at",
    "message_count",
    "current_leaf",
    "key",
    "forked_from",
    "forked_at",
)


class _Mismatched(Exception):  # noqa: N818 - a signal inside this module, not an error
    """The stored checkpoints did not verify: the unit is rolled back."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("checkpoints do not verify")
        self.problems = problems


def write_session(backend: StorageBackend, dump: SessionDump) -> Written:
    """Write one session into ``backend``, in one unit of work, and check it reads back identical.

    ``dump`` is the session as the store is to hold it (see :mod:`._stored`).
    ``CLIError`` (conflict) if the session already exists there; a session that
    fails half-way, or whose checkpoints do not verify once stored, is not kept
    (rolled back, or removed again on a store without transactions), so that
    nothing of it stays and the import can be run again.
    """
    saved: list[bool] = []
    try:
        return backend.run(lambda uow: _write_in(uow, dump, saved))
    except _Mismatched as mismatch:
        _remove_leftover(backend, dump.meta.id, saved)
        return Written(0, 0, mismatch.problems)
    except BaseException:
        _remove_leftover(backend, dump.meta.id, saved)
        raise


def _remove_leftover(backend: StorageBackend, session_id: str, saved: list[bool]) -> None:
    """Remove what a failed write left, on a store whose units of work cannot roll back.

    Only once this write saved the session: a session found before that (a
    conflict) is someone else's, and a rolled-back unit left nothing.
    """
    if backend.transactional or not saved:
        return
    with contextlib.suppress(SessionsDBError):
        backend.delete_session(session_id)


def _write_in(uow: UnitOfWork, dump: SessionDump, saved: list[bool]) -> Written:
    session_id = dump.meta.id
    uow.begin()
    try:
        uow.load_session(session_id)
    except SessionNotFoundError:
        pass
    else:
        raise CLIError(f"session {session_id} already exists in the target store", EXIT_CONFLICT)
    for checkpoint in dump.checkpoints:
        # Checkpoint IDs are unique in a store: another session's is never taken over.
        with contextlib.suppress(CheckpointNotFoundError):
            uow.load_checkpoint(checkpoint.id)
            raise DuplicateEntryError(
                f"checkpoint {checkpoint.id} of session {session_id} already exists in the "
                "target store"
            )
    uow.save_session(dump.meta)
    saved.append(True)
    _append_tree(uow, dump)
    for checkpoint in dump.checkpoints:
        uow.save_checkpoint(checkpoint)
    stored = uow.load_session(session_id)
    differ = [name for name in _COMPARED if getattr(stored, name) != getattr(dump.meta, name)]
    if stored.metadata != dump.meta.metadata:
        differ.append("metadata")
    entries = uow.load_entries(session_id)
    if entries != dump.entries:
        differ.append("entries")
    checkpoints = uow.list_checkpoints(session_id)
    if sorted(checkpoints, key=lambda c: c.id) != sorted(dump.checkpoints, key=lambda c: c.id):
        differ.append("checkpoints")
    if differ:
        raise CLIError(
            f"session {session_id} did not read back identically ({', '.join(differ)})",
            EXIT_MISMATCH,
        )
    mismatches = verify_checkpoints(uow, session_id, checkpoints)
    if mismatches:
        raise _Mismatched(mismatches)
    return Written(len(entries), len(checkpoints), mismatches)
