"""The file store's own guarantees: layout, permissions, processes, crashes, symlinks, size."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

import sessions_db as sdb
from sessions_db import ids
from sessions_db.cli import main as cli
from sessions_db.file import jsonl
from sessions_db.testing.contract import assert_one_chain, contents, msg

AGENT = "assistant"


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def mgr(base: Path) -> Iterator[sdb.Manager]:
    with sdb.Manager(sdb.FileBackend(base)) as manager:
        yield manager


def backend_of(manager: sdb.Manager) -> sdb.FileBackend:
    backend = manager.backend
    assert isinstance(backend, sdb.FileBackend)
    return backend


def lines_of(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- layout and permissions -------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_layout_and_permissions(base: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        with sdb.Manager(sdb.FileBackend(base)) as mgr:
            session = mgr.create(AGENT, user_id="u1", metadata={"k": "v"})
            session.append_messages([msg("hello"), msg("hi", "assistant")])
            checkpoint = session.checkpoint()
            assert len(mgr.list(AGENT)) == 1  # writes the index
    finally:
        os.umask(old)
    agent_dir = base / AGENT
    jsonl_path = agent_dir / f"{session.id}.jsonl"
    index_path = agent_dir / "sessions.json"
    checkpoint_path = agent_dir / "checkpoints" / f"{checkpoint.id}.json"
    journals = sorted((agent_dir / "lists").iterdir())
    for directory in (base, agent_dir, agent_dir / "checkpoints", agent_dir / "lists"):
        assert mode(directory) == 0o700, directory
    for file in (jsonl_path, index_path, checkpoint_path, *journals):
        assert mode(file) == 0o600, file
    assert sorted(p.name for p in agent_dir.iterdir()) == sorted(
        ["checkpoints", "lists", "sessions.json", f"{session.id}.jsonl"]
    )
    user_journal = hashlib.sha256(b"u1").hexdigest() + ".log"
    assert [p.name for p in journals] == sorted(["all.log", user_journal, "ready"])
    lines = lines_of(jsonl_path)
    assert all({"id", "parent_id", "timestamp", "type", "data"} <= set(line) for line in lines)
    assert [line["type"] for line in lines] == ["session", "message", "message", "checkpoint"]
    assert lines[0]["data"] == {"agent_name": AGENT, "user_id": "u1", "metadata": {"k": "v"}}
    assert lines[1]["data"] == {"role": "user", "payload": {"content": "hello"}}
    assert lines[2]["parent_id"] == lines[1]["id"]
    index = json.loads(index_path.read_bytes())
    assert [r["id"] for r in index["sessions"]] == [session.id]
    assert index["sessions"][0]["message_count"] == 2
    saved = json.loads(checkpoint_path.read_bytes())
    assert saved["session_id"] == session.id
    assert saved["checksum"] == checkpoint.checksum


def test_delete_leaves_nothing_behind(mgr: sdb.Manager, base: Path) -> None:
    keep = mgr.create(AGENT)
    session = mgr.create(AGENT)
    session.append_message(msg("x"))
    session.checkpoint()
    session.checkpoint()
    mgr.list(AGENT)
    mgr.delete(session.id)
    agent_dir = base / AGENT
    assert sorted(p.name for p in agent_dir.iterdir()) == sorted(
        ["checkpoints", "lists", "sessions.json", f"{keep.id}.jsonl"]
    )
    assert list((agent_dir / "checkpoints").iterdir()) == []
    index = json.loads((agent_dir / "sessions.json").read_bytes())
    assert [r["id"] for r in index["sessions"]] == [keep.id]
    for journal in (agent_dir / "lists").glob("*.log"):
        assert session.id.encode() not in journal.read_bytes(), journal
        assert keep.id.encode() in journal.read_bytes(), journal


def test_connect_urls_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with sdb.connect((tmp_path / "a").as_uri()) as mgr:
        assert backend_of(mgr).base == (tmp_path / "a").resolve()
    monkeypatch.delenv("SESSIONS_DB_URL", raising=False)
    monkeypatch.setenv("AIXGO_SESSION_DIR", str(tmp_path / "seed"))
    with sdb.connect() as mgr:
        assert backend_of(mgr).base == (tmp_path / "seed").resolve()
    monkeypatch.delenv("AIXGO_SESSION_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with sdb.connect() as mgr:
        assert backend_of(mgr).base == (tmp_path / "home/.sessions_db/sessions").resolve()
    monkeypatch.setenv("SESSIONS_DB_URL", (tmp_path / "b").as_uri())
    with sdb.connect() as mgr:
        assert backend_of(mgr).base == (tmp_path / "b").resolve()
    with pytest.raises(sdb.ConfigurationError):
        sdb.connect("file://otherhost/x")


# -- processes ---------------------------------------------------------------------------


def _create_sessions(base: str, worker: int, count: int) -> list[str]:
    with sdb.Manager(sdb.FileBackend(base)) as mgr:
        made = []
        for i in range(count):
            session = mgr.create(AGENT, user_id=f"w{worker}")
            session.append_message(msg(f"{worker}-{i}"))
            made.append(session.id)
            mgr.list(AGENT, limit=5)  # listings rewrite the index meanwhile
        return made


def test_processes_create_sessions_of_one_agent(base: Path) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        made = pool.starmap(_create_sessions, [(str(base), w, 15) for w in range(4)])
    ids = {sid for batch in made for sid in batch}
    assert len(ids) == 60
    with sdb.Manager(sdb.FileBackend(base)) as mgr:
        listed = mgr.list(AGENT)
        assert {s.id for s in listed} == ids
        assert all(s.message_count == 1 for s in listed)
    index = json.loads((base / AGENT / "sessions.json").read_bytes())
    assert {r["id"] for r in index["sessions"]} == ids
    # a fresh process reads the index it left and agrees
    with sdb.Manager(sdb.FileBackend(base)) as mgr:
        assert [s.id for s in mgr.list(AGENT)] == [s.id for s in listed]


_WRITER = textwrap.dedent(
    """
    import sys
    import sessions_db as sdb

    base, session_id = sys.argv[1], sys.argv[2]
    mgr = sdb.Manager(sdb.FileBackend(base))
    session = mgr.get(session_id)
    i = 0
    while True:
        batch = [sdb.Message.new("user", {"content": f"m{i}-{k}", "pad": "x" * (i % 7) * 300})
                 for k in range(3)]
        session.append_messages(batch)
        print(" ".join(m.id for m in batch), flush=True)
        i += 1
    """
)


@pytest.mark.parametrize("run", range(3))
def test_sigkill_mid_stream_loses_no_acknowledged_message(base: Path, run: int) -> None:
    with sdb.Manager(sdb.FileBackend(base)) as mgr:
        session = mgr.create(AGENT)
        session.append_message(msg("before"))
        session_id = session.id
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(base), session_id],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acknowledged: list[list[str]] = []
    stop_after = random.Random(run).randint(5, 120)
    for line in child.stdout:
        acknowledged.append(line.split())
        if len(acknowledged) >= stop_after:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    with sdb.Manager(sdb.FileBackend(base)) as mgr:
        session = mgr.get(session_id)
        stored = [m.id for m in session.get_messages()]
        assert len(stored) == len(set(stored))
        for batch in acknowledged:
            assert all(stored.count(i) == 1 for i in batch)
        # every batch is whole: stored messages beyond the acknowledged come in threes
        assert (len(stored) - 1) % 3 == 0
        assert stored[: 1 + 3 * len(acknowledged)][1:] == [i for b in acknowledged for i in b]
        # and the store works on
        session.append_message(msg("after"))
        checkpoint = session.checkpoint()
        session.append_message(msg("later"))
        session.restore(checkpoint.id)
        assert contents(session)[-1] == "after"
        assert_one_chain(session)
    path = base / AGENT / f"{session_id}.jsonl"
    lines_of(path)  # every line is whole JSON: nothing glued onto a torn line


def _append_three(base: str, session_id: str) -> None:
    with sdb.Manager(sdb.FileBackend(base)) as mgr:
        mgr.get(session_id).append_messages([msg("p1"), msg("p2"), msg("p3")])


def test_cache_sees_other_processes_appends(mgr: sdb.Manager, base: Path) -> None:
    session = mgr.create(AGENT)
    session.append_message(msg("mine"))
    assert contents(session) == ["mine"]
    assert session.id in backend_of(mgr)._logs  # cached after the first load
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_append_three, args=(str(base), session.id))
    process.start()
    process.join()
    assert process.exitcode == 0
    assert contents(session) == ["mine", "p1", "p2", "p3"]
    assert session.info().message_count == 4
    session.append_message(msg("mine again"))
    assert contents(session)[-2:] == ["p3", "mine again"]
    assert_one_chain(session)


def test_release_frees_the_cache(mgr: sdb.Manager) -> None:
    session = mgr.create(AGENT)
    session.append_messages([msg("a"), msg("b")])
    session.get_messages()
    backend = backend_of(mgr)
    assert session.id in backend._logs
    session.close()
    assert session.id not in backend._logs
    assert contents(mgr.get(session.id)) == ["a", "b"]


# -- torn writes and damaged files ---------------------------------------------------------


def test_torn_last_line_is_ignored_and_cut_off(mgr: sdb.Manager, base: Path) -> None:
    session = mgr.create(AGENT)
    session.append_messages([msg("one"), msg("two")])
    path = base / AGENT / f"{session.id}.jsonl"
    with path.open("ab") as f:
        f.write(b'{"id":"torn","parent_id":null,"timestamp":"2024-01-01T00:00:00.0')
    with sdb.Manager(sdb.FileBackend(base)) as other:
        assert contents(other.get(session.id)) == ["one", "two"]
        assert other.get(session.id).info().message_count == 2
    session.append_message(msg("three"))
    assert contents(session) == ["one", "two", "three"]
    assert [line["type"] for line in lines_of(path)] == ["session", *["message"] * 3]


def test_unfinished_batch_is_ignored(mgr: sdb.Manager, base: Path) -> None:
    session = mgr.create(AGENT)
    session.append_message(msg("one"))
    path = base / AGENT / f"{session.id}.jsonl"
    leaf = session.info().current_leaf
    # whole lines of a batch whose last (commit) line never made it
    half = jsonl.entry_lines(
        [sdb.SessionEntry.for_message(msg("lost"))],
        leaf,
        jsonl.Commit(datetime.now(UTC), 2),
    )[0]
    uncommitted = half.replace(b',"updated_at"', b',"x_updated_at"')
    with path.open("ab") as f:
        f.write(uncommitted)
    with sdb.Manager(sdb.FileBackend(base)) as other:
        assert contents(other.get(session.id)) == ["one"]
        report = backend_of(other).repair()
        assert report.torn_tails == [f"{AGENT}/{session.id}.jsonl"]
    assert contents(session) == ["one"]
    session.append_message(msg("two"))
    assert contents(session) == ["one", "two"]


def test_damaged_line_before_committed_data_is_reported(mgr: sdb.Manager, base: Path) -> None:
    session = mgr.create(AGENT)
    session.append_messages([msg("one"), msg("two")])
    path = base / AGENT / f"{session.id}.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = b"garbage\n"
    path.write_bytes(b"".join(lines))
    with sdb.Manager(sdb.FileBackend(base)) as other:
        with pytest.raises(sdb.SessionsDBError, match="damaged"):
            other.get(session.id).get_messages()
        report = backend_of(other).repair()
        assert len(report.damaged_sessions) == 1
    result = CliRunner().invoke(cli, ["repair", "--dir", str(base)])
    assert result.exit_code == 6
    assert "DAMAGED" in result.output


def test_crash_during_index_rewrite(
    mgr: sdb.Manager, base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    made = {mgr.create(AGENT).id for _ in range(3)}
    mgr.list(AGENT)
    index_path = base / AGENT / "sessions.json"
    before = index_path.read_bytes()
    # a rewrite that died before its rename: a partial temporary file
    stray = base / AGENT / ".sessions.json.0123456789ab.tmp"
    stray.write_bytes(before[: len(before) // 2])
    with sdb.Manager(sdb.FileBackend(base)) as other:
        assert {s.id for s in other.list(AGENT)} == made
        assert index_path.read_bytes() == before  # the old version, whole
        report = backend_of(other).repair()
    assert report.temp_files_removed == [f"{AGENT}/{stray.name}"]
    assert not stray.exists()
    # a torn index (as a non-atomic writer would leave) is detected and rebuilt, never dropped
    index_path.write_bytes(before[: len(before) // 2])
    with (
        caplog.at_level(logging.WARNING, logger="sessions_db.file"),
        sdb.Manager(sdb.FileBackend(base)) as other,
    ):
        assert {s.id for s in other.list(AGENT)} == made
    assert "damaged" in caplog.text
    assert {r["id"] for r in json.loads(index_path.read_bytes())["sessions"]} == made


@pytest.mark.parametrize("damage", ["delete", "corrupt", "stale"])
def test_repair_rebuilds_the_index(mgr: sdb.Manager, base: Path, damage: str) -> None:
    sessions = [mgr.create(AGENT, user_id=f"u{i}", metadata={"i": i}) for i in range(4)]
    for i, session in enumerate(sessions):
        session.append_messages([msg(str(k)) for k in range(i)])
    expected = [(s.id, s.user_id, s.metadata, s.message_count) for s in mgr.list(AGENT)]
    index_path = base / AGENT / "sessions.json"
    if damage == "delete":
        index_path.unlink()
    elif damage == "corrupt":
        index_path.write_text("{not json")
    else:
        sessions[0].append_message(msg("newest"))
        expected = [(s.id, s.user_id, s.metadata, s.message_count) for s in mgr.list(AGENT)]
        index_path.write_text(json.dumps({"version": 1, "agent_name": AGENT, "sessions": []}))
    result = CliRunner().invoke(cli, ["repair", "--dir", str(base)])
    assert result.exit_code == 0, result.output
    assert f"index rebuilt: {AGENT}" in result.output
    if damage == "corrupt":
        assert f"index was damaged: {AGENT}" in result.output
    rebuilt = json.loads(index_path.read_bytes())
    assert [
        (r["id"], r["user_id"], r["metadata"], r["message_count"]) for r in rebuilt["sessions"]
    ] == expected
    with sdb.Manager(sdb.FileBackend(base)) as other:
        listed = other.list(AGENT)
        assert [(s.id, s.user_id, s.metadata, s.message_count) for s in listed] == expected
        assert backend_of(other).repair().clean


def test_orphan_checkpoints_after_interrupted_delete(mgr: sdb.Manager, base: Path) -> None:
    session = mgr.create(AGENT)
    checkpoint = session.checkpoint()
    # a delete that crashed after removing the session file
    (base / AGENT / f"{session.id}.jsonl").unlink()
    with pytest.raises(sdb.CheckpointNotFoundError):
        mgr.backend.load_checkpoint(checkpoint.id)
    report = backend_of(mgr).repair()
    assert report.orphan_checkpoints_removed == [f"{AGENT}/checkpoints/{checkpoint.id}.json"]


# -- symlinks ------------------------------------------------------------------------


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_symlinked_agent_dir_is_refused(mgr: sdb.Manager, base: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (base / "evil").symlink_to(outside)
    with pytest.raises(sdb.InvalidIDError):
        mgr.create("evil")
    with pytest.raises(sdb.InvalidIDError):
        mgr.get_or_create("evil", "u")
    with pytest.raises(sdb.InvalidIDError):
        mgr.list("evil")
    assert list(outside.iterdir()) == []
    assert mgr.list_agents() == []


def test_symlinked_session_file_is_refused(mgr: sdb.Manager, base: Path, tmp_path: Path) -> None:
    session = mgr.create(AGENT)
    session.append_message(msg("x"))
    session.close()
    outside = tmp_path / "outside.jsonl"
    path = base / AGENT / f"{session.id}.jsonl"
    outside.write_bytes(path.read_bytes())
    before = outside.read_bytes()
    path.unlink()
    path.symlink_to(outside)
    with sdb.Manager(sdb.FileBackend(base)) as other:
        with pytest.raises(sdb.InvalidIDError):
            other.get(session.id)
        with pytest.raises(sdb.InvalidIDError):
            sdb.Session(other, _meta(session)).append_message(msg("y"))
        with pytest.raises(sdb.InvalidIDError):
            other.delete(session.id)
    assert outside.read_bytes() == before


def _meta(session: sdb.Session) -> sdb.SessionMetadata:
    now = datetime.now(UTC)
    return sdb.SessionMetadata(
        id=session.id,
        agent_name=session.agent_name,
        user_id=None,
        created_at=now,
        updated_at=now,
        message_count=0,
        current_leaf=None,
        metadata={},
    )


def test_symlinked_checkpoints_dir_is_refused(mgr: sdb.Manager, base: Path, tmp_path: Path) -> None:
    session = mgr.create(AGENT)
    session.append_message(msg("x"))
    outside = tmp_path / "outside"
    outside.mkdir()
    (base / AGENT / "checkpoints").symlink_to(outside)
    leaf = session.info().current_leaf
    with pytest.raises(sdb.InvalidIDError):
        session.checkpoint()
    assert list(outside.iterdir()) == []
    assert session.info().current_leaf == leaf  # nothing was appended either
    assert backend_of(mgr).repair().refused == [f"{AGENT}/checkpoints"]


def test_symlinked_index_is_refused(mgr: sdb.Manager, base: Path, tmp_path: Path) -> None:
    mgr.create(AGENT)
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    index_path = base / AGENT / "sessions.json"
    index_path.unlink(missing_ok=True)
    index_path.symlink_to(outside)
    with pytest.raises(sdb.InvalidIDError):
        mgr.list(AGENT)
    before = sorted(p.name for p in (base / AGENT).iterdir())
    with pytest.raises(sdb.InvalidIDError):
        mgr.create(AGENT)  # refused before its file is made
    assert sorted(p.name for p in (base / AGENT).iterdir()) == before
    assert outside.read_text() == "{}"


# -- sizes ---------------------------------------------------------------------------


def test_five_megabyte_entry(mgr: sdb.Manager, base: Path) -> None:
    session = mgr.create(AGENT)
    big = msg("é" * (5 * 1024 * 1024))
    session.append_messages([msg("small"), big, msg("after")])
    with sdb.Manager(sdb.FileBackend(base)) as other:
        got = other.get(session.id).get_messages()
        assert got[1] == big
        assert [m.payload["content"] for m in got][::2] == ["small", "after"]


def test_hundred_thousand_entries_load(mgr: sdb.Manager, base: Path) -> None:
    session = mgr.create(AGENT)
    total = 100_000
    for start in range(0, total, 5000):
        session.append_messages([msg(str(i)) for i in range(start, start + 5000)])
    with sdb.Manager(sdb.FileBackend(base)) as other:
        again = other.get(session.id)
        assert again.info().message_count == total
        assert contents(again, limit=3) == ["99997", "99998", "99999"]
        everything = again.get_messages()
        assert len(everything) == total
        assert everything[0].payload["content"] == "0"
        assert contents(again, limit=2, before=everything[50_000].id) == ["49998", "49999"]


def test_listing_ten_thousand_sessions(base: Path) -> None:
    # Written directly in the store's format (creating them one by one would
    # mostly measure fsync); the store then reads them as its own.
    agent_dir = base / AGENT
    agent_dir.mkdir(parents=True, mode=0o700)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    made = []
    for i in range(10_000):
        sid = ids.new_id()
        stamp = datetime.fromtimestamp(start.timestamp() + i, UTC)
        line = jsonl.session_line(sid, stamp, AGENT, f"u{i % 10}", {"n": i}, jsonl.Commit(stamp, 0))
        (agent_dir / f"{sid}.jsonl").write_bytes(line)
        made.append(sid)
    with sdb.Manager(sdb.FileBackend(base)) as mgr:
        listed = mgr.list(AGENT)  # no index yet: reads every file, then writes the index
        assert [s.id for s in listed] == made[::-1]
        assert (agent_dir / "sessions.json").exists()
        page = mgr.list(AGENT, limit=100, offset=200)
        assert [s.id for s in page] == made[::-1][200:300]
        assert len(mgr.list(AGENT, user_id="u3")) == 1000
    with sdb.Manager(sdb.FileBackend(base)) as mgr:  # a new process reads the index
        assert [s.id for s in mgr.list(AGENT, limit=10)] == made[::-1][:10]
        assert mgr.list_agents() == [AGENT]
