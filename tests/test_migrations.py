"""Migrations: upgrade and downgrade, agreement with the models, host integration."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

import sessions_db as sdb
from sessions_db import migrations
from sessions_db.sql.engine import normalize_url
from sessions_db.sql.schema import VERSION_TABLE, Base, is_fts_object

from .test_host_alembic import HOST_REVISION

ADK_TABLES = {"sessions_db_adk_app_state", "sessions_db_adk_user_state"}
OUR_TABLES = {
    "sessions_db_sessions",
    "sessions_db_entries",
    "sessions_db_checkpoints",
} | ADK_TABLES
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database (never migrated)."""
    if request.param == "postgres":
        new_database: Callable[[], str] = request.getfixturevalue("pg_server")
        return new_database()
    return f"sqlite:///{tmp_path / 'empty.db'}"


def _engine(url: str) -> Engine:
    return create_engine(normalize_url(url))


def _tables(url: str) -> set[str]:
    engine = _engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_url: str) -> None:
    assert migrations.current(empty_url) is None
    migrations.upgrade(empty_url)
    assert OUR_TABLES | {VERSION_TABLE} <= _tables(empty_url)
    assert migrations.current(empty_url) == migrations.head()
    with sdb.connect(empty_url) as mgr:
        mgr.create("assistant").append_message(sdb.Message.new("user", {"content": "x"}))
    migrations.downgrade(empty_url, revision="base")
    assert not (OUR_TABLES & _tables(empty_url))
    assert migrations.current(empty_url) is None
    migrations.upgrade(empty_url)
    with sdb.connect(empty_url) as mgr:
        assert mgr.list("assistant") == []


def test_models_and_migrations_agree(empty_url: str) -> None:
    migrations.upgrade(empty_url)
    engine = _engine(empty_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_object": lambda obj, name, type_, reflected, compare_to: (
                        (type_ != "table" or name in OUR_TABLES) and not is_fts_object(name)
                    ),
                },
            )
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_keys_lead_with_session_id(empty_url: str) -> None:
    """Primary keys are as modelled (autogenerate does not compare them), and every
    primary key and unique index of entries and checkpoints leads with session_id."""
    migrations.upgrade(empty_url)
    engine = _engine(empty_url)
    try:
        found = inspect(engine)
        for name in OUR_TABLES:
            modelled = [c.name for c in Base.metadata.tables[name].primary_key.columns]
            assert found.get_pk_constraint(name)["constrained_columns"] == modelled, name
        for name in ("sessions_db_entries", "sessions_db_checkpoints"):
            assert found.get_pk_constraint(name)["constrained_columns"][0] == "session_id"
            heads = [i["column_names"][0] for i in found.get_indexes(name) if i["unique"]]
            heads += [u["column_names"][0] for u in found.get_unique_constraints(name)]
            assert set(heads) <= {"session_id"}, name
        checkpoint_indexes = found.get_indexes("sessions_db_checkpoints")
        assert {"name": "ix_sessions_db_checkpoints_id", "unique": False} in [
            {"name": i["name"], "unique": i["unique"]} for i in checkpoint_indexes
        ]
    finally:
        engine.dispose()


def test_session_keys_are_unique_per_agent(empty_url: str) -> None:
    migrations.upgrade(empty_url)
    insert = text(
        "INSERT INTO sessions_db_sessions (id, agent_name, created_at, updated_at, "
        "message_count, last_seq, metadata, key, forked_from, forked_at) "
        "VALUES (:id, :agent, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0, 0, '{}', :key, "
        ":forked_from, :forked_at)"
    )
    engine = _engine(empty_url)
    try:
        with engine.begin() as conn:
            for i, (agent, key) in enumerate(
                [("a", None), ("a", None), ("a", "k1"), ("b", "k1"), ("a", "k2")]
            ):
                conn.execute(
                    insert,
                    {
                        "id": f"s{i}",
                        "agent": agent,
                        "key": key,
                        "forked_from": None,
                        "forked_at": None,
                    },
                )
            # A fork names its source, which need not exist (no foreign key).
            conn.execute(
                insert,
                {"id": "fork", "agent": "a", "key": None, "forked_from": "gone", "forked_at": "e1"},
            )
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(
                insert,
                {"id": "s9", "agent": "a", "key": "k1", "forked_from": None, "forked_at": None},
            )
    finally:
        engine.dispose()


def test_downgrade_to_0003_and_back_keeps_rows(empty_url: str) -> None:
    migrations.upgrade(empty_url)
    with sdb.connect(empty_url) as mgr:
        session = mgr.create("assistant", user_id="u1")
        session.append_message(sdb.Message.new("user", {"content": "kept"}))
        checkpoint = session.checkpoint()
        session.append_message(sdb.Message.new("assistant", {"content": "dropped by restore"}))
    migrations.downgrade(empty_url, revision="0003")
    engine = _engine(empty_url)
    try:
        found = inspect(engine)
        pk = found.get_pk_constraint("sessions_db_checkpoints")["constrained_columns"]
        assert pk == ["id"]
        columns = {c["name"] for c in found.get_columns("sessions_db_sessions")}
        assert not {"key", "forked_from", "forked_at"} & columns
        indexes = {i["name"] for i in found.get_indexes("sessions_db_sessions")}
        assert "ix_sessions_db_sessions_agent_name_key" not in indexes
    finally:
        engine.dispose()
    migrations.upgrade(empty_url)
    with sdb.connect(empty_url) as mgr:
        again = mgr.get(session.id)
        assert [c.id for c in again.list_checkpoints()] == [checkpoint.id]
        again.restore(checkpoint.id)
        assert [m.payload["content"] for m in again.get_messages()] == ["kept"]


def test_downgrade_to_0004_drops_only_the_adk_state(empty_url: str) -> None:
    migrations.upgrade(empty_url)
    with sdb.connect(empty_url) as mgr:
        session = mgr.create("assistant", user_id="u1")
        session.append_message(sdb.Message.new("user", {"content": "kept"}))
    engine = _engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO sessions_db_adk_user_state (agent_name, user_id, state, "
                    "updated_at) VALUES ('assistant', 'u1', '{}', CURRENT_TIMESTAMP)"
                )
            )
        assert migrations.tables_dropped(empty_url, revision="0004") == {
            "sessions_db_adk_user_state": 1,
            "sessions_db_adk_app_state": 0,
        }
        migrations.downgrade(empty_url, revision="0004")
        assert not (ADK_TABLES & _tables(empty_url))
        assert migrations.current(empty_url) == "0004"
        migrations.upgrade(empty_url)
        assert _tables(empty_url) >= ADK_TABLES
        with engine.connect() as conn:
            count = "SELECT count(*) FROM sessions_db_adk_user_state"
            assert conn.execute(text(count)).scalar() == 0
    finally:
        engine.dispose()
    with sdb.connect(empty_url) as mgr:
        assert [m.payload["content"] for m in mgr.get(session.id).get_messages()] == ["kept"]


def test_host_alembic_version_is_untouched(empty_url: str) -> None:
    engine = _engine(empty_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('host_rev_1')"))
    migrations.upgrade(empty_url)
    migrations.downgrade(empty_url, revision="base")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [
            ("host_rev_1",)
        ]
    engine.dispose()


HOST_ENV = """
from alembic import context
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine

import sessions_db.migrations

host_metadata = MetaData()
Table(
    "host_items",
    host_metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50)),
)

config = context.config
engine = create_engine(config.get_main_option("sqlalchemy.url"))
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=host_metadata,
        include_object=sessions_db.migrations.include_object,
    )
    with context.begin_transaction():
        context.run_migrations()
        sessions_db.migrations.upgrade(connection)
    connection.commit()
engine.dispose()
"""


def test_from_the_host_alembic_environment(empty_url: str, tmp_path: Path) -> None:
    """The earlier recipe: a host calls ``migrations.upgrade(connection)`` from its env.py."""
    script_dir = tmp_path / "host_alembic"
    (script_dir / "versions").mkdir(parents=True)
    (script_dir / "env.py").write_text(textwrap.dedent(HOST_ENV))
    (script_dir / "versions" / "host0001.py").write_text(textwrap.dedent(HOST_REVISION))
    config = Config()
    config.set_main_option("script_location", str(script_dir))
    config.set_main_option("sqlalchemy.url", normalize_url(empty_url))
    command.upgrade(config, "head")

    assert OUR_TABLES | {"host_items", "alembic_version", VERSION_TABLE} <= _tables(empty_url)
    engine = _engine(empty_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "host0001"
        ours = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        assert ours == migrations.head()
        # The host's autogenerate, with our filter, proposes nothing about our tables.
        from sqlalchemy import Column, Integer, MetaData, String, Table

        host_metadata = MetaData()
        Table(
            "host_items",
            host_metadata,
            Column("id", Integer, primary_key=True),
            Column("name", String(50)),
        )
        context = MigrationContext.configure(
            conn, opts={"include_object": migrations.include_object}
        )
        assert compare_metadata(context, host_metadata) == []
    engine.dispose()
    with sdb.connect(empty_url) as mgr:  # the schema check passes
        assert mgr.list("assistant") == []


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessions_db", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_command(empty_url: str) -> None:
    printed = _cli("migrate", "--sql", "--url", empty_url)
    assert printed.returncode == 0, printed.stderr
    assert "CREATE TABLE sessions_db_entries" in printed.stdout
    assert _cli("migrate", "current", "--url", empty_url).stdout.startswith("none")
    done = _cli("migrate", "--url", empty_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"migrated to {migrations.head()}"
    assert _cli("migrate", "current", "--url", empty_url).stdout.strip() == (
        f"{migrations.head()} (head)"
    )
    down = _cli("migrate", "downgrade", "--revision", "base", "--yes", "--url", empty_url)
    assert down.returncode == 0, down.stderr
    assert not (OUR_TABLES & _tables(empty_url))


def test_alembic_ini_at_the_top_level(empty_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`alembic -c alembic.ini upgrade head` with SESSIONS_DB_URL works too."""
    monkeypatch.setenv("SESSIONS_DB_URL", empty_url)
    command.upgrade(Config(str(ROOT / "alembic.ini")), "head")
    assert migrations.current(empty_url) == migrations.head()


def test_wheel_ships_the_migrations(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path / "dist")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("sessions_db-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "sessions_db/py.typed",
        "sessions_db/_alembic/env.py",
        "sessions_db/_alembic/script.py.mako",
        "sessions_db/_alembic/versions/0001_initial.py",
    } <= names
    # Unpacked on its own (no source checkout around it), it migrates a database.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    db = tmp_path / "from_wheel.db"
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); from sessions_db import migrations;"
            "print(migrations.script_location()); migrations.upgrade(sys.argv[2])",
            str(site),
            f"sqlite:///{db}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == str(site / "sessions_db" / "_alembic")
    assert migrations.current(f"sqlite:///{db}") == migrations.head()
