"""``sessions.json``: the per-agent index, a snapshot of its sessions' metadata.

The ``.jsonl`` files are the truth: a session exists when its file does, and
everything the index says about it can be read back from that file (see
:mod:`.jsonl`). The index saves listing from reading every file: each record
remembers the file (inode) and how many bytes of it it reflects, so a listing
reads only what was appended since. It is rewritten atomically whenever a
listing, a delete, a prune or a repair finds it out of date; appends and
creations do not touch it, which keeps them O(1) however many sessions the agent
has. A missing or damaged index is rebuilt from the files (nothing it holds
cannot be rebuilt), with a warning in the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from .. import payload
from . import durable
from .jsonl import SessionLog, parse_ts, ts_text
from .paths import INDEX

log = logging.getLogger("sessions_db.file")

VERSION = 1


class DamagedIndexError(ValueError):
    """``sessions.json`` is not an index this store wrote."""


def decode(raw: bytes, agent_name: str) -> dict[str, SessionLog]:
    """Return the session summaries an index holds; :class:`DamagedIndexError` if malformed."""
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise DamagedIndexError("not a version 1 index")
        found: dict[str, SessionLog] = {}
        for rec in doc["sessions"]:
            sid = rec["id"]
            summary = SessionLog(sid, keep_entries=False)
            summary.agent_name = agent_name
            summary.user_id = rec["user_id"]
            summary.metadata = rec["metadata"]
            summary.created_at = parse_ts(rec["created_at"])
            summary.updated_at = parse_ts(rec["updated_at"])
            summary.message_count = int(rec["message_count"])
            summary.leaf = rec["current_leaf"]
            summary.offset = summary.seen = int(rec["size"])
            summary.ino = int(rec["inode"])
            if not isinstance(sid, str) or not isinstance(summary.metadata, dict):
                raise DamagedIndexError("bad record")
            found[sid] = summary
    except DamagedIndexError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedIndexError(str(exc)) from exc
    return found


def encode(agent_name: str, summaries: Iterable[SessionLog]) -> bytes:
    """Return the index text for ``summaries`` (most recently updated first)."""
    ordered = sorted(
        (s for s in summaries if s.created_at is not None and s.updated_at is not None),
        key=lambda s: (s.updated_at, s.session_id),
        reverse=True,
    )
    records: list[dict[str, Any]] = [
        {
            "id": s.session_id,
            "user_id": s.user_id,
            "created_at": ts_text(s.created_at),  # type: ignore[arg-type]
            "updated_at": ts_text(s.updated_at),  # type: ignore[arg-type]
            "message_count": s.message_count,
            "current_leaf": s.leaf,
            "metadata": s.metadata,
            "size": s.offset,
            "inode": s.ino,
        }
        for s in ordered
    ]
    doc = {"version": VERSION, "agent_name": agent_name, "sessions": records}
    # One record per line: readable with cat, diffable, and still one JSON document.
    body = ",\n".join(payload.dumps(r) for r in records)
    head = payload.dumps({k: v for k, v in doc.items() if k != "sessions"})[:-1]
    return f'{head},"sessions":[\n{body}\n]}}\n'.encode()


def write(agent_fd: int, agent_name: str, summaries: Iterable[SessionLog]) -> None:
    """Replace the agent's index atomically."""
    durable.replace(agent_fd, INDEX, encode(agent_name, summaries))
