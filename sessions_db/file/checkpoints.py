"""``checkpoints/<checkpoint-id>.json``: one checkpoint per file, written once.

Checkpoint IDs are unique in the store, as in the SQL stores. A checkpoint file
is created exclusively, so a session can never take over another session's
checkpoint by reusing its ID, and a file is removed only on behalf of the
session it names.
"""

from __future__ import annotations

import contextlib
import json
import os

from .. import payload
from ..errors import DuplicateEntryError, SessionsDBError
from ..types import Checkpoint
from . import durable, paths
from .jsonl import parse_ts, ts_text


def encode(checkpoint: Checkpoint) -> bytes:
    """Return the file content of a checkpoint (``PayloadError`` for bad metadata)."""
    doc = {
        "id": checkpoint.id,
        "session_id": checkpoint.session_id,
        "timestamp": ts_text(checkpoint.timestamp),
        "entry_id": checkpoint.entry_id,
        "checksum": checkpoint.checksum,
        "metadata": checkpoint.metadata,
    }
    return (payload.dumps(doc) + "\n").encode("utf-8")


def decode(raw: bytes, name: str) -> Checkpoint:
    """Parse a checkpoint file; a malformed one raises :class:`SessionsDBError`."""
    try:
        doc = json.loads(raw)
        return Checkpoint.model_construct(
            id=str(doc["id"]),
            session_id=str(doc["session_id"]),
            timestamp=parse_ts(doc["timestamp"]),
            entry_id=str(doc["entry_id"]),
            checksum=str(doc["checksum"]),
            metadata=dict(doc["metadata"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise SessionsDBError(f"checkpoint file {name} is damaged: {exc}") from exc


def read(cfd: int, checkpoint_id: str) -> Checkpoint | None:
    """Return the checkpoint file of ``checkpoint_id`` in ``cfd``, ``None`` if there is none."""
    name = paths.checkpoint_file(checkpoint_id)
    try:
        fd = paths.open_file(name, cfd, os.O_RDONLY)
    except FileNotFoundError:
        return None
    with paths.opened(fd):
        size = os.fstat(fd).st_size
        return decode(os.pread(fd, size + 1, 0), name)


def write_new(cfd: int, agent_fd: int, checkpoint_id: str, content: bytes) -> None:
    """Create a checkpoint's file (``content``: see :func:`encode`).

    ``DuplicateEntryError`` if a live checkpoint has the ID. A file left by a
    session that is gone (a delete cut short by a crash) is not one: it is replaced.
    """
    name = paths.checkpoint_file(checkpoint_id)
    try:
        durable.create_new(cfd, name, content)
        return
    except FileExistsError:
        pass
    if is_live(read(cfd, checkpoint_id), agent_fd):
        raise DuplicateEntryError(f"checkpoint {checkpoint_id} already exists")
    durable.replace(cfd, name, content)


def is_live(found: Checkpoint | None, agent_fd: int) -> bool:
    """Whether ``found`` (a checkpoint file's content) belongs to a session that exists."""
    if found is None:
        return False
    return paths.lstat(paths.session_file(found.session_id), agent_fd) is not None


def remove(cfd: int, checkpoint_id: str, session_id: str) -> None:
    """Remove the checkpoint file of ``checkpoint_id`` if it names ``session_id``."""
    try:
        found = read(cfd, checkpoint_id)
    except SessionsDBError:
        return  # damaged: whose it is cannot be told, so it is left to repair
    if found is None or found.session_id != session_id:
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(paths.checkpoint_file(checkpoint_id), dir_fd=cfd)
