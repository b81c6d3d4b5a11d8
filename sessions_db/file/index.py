"""``sessions.json``: the per-agent index, a snapshot of its sessions' metadata.

The ``.jsonl`` files are the truth: a session exists when its file does, and
everything the index says about it can be read back from that file (see
:mod:`.jsonl`). The index saves listing from reading every file: each record
remembers the file (inode) and how many bytes of it it reflects, so a listing
reads only what was appended since.

How current it is:

* it lists every session of the agent after each creation and deletion: a new
  session's record is added in place (:func:`add`, one small write at the end,
  so creating stays O(1) however many sessions the agent has) and a deletion
  rewrites it;
* appends and checkpoints do not touch it, so between those points a record's
  ``updated_at``, ``message_count`` and ``current_leaf`` may lag behind the
  session file; a listing without a limit that notices rewrites it (a page of a
  listing reads the journals of :mod:`.lists` instead), and ``FileBackend.close()``
  rewrites the records of every session the store changed, so it is current
  after ``close()`` (and also whenever more than ``cache_size`` changed
  sessions await it).

Every rewrite is atomic (temporary file, rename). A missing or damaged index is
rebuilt from the files (nothing it holds cannot be rebuilt), with a warning in
the log; after a crash it may also miss the sessions created just before, until
the next listing or repair. Writers hold the agent directory's lock (``flock``); a reader that must
never see a record being added holds a shared lock on the directory.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from typing import Any

from .. import payload
from . import durable
from .jsonl import SessionLog, parse_ts, ts_text
from .paths import INDEX, open_file, opened

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
            summary = record_summary(rec, agent_name)
            found[summary.session_id] = summary
    except DamagedIndexError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedIndexError(str(exc)) from exc
    return found


def record_summary(rec: dict[str, Any], agent_name: str) -> SessionLog:
    """Return the session summary one record holds (``ValueError``, ``KeyError``: malformed)."""
    sid = rec["id"]
    if not isinstance(sid, str):
        raise DamagedIndexError("bad record")
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
    summary.key = rec.get("key")
    summary.forked_from = rec.get("forked_from")
    summary.forked_at = rec.get("forked_at")
    if not isinstance(summary.metadata, dict):
        raise DamagedIndexError("bad record")
    return summary


def encode(agent_name: str, summaries: Iterable[SessionLog]) -> bytes:
    """Return the index text for ``summaries`` (most recently updated first)."""
    ordered = sorted(
        (s for s in summaries if s.created_at is not None and s.updated_at is not None),
        key=lambda s: (s.updated_at, s.session_id),
        reverse=True,
    )
    # One record per line: readable with cat, diffable, and still one JSON document.
    body = ",\n".join(record_text(s) for s in ordered)
    head = payload.dumps({"version": VERSION, "agent_name": agent_name})[:-1]
    return f'{head},"sessions":[\n{body}{_END}'.encode()


def record_text(s: SessionLog) -> str:
    """Return the JSON text of one session's record (``sessions.json`` and the journals)."""
    assert s.created_at is not None
    assert s.updated_at is not None
    record: dict[str, Any] = {
        "id": s.session_id,
        "user_id": s.user_id,
        "created_at": ts_text(s.created_at),
        "updated_at": ts_text(s.updated_at),
        "message_count": s.message_count,
        "current_leaf": s.leaf,
        "metadata": s.metadata,
        "size": s.offset,
        "inode": s.ino,
    }
    for name, value in (("key", s.key), ("forked_from", s.forked_from), ("forked_at", s.forked_at)):
        if value is not None:
            record[name] = value
    return payload.dumps(record)


_END = "\n]}\n"
_EMPTY_TAIL = b"[\n" + _END.encode()  # an index of no session ends so
_RECORD_TAIL = b"}" + _END.encode()  # and one of at least one session so


def add(agent_fd: int, summary: SessionLog) -> bool:
    """Add one session's record at the end of the agent's index, in place.

    Returns ``False``, changing nothing, when there is no index or it does not
    end as this store writes it: rewrite it whole then. The caller holds the
    agent directory's lock. Records added so are not in ``updated_at`` order;
    the next rewrite sorts them. The write is not fsynced (creating a session
    stays one sync cheaper): after a crash the index may miss the newest
    sessions, or be torn and rebuilt, which listing and repair do from the files.
    """
    try:
        fd = open_file(INDEX, agent_fd, os.O_RDWR)
    except FileNotFoundError:
        return False
    with opened(fd):
        size = os.fstat(fd).st_size
        tail = os.pread(fd, len(_EMPTY_TAIL), max(size - len(_EMPTY_TAIL), 0))
        record = record_text(summary).encode()
        if tail == _EMPTY_TAIL:
            data = record + _END.encode()
        elif tail[-len(_RECORD_TAIL) :] == _RECORD_TAIL:
            data = b",\n" + record + _END.encode()
        else:
            return False
        durable.overwrite(fd, data, size - len(_END), size)
    return True


def write(agent_fd: int, agent_name: str, summaries: Iterable[SessionLog]) -> None:
    """Replace the agent's index atomically."""
    durable.replace(agent_fd, INDEX, encode(agent_name, summaries))
