"""The stores a run measures: a throwaway PostgreSQL database, a SQLite file, a directory.

Also the seeding of large data: sessions and histories are written straight
into the library's own tables with the raw driver (bulk, in one transaction),
or for the file store through ``append_messages`` in big batches. The measured
operations then go through the public API.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sessions_db as sdb

DEFAULT_PG = "postgresql://sessions_db:sessions_db@127.0.0.1:5432/postgres"

#: Every message of the suite carries this payload (about 200 bytes of JSON).
PAYLOAD: dict[str, Any] = {
    "content": "The quick brown fox jumps over the lazy dog. " * 3,
    "tokens": 42,
    "meta": {"model": "bench-1", "temperature": 0.5},
}
PAYLOAD_JSON = json.dumps(PAYLOAD, separators=(",", ":"))
ROLES = ("user", "assistant")


def pg_admin_url() -> str:
    """The server the PostgreSQL runs use (a role that may create databases)."""
    return (
        os.environ.get("SESSIONS_DB_BENCH_PG")
        or os.environ.get("SESSIONS_DB_TEST_PG")
        or DEFAULT_PG
    )


def libpq(url: str) -> str:
    """Return ``url`` as a libpq connection string (no SQLAlchemy driver suffix)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def has_file_store() -> bool:
    """Whether this version of sessions_db has the file store (``file:///dir``)."""
    return hasattr(sdb, "FileBackend")


def has_openai_agents() -> bool:
    """Whether the OpenAI Agents SDK (``openai-agents``), whose sessions are the peers, is
    installed."""
    try:
        import agents  # noqa: F401
    except ImportError:
        return False
    return True


def has_async() -> bool:
    """Whether this version of sessions_db has the asyncio API (``sessions_db.aio``)."""
    try:
        import sessions_db.aio  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Store:
    """One backend's store for a run: its URL and how to seed it."""

    kind: str  # "sqlite" | "postgres" | "file"
    url: str
    path: Path | None = None  # the SQLite file or the file store's directory

    def connect(self) -> sdb.Manager:
        return (
            sdb.connect(self.url, migrate=True)
            if self.kind == "postgres"
            else sdb.connect(self.url)
        )

    # -- seeding ---------------------------------------------------------------

    def seed_history(self, mgr: sdb.Manager, n: int, agent: str = "bench") -> str:
        """Return the ID of a new session holding ``n`` messages."""
        sess = mgr.create(agent, user_id="seed")
        if n:
            if self.kind == "file":
                batch = 1000
                for start in range(0, n, batch):
                    sess.append_messages(
                        sdb.Message.new(ROLES[i % 2], PAYLOAD)
                        for i in range(start, min(n, start + batch))
                    )
            else:
                self._sql_history(sess.id, n)
        return sess.id

    def _sql_history(self, session_id: str, n: int) -> None:
        t0 = datetime.now(UTC) - timedelta(days=1)
        rows = []
        parent: str | None = None
        for i in range(n):
            eid = str(uuid.uuid4())
            ts = t0 + timedelta(microseconds=i)
            rows.append((session_id, eid, parent, i + 1, i + 1, ROLES[i % 2], ts))
            parent = eid
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(libpq(self.url)) as conn:
                with conn.cursor().copy(
                    "COPY sessions_db_entries (session_id, id, parent_id, seq, depth, type, "
                    "role, payload, created_at) FROM STDIN"
                ) as copy:
                    for sid, eid, par, seq, depth, role, ts in rows:
                        copy.write_row(
                            (sid, eid, par, seq, depth, "message", role, PAYLOAD_JSON, ts)
                        )
                conn.execute(
                    "UPDATE sessions_db_sessions SET current_leaf = %s, last_seq = %s, "
                    "message_count = %s WHERE id = %s",
                    (parent, n, n, session_id),
                )
                # What autovacuum would do after a bulk load in a live database:
                # without statistics, the plans of the appends measured next (their
                # foreign-key checks among them) are made for an empty table.
                conn.execute("ANALYZE sessions_db_entries")
        else:
            assert self.path is not None
            conn = sqlite3.connect(self.path)
            try:
                with conn:
                    conn.executemany(
                        "INSERT INTO sessions_db_entries (session_id, id, parent_id, seq, depth, "
                        "type, role, payload, created_at) "
                        "VALUES (?, ?, ?, ?, ?, 'message', ?, ?, ?)",
                        (
                            (sid, eid, par, seq, depth, role, PAYLOAD_JSON, sqlite_ts(ts))
                            for sid, eid, par, seq, depth, role, ts in rows
                        ),
                    )
                    conn.execute(
                        "UPDATE sessions_db_sessions SET current_leaf = ?, last_seq = ?, "
                        "message_count = ? WHERE id = ?",
                        (parent, n, n, session_id),
                    )
            finally:
                conn.close()

    def seed_sessions(self, mgr: sdb.Manager, agent: str, n: int, users: int) -> None:
        """Create ``n`` sessions of ``agent`` spread over ``users`` users (``u0``...)."""
        t0 = datetime.now(UTC) - timedelta(days=2)
        if self.kind == "file":
            for i in range(n):
                mgr.create(agent, user_id=f"u{i % users}")
            return
        rows = [
            (str(uuid.uuid4()), agent, f"u{i % users}", t0 + timedelta(milliseconds=i))
            for i in range(n)
        ]
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(libpq(self.url)) as conn:
                with conn.cursor().copy(
                    "COPY sessions_db_sessions (id, agent_name, user_id, created_at, updated_at, "
                    "message_count, current_leaf, last_seq, metadata) FROM STDIN"
                ) as copy:
                    for sid, ag, user, ts in rows:
                        copy.write_row((sid, ag, user, ts, ts, 0, None, 0, "{}"))
                conn.execute("ANALYZE sessions_db_sessions")
        else:
            assert self.path is not None
            conn = sqlite3.connect(self.path)
            try:
                with conn:
                    conn.executemany(
                        "INSERT INTO sessions_db_sessions (id, agent_name, user_id, created_at, "
                        "updated_at, message_count, current_leaf, last_seq, metadata) "
                        "VALUES (?, ?, ?, ?, ?, 0, NULL, 0, '{}')",
                        (
                            (sid, ag, user, sqlite_ts(ts), sqlite_ts(ts))
                            for sid, ag, user, ts in rows
                        ),
                    )
                conn.execute("ANALYZE")
            finally:
                conn.close()


def sqlite_ts(ts: datetime) -> str:
    """The text SQLAlchemy stores a UTC timestamp as on SQLite."""
    return ts.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


@contextmanager
def open_store(kind: str, workdir: Path, *, keep: bool = False) -> Iterator[Store]:
    """Yield a fresh, empty store of ``kind``; drop it afterwards unless ``keep``."""
    if kind == "sqlite":
        path = workdir / "bench.db"
        yield Store(kind, f"sqlite:///{path}", path)
    elif kind == "file":
        path = workdir / "files"
        path.mkdir()
        yield Store(kind, f"file://{path}", path)
    elif kind == "postgres":
        with pg_database(keep=keep) as url:
            yield Store(kind, url)
    else:
        raise ValueError(f"unknown backend {kind!r}")


@contextmanager
def pg_database(*, keep: bool = False) -> Iterator[str]:
    """Yield the URL of a new throwaway PostgreSQL database; drop it at the end unless ``keep``."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(pg_admin_url())
    name = f"sessions_db_bench_{secrets.token_hex(6)}"
    admin_dsn = libpq(admin.render_as_string(hide_password=False))
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(drivername="postgresql", database=name).render_as_string(
            hide_password=False
        )
    finally:
        if not keep:
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def hidden_password(url: str) -> str:
    """Return ``url`` with its password, if any, shown as ``***``."""
    from sqlalchemy.engine import make_url

    if url.startswith("file:"):
        return url
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def workdir(keep: Path | None = None) -> Iterator[Path]:
    """A temporary directory on the same disk as the results (not tmpfs); ``keep``: that
    directory instead, created and left in place."""
    if keep is not None:
        keep.mkdir(parents=True)
        yield keep
        return
    base = Path(tempfile.gettempdir())
    path = Path(tempfile.mkdtemp(prefix="sessions_db_bench_", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
