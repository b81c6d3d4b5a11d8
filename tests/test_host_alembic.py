"""The README's recipe for a host's own alembic environment, run with the real ``alembic`` command.

Only the host's ``upgrade`` applies our migrations; ``current`` and
``revision --autogenerate`` leave the database as it was, ``downgrade`` leaves
our tables alone, and ``upgrade --sql`` writes our DDL into the host's script.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import alembic as alembic_package
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    inspect,
    text,
)

import sessions_db as sdb
from sessions_db import migrations
from sessions_db.sql.engine import normalize_url
from sessions_db.sql.schema import VERSION_TABLE

OUR_TABLES = {"sessions_db_sessions", "sessions_db_entries", "sessions_db_checkpoints"}

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
url = config.get_main_option("sqlalchemy.url")


def run_migrations_offline():
    context.configure(url=url, target_metadata=host_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
        sessions_db.migrations.run_with_host()


def run_migrations_online():
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=host_metadata,
            include_object=sessions_db.migrations.include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
            sessions_db.migrations.run_with_host()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""

HOST_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "host0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "host_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50)),
    )


def downgrade():
    op.drop_table("host_items")
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def host(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """An empty database, and a host alembic project (alembic.ini, env.py, one revision)."""
    if request.param == "postgres":
        new_database: Callable[[], str] = request.getfixturevalue("pg_server")
        url = new_database()
    else:
        url = f"sqlite:///{tmp_path / 'host.db'}"
    return _project(url, tmp_path)


def alembic(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the host's ``alembic ARGS`` in a new process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONS_DB_")}
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(project / "alembic.ini"), *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def tables(url: str) -> set[str]:
    engine = create_engine(normalize_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_current_and_stamp_leave_ours_alone(host: tuple[str, Path]) -> None:
    url, project = host
    alembic(project, "current")
    assert tables(url) == set()
    alembic(project, "stamp", "head")
    assert tables(url) == {"alembic_version"}


def test_upgrade_applies_ours_and_downgrade_keeps_them(host: tuple[str, Path]) -> None:
    url, project = host
    alembic(project, "upgrade", "head")
    assert OUR_TABLES | {"host_items", "alembic_version", VERSION_TABLE} <= tables(url)
    assert migrations.current(url) == migrations.head()
    with sdb.connect(url) as mgr:
        mgr.create("assistant").append_message(sdb.Message.new("user", {"content": "kept"}))

    alembic(project, "downgrade", "base")
    assert "host_items" not in tables(url)
    assert migrations.current(url) == migrations.head()
    with sdb.connect(url) as mgr:
        (meta,) = mgr.list("assistant")
        assert [m.payload for m in mgr.get(meta.id).get_messages()] == [{"content": "kept"}]


def test_autogenerate_does_not_upgrade_ours(host: tuple[str, Path]) -> None:
    url, project = host
    alembic(project, "upgrade", "head")
    migrations.downgrade(url, revision="0001")
    alembic(project, "revision", "--autogenerate", "-m", "nothing new")
    assert migrations.current(url) == "0001"
    (generated,) = (project / "migrations" / "versions").glob("*nothing_new.py")
    assert "sessions_db" not in generated.read_text()


def test_offline_upgrade_writes_our_ddl(host: tuple[str, Path]) -> None:
    url, project = host
    script = alembic(project, "upgrade", "head", "--sql").stdout
    assert tables(url) == set()  # offline: nothing ran
    assert "CREATE TABLE sessions_db_sessions" in script
    assert f"INSERT INTO {VERSION_TABLE}" in script
    # The script, applied as a DBA would, gives a database both sides accept.
    if url.startswith("sqlite"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        db.executescript(script)
        db.close()
    else:
        psql_url = normalize_url(url).replace("+psycopg", "")
        applied = subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", psql_url],
            input=script,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert applied.returncode == 0, applied.stderr
    assert OUR_TABLES | {"host_items"} <= tables(url)
    assert migrations.current(url) == migrations.head()
    engine = create_engine(normalize_url(url))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "host0001"
    engine.dispose()
    with sdb.connect(url) as mgr:
        session = mgr.create("assistant", user_id="u1")
        session.append_message(sdb.Message.new("user", {"content": "after the script"}))
        (hit,) = mgr.backend.search_messages("u1", "script")
        assert hit.session_id == session.id


#: Partitions as a partitioned store has them, made by hand. On PostgreSQL the
#: checkpoints table becomes a real partitioned table (hash by session_id, as the
#: final keys allow) with two partitions; a stray entries partition is a plain copy.
PG_PARTITIONS = """
DROP TABLE sessions_db_checkpoints;
CREATE TABLE sessions_db_checkpoints (
    id VARCHAR(36) NOT NULL,
    session_id VARCHAR(36) NOT NULL,
    entry_id VARCHAR(128) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    checksum VARCHAR(80) NOT NULL,
    metadata JSONB NOT NULL,
    CONSTRAINT pk_sessions_db_checkpoints PRIMARY KEY (session_id, id),
    CONSTRAINT fk_sessions_db_checkpoints_session_id FOREIGN KEY (session_id)
        REFERENCES sessions_db_sessions (id) ON DELETE CASCADE,
    CONSTRAINT fk_sessions_db_checkpoints_session_id_entry_id FOREIGN KEY (session_id, entry_id)
        REFERENCES sessions_db_entries (session_id, id) ON DELETE CASCADE
) PARTITION BY HASH (session_id);
CREATE INDEX ix_sessions_db_checkpoints_id ON sessions_db_checkpoints (id);
CREATE TABLE sessions_db_checkpoints_p0 PARTITION OF sessions_db_checkpoints
    FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE sessions_db_checkpoints_p1 PARTITION OF sessions_db_checkpoints
    FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE sessions_db_entries_p0 (LIKE sessions_db_entries INCLUDING ALL);
"""

SQLITE_PARTITIONS = """
CREATE TABLE sessions_db_entries_p0 (
    session_id VARCHAR(36) NOT NULL,
    id VARCHAR(128) NOT NULL,
    seq BIGINT NOT NULL,
    CONSTRAINT pk_sessions_db_entries_p0 PRIMARY KEY (session_id, id)
);
CREATE UNIQUE INDEX ix_sessions_db_entries_p0_session_id_seq
    ON sessions_db_entries_p0 (session_id, seq);
CREATE TABLE sessions_db_checkpoints_p12 (
    id VARCHAR(36) NOT NULL,
    session_id VARCHAR(36) NOT NULL,
    CONSTRAINT pk_sessions_db_checkpoints_p12 PRIMARY KEY (session_id, id)
);
CREATE INDEX ix_sessions_db_checkpoints_p12_id ON sessions_db_checkpoints_p12 (id);
"""


def test_autogenerate_ignores_partitions(host: tuple[str, Path]) -> None:
    """Neither the host's autogenerate nor ours proposes anything about partitions."""
    url, project = host
    alembic(project, "upgrade", "head")
    engine = create_engine(normalize_url(url))
    partitions = PG_PARTITIONS if engine.dialect.name == "postgresql" else SQLITE_PARTITIONS
    with engine.begin() as conn:
        for statement in partitions.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
    try:
        present = set(inspect(engine).get_table_names())
        assert {name for name in present if migrations.is_partition(name)} == (
            {"sessions_db_checkpoints_p0", "sessions_db_checkpoints_p1", "sessions_db_entries_p0"}
            if engine.dialect.name == "postgresql"
            else {"sessions_db_checkpoints_p12", "sessions_db_entries_p0"}
        )

        # The host's filter, as its env.py passes it.
        host_metadata = MetaData()
        Table(
            "host_items",
            host_metadata,
            Column("id", Integer, primary_key=True),
            Column("name", String(50)),
        )
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_object": migrations.include_object}
            )
            assert compare_metadata(context, host_metadata) == []
    finally:
        engine.dispose()

    # The host's real `alembic revision --autogenerate`.
    alembic(project, "revision", "--autogenerate", "-m", "with partitions")
    (generated,) = (project / "migrations" / "versions").glob("*with_partitions.py")
    assert "sessions_db" not in generated.read_text()
    assert "op." not in generated.read_text()

    # Our own environment compares the models with the parents only.
    command.check(migrations.config(url))

    # On PostgreSQL, the store works on its partitioned checkpoints.
    if url.startswith("postgresql"):
        with sdb.connect(url) as mgr:
            session = mgr.create("assistant")
            session.append_message(sdb.Message.new("user", {"content": "partitioned"}))
            checkpoint = session.checkpoint()
            assert session.restore(checkpoint.id).id == checkpoint.id


def test_partition_names() -> None:
    assert migrations.is_partition("sessions_db_entries_p0")
    assert migrations.is_partition("sessions_db_checkpoints_p12")
    assert migrations.is_partition("sessions_db_sessions_p3")
    for name in (
        "sessions_db_entries",
        "sessions_db_entries_p",
        "sessions_db_entries_px",
        "sessions_db_entries_p1_old",
        "sessions_db_entries_fts",
        "host_items_p0",
        "sessions_db_alembic_version_p0",
        "",
        None,
    ):
        assert not migrations.is_partition(name), name
    partition = Table("sessions_db_entries_p0", MetaData(), Column("seq", Integer))
    index = Index("ix_sessions_db_entries_p0_seq", partition.c.seq)
    assert not migrations.include_own_object(index, index.name, "index", True, None)
    assert not migrations.include_object(index, index.name, "index", True, None)


@pytest.mark.postgres
def test_host_chooses_partitions(pg_server: Callable[[], str], tmp_path: Path) -> None:
    """`alembic -x sessions_db_partitions=N upgrade head`: online, offline, and autogenerate."""
    request_url = pg_server()
    url, project = _project(request_url, tmp_path)
    alembic(project, "-x", "sessions_db_partitions=3", "upgrade", "head")
    assert migrations.layout(url).partitions == 3
    assert {f"sessions_db_entries_p{i}" for i in range(3)} <= tables(url)
    # Later upgrades keep the layout; autogenerate proposes nothing about it.
    alembic(project, "upgrade", "head")
    assert migrations.layout(url).partitions == 3
    alembic(project, "revision", "--autogenerate", "-m", "after partitions")
    (generated,) = (project / "migrations" / "versions").glob("*after_partitions.py")
    assert "op." not in generated.read_text()
    command.check(migrations.config(url))

    script = alembic(project, "-x", "sessions_db_partitions=2", "upgrade", "head", "--sql").stdout
    assert "PARTITION BY HASH (session_id)" in script
    assert "sessions_db_checkpoints_p1 PARTITION OF" in script

    done = subprocess.run(
        [
            *(sys.executable, "-m", "alembic", "-c", str(project / "alembic.ini")),
            *("-x", "sessions_db_partitions=many", "upgrade", "head"),
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "sessions_db_partitions must be a whole number" in done.stderr


def _project(url: str, tmp_path: Path) -> tuple[str, Path]:
    """A host alembic project on ``url`` (as the ``host`` fixture makes one)."""
    project = tmp_path / "host_project"
    (project / "migrations" / "versions").mkdir(parents=True)
    (project / "migrations" / "env.py").write_text(textwrap.dedent(HOST_ENV))
    (project / "migrations" / "versions" / "host0001.py").write_text(HOST_REVISION)
    template = Path(alembic_package.__file__).parent / "templates" / "generic" / "script.py.mako"
    (project / "migrations" / "script.py.mako").write_text(template.read_text())
    (project / "alembic.ini").write_text(
        "[alembic]\n"
        "script_location = %(here)s/migrations\n"
        f"sqlalchemy.url = {normalize_url(url).replace('%', '%%')}\n"
    )
    return url, project
