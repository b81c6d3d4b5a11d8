"""``python -m benchmarks [--small] [--backends sqlite,postgres,file] [--json out.json]``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import report
from .scenarios import PEERS, SCENARIOS, Bench, Sizes, run_async
from .stores import (
    has_async,
    has_file_store,
    has_openai_agents,
    hidden_password,
    open_store,
    pg_admin_url,
    workdir,
)
from .timing import Row

DEFAULT_JSON = Path(__file__).parent / "results" / "latest.json"
ALL_BACKENDS = ("sqlite", "postgres", "file")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--small", action="store_true", help="scaled-down sizes (CI smoke run)")
    parser.add_argument(
        "--backends", default=",".join(ALL_BACKENDS), help="comma-separated: sqlite,postgres,file"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the JSON")
    parser.add_argument("--quiet", action="store_true", help="print only the tables")
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the stores (local ones under DIR, the PostgreSQL database) to inspect them; "
        "the JSON gives each one's URL (password hidden) as store_url",
    )
    args = parser.parse_args(argv)
    sizes = Sizes.small() if args.small else Sizes()
    kinds = [k.strip() for k in args.backends.split(",") if k.strip()]
    unknown = set(kinds) - set(ALL_BACKENDS)
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")

    def log(text: str) -> None:
        if not args.quiet:
            print(text, flush=True)

    notes: list[str] = []
    with_async = has_async()
    if not with_async:
        notes.append("sessions_db.aio is not available: the asyncio scenarios are skipped")
    if "file" in kinds and not has_file_store():
        notes.append("sessions_db has no file store yet: the file backend is skipped")
        kinds.remove("file")
    with_peers = has_openai_agents()
    if not with_peers:
        notes.append("the OpenAI Agents SDK is not installed: its sessions (the peers) are skipped")
    for note in notes:
        print(f"note: {note}", flush=True)

    out: dict[str, Any] = {
        "command": "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
        "small": args.small,
        "sizes": sizes.__dict__,
        "machine": report.machine(),
        "notes": notes,
        "backends": {},
    }
    failed = False
    for kind in kinds:
        log(f"== {kind}")
        started = time.perf_counter()
        try:
            result = run_backend(kind, sizes, with_async, log, args.keep, with_peers)
        except Exception as exc:  # report the others, fail at the end
            import traceback

            traceback.print_exc()
            print(f"error: the {kind} run failed: {exc!r}", file=sys.stderr)
            failed = True
            continue
        result["seconds"] = round(time.perf_counter() - started, 1)
        out["backends"][kind] = result
        if kind == "postgres":
            out["machine"]["postgres"] = result.pop("server_version", None)
            out["machine"]["postgres_url_host"] = pg_admin_url().rsplit("@", 1)[-1]
    print_tables(out)
    report.write_json(args.json, out)
    print(f"\nwrote {args.json}")
    return 1 if failed else 0


def print_tables(out: dict[str, Any]) -> None:
    """Print each backend's tables and targets; turn the rows into JSON-ready dicts."""
    for kind, result in out["backends"].items():
        print()
        print(report.table(f"{kind} ({result['seconds']} s)", result["rows_obj"]))
        if result.get("async_rows_obj"):
            print()
            print(report.table(f"{kind}, asyncio API", result["async_rows_obj"]))
        print()
        print("targets:")
        print(report.targets_text(result["targets"]))
        if kind == "postgres":
            print(threads_goal_text(result["rows_obj"]))
    for result in out["backends"].values():
        result["rows"] = [r.as_json() for r in result.pop("rows_obj")]
        result["async_rows"] = [r.as_json() for r in result.pop("async_rows_obj")]


def threads_goal_text(rows: list[Row]) -> str:
    """The PostgreSQL figure of 8 threads appending to one session against its goal."""
    r = next((r for r in rows if r.scenario == "threads8_one"), None)
    if r is None:
        return "8 threads, one session: not measured"
    met = r.median >= report.PG_THREADS8_ONE_GOAL and bool(r.extra.get("exact"))
    return (
        f"8 threads, one session: {r.median:,.0f} msg/s against the goal of >= "
        f"{report.PG_THREADS8_ONE_GOAL:,.0f} msg/s, counts exact: {bool(r.extra.get('exact'))} "
        f"({'met' if met else 'MISSED'}; {r.n} appends)"
    )


def run_backend(
    kind: str,
    sizes: Sizes,
    with_async: bool,
    log: Callable[[str], None],
    keep: Path | None = None,
    with_peers: bool = True,
) -> Any:
    with (
        workdir(None if keep is None else keep / kind) as tmp,
        open_store(kind, tmp, keep=keep is not None) as store,
    ):
        bench = Bench(store, sizes, log)
        try:
            bench.run_create()
            bench.run_append()
            bench.run_load()
            bench.run_checkpoint_restore()
            bench.run_list()
            bench.run_concurrency()
            bench.run_memory()
            if with_peers:
                bench.run_peers()
            async_rows = []
            if with_async:
                try:
                    async_rows = run_async(bench)
                except Exception as exc:  # the async API may not support every store yet
                    log(f"  asyncio scenarios failed on {kind}: {exc!r}")
                    raise
            version = None
            if kind == "postgres":
                with bench.mgr.backend.engine.connect() as conn:  # type: ignore[attr-defined]
                    version = conn.exec_driver_sql("SHOW server_version").scalar()
        finally:
            bench.close()
        order = {name: i for i, name in enumerate(SCENARIOS + PEERS.get(kind, []))}
        rows = sorted(bench.rows, key=lambda r: order.get(r.scenario, len(order)))
        return {
            "rows_obj": rows,
            "async_rows_obj": async_rows,
            "targets": report.targets(kind, rows, async_rows),
            "server_version": version,
            **({"store_url": hidden_password(store.url)} if keep is not None else {}),
        }


if __name__ == "__main__":
    sys.exit(main())
