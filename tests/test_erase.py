"""Erasing a user: every trace of them goes, from every store kind, through both APIs and the CLI.

After ``erase_user`` no row of any of our tables (cast to text) and no byte of
any file of the store holds the user's ID or a marker written only into that
user's payloads and metadata; every other session reads back exactly as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

import sessions_db as sdb
from sessions_db.connect import file_path
from sessions_db.sql.engine import normalize_url
from sessions_db.testing.contract import msg

from .conftest import opener

#: The erased user, and a word written only into that user's data.
VICTIM = "victim7Qz4"
MARKER = "zqmarker81x"
OTHER = "bob"


def _populate(mgr: sdb.Manager) -> list[str]:
    """Store the victim's sessions (two agents, branches, checkpoints) among others'."""
    victims = []
    for agent in ("assistant", "assistant", "planner"):
        sess = mgr.create(agent, user_id=VICTIM, metadata={"note": f"{MARKER} meta"})
        sess.append_messages([msg(f"hello {MARKER} one"), msg(f"reply {MARKER}", "assistant")])
        cp = sess.checkpoint(metadata={"why": MARKER})
        sess.append_message(msg(f"later {MARKER}"))
        sess.restore(cp.id)
        sess.append_message(msg(f"branch {MARKER} two"))
        victims.append(sess.id)
    for agent in ("assistant", "planner"):
        for user in (OTHER, None):
            sess = mgr.create(agent, user_id=user, metadata={"note": "keep"})
            sess.append_messages([msg(f"{agent} {user} says hi"), msg("ok", "assistant")])
            sess.checkpoint(metadata={"why": "keep"})
            sess.append_message(msg("after the checkpoint"))
    return victims


def _snapshot(mgr: sdb.Manager) -> dict[str, Any]:
    """Everything readable of every session not the victim's."""
    found: dict[str, Any] = {}
    for agent in ("assistant", "planner"):
        for meta in mgr.list(agent):
            if meta.user_id == VICTIM:
                continue
            sess = mgr.get(meta.id)
            found[meta.id] = (
                meta,
                sess.get_entries(),
                sess.get_messages(),
                sess.list_checkpoints(),
            )
    return found


def _sql_traces(url: str) -> list[str]:
    """Return every row of our tables (each cast to text) that holds the user or the marker.

    SQLite: every table whose name starts with ``sessions_db_``, the FTS5 shadow
    tables included (their blobs read as Latin-1, so that any byte shows).
    """
    engine = create_engine(normalize_url(url))
    hits = []
    try:
        with engine.connect() as conn:
            names = [n for n in inspect(engine).get_table_names() if n.startswith("sessions_db_")]
            if engine.dialect.name == "sqlite":
                names = [
                    row[0]
                    for row in conn.execute(
                        text(
                            "SELECT name FROM sqlite_master WHERE type = 'table' "
                            "AND name LIKE 'sessions_db_%'"
                        )
                    )
                ]
            assert {"sessions_db_sessions", "sessions_db_entries"} <= set(names)
            for name in names:
                quoted = engine.dialect.identifier_preparer.quote(name)
                if engine.dialect.name == "postgresql":
                    rows = [r[0] for r in conn.execute(text(f"SELECT t::text FROM {quoted} t"))]
                else:
                    rows = [
                        " ".join(
                            v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row
                        )
                        for row in conn.execute(text(f"SELECT * FROM {quoted}"))
                    ]
                hits += [
                    f"{name}: {row[:120]}"
                    for row in rows
                    if VICTIM.lower() in row.lower() or MARKER in row.lower()
                ]
    finally:
        engine.dispose()
    return hits


def _file_traces(paths: list[Path]) -> list[str]:
    """Return the files among ``paths`` (and below them) whose bytes hold the user or the marker."""
    hits = []
    for top in paths:
        for path in [top] if top.is_file() else sorted(top.rglob("*")):
            if path.is_file():
                data = path.read_bytes().lower()
                if VICTIM.lower().encode() in data or MARKER.encode() in data:
                    hits.append(str(path))
    return hits


def _traces(url: str, kind: str) -> list[str]:
    if kind == "file":
        return _file_traces([file_path(url)])
    hits = _sql_traces(url)
    if kind == "sqlite":
        db = Path(url.removeprefix("sqlite:///"))
        hits += _file_traces([p for p in db.parent.iterdir() if p.name.startswith(db.name)])
    return hits


def test_erase_user_leaves_no_trace(store_url: str, store_kind: str, api: str) -> None:
    with opener(store_url, api)() as mgr:
        victims = _populate(mgr)
        before = _snapshot(mgr)
        assert _traces(store_url, store_kind), "the check must see the victim's data first"
        assert mgr.memory(VICTIM).search(MARKER, limit=50)

        assert mgr.erase_user(VICTIM) == 3
        # Before anything else reads (and so tidies) the store; SQLite: its WAL too.
        assert _traces(store_url, store_kind) == []

        for session_id in victims:
            with pytest.raises(sdb.SessionNotFoundError):
                mgr.get(session_id)
        for agent in ("assistant", "planner"):
            assert mgr.list(agent, user_id=VICTIM) == []
        assert mgr.memory(VICTIM).search(MARKER, limit=50) == []
        assert mgr.memory(VICTIM).list() == []
        assert _snapshot(mgr) == before
        assert len(before) == 4
        assert mgr.erase_user(VICTIM) == 0
    assert _traces(store_url, store_kind) == []
    with opener(store_url, api)() as mgr:
        assert _snapshot(mgr) == before
        assert len(mgr.memory(OTHER).search("says hi", limit=10)) == 2


@pytest.mark.parametrize("bad", ["", " ", "\t", None])
def test_erase_needs_a_user(store_url: str, api: str, bad: Any) -> None:
    with opener(store_url, api)() as mgr:
        kept = mgr.create("assistant", user_id=None)
        mine = mgr.create("assistant", user_id="u1")
        with pytest.raises(sdb.InvalidIDError):
            mgr.erase_user(bad)
        assert {m.id for m in mgr.list("assistant")} == {kept.id, mine.id}


def test_erase_is_one_statement_on_sql(sql_url: str) -> None:
    """A failure part way leaves every session: the erasure is one transaction."""
    engine = create_engine(normalize_url(sql_url))
    with sdb.connect(sql_url) as mgr:
        for agent in ("a", "b"):
            mgr.create(agent, user_id=VICTIM).append_message(msg("x"))
        sessions = engine.dialect.identifier_preparer.quote("sessions_db_sessions")
        # A trigger that refuses to delete the second session makes the erase fail there.
        (last,) = [m.id for m in mgr.list("b")]
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(
                    text(
                        "CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$ "
                        f"BEGIN IF OLD.id = '{last}' THEN RAISE EXCEPTION 'no'; END IF; "
                        "RETURN OLD; END $$"
                    )
                )
                conn.execute(
                    text(
                        f"CREATE TRIGGER refuse BEFORE DELETE ON {sessions} "
                        "FOR EACH ROW EXECUTE FUNCTION refuse_delete()"
                    )
                )
            else:
                conn.execute(
                    text(
                        f"CREATE TRIGGER refuse BEFORE DELETE ON {sessions} "
                        f"WHEN OLD.id = '{last}' BEGIN SELECT RAISE(ABORT, 'no'); END"
                    )
                )
        try:
            with pytest.raises(sdb.SessionsDBError):
                mgr.erase_user(VICTIM)
            assert len(mgr.list("a", user_id=VICTIM)) == 1
            assert len(mgr.list("b", user_id=VICTIM)) == 1
        finally:
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    conn.execute(text(f"DROP TRIGGER refuse ON {sessions}"))
                    conn.execute(text("DROP FUNCTION refuse_delete()"))
                else:
                    conn.execute(text("DROP TRIGGER refuse"))
    engine.dispose()


def test_simple_backend_with_list_agents_erases(tmp_path: Path) -> None:
    from .own_backend import JsonDirBackend

    class Listing(JsonDirBackend):
        def list_agents(self) -> list[str]:
            paths = (self.root / "sessions").glob("*.json")
            return [
                sdb.SessionMetadata.model_validate_json(p.read_bytes()).agent_name for p in paths
            ]

    with sdb.Manager(Listing(tmp_path / "store")) as mgr:
        _populate(mgr)
        before = _snapshot(mgr)
        assert mgr.erase_user(VICTIM) == 3
        assert _snapshot(mgr) == before
    # The nine methods' own files: what delete_session leaves is the backend's business,
    # but sessions, entries and checkpoints of the user are gone.
    assert _file_traces([tmp_path / "store"]) == []


def test_logging_backend_does_not_log_the_user(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    with sdb.Manager(sdb.LoggingBackend(sdb.FileBackend(tmp_path))) as mgr:
        mgr.create("assistant", user_id=VICTIM)
        with caplog.at_level(logging.DEBUG, logger="sessions_db.storage"):
            assert mgr.erase_user(VICTIM) == 1
    (record,) = [r for r in caplog.records if r.getMessage().startswith("erase_user")]
    assert VICTIM not in record.getMessage()


# -- the command line -------------------------------------------------------------------


def _cli(*args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SESSIONS_DB_URL"}
    return subprocess.run(
        [sys.executable, "-m", "sessions_db", *args],
        stdin=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _victim_count(url: str) -> int:
    with sdb.connect(url) as mgr:
        return sum(len(mgr.list(agent, user_id=VICTIM)) for agent in ("assistant", "planner"))


def test_cli_erase_user(store_url: str, store_kind: str) -> None:
    with sdb.connect(store_url) as mgr:
        _populate(mgr)
        before = _snapshot(mgr)
    refused = _cli("erase-user", VICTIM, "--url", store_url)
    assert refused.returncode == 2, refused.stderr
    assert "--yes" in refused.stderr
    assert "2 sessions" in refused.stderr
    assert "planner" in refused.stderr
    assert _victim_count(store_url) == 3

    for bad in ("", " "):
        result = _cli("erase-user", bad, "--url", store_url, "--yes")
        assert result.returncode == 2, result.stderr
    assert _victim_count(store_url) == 3

    done = _cli("erase-user", VICTIM, "--url", store_url, "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "user_id": VICTIM,
        "erased": 3,
        "agents": {"assistant": 2, "planner": 1},
    }
    assert _traces(store_url, store_kind) == []
    with sdb.connect(store_url) as mgr:
        assert _snapshot(mgr) == before

    again = _cli("erase-user", VICTIM, "--url", store_url, "--yes")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"erased 0 sessions of user {VICTIM}"
    assert "nothing is stored" in again.stderr


@pytest.mark.parametrize(("answer", "code", "left"), [("n", 1, 3), ("y", 0, 0)])
def test_cli_erase_user_asks_on_a_terminal(
    tmp_path: Path, answer: str, code: int, left: int
) -> None:
    url = (tmp_path / "store").as_uri()
    with sdb.connect(url) as mgr:
        _populate(mgr)
    master, slave = os.openpty()
    try:
        os.write(master, f"{answer}\n".encode())
        result = _cli("erase-user", VICTIM, "--url", url, stdin=slave)
    finally:
        os.close(slave)
        os.close(master)
    assert result.returncode == code, result.stderr
    assert "Erase?" in result.stderr
    assert _victim_count(url) == left


def test_a_store_that_keeps_nothing_erases_nothing() -> None:
    with sdb.Manager(sdb.NullBackend()) as mgr:
        mgr.create("assistant", user_id=VICTIM)
        assert mgr.erase_user(VICTIM) == 0
        with pytest.raises(sdb.InvalidIDError):
            mgr.erase_user("")


def test_erase_removes_the_users_adk_state_on_sql(sql_url: str) -> None:
    """The ADK user-state rows of the user go with their sessions, on every app; others stay."""
    engine = create_engine(normalize_url(sql_url))
    insert = text(
        "INSERT INTO sessions_db_adk_user_state (agent_name, user_id, state, updated_at) "
        "VALUES (:agent, :user, :state, CURRENT_TIMESTAMP)"
    )
    try:
        with sdb.connect(sql_url) as mgr:
            mgr.create("assistant", user_id=VICTIM).append_message(msg("x"))
            with engine.begin() as conn:
                for agent, user in [("a", VICTIM), ("b", VICTIM), ("a", OTHER), ("a", "")]:
                    conn.execute(insert, {"agent": agent, "user": user, "state": '{"k": 1}'})
            assert mgr.erase_user(VICTIM) == 1
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT agent_name, user_id FROM sessions_db_adk_user_state ORDER BY 1, 2")
            ).all()
        assert [tuple(r) for r in rows] == [("a", ""), ("a", OTHER)]
    finally:
        engine.dispose()


def test_erase_removes_the_users_adapter_files_on_the_file_store(tmp_path: Path) -> None:
    """Files adapters keep for a user (``<agent>/users/<user hash>.<name>``) go with the user."""
    from sessions_db.file import paths

    url = (tmp_path / "store").as_uri()
    with sdb.connect(url) as mgr:
        mgr.create("assistant", user_id=VICTIM).append_message(msg("x"))
        mgr.create("planner", user_id=OTHER).append_message(msg("y"))
        files = {}
        for agent, user in [("assistant", VICTIM), ("planner", VICTIM), ("planner", OTHER)]:
            users = tmp_path / "store" / agent / paths.USERS
            users.mkdir(exist_ok=True)
            for name in ("adk.json", "other.json"):
                path = users / paths.user_file(user, name)
                path.write_text(json.dumps({"note": f"{user} {MARKER}"}))
                files[path] = user
        assert VICTIM not in " ".join(p.name for p in files)
        assert mgr.erase_user(VICTIM) == 1
    assert sorted(p for p in files if p.exists()) == sorted(
        p for p, user in files.items() if user == OTHER
    )
    assert paths.user_file("", "adk.json") != paths.user_file(" ", "adk.json")
    with pytest.raises(sdb.InvalidIDError):
        paths.user_file(VICTIM, "../escape")
