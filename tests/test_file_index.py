"""The file store's ``<agent>/sessions.json``, read as a tool that knows only the layout would.

It lists every session after each create and delete (whoever writes them,
threads or processes), and is current after ``close()``.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest

import sessions_db as sdb
from sessions_db import ids
from sessions_db.file import jsonl
from sessions_db.testing.contract import msg

AGENTS = ["assistant", "planner", "critic"]


def index_of(base: Path, agent: str) -> list[dict[str, Any]]:
    """Return the records of the agent's index; every one must parse as JSON."""
    doc = json.loads((base / agent / "sessions.json").read_bytes())
    assert doc["version"] == 1
    assert doc["agent_name"] == agent
    records: list[dict[str, Any]] = doc["sessions"]
    return records


def listed_ids(base: Path, agent: str) -> list[str]:
    return [r["id"] for r in index_of(base, agent)]


def test_index_lists_every_session_after_create(tmp_path: Path) -> None:
    base = tmp_path / "store"
    mgr = sdb.Manager(sdb.FileBackend(base))
    made: dict[str, list[sdb.Session]] = {a: [] for a in AGENTS}
    for i in range(5):
        for agent in AGENTS:
            session = mgr.create(agent, user_id=f"u{i}", metadata={"i": i, "agent": agent})
            made[agent].append(session)
            # after every single create, nothing having listed anything
            assert listed_ids(base, agent) == [s.id for s in made[agent]]
    for agent in AGENTS:
        by_id = {r["id"]: r for r in index_of(base, agent)}
        for session in made[agent]:
            record = by_id[session.id]
            assert record["user_id"] == session.user_id
            assert record["metadata"] == session.metadata
            assert record["message_count"] == 0
            assert record["current_leaf"] is None
            assert jsonl.parse_ts(record["created_at"]) == session.info().created_at
    mgr.close()


def test_index_lists_every_session_after_delete(tmp_path: Path) -> None:
    base = tmp_path / "store"
    with sdb.Manager(sdb.FileBackend(base)) as mgr:
        sessions = [mgr.create("assistant") for _ in range(4)]
        sessions[1].append_message(msg("x"))
        sessions[1].checkpoint()
        mgr.delete(sessions[1].id)
        assert sorted(listed_ids(base, "assistant")) == sorted(
            s.id for s in (sessions[0], sessions[2], sessions[3])
        )
        for session in (sessions[0], sessions[2], sessions[3]):
            mgr.delete(session.id)
        assert listed_ids(base, "assistant") == []
        mgr.create("planner")
        assert listed_ids(base, "assistant") == []


def test_index_is_current_after_close(tmp_path: Path) -> None:
    base = tmp_path / "store"
    backend = sdb.FileBackend(base)
    mgr = sdb.Manager(backend)
    sessions = {agent: [mgr.create(agent, user_id="u") for _ in range(3)] for agent in AGENTS}
    for agent in AGENTS:
        for n, session in enumerate(sessions[agent]):
            session.append_messages([msg(f"{agent}-{k}") for k in range(n + 1)])
        sessions[agent][0].checkpoint()
        meta = backend.load_session(sessions[agent][2].id)
        backend.save_session(meta.model_copy(update={"metadata": {"changed": True}}))
    mgr.close()
    indexes = {agent: index_of(base, agent) for agent in AGENTS}  # before anything lists
    with sdb.Manager(sdb.FileBackend(base)) as again:
        for agent in AGENTS:
            expected = {
                s.id: (s.user_id, s.metadata, s.message_count, s.updated_at, s.current_leaf)
                for s in again.list(agent)
            }
            records = indexes[agent]
            assert len(records) == len(expected) == 3
            assert {
                r["id"]: (
                    r["user_id"],
                    r["metadata"],
                    r["message_count"],
                    jsonl.parse_ts(r["updated_at"]),
                    r["current_leaf"],
                )
                for r in records
            } == expected
            counts = sorted(r["message_count"] for r in records)
            assert counts == [1, 2, 3]
            assert any(r["metadata"] == {"changed": True} for r in records)


def test_index_written_by_an_older_store_is_completed_on_create(tmp_path: Path) -> None:
    # Sessions written without any index (as a store that indexed only on
    # listing left them): the next create lists them all, not just itself.
    agent_dir = tmp_path / "store" / "assistant"
    agent_dir.mkdir(parents=True, mode=0o700)
    old = []
    for i in range(5):
        sid = ids.new_id()
        stamp = jsonl.parse_ts(f"2026-01-01T00:00:0{i}.000000Z")
        line = jsonl.session_line(sid, stamp, "assistant", "u", {}, jsonl.Commit(stamp, 0))
        (agent_dir / f"{sid}.jsonl").write_bytes(line)
        old.append(sid)
    with sdb.Manager(sdb.FileBackend(tmp_path / "store")) as mgr:
        new = mgr.create("assistant")
        assert sorted(listed_ids(tmp_path / "store", "assistant")) == sorted([*old, new.id])


def test_index_keeps_one_record_per_line(tmp_path: Path) -> None:
    base = tmp_path / "store"
    with sdb.Manager(sdb.FileBackend(base)) as mgr:
        made = [mgr.create("assistant", metadata={"text": "line\nbreak ]}"}) for _ in range(3)]
        raw = (base / "assistant" / "sessions.json").read_text()
    lines = raw.splitlines()
    assert lines[0].endswith('"sessions":[')
    assert lines[-1] == "]}"
    assert sorted(json.loads(line.rstrip(","))["id"] for line in lines[1:-1]) == sorted(
        s.id for s in made
    )


def _create_in_thread(
    backend: sdb.FileBackend, worker: int, count: int, out: list[str], errors: list[BaseException]
) -> None:
    try:
        mgr = sdb.Manager(backend)
        for i in range(count):
            out.append(mgr.create(AGENTS[i % 2], user_id=f"w{worker}").id)
            if i % 4 == 0:
                mgr.list(AGENTS[i % 2], limit=3)  # listings rewrite the index meanwhile
            if i % 7 == 3:
                doomed = mgr.create(AGENTS[i % 2])
                mgr.delete(doomed.id)
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def test_concurrent_creates_from_threads_are_each_listed_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = tmp_path / "store"
    backend = sdb.FileBackend(base)
    outs: list[list[str]] = [[] for _ in range(6)]
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_create_in_thread, args=(backend, w, 20, outs[w], errors))
        for w in range(6)
    ]
    with caplog.at_level(logging.WARNING, logger="sessions_db.file"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
            assert not thread.is_alive()
    assert errors == []
    made = [sid for out in outs for sid in out]
    for agent in AGENTS[:2]:
        listed = listed_ids(base, agent)
        assert len(listed) == len(set(listed))
        expected = {sid for sid in made if (base / agent / f"{sid}.jsonl").exists()}
        assert set(listed) == expected
    assert sum(len(listed_ids(base, a)) for a in AGENTS[:2]) == len(made) == 120
    # no reader ever saw a record half added
    assert "damaged" not in caplog.text
    backend.close()


def _create_in_process(base: str, worker: int, count: int) -> list[str]:
    # No close: the index must list the sessions without it.
    backend = sdb.FileBackend(base)
    mgr = sdb.Manager(backend)
    made = []
    for i in range(count):
        made.append(mgr.create("assistant", user_id=f"p{worker}").id)
        if i % 5 == 0:
            mgr.list("assistant", limit=2)
    return made


def test_concurrent_creates_from_processes_are_each_listed_once(tmp_path: Path) -> None:
    base = tmp_path / "store"
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        made = pool.starmap(_create_in_process, [(str(base), w, 25) for w in range(4)])
    expected = [sid for batch in made for sid in batch]
    listed = listed_ids(base, "assistant")
    assert len(listed) == len(set(listed)) == 100
    assert sorted(listed) == sorted(expected)
