"""The seed's five figures for the file store, measured with fsync on, next to the raw floor.

    python benchmarks/bench_file.py [--small] [--dir DIR]

Prints a table (median and p95, in ms) and writes benchmarks/results/file.json.
The floor is what the disk and OS cost at best: one O_APPEND write + fsync of a
line like a message's, and reading a 100-line file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sessions_db as sdb

SEED_TARGETS_MS = {
    "create session": 1.0,
    "append one message": 5.0,
    "get 100 messages": 10.0,
    "create checkpoint": 5.0,
    "list per 100 sessions": 20.0,
}


def measure(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return {"median_ms": statistics.median(times), "p95_ms": p95, "runs": runs}


def message() -> sdb.Message:
    return sdb.Message.new("user", {"content": "What's the weather like in Paris today?"})


def run(base: Path, runs: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with sdb.Manager(sdb.FileBackend(base / "store")) as mgr:
        results["create session"] = measure(lambda: mgr.create("bench", user_id="u"), runs)

        session = mgr.create("bench-append")
        results["append one message"] = measure(lambda: session.append_message(message()), runs)

        history = mgr.create("bench-read")
        history.append_messages([message() for _ in range(100)])
        history.get_messages()  # the seed caches after the first load
        results["get 100 messages"] = measure(history.get_messages, runs)

        def cold_read() -> None:
            with sdb.Manager(sdb.FileBackend(base / "store")) as fresh:
                fresh.get(history.id).get_messages()

        results["get 100 messages (cold, new manager)"] = measure(cold_read, max(runs // 4, 5))

        target = mgr.create("bench-checkpoint")
        target.append_messages([message() for _ in range(20)])
        results["create checkpoint"] = measure(target.checkpoint, runs)

        for _ in range(100):
            mgr.create("bench-list")
        mgr.list("bench-list")  # writes the index once
        results["list per 100 sessions"] = measure(lambda: mgr.list("bench-list"), runs)
    results.update(floor(base, runs))
    return results


def floor(base: Path, runs: int) -> dict[str, dict[str, float]]:
    line = (
        json.dumps(
            {
                "id": "8c1f8a52-2a43-4e55-9a1d-0f3f5b0d8c11",
                "parent_id": None,
                "timestamp": "2026-01-01T00:00:00.000000Z",
                "type": "message",
                "data": {"role": "user", "payload": {"content": "What's the weather?"}},
            }
        )
        + "\n"
    ).encode()
    path = base / "floor.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def append() -> None:
        os.write(fd, line)
        os.fdatasync(fd)

    try:
        out = {"floor: O_APPEND write + fdatasync": measure(append, runs)}
    finally:
        os.close(fd)
    hundred = base / "hundred.jsonl"
    hundred.write_bytes(line * 100)

    def read() -> None:
        with hundred.open("rb") as f:
            [json.loads(x) for x in f.read().splitlines()]

    out["floor: read + parse a 100-line file"] = measure(read, runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer runs (a quick check)")
    parser.add_argument("--dir", default=None, help="where to create the store (a real disk)")
    parser.add_argument(
        "--out", default=str(Path(__file__).resolve().parent / "results" / "file.json")
    )
    args = parser.parse_args()
    runs = 30 if args.small else 200
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        results = run(Path(tmp), runs)
    print(f"{'operation':42} {'median ms':>10} {'p95 ms':>10} {'seed target':>12}")
    for name, r in results.items():
        target = SEED_TARGETS_MS.get(name)
        shown = f"< {target:g}" if target is not None else ""
        print(f"{name:42} {r['median_ms']:10.3f} {r['p95_ms']:10.3f} {shown:>12}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "backend": "file",
                "fsync": True,
                "runs": runs,
                "python": platform.python_version(),
                "platform": platform.platform(),
                "results": results,
                "seed_targets_ms": SEED_TARGETS_MS,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
