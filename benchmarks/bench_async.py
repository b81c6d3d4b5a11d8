"""Latency of the sync and the asyncio API, side by side, on PostgreSQL and SQLite.

    python benchmarks/bench_async.py [--small]

Measures append (one message) and load (get_messages of a 100- and a 1,000-message
session), one call at a time, and reports the median and p95 in milliseconds.
PostgreSQL comes from SESSIONS_DB_BENCH_PG or SESSIONS_DB_TEST_PG (a role that may
create databases); a throwaway database is created and dropped. Writes
benchmarks/results/async.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text

import sessions_db as sdb
from sessions_db import aio, migrations
from sessions_db.sql.engine import normalize_url

RESULTS = Path(__file__).parent / "results" / "async.json"
DEFAULT_PG = "postgresql://sessions_db:sessions_db@127.0.0.1:5432/postgres"


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(p95 * 1000, 3),
        "n": len(ordered),
    }


def messages(n: int, prefix: str) -> list[sdb.Message]:
    return [sdb.Message.new("user", {"content": f"{prefix} {i} " + "x" * 80}) for i in range(n)]


def analyze(url: str) -> None:
    """Refresh the planner's statistics, as autovacuum would on a live database."""
    engine = create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()


def bench_sync(url: str, appends: int, reps: dict[int, int]) -> dict[str, Any]:
    with sdb.connect(url) as mgr:
        session = mgr.create("bench")
        for m in messages(20, "warm"):
            session.append_message(m)
        samples = []
        for m in messages(appends, "a"):
            start = time.perf_counter()
            session.append_message(m)
            samples.append(time.perf_counter() - start)
        out = {"append": summary(samples)}
        for size, count in reps.items():
            loaded = mgr.create("bench")
            loaded.append_messages(messages(size, "l"))
            analyze(url)
            loaded.get_messages()
            samples = []
            for _ in range(count):
                start = time.perf_counter()
                assert len(loaded.get_messages()) == size
                samples.append(time.perf_counter() - start)
            out[f"load_{size}"] = summary(samples)
        return out


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await call()
    return time.perf_counter() - start


async def bench_async(url: str, appends: int, reps: dict[int, int]) -> dict[str, Any]:
    async with await aio.connect(url) as mgr:
        session = await mgr.create("bench")
        for m in messages(20, "warm"):
            await session.append_message(m)
        samples = [
            await timed(lambda m=m: session.append_message(m)) for m in messages(appends, "a")
        ]
        out = {"append": summary(samples)}
        for size, count in reps.items():
            loaded = await mgr.create("bench")
            await loaded.append_messages(messages(size, "l"))
            await asyncio.to_thread(analyze, url)
            await loaded.get_messages()
            samples = [await timed(loaded.get_messages) for _ in range(count)]
            out[f"load_{size}"] = summary(samples)
        return out


@contextmanager
def postgres_database() -> Iterator[str]:
    base = os.environ.get("SESSIONS_DB_BENCH_PG") or os.environ.get(
        "SESSIONS_DB_TEST_PG", DEFAULT_PG
    )
    name = f"sessions_db_bench_{secrets.token_hex(4)}"
    admin = create_engine(normalize_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        migrations.upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer samples (a quick check)")
    args = parser.parse_args()
    appends = 100 if args.small else 500
    reps = {100: 20, 1000: 5} if args.small else {100: 100, 1000: 30}
    results: dict[str, Any] = {"small": args.small, "stores": {}}
    with tempfile.TemporaryDirectory() as tmp, postgres_database() as pg_url:
        stores = {"postgresql": pg_url, "sqlite": f"sqlite:///{Path(tmp) / 'bench.db'}"}
        for store, url in stores.items():
            results["stores"][store] = {
                "sync": bench_sync(url, appends, reps),
                "async": asyncio.run(bench_async(url, appends, reps)),
            }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'store':<11} {'api':<6} {'operation':<10} {'median ms':>10} {'p95 ms':>9}")
    for store, apis in results["stores"].items():
        for api, ops in apis.items():
            for op, s in ops.items():
                print(f"{store:<11} {api:<6} {op:<10} {s['median_ms']:>10.3f} {s['p95_ms']:>9.3f}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
