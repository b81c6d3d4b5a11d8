"""The benchmark suite runs small (as CI runs it): it completes and reports every scenario.

Never asserts on a time: only that the run exits 0, that its JSON holds every
scenario of every backend, and, reading the kept store back, that the
concurrency scenarios stored exactly what their workers appended.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

import sessions_db as sdb
from benchmarks.scenarios import CONCURRENCY, FILE_ONLY, PEERS, SCENARIOS
from benchmarks.stores import PAYLOAD, ROLES, has_openai_agents

from .conftest import PG_URL

ROOT = Path(__file__).resolve().parent.parent

#: The concurrency scenarios: how many sessions each creates and how many
#: workers (threads, processes or tasks) append ``per_worker`` messages to each.
SESSIONS_AND_WORKERS = {
    "threads1_one": (1, 1),
    "threads8_one": (1, 8),
    "threads8_each": (8, 1),
    "procs4_one": (1, 4),
    "procs4_each": (4, 1),
    "async_tasks8_one": (1, 8),
    "async_tasks8_each": (8, 1),
}

#: Some of the hot-path issue's targets each backend's run must evaluate.
PEER_TARGETS = {
    "append faster than SQLiteSession (ours / theirs)",
    "load 1k faster than SQLiteSession (ours / theirs)",
}
HOT_PATH_TARGETS = {
    "sqlite": {"append (10) <= 1.5x raw sqlite3", "load 1k <= 1.5x raw sqlite3"} | PEER_TARGETS,
    "postgres": {
        "append (10) <= 1.5x raw INSERT",
        "create <= 1.5x raw INSERT",
        "list 10 of a user among 100k <= 1.5x raw SELECT",
        "load 1k <= 1.3x raw SELECT",
        "8 threads, one session >= 3,000 msg/s, exact counts",
        "async append <= 1.2x sync",
        "async load 1k <= 1.2x sync",
    },
    "file": {"list among 100k <= 2x among 1k"},
}


def _drop_database(name: str) -> None:
    from pytest_postgresql.janitor import DatabaseJanitor

    url = make_url(PG_URL)
    DatabaseJanitor(
        user=url.username or "postgres",
        password=url.password,
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        dbname=name,
        connection_timeout=10,
    ).drop()


def _stored_url(result: dict[str, Any]) -> str:
    """The URL of the store the run kept, with the test server's credentials."""
    kept: str = result["store_url"]
    if not kept.startswith("postgresql"):
        return kept
    return make_url(PG_URL).set(database=make_url(kept).database).render_as_string(False)


def _check_concurrency_store(url: str, per_worker: int) -> int:
    """Read the concurrency sessions back; check each holds exactly its workers' appends."""
    want = Counter(
        workers * per_worker
        for sessions, workers in SESSIONS_AND_WORKERS.values()
        for _ in range(sessions)
    )
    user, assistant = (per_worker + 1) // 2, per_worker // 2  # message(i) alternates roles
    with sdb.connect(url) as mgr:
        listed = mgr.list("bench-conc")
        assert Counter(m.message_count for m in listed) == want
        for meta in listed:
            messages = mgr.get(meta.id).get_messages()
            assert len(messages) == meta.message_count
            assert len({m.id for m in messages}) == len(messages)
            workers = meta.message_count // per_worker
            assert Counter(m.type for m in messages) == {
                ROLES[0]: workers * user,
                ROLES[1]: workers * assistant,
            }
            assert all(m.payload == PAYLOAD for m in messages)
    return sum(count * sessions for count, sessions in want.items())


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("sqlite"),
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("file"),
    ],
)
def test_benchmarks_small(backend: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    env.setdefault("SESSIONS_DB_BENCH_PG", PG_URL)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--small",
            "--quiet",
            "--backends",
            backend,
            "--json",
            str(out),
            "--keep",
            str(tmp_path / "stores"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    result: dict[str, Any] = {}
    try:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        data = json.loads(out.read_text())
        result = data["backends"][backend]
        rows = {r["scenario"]: r for r in result["rows"]}
        expected = SCENARIOS + (FILE_ONLY if backend == "file" else [])
        if has_openai_agents():
            expected += PEERS.get(backend, [])
        assert sorted(rows) == sorted(expected)
        for r in result["rows"]:
            assert r["median"] is not None
            assert r["n"] > 0
        assert result["targets"], "the targets are evaluated"
        hot_path = {t["target"] for t in result["targets"] if t["issue"] == "hot path"}
        assert hot_path >= HOT_PATH_TARGETS[backend] - (
            set() if has_openai_agents() else PEER_TARGETS
        )
        for t in result["targets"]:
            assert isinstance(t["met"], bool), t
            assert t["value"] is not None, t

        async_rows = {r["scenario"]: r for r in result["async_rows"]}
        concurrency = {k: rows[k] for k in CONCURRENCY} | {
            k: async_rows[k] for k in SESSIONS_AND_WORKERS if k.startswith("async_")
        }
        assert sorted(concurrency) == sorted(SESSIONS_AND_WORKERS)
        per_worker = data["sizes"]["per_worker"]
        for key, (sessions, workers) in SESSIONS_AND_WORKERS.items():
            assert concurrency[key]["n"] == sessions * workers * per_worker, key
        appended = _check_concurrency_store(_stored_url(result), per_worker)
        assert appended == sum(r["n"] for r in concurrency.values())
    finally:
        kept = result.get("store_url", "")
        if kept.startswith("postgresql"):
            _drop_database(make_url(kept).database or "")
