"""Hash partitions by session_id: chosen at migration time, kept by autogenerate, pruned by queries.

The pruning tests run the library's own statements (captured as they are sent)
under ``EXPLAIN`` on a store of four partitions, with the same parameters, both
as the planner sees them on their first executions (the values known, pruning at
plan time) and as a generic plan of a prepared statement (what psycopg's
prepared statements may get: pruning when the executor starts, shown as
``Subplans Removed``). Every query about one session must read one partition.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import create_engine, event, inspect, make_url

import sessions_db as sdb
from sessions_db import migrations
from sessions_db.cli import main
from sessions_db.sql.engine import normalize_url
from sessions_db.sql.partitions import MAX_PARTITIONS, layout_sql, partition_count

pytestmark = pytest.mark.postgres

PARTITIONS = 4
_PARTITION = re.compile(r"^(sessions_db_(?:entries|checkpoints))_p([0-9]+)$")


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), env={"SESSIONS_DB_URL": None, "COLUMNS": "200"})


def _tables(url: str) -> set[str]:
    engine = create_engine(normalize_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def partitioned(pg_server: Callable[[], str]) -> str:
    """A new database migrated with four partitions."""
    url = pg_server()
    migrations.upgrade(url, partitions=PARTITIONS)
    return url


# -- choosing the layout -------------------------------------------------------


def test_migrate_partitions_from_the_command_line(pg_server: Callable[[], str]) -> None:
    url = pg_server()
    result = _cli("migrate", "--url", url, "--partitions", "3")
    assert result.exit_code == 0, result.output
    assert "hash-partitioned by session_id into 3 partitions" in result.output
    names = _tables(url)
    for table in ("sessions_db_entries", "sessions_db_checkpoints"):
        assert {f"{table}_p{i}" for i in range(3)} <= names
        assert f"{table}_p3" not in names
    assert migrations.layout(url).partitions == 3

    # Known to later runs: `current` shows it, a plain `migrate` keeps it.
    result = _cli("migrate", "current", "--url", url, "--json")
    assert json.loads(result.output)["partitions"] == 3
    assert _cli("migrate", "--url", url).exit_code == 0
    assert migrations.layout(url).partitions == 3
    with sdb.connect(url, migrate=True) as mgr:
        session = mgr.create("assistant", user_id="u1")
        session.append_messages([sdb.Message.new("user", {"content": f"m{i}"}) for i in range(5)])
        checkpoint = session.checkpoint()
    assert migrations.layout(url).partitions == 3

    # Back to plain tables and to more partitions: the rows stay.
    for count in (0, 5):
        result = _cli("migrate", "--url", url, "--partitions", str(count), "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["partitions"] == count
        with sdb.connect(url) as mgr:
            again = mgr.get(session.id)
            assert [m.payload["content"] for m in again.get_messages()] == [
                f"m{i}" for i in range(5)
            ]
            assert again.restore(checkpoint.id).id == checkpoint.id
    assert not {f"sessions_db_entries_p{i}" for i in range(5)} - _tables(url)


@pytest.mark.parametrize("bad", ["-1", str(MAX_PARTITIONS + 1), "x", "2.5"])
def test_cli_refuses_a_bad_partition_count(pg_server: Callable[[], str], bad: str) -> None:
    url = pg_server()
    result = _cli("migrate", "--url", url, "--partitions", bad)
    assert result.exit_code == 2, result.output
    assert migrations.current(url) is None


@pytest.mark.parametrize("bad", [-1, MAX_PARTITIONS + 1, True, 2.0, "4; DROP TABLE x", " ", None])
def test_partition_counts_are_checked(bad: object) -> None:
    with pytest.raises(sdb.InvalidArgumentError):
        partition_count(bad)
    with pytest.raises(sdb.InvalidArgumentError):
        layout_sql(None, bad)  # type: ignore[arg-type]


def test_partitions_only_at_the_newest_revision(pg_server: Callable[[], str]) -> None:
    url = pg_server()
    with pytest.raises(sdb.InvalidArgumentError, match="newest revision"):
        migrations.upgrade(url, revision="0003", partitions=2)
    assert migrations.current(url) is None  # the migration's transaction was rolled back


def test_partitions_need_postgresql(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with pytest.raises(sdb.ConfigurationError, match="PostgreSQL"):
        migrations.upgrade(url, partitions=2)
    migrations.upgrade(url, partitions=0)  # plain tables: what SQLite has
    assert migrations.layout(url).partitions == 0


def test_autogenerate_is_clean_on_a_partitioned_store(partitioned: str) -> None:
    command.check(migrations.config(partitioned))
    # The partitions and the foreign keys PostgreSQL derives for them are not models.
    assert {f"sessions_db_entries_p{i}" for i in range(PARTITIONS)} <= _tables(partitioned)


def test_sql_script_makes_a_partitioned_store(pg_server: Callable[[], str]) -> None:
    """`migrate --sql --partitions N`, applied by hand to an empty database, is the layout."""
    source, target = pg_server(), pg_server()
    result = _cli("migrate", "--sql", "--url", source, "--partitions", "2")
    assert result.exit_code == 0, result.output
    assert "PARTITION BY HASH (session_id)" in result.output
    assert migrations.current(source) is None  # --sql runs nothing
    with psycopg.connect(_dsn(target), autocommit=True) as conn:
        conn.execute(result.output.encode())
    assert migrations.current(target) == migrations.head()
    assert migrations.layout(target).partitions == 2
    command.check(migrations.config(target))
    with sdb.connect(target) as mgr:
        session = mgr.create("assistant", user_id="u1")
        session.append_message(sdb.Message.new("user", {"content": "scripted partitions"}))
        assert [hit.session_id for hit in mgr.memory("u1").search("scripted")] == [session.id]


def test_downgrade_of_a_partitioned_store_keeps_the_rows(partitioned: str) -> None:
    with sdb.connect(partitioned) as mgr:
        session = mgr.create("assistant")
        session.append_messages([sdb.Message.new("user", {"content": f"m{i}"}) for i in range(3)])
    migrations.downgrade(partitioned, revision="0003")
    assert migrations.layout(partitioned).partitions == 0
    assert not {name for name in _tables(partitioned) if migrations.is_partition(name)}
    migrations.upgrade(partitioned)
    with sdb.connect(partitioned) as mgr:
        assert len(mgr.get(session.id).get_messages()) == 3


# -- pruning ----------------------------------------------------------------------


@contextmanager
def _captured(mgr: sdb.Manager) -> Iterator[list[tuple[str, Any]]]:
    """Record the statements the manager's engine sends, with their parameters."""
    sent: list[tuple[str, Any]] = []
    engine = mgr.backend.engine  # type: ignore[attr-defined]

    def record(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            sent.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _relations(plan: Any) -> list[str]:
    """Every relation a JSON plan reads or writes."""
    found: list[str] = []
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            found.append(plan["Relation Name"])
        for value in plan.values():
            found += _relations(value)
    elif isinstance(plan, list):
        for value in plan:
            found += _relations(value)
    return found


def _removed(plan: Any) -> int:
    """The subplans removed by pruning when the executor started."""
    if isinstance(plan, dict):
        return int(plan.get("Subplans Removed", 0)) + sum(_removed(v) for v in plan.values())
    if isinstance(plan, list):
        return sum(_removed(v) for v in plan)
    return 0


def _partitions_read(plan: Any) -> dict[str, set[int]]:
    """The partitions of each partitioned table that a plan reads."""
    read: dict[str, set[int]] = {}
    for name in _relations(plan):
        match = _PARTITION.match(name)
        if match:
            read.setdefault(match.group(1), set()).add(int(match.group(2)))
    return read


_NAMED = re.compile(r"%\(([A-Za-z_0-9]+)\)s")


def _explain(url: str, statement: str, params: Any) -> tuple[Any, Any]:
    """Return the plans of ``statement``: with its values known, and generic (prepared)."""
    params = dict(params or {})
    with psycopg.connect(_dsn(url), autocommit=False) as conn:
        client = psycopg.ClientCursor(conn)
        client.execute(f"EXPLAIN (FORMAT JSON) {statement}", params)
        custom = client.fetchone()[0]  # type: ignore[index]
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        prepared = _NAMED.sub(number, statement)
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE sdb_plan AS {prepared}")
        placeholders = ", ".join(["%s"] * len(names))
        client.execute(
            f"EXPLAIN (FORMAT JSON) EXECUTE sdb_plan({placeholders})", [params[n] for n in names]
        )
        generic = client.fetchone()[0]  # type: ignore[index]
        conn.rollback()
    return custom, generic


def _assert_one_partition(url: str, sent: list[tuple[str, Any]], what: str) -> int:
    """Check that no statement in ``sent`` reads more than one partition of a table."""
    assert sent, f"{what}: no statement captured"
    scans = 0
    for statement, params in sent:
        if statement.lstrip().upper().startswith(("SELECT SET_CONFIG", "SELECT PG_")):
            continue
        for kind, plan in zip(("custom", "generic"), _explain(url, statement, params), strict=True):
            read = _partitions_read(plan)
            for table, partitions in read.items():
                assert len(partitions) == 1, (
                    f"{what} ({kind} plan) reads partitions {sorted(partitions)} of {table}:\n"
                    f"{statement}\n{json.dumps(plan, indent=1)}"
                )
            relations = _relations(plan)
            # A read of a partitioned table always names the one partition it reads.
            for table in ("sessions_db_entries", "sessions_db_checkpoints"):
                scanned_parent = [r for r in relations if r == table]
                if scanned_parent and not statement.lstrip().upper().startswith(
                    ("INSERT", "WITH PREV")
                ):
                    raise AssertionError(f"{what} ({kind}) reads {table} unpruned:\n{statement}")
            if kind == "generic" and read:
                assert _removed(plan) >= PARTITIONS - 1, f"{what}: no runtime pruning"
            scans += len(read)
    return scans


def test_every_per_session_query_reads_one_partition(partitioned: str) -> None:
    with sdb.connect(partitioned) as mgr:
        others = [mgr.create("assistant", user_id=f"u{i}") for i in range(12)]
        for other in others:
            other.append_messages([sdb.Message.new("user", {"content": "x"}) for _ in range(3)])
            other.checkpoint()
        session = mgr.create("assistant", user_id="u1")
        session.append_messages([sdb.Message.new("user", {"content": f"m{i}"}) for i in range(20)])
        marked = session.get_messages()[9]
        taken = session.checkpoint()

        checked = {}
        operations: dict[str, Callable[[], object]] = {
            "append": lambda: session.append_message(sdb.Message.new("user", {"content": "a"})),
            "append_batch": lambda: session.append_messages(
                [sdb.Message.new("user", {"content": "b"}) for _ in range(3)]
            ),
            "history_scan": session.get_messages,
            "history_walk_newest": lambda: session.get_messages(limit=5),
            "history_walk_before": lambda: session.get_messages(limit=5, before=marked.id),
            "entries": session.get_entries,
            "info": session.info,
            "checkpoint": lambda: session.checkpoint(metadata={"at": "here"}),
            "list_checkpoints": session.list_checkpoints,
            "fork": session.fork,
            "fork_at": lambda: session.fork(at=marked.id),
            "restore": lambda: session.restore(taken.id),
            "fork_at_checkpoint": lambda: session.fork(checkpoint_id=taken.id),
            "rewind": lambda: session.rewind(marked.id),
            "pop": session.pop_message,
            "clear": session.clear,
        }
        for name, operation in operations.items():
            with _captured(mgr) as sent:
                operation()
            checked[name] = _assert_one_partition(partitioned, sent, name)
    # The reads did read a partition (the check is not vacuous).
    for name in ("history_scan", "history_walk_newest", "history_walk_before", "entries", "fork"):
        assert checked[name] >= 1, name
    for name in ("list_checkpoints", "restore", "fork_at_checkpoint"):
        assert checked[name] >= 1, name


def test_copy_moves_a_plain_store_into_a_partitioned_one(pg_server: Callable[[], str]) -> None:
    """The documented move: a new database migrated with partitions, then `sessions-db copy`."""
    plain, partitioned_url = pg_server(), pg_server()
    migrations.upgrade(plain)
    with sdb.connect(plain) as mgr:
        made = []
        for i in range(6):
            session = mgr.create(f"agent{i % 2}", user_id=f"u{i}")
            session.append_messages(
                [sdb.Message.new("user", {"content": f"m{i}-{j}"}) for j in range(4)]
            )
            checkpoint = session.checkpoint()
            session.append_message(sdb.Message.new("assistant", {"content": "after"}))
            session.restore(checkpoint.id)
            made.append((session.id, session.get_entries()))
    assert _cli("migrate", "--url", partitioned_url, "--partitions", "4").exit_code == 0
    result = _cli("copy", "--from", plain, "--to", partitioned_url, "--json")
    assert result.exit_code == 0, result.output
    assert migrations.layout(partitioned_url).partitions == 4
    with sdb.connect(partitioned_url) as mgr:
        for session_id, entries in made:
            assert mgr.get(session_id).get_entries() == entries
    assert _cli("verify", "--url", partitioned_url).exit_code == 0
