"""The floor: the raw drivers doing the same work with no library around them.

* PostgreSQL: psycopg 3 in autocommit, one ``INSERT`` per append into a plain
  message table (primary key only) and one ``SELECT ... ORDER BY`` per load;
* SQLite: the stdlib ``sqlite3`` with the library's settings (WAL,
  ``synchronous=FULL``), the same statements, ``json.loads`` of each payload
  (psycopg parses ``jsonb`` itself, so both floors hand back dicts);
* file store: one ``O_APPEND`` write of a JSON line plus ``fsync`` per append,
  and a read of the whole file (one ``json.loads`` per line) per load.

The loads read the library's own tables, in ``seq`` order, so the floor reads
exactly the rows the library returns.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .stores import PAYLOAD, Store, libpq


class Raw:
    """A raw-driver floor for one store: append, create, load, newest, list."""

    def append(self, session_id: str) -> None:
        raise NotImplementedError

    def create(self) -> None:
        raise NotImplementedError

    def load(self, session_id: str) -> list[Any]:
        raise NotImplementedError

    def newest(self, session_id: str, n: int) -> list[Any]:
        raise NotImplementedError

    def list(self, agent: str, user: str, n: int) -> list[Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass


_CREATE_MESSAGES = (
    "CREATE TABLE IF NOT EXISTS bench_raw_messages (session_id VARCHAR(36), id VARCHAR(128), "
    "seq BIGINT, role VARCHAR(64), payload {json}, created_at {ts}, "
    "PRIMARY KEY (session_id, seq))"
)
_CREATE_SESSIONS = (
    "CREATE TABLE IF NOT EXISTS bench_raw_sessions (id VARCHAR(36) PRIMARY KEY, "
    "agent_name VARCHAR(128), user_id VARCHAR(255), updated_at {ts})"
)


class RawPostgres(Raw):
    """psycopg 3, autocommit."""

    def __init__(self, store: Store) -> None:
        import psycopg

        self.conn = psycopg.connect(libpq(store.url), autocommit=True)
        self.conn.execute(_CREATE_MESSAGES.format(json="JSONB", ts="TIMESTAMPTZ"))
        self.conn.execute(_CREATE_SESSIONS.format(ts="TIMESTAMPTZ"))
        self.seq = 0

    def append(self, session_id: str) -> None:
        self.seq += 1
        self.conn.execute(
            "INSERT INTO bench_raw_messages (session_id, id, seq, role, payload, created_at) "
            "VALUES (%s, %s, %s, %s, %s::jsonb, %s)",
            (
                session_id,
                str(uuid.uuid4()),
                self.seq,
                "user",
                json.dumps(PAYLOAD),
                datetime.now(UTC),
            ),
        )

    def create(self) -> None:
        self.conn.execute(
            "INSERT INTO bench_raw_sessions (id, agent_name, user_id, updated_at) "
            "VALUES (%s, %s, %s, %s)",
            (str(uuid.uuid4()), "raw", "u", datetime.now(UTC)),
        )

    def load(self, session_id: str) -> list[Any]:
        return self.conn.execute(
            "SELECT id, role, payload, created_at FROM sessions_db_entries "
            "WHERE session_id = %s ORDER BY seq",
            (session_id,),
        ).fetchall()

    def newest(self, session_id: str, n: int) -> list[Any]:
        rows = self.conn.execute(
            "SELECT id, role, payload, created_at FROM sessions_db_entries "
            "WHERE session_id = %s ORDER BY seq DESC LIMIT %s",
            (session_id, n),
        ).fetchall()
        rows.reverse()
        return rows

    def list(self, agent: str, user: str, n: int) -> list[Any]:
        return self.conn.execute(
            "SELECT id, agent_name, user_id, created_at, updated_at, message_count, "
            "current_leaf, metadata FROM sessions_db_sessions WHERE agent_name = %s "
            "AND user_id = %s ORDER BY updated_at DESC, id DESC LIMIT %s",
            (agent, user, n),
        ).fetchall()

    def close(self) -> None:
        self.conn.close()


class RawSQLite(Raw):
    """The stdlib sqlite3: autocommit, WAL, synchronous=FULL (the library's settings)."""

    def __init__(self, store: Store) -> None:
        assert store.path is not None
        self.conn = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute(_CREATE_MESSAGES.format(json="JSON", ts="DATETIME"))
        self.conn.execute(_CREATE_SESSIONS.format(ts="DATETIME"))
        self.seq = 0

    def append(self, session_id: str) -> None:
        self.seq += 1
        self.conn.execute(
            "INSERT INTO bench_raw_messages (session_id, id, seq, role, payload, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                session_id,
                str(uuid.uuid4()),
                self.seq,
                "user",
                json.dumps(PAYLOAD),
                datetime.now(UTC).isoformat(),
            ),
        )

    def create(self) -> None:
        self.conn.execute(
            "INSERT INTO bench_raw_sessions (id, agent_name, user_id, updated_at) "
            "VALUES (?, ?, ?, ?)",
            (str(uuid.uuid4()), "raw", "u", datetime.now(UTC).isoformat()),
        )

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        loads = json.loads
        return [(i, r, loads(p), t) for i, r, p, t in self.conn.execute(sql, args)]

    def load(self, session_id: str) -> list[Any]:
        return self._rows(
            "SELECT id, role, payload, created_at FROM sessions_db_entries "
            "WHERE session_id = ? ORDER BY seq",
            (session_id,),
        )

    def newest(self, session_id: str, n: int) -> list[Any]:
        rows = self._rows(
            "SELECT id, role, payload, created_at FROM sessions_db_entries "
            "WHERE session_id = ? ORDER BY seq DESC LIMIT ?",
            (session_id, n),
        )
        rows.reverse()
        return rows

    def list(self, agent: str, user: str, n: int) -> list[Any]:
        loads = json.loads
        return [
            (*r[:-1], loads(r[-1]))
            for r in self.conn.execute(
                "SELECT id, agent_name, user_id, created_at, updated_at, message_count, "
                "current_leaf, metadata FROM sessions_db_sessions WHERE agent_name = ? "
                "AND user_id = ? ORDER BY updated_at DESC, id DESC LIMIT ?",
                (agent, user, n),
            )
        ]

    def close(self) -> None:
        self.conn.close()


class RawFile(Raw):
    """``O_APPEND`` + ``fsync`` per append; a whole-file read per load (JSON lines)."""

    def __init__(self, store: Store) -> None:
        assert store.path is not None
        self.dir = Path(store.path).parent / "raw_files"
        self.dir.mkdir(exist_ok=True)

    def _path(self, session_id: str) -> Path:
        return self.dir / f"{session_id}.jsonl"

    def append(self, session_id: str) -> None:
        line = json.dumps(
            {
                "id": str(uuid.uuid4()),
                "type": "message",
                "role": "user",
                "payload": PAYLOAD,
                "timestamp": datetime.now(UTC).isoformat(),
            }
        )
        fd = os.open(self._path(session_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def fill(self, session_id: str, n: int) -> None:
        """Write ``n`` lines at once (seeding the load floor)."""
        line = json.dumps(
            {
                "id": str(uuid.uuid4()),
                "type": "message",
                "role": "user",
                "payload": PAYLOAD,
                "timestamp": datetime.now(UTC).isoformat(),
            }
        )
        self._path(session_id).write_text((line + "\n") * n)

    def create(self) -> None:
        path = self.dir / f"{uuid.uuid4()}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, json.dumps({"agent_name": "raw", "user_id": "u"}).encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def load(self, session_id: str) -> list[Any]:
        loads = json.loads
        with open(self._path(session_id), "rb") as f:
            return [loads(line) for line in f.read().splitlines()]

    def newest(self, session_id: str, n: int) -> list[Any]:
        return self.load(session_id)[-n:]


def raw_for(store: Store) -> Raw:
    """Return the raw-driver floor of ``store``."""
    if store.kind == "postgres":
        return RawPostgres(store)
    if store.kind == "sqlite":
        return RawSQLite(store)
    return RawFile(store)
