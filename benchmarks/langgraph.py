"""``python -m benchmarks.langgraph``: SessionsDBSaver next to LangGraph's own savers.

On each store, in one run: ``SessionsDBSaver`` on PostgreSQL next to ``PostgresSaver``
(another database of the same server), on SQLite next to ``SqliteSaver`` (another
file of the same disk), and on the file store alone. Needs the ``test`` extra
(LangGraph and its savers). Scenarios (``--small``: 10 / 100 messages):

* ``step_10``, ``step_1k``: one step of a chat, the ``invoke`` of a one-node
  ``MessagesState`` graph that adds a user message and a reply (about 200
  characters each), on a thread holding 10 / 1,000 messages. Each run is on a
  thread of its own, seeded with ``update_state`` before the first run (untimed);
  the saver is the one that seeded it, as in a serving process;
* ``get_state_1k``: ``get_state`` of a thread of 1,000 messages, by that saver;
  ``get_state_1k_cold``: by a new saver on the same store (nothing held in memory);
* ``bytes``: a conversation of 1,000 messages built step by step (500 ``invoke``)
  on an empty store; what the store holds afterwards, per message: the bytes of
  the values as stored (JSON text, serialized blobs) and the size of the tables
  or files on disk; and the median of its first and of its last 20 steps.

The savers of one store take turns: half of a figure's runs each, then the other
half in the other order (the machine's load drifts; runs interleaved one by one
would make each saver's commits flush the other's writes). Medians and 95th
percentiles, after 2 warm-up runs per turn, the garbage collector paused in each
timed call.
"""

from __future__ import annotations

import argparse
import gc
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .stores import libpq, pg_database, workdir
from .timing import Timing

DEFAULT_JSON = Path(__file__).parent / "results" / "langgraph.json"
TEXT = "The quick brown fox jumps over the lazy dog, then naps in the sun for a while. " * 2


@dataclass
class Sizes:
    """How big the threads are and how many runs each figure takes."""

    small: int = 10
    large: int = 1000
    runs: int = 40

    @classmethod
    def smoke(cls) -> Sizes:
        return cls(10, 100, 5)


@dataclass
class Subject:
    """A saver to measure, and how to open another one on the same store."""

    name: str
    store: str
    open: Callable[[], Any]
    stored: Callable[[], dict[str, int]] = field(default=lambda: {})


def echo_graph(saver: Any) -> Any:
    from langchain_core.messages import AIMessage
    from langgraph.graph import START, MessagesState, StateGraph

    def reply(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(f"re: {TEXT}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    return builder.compile(checkpointer=saver)


def history(n: int) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage

    return [HumanMessage(TEXT) if i % 2 == 0 else AIMessage(f"re: {TEXT}") for i in range(n)]


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """Return how long ``fn()`` takes (ms) and the CPU time it takes in this process (ms).

    The garbage collector is paused meanwhile. The CPU time counts every
    thread of the process (LangGraph saves in background threads), not the
    database server's work, nor the waits for the disk.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        return (time.perf_counter() - start) * 1000.0, (time.process_time() - cpu) * 1000.0
    finally:
        if enabled:
            gc.enable()


def in_turns(
    calls: dict[str, Callable[[int], Any]], runs: int, *, turns: int = 2, warmup: int = 2
) -> dict[str, tuple[Timing, Timing]]:
    """Time ``calls[name](i)`` for runs ``i``, each saver in turn for ``runs / turns`` runs.

    The machine's load drifts, so each saver gets runs early and late; but a
    saver's runs are not interleaved one by one with another's, whose writes
    (on the same disk, or the same server's WAL) would be flushed by this one's
    commits.
    """
    samples: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    per_turn = -(-runs // turns)
    done = dict.fromkeys(calls, 0)
    for turn in range(turns):
        names = list(calls) if turn % 2 == 0 else list(reversed(calls))
        for name in names:
            for j in range(warmup + per_turn):
                i = done[name]
                if j >= warmup and len(samples[name]) >= runs:
                    break
                took, used = timed(lambda name=name, i=i: calls[name](i))
                done[name] += 1
                if j >= warmup:
                    samples[name].append(took)
                    cpu[name].append(used)
    return {name: (Timing(samples[name]), Timing(cpu[name])) for name in calls}


def measure_timings(found: list[Subject], sizes: Sizes) -> dict[str, dict[str, Timing]]:
    """Time steps and reads of every saver of one store kind, in turn."""
    from langchain_core.messages import HumanMessage

    graphs = {s.name: echo_graph(s.open()) for s in found}
    results: dict[str, dict[str, Timing]] = {s.name: {} for s in found}
    for label, size in (("step_10", sizes.small), ("step_1k", sizes.large)):
        # Every thread is seeded before the first timed step: what the store does
        # after a large write (a WAL checkpoint, writeback) is not timed as a step.
        threads: dict[str, list[dict[str, Any]]] = {}
        for name, graph in graphs.items():
            threads[name] = []
            for i in range(sizes.runs + 4):  # with the warm-up runs of each turn
                cfg = {"configurable": {"thread_id": f"{label}-{i}"}}
                graph.update_state(cfg, {"messages": history(size)}, as_node="reply")
                threads[name].append(cfg)

        def step(name: str, configs: dict[str, list[dict[str, Any]]] = threads) -> Any:
            graph, mine = graphs[name], configs[name]
            return lambda run: graph.invoke({"messages": [HumanMessage(TEXT)]}, mine[run])

        for name, (timing, used) in in_turns({n: step(n) for n in graphs}, sizes.runs).items():
            results[name][label] = timing
            results[name][f"{label}_cpu"] = used
    cfg = {"configurable": {"thread_id": "read"}}
    for graph in graphs.values():
        graph.update_state(cfg, {"messages": history(sizes.large)}, as_node="reply")

    def read(name: str) -> Callable[[int], Any]:
        return lambda _: graphs[name].get_state(cfg)

    for name, (timing, used) in in_turns({n: read(n) for n in graphs}, sizes.runs).items():
        results[name]["get_state_1k"] = timing
        results[name]["get_state_1k_cpu"] = used
    # A new saver on the same store for each read: nothing held in memory. Made
    # outside the timed span (it is not a store's cost).
    fresh: dict[str, list[Any]] = {
        s.name: [echo_graph(s.open()) for _ in range(sizes.runs + 4)] for s in found
    }

    def cold(name: str) -> Callable[[int], Any]:
        return lambda i: fresh[name][i].get_state(cfg)

    for name, (timing, used) in in_turns({n: cold(n) for n in graphs}, sizes.runs).items():
        results[name]["get_state_1k_cold"] = timing
        results[name]["get_state_1k_cold_cpu"] = used
    return results


def measure_bytes(found: list[Subject], messages: int) -> dict[str, dict[str, Any]]:
    """Build a conversation of ``messages`` step by step on each saver, in turn.

    Return, per saver, what its store holds afterwards and the median of the
    first and the last 20 steps (the cost of a step as the thread grows).
    """
    from langchain_core.messages import HumanMessage

    graphs = {s.name: echo_graph(s.open()) for s in found}
    cfg = {"configurable": {"thread_id": "bytes"}}

    def step(name: str) -> Callable[[int], Any]:
        return lambda _: graphs[name].invoke({"messages": [HumanMessage(TEXT)]}, cfg)

    steps = in_turns({n: step(n) for n in graphs}, messages // 2, turns=1, warmup=0)
    results: dict[str, dict[str, Any]] = {}
    for subject in found:
        final = graphs[subject.name].get_state(cfg).values["messages"]
        assert len(final) == messages, len(final)
        stored = subject.stored()
        samples, used = steps[subject.name][0].samples, steps[subject.name][1].samples
        results[subject.name] = {
            "messages": messages,
            "first_steps_ms": round(Timing(samples[:20]).median, 3),
            "last_steps_ms": round(Timing(samples[-20:]).median, 3),
            "first_steps_cpu_ms": round(Timing(used[:20]).median, 3),
            "last_steps_cpu_ms": round(Timing(used[-20:]).median, 3),
            **stored,
            **{f"{k}_per_message": round(v / messages, 1) for k, v in stored.items()},
        }
    return results


# -- the savers ---------------------------------------------------------------------------


def _pg_size(url: str, tables: list[str], raw_sql: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(libpq(url), autocommit=True) as conn:
        raw = conn.execute(raw_sql).fetchone()
        disk = conn.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE c.relname = ANY(%s)",
            (tables,),
        ).fetchone()
    return {
        "value_bytes": int(raw[0] or 0) if raw else 0,
        "disk_bytes": int(disk[0] or 0) if disk else 0,
    }


SDB_TABLES = ["sessions_db_sessions", "sessions_db_entries", "sessions_db_checkpoints"]
SDB_RAW = "SELECT sum(octet_length(payload::text)) FROM sessions_db_entries"
LG_PG_TABLES = ["checkpoints", "checkpoint_blobs", "checkpoint_writes"]
LG_PG_RAW = (
    "SELECT (SELECT coalesce(sum(octet_length(checkpoint::text) + octet_length(metadata::text)), 0)"
    " FROM checkpoints)"
    " + (SELECT coalesce(sum(octet_length(blob)), 0) FROM checkpoint_blobs)"
    " + (SELECT coalesce(sum(octet_length(blob)), 0) FROM checkpoint_writes)"
)


def _sqlite_size(path: Path, raw_sql: str) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        raw = conn.execute(raw_sql).fetchone()[0] or 0
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    return {"value_bytes": int(raw), "disk_bytes": int(pages * page)}


@contextmanager
def subjects(kind: str, base: Path, stack: ExitStack) -> Iterator[list[Subject]]:
    """Yield the savers of one store kind, each on a store of its own."""
    from sessions_db.integrations.langgraph import SessionsDBSaver

    found: list[Subject] = []
    if kind == "postgres":
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row

        ours = stack.enter_context(pg_database())
        theirs = stack.enter_context(pg_database())
        first = SessionsDBSaver(ours, migrate=True)
        stack.callback(first.close)
        pg_manager = first.manager
        found.append(
            Subject(
                "SessionsDBSaver",
                "postgres",
                lambda: SessionsDBSaver(manager=pg_manager),
                lambda: _pg_size(ours, SDB_TABLES, SDB_RAW),
            )
        )
        conn = psycopg.connect(
            libpq(theirs), autocommit=True, prepare_threshold=0, row_factory=dict_row
        )
        stack.callback(conn.close)
        PostgresSaver(conn).setup()
        found.append(
            Subject(
                "PostgresSaver",
                "postgres",
                lambda: PostgresSaver(conn),
                lambda: _pg_size(theirs, LG_PG_TABLES, LG_PG_RAW),
            )
        )
    elif kind == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        ours_path, theirs_path = base / "sessions_db.db", base / "langgraph.db"
        first = SessionsDBSaver(f"sqlite:///{ours_path}")
        stack.callback(first.close)
        manager = first.manager
        found.append(
            Subject(
                "SessionsDBSaver",
                "sqlite",
                lambda: SessionsDBSaver(manager=manager),
                lambda: _sqlite_size(
                    ours_path, "SELECT sum(length(payload)) FROM sessions_db_entries"
                ),
            )
        )
        conn = sqlite3.connect(theirs_path, check_same_thread=False)
        stack.callback(conn.close)
        found.append(
            Subject(
                "SqliteSaver",
                "sqlite",
                lambda: SqliteSaver(conn),
                lambda: _sqlite_size(
                    theirs_path,
                    "SELECT (SELECT coalesce(sum(length(checkpoint) + length(metadata)), 0)"
                    " FROM checkpoints) + (SELECT coalesce(sum(length(value)), 0) FROM writes)",
                ),
            )
        )
    elif kind == "file":
        directory = base / "files"
        first = SessionsDBSaver(f"file://{directory}")
        stack.callback(first.close)
        manager = first.manager

        def file_size() -> dict[str, int]:
            total = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
            return {"value_bytes": total, "disk_bytes": total}

        found.append(
            Subject("SessionsDBSaver", "file", lambda: SessionsDBSaver(manager=manager), file_size)
        )
    yield found


# -- the run ------------------------------------------------------------------------------------


def run(kinds: list[str], sizes: Sizes, log: Callable[[str], None]) -> dict[str, Any]:
    """Measure every store kind: sizes on fresh stores, then timings on fresh stores."""
    results: dict[str, Any] = {}
    for kind in kinds:
        entry: dict[str, Any] = results.setdefault(kind, {})
        log(f"{kind}: {sizes.large:,} messages step by step ...")
        with workdir() as base, ExitStack() as stack, subjects(kind, base, stack) as found:
            for name, stored in measure_bytes(found, sizes.large).items():
                entry.setdefault(name, {})["bytes"] = stored
        log(f"{kind}: steps and reads ...")
        with workdir() as base, ExitStack() as stack, subjects(kind, base, stack) as found:
            for name, timings in measure_timings(found, sizes).items():
                entry[name]["timings"] = {
                    k: {"n": t.n, "median": round(t.median, 3), "p95": round(t.p95, 3)}
                    for k, t in timings.items()
                }
    return results


def table(results: dict[str, Any], sizes: Sizes) -> str:
    """Return the Markdown tables of a run."""
    lines: list[str] = []
    names = {
        "step_10": f"step at {sizes.small} messages",
        "step_1k": f"step at {sizes.large:,} messages",
        "get_state_1k": f"get_state at {sizes.large:,} (same saver)",
        "get_state_1k_cold": f"get_state at {sizes.large:,} (new saver)",
    }
    for kind, savers in results.items():
        order = list(savers)
        lines.append(f"### {kind}\n")
        head = " | ".join(f"{n} median | p95 | CPU" for n in order)
        lines.append(f"| scenario (ms) | {head} |")
        lines.append("|---|" + "---:|---:|---:|" * len(order))
        for key, label in names.items():
            cells = []
            for name in order:
                t = savers[name]["timings"][key]
                c = savers[name]["timings"][f"{key}_cpu"]
                cells.append(f"{t['median']:.2f} | {t['p95']:.2f} | {c['median']:.2f}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        growth = []
        for name in order:
            t = savers[name]["timings"]
            wall = t["step_1k"]["median"] / t["step_10"]["median"]
            used = t["step_1k_cpu"]["median"] / t["step_10_cpu"]["median"]
            growth.append(f"{wall:.2f}x |  | {used:.2f}x")
        lines.append(
            f"| step at {sizes.large:,} / step at {sizes.small} | " + " | ".join(growth) + " |"
        )
        lines.append("")
        lines.append(f"| {sizes.large:,} messages built step by step | " + " | ".join(order) + " |")
        lines.append("|---|" + "---:|" * len(order))
        for key, label in (
            ("value_bytes_per_message", "bytes of stored values per message"),
            ("disk_bytes_per_message", "bytes on disk per message"),
            ("first_steps_ms", "median of the first 20 steps (ms)"),
            ("last_steps_ms", "median of the last 20 steps (ms)"),
            ("first_steps_cpu_ms", "CPU of the first 20 steps (median, ms)"),
            ("last_steps_cpu_ms", "CPU of the last 20 steps (median, ms)"),
        ):
            lines.append(
                f"| {label} | " + " | ".join(f"{savers[n]['bytes'][key]:,}" for n in order) + " |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.langgraph", description=__doc__)
    parser.add_argument("--small", action="store_true", help="10 / 100 messages, 5 runs")
    parser.add_argument("--stores", default="postgres,sqlite,file", help="postgres,sqlite,file")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the JSON")
    args = parser.parse_args(argv)
    sizes = Sizes.smoke() if args.small else Sizes()
    kinds = [k.strip() for k in args.stores.split(",") if k.strip()]
    results = run(kinds, sizes, lambda text: print(text, file=sys.stderr, flush=True))
    print(table(results, sizes))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"sizes": sizes.__dict__, "results": results}, indent=2))
    print(f"JSON: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
