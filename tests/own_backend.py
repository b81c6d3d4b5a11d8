"""A user's own backend: only the seed's nine methods, over a directory of JSON files.

It is what a user would write from the seed's interface: no leaf bookkeeping,
no branches, no locking; ``sdb.SimpleBackend`` derives the rest. Files:
``sessions/<id>.json`` (the metadata as saved), ``entries/<id>.jsonl`` (the
entries, one a line, in append order), ``checkpoints/<id>.json``. Every whole
file is replaced atomically; entry lines are appended and synced.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import sessions_db as sdb
from sessions_db import aio


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class JsonDirBackend(sdb.SimpleBackend):
    """The nine methods over a directory (see the module's documentation)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        for part in ("sessions", "entries", "checkpoints"):
            (self.root / part).mkdir(parents=True, exist_ok=True)

    def _session_path(self, session_id: str) -> Path:
        return self.root / "sessions" / f"{session_id}.json"

    def _entries_path(self, session_id: str) -> Path:
        return self.root / "entries" / f"{session_id}.jsonl"

    def _checkpoint_path(self, checkpoint_id: str) -> Path:
        return self.root / "checkpoints" / f"{checkpoint_id}.json"

    def save_session(self, meta: sdb.SessionMetadata) -> None:
        _replace(self._session_path(meta.id), meta.model_dump_json().encode())

    def load_session(self, session_id: str) -> sdb.SessionMetadata:
        try:
            data = self._session_path(session_id).read_bytes()
        except FileNotFoundError:
            raise sdb.SessionNotFoundError(f"session {session_id} not found") from None
        return sdb.SessionMetadata.model_validate_json(data)

    def delete_session(self, session_id: str) -> None:
        for path in (self.root / "checkpoints").glob("*.json"):
            if json.loads(path.read_bytes())["session_id"] == session_id:
                path.unlink()
        self._entries_path(session_id).unlink(missing_ok=True)
        try:
            self._session_path(session_id).unlink()
        except FileNotFoundError:
            raise sdb.SessionNotFoundError(f"session {session_id} not found") from None

    def list_sessions(
        self, agent_name: str, *, user_id: str | None = None
    ) -> list[sdb.SessionMetadata]:
        found = []
        for path in (self.root / "sessions").glob("*.json"):
            meta = sdb.SessionMetadata.model_validate_json(path.read_bytes())
            if meta.agent_name == agent_name and user_id in (None, meta.user_id):
                found.append(meta)
        return found

    def append_entry(self, session_id: str, entry: sdb.SessionEntry) -> None:
        with open(self._entries_path(session_id), "ab") as f:
            f.write(entry.model_dump_json().encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())

    def load_entries(self, session_id: str) -> list[sdb.SessionEntry]:
        try:
            lines = self._entries_path(session_id).read_bytes().splitlines()
        except FileNotFoundError:
            return []
        return [sdb.SessionEntry.model_validate_json(line) for line in lines]

    def save_checkpoint(self, checkpoint: sdb.Checkpoint) -> None:
        _replace(self._checkpoint_path(checkpoint.id), checkpoint.model_dump_json().encode())

    def load_checkpoint(self, checkpoint_id: str) -> sdb.Checkpoint:
        try:
            data = self._checkpoint_path(checkpoint_id).read_bytes()
        except FileNotFoundError:
            raise sdb.CheckpointNotFoundError(f"checkpoint {checkpoint_id} not found") from None
        return sdb.Checkpoint.model_validate_json(data)

    def close(self) -> None:
        pass  # nothing is held open


class LockedJsonDirBackend(JsonDirBackend):
    """The same nine methods, with a file lock as the unit of work: exact across processes."""

    def unit_of_work(self) -> AbstractContextManager[Any]:
        return self._locked()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / "lock", "ab") as f:  # one open file per holder: threads exclude too
            fcntl.flock(f, fcntl.LOCK_EX)
            yield


def backend(root: str, locked: bool) -> JsonDirBackend:
    """Return the backend on ``root``."""
    return LockedJsonDirBackend(root) if locked else JsonDirBackend(root)


def open_manager(root: str, locked: bool = False) -> sdb.Manager:
    """A manager on the directory (module level: picklable for worker processes)."""
    return sdb.Manager(backend(root, locked))


async def open_async_manager(root: str, locked: bool = False) -> aio.AsyncManager:
    """An asyncio manager on the directory, through ThreadedBackend."""
    return aio.AsyncManager(aio.ThreadedBackend(backend(root, locked)))


def tamper(
    root: str, manager: sdb.Manager, session_id: str, entry_id: str, data: dict[str, Any]
) -> None:
    """Change a stored entry's data behind the library's back."""
    path = Path(root) / "entries" / f"{session_id}.jsonl"
    lines = []
    for line in path.read_bytes().splitlines():
        obj = json.loads(line)
        if obj["id"] == entry_id:
            obj["data"] = data
        lines.append(json.dumps(obj).encode())
    _replace(path, b"\n".join(lines) + b"\n")
