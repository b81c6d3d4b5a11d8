"""Render times of the inspector's pages on a big store.

``python -m benchmarks.inspector [--backends sqlite] [--messages 10000] [--sessions 100000]``

Seeds one store per backend (with the suite's bulk seeding: a session of
``--messages`` messages, with checkpoints and restores added through the API,
and an agent of ``--sessions`` sessions over 1,000 users), then requests each
page through Starlette's test client (in process: routing, reads, rendering;
no network) and prints the median and p95 of ``--runs`` requests after one
warm-up request.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import sessions_db as sdb
from sessions_db.inspector import app
from sessions_db.inspector.paging import Cursor

from .stores import open_store, workdir

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient


def timed(get: Callable[[], object], runs: int) -> tuple[float, float]:
    get()  # warm-up
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        get()
        samples.append((time.perf_counter() - start) * 1000)
    ordered = sorted(samples)
    return statistics.median(samples), ordered[max(0, round(0.95 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inspector", description=__doc__)
    parser.add_argument(
        "--backends", default="sqlite", help="comma-separated: sqlite,postgres,file"
    )
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    for kind in args.backends.split(","):
        with workdir() as where, open_store(kind, where) as store:
            manager = store.connect()
            started = time.perf_counter()
            long_id = store.seed_history(manager, args.messages, agent="long")
            session = manager.get(long_id)
            for n in range(5):  # a few branches: checkpoint, answer, restore
                checkpoint = session.checkpoint(metadata={"label": f"checkpoint {n}"})
                session.append_message(sdb.Message.new("assistant", {"content": f"branch {n}"}))
                session.restore(checkpoint.id)
            session.append_message(sdb.Message.new("assistant", {"content": "the end"}))
            store.seed_sessions(manager, "big", args.sessions, users=1000)
            print(f"{kind}: seeded in {time.perf_counter() - started:.1f} s")
            listed = manager.list("big", limit=1, offset=args.sessions // 2 - 1)
            middle = Cursor.after(listed[0]).encode()
            messages = session.get_messages()
            before = messages[len(messages) // 2].id
            pages = {
                f"session page, {args.messages:,} messages": f"/sessions/{long_id}",
                "older messages (50, from the middle)": (
                    f"/sessions/{long_id}/messages?before={before}"
                ),
                "verify checkpoints": f"/sessions/{long_id}/verify",
                "export (JSON Lines)": f"/sessions/{long_id}/export.jsonl",
                f"agent list, {args.sessions:,} sessions, first page": "/sessions?agent=big",
                "agent list, page in the middle, with offset hint": (
                    f"/sessions?agent=big&after={middle}&at={args.sessions // 2}"
                ),
                "agent list, page in the middle, no hint": (f"/sessions?agent=big&after={middle}"),
                "a user's sessions (across agents)": "/sessions?user=u7",
                "agents with session counts": "/",
                "stats, 30 days": "/stats",
            }
            with TestClient(app(manager)) as client:
                print(f"{'page':<52} {'median ms':>10} {'p95 ms':>8}")
                for name, path in pages.items():

                    def get(path: str = path) -> object:
                        response = client.get(path)
                        assert response.status_code == 200, (path, response.status_code)
                        return response

                    median, p95 = timed(get, args.runs)
                    print(f"{name:<52} {median:>10.1f} {p95:>8.1f}")
            manager.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
