"""Storage failures produced for real, and what callers get from them.

A file size limit (``RLIMIT_FSIZE``, set in a child process with ``SIGXFSZ``
ignored) makes the kernel refuse a write (``EFBIG``) or cut it short; a second
SQLite connection holding the write lock makes a writer busy; ``PRAGMA
max_page_count`` makes a SQLite database full. Each must raise
``StorageUnavailableError``, keep what was stored before and leave the store
working once the condition is gone.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event

import sessions_db as sdb

#: Runs in a child: opens URL, limits the size of files to SIZE (+ EXTRA bytes;
#: SIZE is the session file's size, or 0), tries a big batch, lifts the limit and
#: appends once more. Prints what happened as JSON.
_LIMITED_WRITER = textwrap.dedent(
    """
    import json, pathlib, resource, signal, sys
    import sessions_db as sdb

    url, session_id, extra, from_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
    mgr = sdb.connect(url)
    session = mgr.get(session_id)
    session.get_messages()
    path = pathlib.Path(from_file) if from_file else None
    size = path.stat().st_size if path else 0
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + extra, hard))
    batch = [sdb.Message.new("user", {"content": "big", "pad": "y" * 20_000}) for _ in range(5)]
    try:
        session.append_messages(batch)
        outcome = {"error": None}
    except sdb.SessionsDBError as exc:
        orig = getattr(exc.__cause__, "orig", None)
        outcome = {
            "error": type(exc).__name__,
            "message": str(exc),
            "sqlite": getattr(orig, "sqlite_errorname", None),
        }
    outcome["size_before"] = size
    outcome["size_after"] = path.stat().st_size if path else 0
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    session.append_message(sdb.Message.new("user", {"content": "after"}))
    mgr.close()
    print(json.dumps(outcome))
    """
)


def _limited_append(url: str, session_id: str, extra: int, session_file: Path | None) -> Any:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _LIMITED_WRITER,
            url,
            session_id,
            str(extra),
            str(session_file or ""),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _contents(mgr: sdb.Manager, session_id: str) -> list[str]:
    return [m.payload["content"] for m in mgr.get(session_id).get_messages()]


@pytest.mark.parametrize(
    ("extra", "what"),
    [(0, "File too large"), (5_000, "short write (5000 of ")],
    ids=["refused", "short"],
)
def test_file_store_rolls_back_a_failed_or_short_append(
    tmp_path: Path, extra: int, what: str
) -> None:
    url = (tmp_path / "store").as_uri()
    with sdb.connect(url) as mgr:
        session = mgr.create("agent")
        session.append_message(sdb.Message.new("user", {"content": "before"}))
    (path,) = (tmp_path / "store").glob(f"*/{session.id}.jsonl")

    outcome = _limited_append(url, session.id, extra, path)
    assert outcome["error"] == "StorageUnavailableError"
    assert what in outcome["message"]
    # The kernel wrote part of the batch (short) or nothing: either way it is gone.
    assert outcome["size_after"] == outcome["size_before"]
    lines = path.read_bytes().splitlines(keepends=True)
    assert all(line.endswith(b"\n") and json.loads(line) for line in lines)
    with sdb.connect(url) as mgr:
        assert _contents(mgr, session.id) == ["before", "after"]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> tuple[str, str]:
    """A SQLite store holding one session with one message: (URL, session ID)."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    with sdb.connect(url) as mgr:
        session = mgr.create("agent")
        session.append_message(sdb.Message.new("user", {"content": "before"}))
    return url, session.id


def _cause_name(raised: pytest.ExceptionInfo[sdb.SessionsDBError]) -> str:
    orig = getattr(raised.value.__cause__, "orig", None)
    return str(getattr(orig, "sqlite_errorname", ""))


def test_sqlite_busy_is_unavailable(sqlite_store: tuple[str, str]) -> None:
    url, session_id = sqlite_store
    holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    mgr = sdb.Manager(sdb.SQLBackend(url, busy_timeout=0.1))
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        session = mgr.get(session_id)
        for write in (
            lambda: session.append_message(sdb.Message.new("user", {"content": "lost"})),
            lambda: mgr.create("agent"),
        ):
            with pytest.raises(sdb.StorageUnavailableError) as raised:
                write()
            assert type(raised.value) is sdb.StorageUnavailableError
            assert _cause_name(raised) == "SQLITE_BUSY"
            assert "locked" in str(raised.value)
        assert _contents(mgr, session_id) == ["before"]  # readers are not blocked
        holder.execute("ROLLBACK")
        session.append_message(sdb.Message.new("user", {"content": "after"}))
        assert _contents(mgr, session_id) == ["before", "after"]
        assert [m.id for m in mgr.list("agent")] == [session_id]
    finally:
        mgr.close()
        holder.close()


def test_sqlite_full_is_unavailable(sqlite_store: tuple[str, str]) -> None:
    url, session_id = sqlite_store
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _cap(dbapi_connection: Any, record: Any) -> None:
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages + 2}")

    mgr = sdb.Manager(sdb.SQLBackend(engine))
    try:
        session = mgr.get(session_id)
        big = [sdb.Message.new("user", {"content": "big", "pad": "y" * 20_000}) for _ in range(5)]
        with pytest.raises(sdb.StorageUnavailableError) as raised:
            session.append_messages(big)
        assert type(raised.value) is sdb.StorageUnavailableError
        assert _cause_name(raised) == "SQLITE_FULL"
        assert "SQLITE_FULL" in str(raised.value)
        assert _contents(mgr, session_id) == ["before"]
        session.append_message(sdb.Message.new("user", {"content": "after"}))  # room for that
        assert _contents(mgr, session_id) == ["before", "after"]
    finally:
        mgr.close()
        engine.dispose()


def test_sqlite_io_error_is_unavailable(sqlite_store: tuple[str, str]) -> None:
    url, session_id = sqlite_store
    outcome = _limited_append(url, session_id, 0, None)  # every write fails with EFBIG
    assert outcome["error"] == "StorageUnavailableError"
    assert outcome["sqlite"].startswith("SQLITE_IOERR")
    with sdb.connect(url) as mgr:
        assert _contents(mgr, session_id) == ["before", "after"]
