"""Bytes on disk per stored message: every table, TOAST and index, next to a raw table.

``python -m benchmarks.space [--sessions N] [--messages M] [--partitions P] [--no-search]
[--sqlite] [--json out.json]`` creates a throwaway PostgreSQL database, migrates
it (with ``--partitions`` and ``--no-search`` as ``sessions-db migrate`` takes
them), COPYs ``N`` sessions of ``M`` messages (the suite's ~200-byte JSON
payload, message IDs as ``Message.new`` makes them) into the library's tables,
and the same payloads into a raw table (``bench_raw_messages``: a primary key
on the message ID and an index on ``(session_id, seq)``), runs ``VACUUM
ANALYZE`` and prints the bytes per message of each heap, TOAST table and index.
With ``--sqlite`` it does the same in a SQLite file (pages counted with
``dbstat``). Sizes do not depend on the machine's load: one run is enough.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import sqlite3
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

import sessions_db as sdb
from sessions_db import migrations

from .stores import PAYLOAD, ROLES, libpq, pg_database, sqlite_ts

#: The tables of the library, in the order they are shown.
TABLES = ("sessions_db_entries", "sessions_db_sessions", "sessions_db_checkpoints")
RAW = "bench_raw_messages"
RAW_DDL = (
    f"CREATE TABLE {RAW} (session_id VARCHAR(36) NOT NULL, id VARCHAR(128) NOT NULL, "
    "seq BIGINT NOT NULL, role VARCHAR(64), payload {json} NOT NULL, created_at {ts} NOT NULL, "
    f"CONSTRAINT pk_{RAW} PRIMARY KEY (id))",
    f"CREATE INDEX ix_{RAW}_session_id_seq ON {RAW} (session_id, seq)",
)


def _payloads(count: int) -> Iterator[str]:
    """Yield ``count`` JSON payloads of about 200 bytes: the suite's shape, varied words.

    The text is 20 words drawn (Zipf-like, seeded) from a vocabulary of 20,000, so
    that the full-text index sees words as varied as a conversation's.
    """
    rng = random.Random(7)
    vocabulary = [f"w{n:05d}" for n in range(20_000)]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    cumulative = list(itertools.accumulate(weights))
    for _ in range(count):
        words = rng.choices(vocabulary, cum_weights=cumulative, k=20)
        body = {"content": " ".join(words), "tokens": 42, "meta": PAYLOAD["meta"]}
        yield json.dumps(body, separators=(",", ":"))


def _rows(sessions: int, messages: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Return the session rows and the entry rows, interleaved as live sessions append.

    A session row is ``(id, user, created, updated, count, leaf)``; an entry row
    is the entries table's ``(session_id, id, parent_id, seq, depth, type, role,
    payload, created_at)``. Message ``j`` of every session comes before message
    ``j + 1`` of any, so that each index of a session-leading key fills as it
    does when many sessions are live at once.
    """
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [str(uuid.uuid4()) for _ in range(sessions)]
    leaves: list[str | None] = [None] * sessions
    payloads = _payloads(sessions * messages)
    entries = []
    for j in range(messages):
        for i, sid in enumerate(ids):
            eid = str(uuid.uuid4())
            ts = t0 + timedelta(seconds=j, microseconds=i)
            entries.append(
                (sid, eid, leaves[i], j + 1, j + 1, "message", ROLES[j % 2], next(payloads), ts)
            )
            leaves[i] = eid
    end = t0 + timedelta(seconds=messages)
    rows = [(sid, f"u{i % 100}", t0, end, messages, leaves[i]) for i, sid in enumerate(ids)]
    return rows, entries


# -- PostgreSQL ---------------------------------------------------------------------

_SIZES = """
WITH tables AS (
    SELECT t.relid AS part FROM pg_partition_tree(%(table)s::regclass) t WHERE t.isleaf
    UNION
    SELECT %(table)s::regclass WHERE NOT EXISTS
        (SELECT 1 FROM pg_partitioned_table WHERE partrelid = %(table)s::regclass)
)
SELECT 'heap' AS what, sum(pg_relation_size(c.oid)) AS bytes
FROM tables JOIN pg_class c ON c.oid = tables.part
UNION ALL
SELECT 'toast', coalesce(sum(pg_total_relation_size(c.reltoastrelid)), 0)
FROM tables JOIN pg_class c ON c.oid = tables.part WHERE c.reltoastrelid <> 0
UNION ALL
SELECT 'index ' || coalesce(parent.relname, ic.relname), sum(pg_relation_size(i.indexrelid))
FROM tables JOIN pg_index i ON i.indrelid = tables.part
JOIN pg_class ic ON ic.oid = i.indexrelid
LEFT JOIN pg_inherits inh ON inh.inhrelid = i.indexrelid
LEFT JOIN pg_class parent ON parent.oid = inh.inhparent
GROUP BY coalesce(parent.relname, ic.relname)
"""


def pg_sizes(conn: psycopg.Connection[Any], table: str) -> dict[str, int]:
    """Bytes of the heap, the TOAST table (with its index) and each index of ``table``.

    A partitioned table counts all its partitions; a partition's index is
    counted under the name of the partitioned index it belongs to.
    """
    rows = conn.execute(_SIZES, {"table": table}).fetchall()
    return {str(what): int(bytes_ or 0) for what, bytes_ in rows}


def load_pg(url: str, sessions: int, messages: int) -> None:
    """COPY the sessions and their messages into the library's tables and the raw table."""
    rows, entries = _rows(sessions, messages)
    with psycopg.connect(libpq(url)) as conn:
        for statement in RAW_DDL:
            conn.execute(statement.format(json="JSONB", ts="TIMESTAMPTZ"))
        cur = conn.cursor()
        with cur.copy(
            "COPY sessions_db_sessions (id, agent_name, user_id, created_at, updated_at, "
            "message_count, current_leaf, last_seq, metadata) FROM STDIN"
        ) as copy:
            for sid, user, created, updated, count, leaf in rows:
                copy.write_row((sid, "assistant", user, created, updated, count, leaf, count, "{}"))
        with cur.copy(
            "COPY sessions_db_entries (session_id, id, parent_id, seq, depth, type, role, "
            "payload, created_at) FROM STDIN"
        ) as copy:
            for entry in entries:
                copy.write_row(entry)
        with cur.copy(
            f"COPY {RAW} (session_id, id, seq, role, payload, created_at) FROM STDIN"
        ) as copy:
            for sid, eid, _, seq, _, _, role, body, ts in entries:
                copy.write_row((sid, eid, seq, role, body, ts))
        conn.commit()
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def load_pg_library(url: str, sessions: int, messages: int) -> None:
    """Append the messages through the library, one ``append_message`` each, interleaved.

    The raw table gets the same rows one autocommit INSERT each: the way a live
    store grows, index page splits and the full-text index's own bookkeeping
    included.
    """
    _, entries = _rows(sessions, messages)
    with (
        sdb.Manager(sdb.SQLBackend(url, check_schema=False)) as mgr,
        psycopg.connect(libpq(url), autocommit=True) as conn,
    ):
        conn.execute(RAW_DDL[0].format(json="JSONB", ts="TIMESTAMPTZ"))
        conn.execute(RAW_DDL[1])
        made = [mgr.create("assistant", user_id=f"u{i % 100}") for i in range(sessions)]
        for n, (_, _, _, seq, _, _, role, body, _) in enumerate(entries):
            message = sdb.Message.new(role, json.loads(body))
            made[n % sessions].append_message(message)
            conn.execute(
                f"INSERT INTO {RAW} (session_id, id, seq, role, payload, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (made[n % sessions].id, message.id, seq, role, body, message.timestamp),
            )
        conn.execute("VACUUM ANALYZE")


def measure_pg(
    sessions: int,
    messages: int,
    *,
    partitions: int | None,
    search: bool | None,
    revision: str = "head",
    library: bool = False,
) -> dict[str, Any]:
    """Migrate a new database, load it and return the bytes of every structure."""
    options: dict[str, Any] = {}
    if partitions is not None:
        options["partitions"] = partitions
    if search is not None:
        options["search"] = search
    with pg_database() as url:
        migrations.upgrade(url, revision=revision, **options)
        (load_pg_library if library else load_pg)(url, sessions, messages)
        with psycopg.connect(libpq(url), autocommit=True) as conn:
            structures = {table: pg_sizes(conn, table) for table in (*TABLES, RAW)}
    shown = {**options, "revision": revision, "load": "append_message" if library else "COPY"}
    return {"backend": "postgresql", "options": shown, "structures": structures}


# -- which statement reads which index (PostgreSQL) -------------------------------------

_INDEX_USED = re.compile(
    r"(?:Index Scan|Index Only Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\w+)"
)


def _operations(mgr: sdb.Manager, url: str) -> dict[str, Callable[[], object]]:
    """The library's operations whose statements are explained, by name."""
    user = mgr.list("assistant", limit=1)[0].user_id
    assert user is not None
    session = mgr.create("assistant", user_id=user, metadata={"tier": "gold"}, key="k1")
    session.append_messages(
        sdb.Message.new(ROLES[i % 2], {"content": f"w{i:05d}"}) for i in range(20)
    )
    middle = session.get_messages()[10]
    taken = session.checkpoint()
    fork = session.fork()
    return {
        "append_message": lambda: session.append_message(sdb.Message.new("user", {"x": 1})),
        "get_messages() (whole branch)": session.get_messages,
        "get_messages(limit=5)": lambda: session.get_messages(limit=5),
        "load_children (LangGraph, tree)": lambda: mgr.backend.load_children(session.id, middle.id),
        "restore (checkpoint by session and ID)": lambda: session.restore(taken.id),
        "load_checkpoint (by ID alone)": lambda: mgr.backend.load_checkpoint(taken.id),
        "list_checkpoints": session.list_checkpoints,
        "list(agent)": lambda: mgr.list("assistant", limit=10),
        "list(agent, user_id)": lambda: mgr.list("assistant", user_id=user, limit=10),
        "list(agent, metadata)": lambda: mgr.list("assistant", metadata={"tier": "gold"}),
        "get_by_key": lambda: mgr.get_by_key("assistant", "k1"),
        "get (session by ID)": lambda: mgr.get(fork.id),
        "memory.search": lambda: mgr.memory(user).search("w00001 w00002", 5),
        "memory.list": lambda: mgr.memory(user).list(limit=20),
        "prune (one batch)": lambda: mgr.prune(datetime(2000, 1, 1, tzinfo=UTC)),
        "erase_user (none stored)": lambda: mgr.erase_user("nobody"),
    }


def explain_pg(url: str) -> list[tuple[str, list[str], str]]:
    """Run the library's operations on ``url``; return each statement's indexes and plan.

    The statements are captured as the library sends them and explained with
    the same parameters (``EXPLAIN (COSTS OFF)``), in a transaction rolled back.
    """
    from sqlalchemy import event

    captured: list[tuple[str, str, Any]] = []
    current = [""]

    def record(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        if (
            statement.lstrip()
            .upper()
            .startswith(
                (
                    "SELECT 1 FROM PG_CLASS",
                    "BEGIN",
                    "COMMIT",
                    "ROLLBACK",
                    "SELECT PG_",
                    "SET ",
                    "SELECT SET_CONFIG",
                )
            )
        ):
            return
        captured.append((current[0], statement, params))

    explained = []
    with sdb.connect(url) as mgr:
        operations = _operations(mgr, url)
        engine = mgr.backend.engine  # type: ignore[attr-defined]
        event.listen(engine, "before_cursor_execute", record)
        try:
            for name, operation in operations.items():
                current[0] = name
                operation()
        finally:
            event.remove(engine, "before_cursor_execute", record)
    # The lineage of a fork (sessions-db lineage, docs/analytics.md) is the host's own query.
    captured.append(
        (
            "forks of a session (lineage)",
            "SELECT id FROM sessions_db_sessions WHERE forked_from = %(id)s",
            {"id": str(uuid.uuid4())},
        )
    )
    with psycopg.connect(libpq(url)) as conn:
        cursor = psycopg.ClientCursor(conn)
        for name, statement, params in captured:
            cursor.execute(f"EXPLAIN (COSTS OFF) {statement}", params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            explained.append((name, sorted(set(_INDEX_USED.findall(plan))), plan))
        conn.rollback()
    return explained


def render_plans(explained: list[tuple[str, list[str], str]]) -> str:
    """A Markdown table of the indexes each operation reads, then every plan."""
    lines = ["| operation | indexes read |", "|---|---|"]
    for name, indexes, _ in explained:
        lines.append(f"| {name} | {', '.join(f'`{ix}`' for ix in indexes) or '-'} |")
    lines.append("")
    for name, _, plan in explained:
        lines += [f"{name}:", "", "```text", plan, "```", ""]
    return "\n".join(lines)


# -- SQLite -------------------------------------------------------------------------


def measure_sqlite(
    sessions: int, messages: int, *, search: bool | None, revision: str = "head"
) -> dict[str, Any]:
    """The same load into a SQLite file prepared by the library; pages counted by ``dbstat``."""
    options: dict[str, Any] = {} if search is None else {"search": search}
    with tempfile.TemporaryDirectory(prefix="sessions_db_space_") as tmp:
        path = Path(tmp) / "space.db"
        url = f"sqlite:///{path}"
        migrations.upgrade(url, revision=revision, **options)
        conn = sqlite3.connect(path)
        try:
            for statement in RAW_DDL:
                conn.execute(statement.format(json="JSON", ts="DATETIME"))
            rows, entries = _rows(sessions, messages)
            with conn:
                conn.executemany(
                    "INSERT INTO sessions_db_sessions (id, agent_name, user_id, created_at, "
                    "updated_at, message_count, current_leaf, last_seq, metadata) "
                    "VALUES (?, 'assistant', ?, ?, ?, ?, ?, ?, '{}')",
                    (
                        (sid, user, sqlite_ts(created), sqlite_ts(updated), n, leaf, n)
                        for sid, user, created, updated, n, leaf in rows
                    ),
                )
                conn.executemany(
                    "INSERT INTO sessions_db_entries (session_id, id, parent_id, seq, depth, "
                    "type, role, payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    ((*entry[:8], sqlite_ts(entry[8])) for entry in entries),
                )
                conn.executemany(
                    f"INSERT INTO {RAW} (session_id, id, seq, role, payload, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    ((s, e, q, r, b, sqlite_ts(t)) for s, e, _, q, _, _, r, b, t in entries),
                )
            conn.execute("VACUUM")
            conn.execute("ANALYZE")
            structures: dict[str, dict[str, int]] = {}
            rows = conn.execute(
                "SELECT d.name, coalesce(m.tbl_name, d.name), m.type, sum(d.pgsize) "
                "FROM dbstat d LEFT JOIN sqlite_schema m ON m.name = d.name GROUP BY d.name"
            ).fetchall()
        finally:
            conn.close()
    for name, table, kind, size in rows:
        if str(table).startswith("sqlite_"):
            continue  # the schema and the statistics
        owner = _sqlite_owner(str(table))
        what = "heap" if kind == "table" and name == table else f"index {name}"
        if owner != table:
            what = f"fts {name}"
        structures.setdefault(owner, {})[what] = int(size)
    shown = {**options, "revision": revision, "load": "INSERT"}
    return {"backend": "sqlite", "options": shown, "structures": structures}


def _sqlite_owner(table: str) -> str:
    """The table a SQLite object counts under: the FTS5 tables count under the entries."""
    return "sessions_db_entries" if table.startswith("sessions_db_entries_fts") else table


# -- report -------------------------------------------------------------------------


def per_message(result: dict[str, Any], messages: int) -> dict[str, Any]:
    """Add ``per_message`` figures to ``result``: every structure, and the totals."""
    out: dict[str, dict[str, float]] = {}
    totals: dict[str, float] = {}
    for table, parts in result["structures"].items():
        out[table] = {what: round(size / messages, 1) for what, size in sorted(parts.items())}
        totals[table] = round(sum(parts.values()) / messages, 1)
    library = sum(v for k, v in totals.items() if k != RAW)
    result["per_message"] = out
    result["totals"] = {
        **totals,
        "library": round(library, 1),
        "ratio_entries_to_raw": round(totals["sessions_db_entries"] / totals[RAW], 2),
        "ratio_library_to_raw": round(library / totals[RAW], 2),
    }
    return result


def render(result: dict[str, Any], sessions: int, messages: int) -> str:
    """A Markdown table of ``result``: bytes per message of each structure."""
    lines = [
        f"### {result['backend']} {result['options'] or ''}".rstrip(),
        "",
        f"{sessions} sessions x {messages} messages; bytes per message",
        "",
        "| table | structure | B/message |",
        "|---|---|---:|",
    ]
    for table, parts in result["per_message"].items():
        for what, value in parts.items():
            lines.append(f"| {table} | {what} | {value:,.1f} |")
        lines.append(f"| {table} | **total** | **{result['totals'][table]:,.1f}** |")
    totals = result["totals"]
    lines += [
        "",
        f"library (all tables): {totals['library']:,.1f} B/message; raw table: "
        f"{totals[RAW]:,.1f}; entries / raw = {totals['ratio_entries_to_raw']}, "
        f"library / raw = {totals['ratio_library_to_raw']}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure and print; ``--json`` also writes the figures."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.space", description=__doc__)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--messages", type=int, default=500, help="messages per session")
    parser.add_argument("--partitions", type=int, default=None)
    parser.add_argument(
        "--no-search", dest="search", action="store_const", const=False, default=None
    )
    parser.add_argument(
        "--revision", default="head", help="migrate to this revision (0005: before 0006)"
    )
    parser.add_argument(
        "--library",
        action="store_true",
        help="load through append_message (one message per call) instead of COPY",
    )
    parser.add_argument("--sqlite", action="store_true", help="measure SQLite too")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--explain",
        action="store_true",
        help="instead: load a PostgreSQL store and print the plan of each of the "
        "library's statements, and the indexes it reads",
    )
    args = parser.parse_args(argv)
    if args.explain:
        with pg_database() as url:
            migrations.upgrade(url)
            load_pg(url, args.sessions, args.messages)
            print(render_plans(explain_pg(url)))
        return 0
    total = args.sessions * args.messages
    results = [
        per_message(
            measure_pg(
                args.sessions,
                args.messages,
                partitions=args.partitions,
                search=args.search,
                revision=args.revision,
                library=args.library,
            ),
            total,
        )
    ]
    if args.sqlite:
        results.append(
            per_message(
                measure_sqlite(
                    args.sessions, args.messages, search=args.search, revision=args.revision
                ),
                total,
            )
        )
    for result in results:
        print(render(result, args.sessions, args.messages))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
