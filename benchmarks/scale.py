"""``python -m benchmarks.scale``: flat cost at a million sessions and ten million messages.

Off by default (``python -m benchmarks`` never runs it). It bulk-loads a
PostgreSQL database with ``--sessions`` sessions and ``--messages`` messages
(1,000,000 and 10,000,000), measures append, the newest-50 load, a user's list
page, ``get_or_create`` (by user, and by external key) and a fork through the
public API, and compares each with the same operation on a database of 10,000
messages of the same shape (target: within 1.2x). It reports the table and index
sizes per message, the load time and, with ``--prune``, the time to prune every
session in batches (which empties the big database).

Loading is fast and resumable: the tables' secondary indexes and foreign keys
are dropped, the rows go in with ``COPY`` in chunks of sessions (each chunk one
transaction, recorded when it commits), then the indexes and keys are made
again as the migrations make them (``alembic check`` confirms it) and the
tables are vacuumed and analyzed, as autovacuum would. Interrupted, the same
command goes on with the next chunk. The databases are named after their sizes
and layout and are kept, so the measurements can be run again; ``--drop``
removes them at the end.

The data: 10 agents; each user has 10 sessions of one agent; one session in a
thousand (at least 10) has 200 messages, which the newest-50 loads read, and the
others share the rest evenly; the messages of a chunk's sessions are
interleaved in time, as concurrent conversations write them; each message is
30 words from a vocabulary of 5,000 (realistic work for the full-text index);
every session has an external key. Timestamps span the last 180 days.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from sqlalchemy import ForeignKeyConstraint
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.schema import AddConstraint, CreateIndex

import sessions_db as sdb
from sessions_db import migrations
from sessions_db.models import Base
from sessions_db.sql.fulltext import create_sql
from sessions_db.sql.partitions import partition_count
from sessions_db.sql.schema import FTS_INDEX

from . import report
from .stores import libpq, pg_admin_url
from .timing import Timing, measure

DEFAULT_JSON = Path(__file__).parent / "results" / "scale.json"

AGENTS = 10
SESSIONS_PER_USER = 10
LONG_EVERY = 1000
LONG_MESSAGES = 200
WORDS_PER_MESSAGE = 30
VOCABULARY = 5000
SPAN = timedelta(days=180)
#: Sessions per chunk of the load (one transaction each).
CHUNK = 20_000
#: The load's progress, in a table of its own in the benchmark database.
STATE = "bench_scale_state"
TABLES = ("sessions_db_sessions", "sessions_db_entries", "sessions_db_checkpoints")
_DIALECT: Any = postgresql.dialect
#: The target of the comparison with the small database.
FLAT = 1.2


@dataclass(frozen=True)
class Shape:
    """What a database holds: how many sessions and messages, and how they are spread."""

    sessions: int
    messages: int

    @property
    def users(self) -> int:
        return max(1, self.sessions // SESSIONS_PER_USER)

    @property
    def long_sessions(self) -> int:
        return max(10, self.sessions // LONG_EVERY)

    @property
    def step(self) -> int:
        return self.sessions // self.long_sessions

    def is_long(self, i: int) -> bool:
        return i % self.step == self.step - 1 and i // self.step < self.long_sessions

    def messages_of(self, i: int) -> int:
        """The messages of session ``i``; over all sessions they add up to ``messages``."""
        if self.is_long(i):
            return LONG_MESSAGES
        short = self.sessions - self.long_sessions
        rest = self.messages - LONG_MESSAGES * self.long_sessions
        j = i - min(self.long_sessions, (i + 1) // self.step)  # its rank among the short ones
        return rest * (j + 1) // short - rest * j // short

    def agent(self, i: int) -> str:
        return f"agent{(i % self.users) % AGENTS}"

    def user(self, i: int) -> str:
        return f"user{i % self.users}"

    def check(self) -> None:
        need = self.long_sessions * LONG_MESSAGES + (self.sessions - self.long_sessions)
        if self.sessions < 100 or self.messages < need:
            raise SystemExit(f"need at least 100 sessions and {need:,} messages for {self}")


def vocabulary() -> list[str]:
    """The words messages are made of (the same in every run)."""
    rng = random.Random(0)
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "va", "zu", "shi", "ro"]
    words = {"".join(rng.choices(syllables, k=rng.randint(2, 5))) for _ in range(VOCABULARY * 2)}
    return sorted(words)[:VOCABULARY]


def make_chunk(
    shape: Shape, number: int, now: datetime, words: list[str]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Return the session rows and entry rows of chunk ``number`` (the same in every run)."""
    rng = random.Random(number)
    first = number * CHUNK
    # Every timestamp is at least a day old: a prune of everything takes all.
    start = now - SPAN - timedelta(days=1)
    spacing = SPAN / shape.sessions
    plans = []
    for i in range(first, min(shape.sessions, first + CHUNK)):
        sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        plans.append((i, sid, shape.messages_of(i), start + spacing * i))
    leaves: dict[str, str | None] = {sid: None for _, sid, _, _ in plans}
    entries: list[tuple[Any, ...]] = []
    for r in range(max(count for _, _, count, _ in plans)):
        for _, sid, count, created in plans:
            if r >= count:
                continue
            eid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            text = " ".join(rng.choices(words, k=WORDS_PER_MESSAGE))
            payload = f'{{"content":"{text}","tokens":{WORDS_PER_MESSAGE + r}}}'
            role = "user" if r % 2 == 0 else "assistant"
            stamp = created + timedelta(seconds=30 * r)
            entries.append((sid, eid, leaves[sid], r + 1, r + 1, "message", role, payload, stamp))
            leaves[sid] = eid
    sessions = [
        (
            sid,
            shape.agent(i),
            shape.user(i),
            created,
            created + timedelta(seconds=30 * (count - 1)),
            count,
            leaves[sid],
            count,
            '{"source":"scale"}',
            f"key-{i}",
            None,
            None,
        )
        for i, sid, count, created in plans
    ]
    return sessions, entries


# -- the schema's secondary objects, dropped for the load and made again ------


def _ddl(element: Any) -> str:
    return str(element.compile(dialect=_DIALECT())).strip()


def secondary_indexes() -> list[tuple[str, str]]:
    """``(name, CREATE INDEX ...)`` of every index that is not a primary key."""
    made = []
    for name in TABLES:
        for index in sorted(Base.metadata.tables[name].indexes, key=lambda ix: str(ix.name)):
            made.append((str(index.name), _ddl(CreateIndex(index))))
    made.append((FTS_INDEX, create_sql("postgresql")[0]))
    return made


def foreign_keys() -> list[tuple[str, str, str]]:
    """``(table, name, ALTER TABLE ... ADD CONSTRAINT ...)`` of every foreign key."""
    keys = []
    for name in TABLES:
        for constraint in Base.metadata.tables[name].constraints:
            if isinstance(constraint, ForeignKeyConstraint):
                keys.append((name, str(constraint.name), _ddl(AddConstraint(constraint))))
    return keys


# -- databases ------------------------------------------------------------------


def database_name(shape: Shape, partitions: int, tag: str = "") -> str:
    """The database of ``shape``: named after it, so that a run can go on with it later."""
    layout = f"_p{partitions}" if partitions else ""
    return f"sessions_db_scale_{shape.sessions}_{shape.messages}{layout}{tag and '_' + tag}"


def _tag(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9]{0,16}", value):
        raise argparse.ArgumentTypeError("a tag is up to 16 lowercase letters and digits")
    return value


def database_url(admin: str, name: str) -> str:
    return make_url(admin).set(drivername="postgresql", database=name).render_as_string(False)


def ensure_database(admin: str, name: str) -> bool:
    """Create the database ``name`` unless it exists; return whether it was created."""
    with psycopg.connect(libpq(admin), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        conn.execute(f'CREATE DATABASE "{name}"')
        return True


def drop_database(admin: str, name: str) -> None:
    """Drop the database ``name`` (the server stops autovacuum workers in it first)."""
    with psycopg.connect(libpq(admin), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@contextmanager
def connection(url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        yield conn


def _state(conn: psycopg.Connection[Any]) -> dict[str, str]:
    conn.execute(f"CREATE TABLE IF NOT EXISTS {STATE} (key text PRIMARY KEY, value text)")
    return dict(conn.execute(f"SELECT key, value FROM {STATE}").fetchall())  # type: ignore[arg-type]


def _note(conn: psycopg.Connection[Any], key: str, value: object) -> None:
    conn.execute(
        f"INSERT INTO {STATE} VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = %s",
        [key, str(value), str(value)],
    )


def load(url: str, shape: Shape, partitions: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Load ``shape`` into the database at ``url``, going on from where a run stopped."""
    with connection(url) as conn:
        state = _state(conn)
        if "loaded" not in state:
            if "layout" not in state:
                migrations.upgrade(url, partitions=partitions)
                for table, name, _ in foreign_keys():
                    conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")
                for name, _ in secondary_indexes():
                    conn.execute(f"DROP INDEX IF EXISTS {name}")
                _note(conn, "layout", partitions)
                _note(conn, "now", datetime.now(UTC).isoformat())
            now = datetime.fromisoformat(_state(conn)["now"])
            _copy_chunks(conn, shape, now, log)
            started = time.perf_counter()
            for name, ddl in secondary_indexes():
                if not conn.execute("SELECT to_regclass(%s)", [name]).fetchone()[0]:  # type: ignore[index]
                    log(f"  index {name}")
                    conn.execute(ddl)
            if partitions:
                # Checking a foreign key into a partitioned table joins each partition
                # with all of them; probing the one partition each row names is faster.
                conn.execute("SET enable_mergejoin = off")
                conn.execute("SET enable_hashjoin = off")
                conn.execute("SET jit = off")
            for _, name, ddl in foreign_keys():
                found = conn.execute(
                    "SELECT 1 FROM pg_constraint WHERE conname = %s AND conparentid = 0", [name]
                ).fetchone()
                if not found:
                    log(f"  foreign key {name}")
                    conn.execute(ddl)
            _note(conn, "index_seconds", round(time.perf_counter() - started, 1))
            started = time.perf_counter()
            log("  vacuum analyze")
            for table in TABLES:
                conn.execute(f"VACUUM (ANALYZE) {table}")
            _note(conn, "vacuum_seconds", round(time.perf_counter() - started, 1))
            _note(conn, "loaded", datetime.now(UTC).isoformat())
        state = _state(conn)
    command.check(migrations.config(url))  # the schema is the migrations' own again
    copy_seconds = sum(float(v) for k, v in state.items() if k.startswith("chunk:"))
    return {
        "copy_seconds": round(copy_seconds, 1),
        "index_seconds": float(state["index_seconds"]),
        "vacuum_seconds": float(state["vacuum_seconds"]),
        "load_seconds": round(
            copy_seconds + float(state["index_seconds"]) + float(state["vacuum_seconds"]), 1
        ),
        "partitions": int(state["layout"]),
    }


def _copy_chunks(
    conn: psycopg.Connection[Any], shape: Shape, now: datetime, log: Callable[[str], None]
) -> None:
    words = vocabulary()
    chunks = -(-shape.sessions // CHUNK)
    done = {k for k in _state(conn) if k.startswith("chunk:")}
    sessions_copy = (
        "COPY sessions_db_sessions (id, agent_name, user_id, created_at, updated_at, "
        "message_count, current_leaf, last_seq, metadata, key, forked_from, forked_at) FROM STDIN"
    )
    entries_copy = (
        "COPY sessions_db_entries (session_id, id, parent_id, seq, depth, type, role, payload, "
        "created_at) FROM STDIN"
    )
    for number in range(chunks):
        if f"chunk:{number}" in done:
            continue
        started = time.perf_counter()
        sessions, entries = make_chunk(shape, number, now, words)
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(sessions_copy) as copy:
                for row in sessions:
                    copy.write_row(row)
            with cur.copy(entries_copy) as copy:
                for row in entries:
                    copy.write_row(row)
            _note(conn, f"chunk:{number}", round(time.perf_counter() - started, 3))
        if number % 10 == 0 or number == chunks - 1:
            log(f"  chunk {number + 1}/{chunks}: {time.perf_counter() - started:.1f} s")


def sizes(url: str, shape: Shape) -> dict[str, Any]:
    """Table (heap and TOAST) and index bytes of each table, and per message."""
    out: dict[str, Any] = {}
    with connection(url) as conn:
        for table in TABLES:
            # The partitions of a partitioned table, or the table itself.
            row = conn.execute(
                "WITH parts AS (SELECT relid FROM pg_partition_tree(%s::regclass) WHERE isleaf "
                "UNION SELECT %s::regclass WHERE NOT EXISTS "
                "(SELECT 1 FROM pg_partitioned_table WHERE partrelid = %s::regclass)) "
                "SELECT coalesce(sum(pg_table_size(relid)), 0), "
                "coalesce(sum(pg_indexes_size(relid)), 0) FROM parts",
                [table, table, table],
            ).fetchone()
            assert row is not None
            out[table] = {"table_bytes": int(row[0]), "index_bytes": int(row[1])}
    total = sum(v["table_bytes"] + v["index_bytes"] for v in out.values())
    entries = out["sessions_db_entries"]
    out["per_message"] = {
        "entries_table": round(entries["table_bytes"] / shape.messages, 1),
        "entries_indexes": round(entries["index_bytes"] / shape.messages, 1),
        "all_tables_and_indexes": round(total / shape.messages, 1),
    }
    out["total_bytes"] = total
    return out


def prewarm(url: str) -> int:
    """Read every table and index of ours into shared buffers; return the pages read."""
    with connection(url) as conn:
        if not conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_prewarm'").fetchone():
            raise SystemExit(
                f"--prewarm needs the pg_prewarm extension in {make_url(url).database}: "
                "CREATE EXTENSION pg_prewarm (as a superuser)"
            )
        row = conn.execute(
            "WITH ours AS (SELECT c.oid FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relname LIKE 'sessions\\_db\\_%' "
            "AND c.relkind = 'r') "
            "SELECT coalesce(sum(pg_prewarm(oid)), 0) FROM ("
            "SELECT oid FROM ours UNION ALL "
            "SELECT indexrelid FROM pg_index WHERE indrelid IN (SELECT oid FROM ours)) r"
        ).fetchone()
    assert row is not None
    return int(row[0])


# -- the measurements ----------------------------------------------------------------


@dataclass
class Targets:
    """Random existing sessions and users of a database to run the operations on."""

    short: list[tuple[str, str, str, str]]  # (id, agent, user, key)
    long: list[str]


def targets(url: str, count: int) -> Targets:
    rng = random.Random(7)
    with connection(url) as conn:
        short = conn.execute(
            "SELECT id, agent_name, user_id, key FROM sessions_db_sessions "
            "WHERE message_count < %s AND key IS NOT NULL ORDER BY random() LIMIT %s",
            [LONG_MESSAGES, count],
        ).fetchall()
        long = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM sessions_db_sessions WHERE message_count >= %s "
                "ORDER BY random() LIMIT %s",
                [LONG_MESSAGES, count],
            ).fetchall()
        ]
    rows = [(str(a), str(b), str(c), str(d)) for a, b, c, d in short]
    rng.shuffle(rows)
    return Targets(rows, long)


def operations(mgr: sdb.Manager, picked: Targets) -> dict[str, tuple[str, Callable[[], Any], Any]]:
    """The measured operations: ``(label, before, timed call)`` each picking the next target."""
    state: dict[str, Any] = {"i": 0}

    def nxt(items: list[Any]) -> Any:
        state["i"] += 1
        return items[state["i"] % len(items)]

    def before_short() -> None:
        state["target"] = nxt(picked.short)
        state["session"] = mgr.get(state["target"][0])

    def before_long() -> None:
        state["session"] = mgr.get(nxt(picked.long))

    message = sdb.Message.new("user", {"content": "one more question about the invoice"})
    return {
        "append": (
            "append_message() to a session of ~10",
            before_short,
            lambda: state["session"].append_message(message),
        ),
        "newest50": (
            "get_messages(limit=50) of a 200-message session",
            before_long,
            lambda: state["session"].get_messages(limit=50),
        ),
        "list_page": (
            "list(agent, user_id=, limit=20): a user's page",
            before_short,
            lambda: mgr.list(state["target"][1], user_id=state["target"][2], limit=20),
        ),
        "get_or_create": (
            "get_or_create(agent, user): the user's latest",
            before_short,
            lambda: mgr.get_or_create(state["target"][1], state["target"][2]),
        ),
        "get_or_create_key": (
            "get_or_create(agent, user, key=): by external key",
            before_short,
            lambda: mgr.get_or_create(
                state["target"][1], state["target"][2], key=state["target"][3]
            ),
        ),
        "fork": (
            "fork() of a session of ~10",
            before_short,
            lambda: state["session"].fork(),  # noqa: PLW0108 - the session of each run
        ),
    }


def run_operations(
    small_url: str, big_url: str, runs: int, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    small_targets, big_targets = targets(small_url, 2000), targets(big_url, 2000)
    rows = []
    with sdb.connect(small_url) as small, sdb.connect(big_url) as big:
        small_ops = operations(small, small_targets)
        big_ops = operations(big, big_targets)
        for name, (label, _, _) in small_ops.items():
            # Small, big, small, big: drift of the machine lands on both sides.
            halves: dict[str, list[float]] = {"small": [], "big": []}
            for _ in range(2):
                for side, ops in (("small", small_ops), ("big", big_ops)):
                    _, before, call = ops[name]
                    halves[side] += measure(call, runs // 2, warmup=5, before=before).samples
            timings = {side: Timing(samples) for side, samples in halves.items()}
            ratio = timings["big"].median / timings["small"].median
            log(
                f"  {name}: {timings['small'].median:.3f} ms -> {timings['big'].median:.3f} ms "
                f"({ratio:.2f}x)"
            )
            rows.append(
                {
                    "scenario": name,
                    "operation": label,
                    "n": timings["big"].n,
                    "small_median": round(timings["small"].median, 3),
                    "small_p95": round(timings["small"].p95, 3),
                    "big_median": round(timings["big"].median, 3),
                    "big_p95": round(timings["big"].p95, 3),
                    "ratio": round(ratio, 2),
                    "met": ratio <= FLAT,
                }
            )
    return rows


def prune_all(url: str, batch_size: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Prune every session of the database in batches; time each batch."""
    with connection(url) as conn:
        before = conn.execute("SELECT count(*) FROM sessions_db_sessions").fetchone()[0]  # type: ignore[index]
    durations: list[float] = []
    deleted = 0
    started = last = time.perf_counter()
    shown = started
    with sdb.connect(url) as mgr:
        for batch in mgr.prune_batches(timedelta(0), batch_size=batch_size):
            now = time.perf_counter()
            durations.append((now - last) * 1000.0)
            last = now
            deleted += len(batch)
            if now - shown >= 30:
                shown = now
                log(f"  pruned {deleted:,} of {before:,} ({deleted / (now - started):,.0f}/s)")
    seconds = time.perf_counter() - started
    with connection(url) as conn:
        left = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for table in TABLES
        }
    timing = Timing(durations or [0.0])
    return {
        "sessions": deleted,
        "batch_size": batch_size,
        "batches": len(durations),
        "seconds": round(seconds, 1),
        "sessions_per_second": round(deleted / seconds, 1) if seconds else None,
        "batch_median_ms": round(timing.median, 1),
        "batch_p95_ms": round(timing.p95, 1),
        "batch_max_ms": round(max(timing.samples), 1),
        "rows_left": left,
    }


# -- the report -----------------------------------------------------------------


def _mib(value: float) -> str:
    return f"{value / 2**20:,.0f}"


def markdown(out: dict[str, Any]) -> str:
    big, small = out["big"], out["small"]
    lines = [
        f"### {big['sessions']:,} sessions, {big['messages']:,} messages "
        f"(vs {small['messages']:,} messages)",
        "",
        f"| scenario | operation | n | {small['messages']:,} msgs: median | p95 | "
        f"{big['messages']:,} msgs: median | p95 | ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["operations"]:
        lines.append(
            f"| {r['scenario']} | {r['operation']} | {r['n']} | {r['small_median']:.3f} | "
            f"{r['small_p95']:.3f} | {r['big_median']:.3f} | {r['big_p95']:.3f} | "
            f"{r['ratio']:.2f}{'' if r['met'] else ' (over 1.2)'} |"
        )
    warm = "tables and indexes prewarmed into" if out.get("prewarm") else "cold,"
    shared = out["machine"].get("shared_buffers", "?")
    lines += [
        "",
        f"Times in ms ({warm} shared_buffers = {shared}).",
        "",
        "| table | table MiB | indexes MiB |",
        "|---|---:|---:|",
    ]
    for table in TABLES:
        s = big["sizes"][table]
        lines.append(f"| {table} | {_mib(s['table_bytes'])} | {_mib(s['index_bytes'])} |")
    per = big["sizes"]["per_message"]
    load = big["load"]
    lines += [
        "",
        f"Per message: entries table {per['entries_table']:.0f} B, entries indexes "
        f"{per['entries_indexes']:.0f} B, all tables and indexes "
        f"{per['all_tables_and_indexes']:.0f} B.",
        f"Load: {load['load_seconds']:,.0f} s (COPY {load['copy_seconds']:,.0f} s, indexes and "
        f"keys {load['index_seconds']:,.0f} s, vacuum and analyze "
        f"{load['vacuum_seconds']:,.0f} s).",
    ]
    if out.get("prune"):
        p = out["prune"]
        lines.append(
            f"Prune: {p['sessions']:,} sessions in {p['seconds']:,.0f} s "
            f"({p['sessions_per_second']:,.0f}/s), {p['batches']:,} batches of {p['batch_size']:,} "
            f"(median {p['batch_median_ms']:,.0f} ms, p95 {p['batch_p95_ms']:,.0f} ms, "
            f"max {p['batch_max_ms']:,.0f} ms); rows left: {p['rows_left']}."
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=10_000_000)
    parser.add_argument("--small-sessions", type=int, default=1_000)
    parser.add_argument("--small-messages", type=int, default=10_000)
    parser.add_argument(
        "--partitions",
        type=partition_count,
        default=0,
        help="hash partitions of the tables (0: plain)",
    )
    parser.add_argument("--runs", type=int, default=200, help="timed runs per operation")
    parser.add_argument("--prune", action="store_true", help="then prune the big database")
    parser.add_argument("--prune-batch", type=int, default=1000)
    parser.add_argument("--drop", action="store_true", help="drop the databases at the end")
    parser.add_argument(
        "--tag", type=_tag, default="", help="added to the databases' names (a-z, 0-9)"
    )
    parser.add_argument(
        "--prewarm",
        action="store_true",
        help="read the tables and indexes into shared buffers first (pg_prewarm, which a "
        "superuser installs in both databases: CREATE EXTENSION pg_prewarm)",
    )
    parser.add_argument(
        "--load-only", action="store_true", help="load (or finish loading) and report sizes only"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    big_shape = Shape(args.sessions, args.messages)
    small_shape = Shape(args.small_sessions, args.small_messages)
    big_shape.check()
    small_shape.check()

    def log(text: str) -> None:
        print(text, flush=True)

    admin = pg_admin_url()
    out: dict[str, Any] = {
        "command": "python -m benchmarks.scale " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": report.machine(),
    }
    names = {}
    for side, shape in (("small", small_shape), ("big", big_shape)):
        name = database_name(shape, args.partitions, args.tag)
        names[side] = name
        url = database_url(admin, name)
        log(f"== {side}: {name} ({'new' if ensure_database(admin, name) else 'resumed'})")
        loaded = load(url, shape, args.partitions, log)
        log(f"  loaded in {loaded['load_seconds']:,.0f} s")
        out[side] = {
            "database": name,
            "sessions": shape.sessions,
            "messages": shape.messages,
            "load": loaded,
            "sizes": sizes(url, shape),
        }
    with connection(database_url(admin, names["big"])) as conn:
        out["machine"]["postgres"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    if args.load_only:
        for side in ("small", "big"):
            log(f"{side}: {out[side]['load']} {out[side]['sizes']['per_message']}")
        return 0
    if args.prewarm:
        for side in ("small", "big"):
            out[side]["prewarmed_pages"] = prewarm(database_url(admin, names[side]))
            log(f"  prewarmed {out[side]['prewarmed_pages']:,} pages of {names[side]}")
    with connection(database_url(admin, names["big"])) as conn:
        out["machine"]["shared_buffers"] = conn.execute("SHOW shared_buffers").fetchone()[0]  # type: ignore[index]
    out["prewarm"] = args.prewarm
    log("== operations")
    out["operations"] = run_operations(
        database_url(admin, names["small"]), database_url(admin, names["big"]), args.runs, log
    )
    if args.prune:
        log("== prune")
        out["prune"] = prune_all(database_url(admin, names["big"]), args.prune_batch, log)
    print()
    print(markdown(out))
    report.write_json(args.json, out)
    print(f"\nwrote {args.json}")
    for side, name in names.items():
        # A pruned database is empty: the next run loads it again.
        if args.drop or (side == "big" and args.prune):
            drop_database(admin, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
