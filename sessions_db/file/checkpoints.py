"""``checkpoints/<checkpoint-id>.json``: one checkpoint per file, replaced atomically."""

from __future__ import annotations

import json

from .. import payload
from ..errors import SessionsDBError
from ..types import Checkpoint
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
