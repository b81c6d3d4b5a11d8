"""The final keys: checkpoints keyed by session; sessions' external keys and fork sources.

The entries and checkpoints tables are to be hash-partitioned by ``session_id``,
which PostgreSQL allows only when every primary key and unique index holds the
partition key. The entries' already lead with it; the checkpoints' primary key
becomes ``(session_id, id)``, and a plain index on ``id`` serves lookups by
checkpoint ID alone.

Sessions get three nullable columns, NULL in existing rows:

* ``key``: an external key a framework gives a session, unique per agent (a
  unique index on ``(agent_name, key)``; NULLs never collide);
* ``forked_from``: the session a fork was copied from (indexed; no foreign key,
  the source may be deleted later);
* ``forked_at``: the entry of the source the fork was taken at.

On PostgreSQL the sessions' ``metadata`` also gets a GIN index
(``jsonb_path_ops``), which serves listings filtered by metadata containment.

A store whose entries and checkpoints tables are hash-partitioned (see
:mod:`sessions_db.sql.partitions`) is first given plain tables again by the
downgrade, rows kept: the older key cannot partition.

SQLite copies the checkpoints table to change its key (batch mode; the table's
shape at 0003 is given here, so that no reflection is needed and ``--sql``
works); the sessions table is altered in place, never copied, since dropping it
would delete every entry by ON DELETE CASCADE. Downgrading on SQLite needs
SQLite 3.35 or later (ALTER TABLE ... DROP COLUMN). On PostgreSQL, the new
primary key is built while writes to the checkpoints table wait.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from sessions_db.sql.partitions import read_layout, relayout

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: The tables this revision creates (none: it changes keys and adds columns).
TABLES: tuple[str, ...] = ()

SESSIONS = "sessions_db_sessions"
CHECKPOINTS = "sessions_db_checkpoints"
CHECKPOINTS_PK = "pk_sessions_db_checkpoints"
CHECKPOINTS_ID = "ix_sessions_db_checkpoints_id"
SESSIONS_KEY = "ix_sessions_db_sessions_agent_name_key"
SESSIONS_FORKED_FROM = "ix_sessions_db_sessions_forked_from"
#: PostgreSQL only: serves metadata containment (``metadata @> ...``) in listings.
SESSIONS_METADATA = "ix_sessions_db_sessions_metadata"
NEW_COLUMNS = ("key", "forked_from", "forked_at")


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _utc() -> sa.types.TypeEngine:
    return sa.DateTime(timezone=True)


def _checkpoints(primary_key: list[str], *, id_index: bool, schema: str | None) -> sa.Table:
    """The checkpoints table with ``primary_key`` (and the index on ``id``), for batch mode."""
    ref = f"{schema}." if schema else ""
    indexes = [sa.Index(f"ix_{CHECKPOINTS}_session_id_created_at", "session_id", "created_at")]
    if id_index:
        indexes.append(sa.Index(CHECKPOINTS_ID, "id"))
    return sa.Table(
        CHECKPOINTS,
        sa.MetaData(),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("entry_id", sa.String(128), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("checksum", sa.String(80), nullable=False),
        sa.Column("metadata", _json(), nullable=False),
        sa.PrimaryKeyConstraint(*primary_key, name=CHECKPOINTS_PK),
        sa.ForeignKeyConstraint(
            ["session_id"],
            [f"{ref}{SESSIONS}.id"],
            name=f"fk_{CHECKPOINTS}_session_id",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id", "entry_id"],
            [f"{ref}sessions_db_entries.session_id", f"{ref}sessions_db_entries.id"],
            name=f"fk_{CHECKPOINTS}_session_id_entry_id",
            ondelete="CASCADE",
        ),
        *indexes,
        schema=schema,
    )


def upgrade() -> None:
    schema = op.get_context().version_table_schema
    before = _checkpoints(["id"], id_index=False, schema=schema)
    with op.batch_alter_table(CHECKPOINTS, schema=schema, copy_from=before) as batch:
        batch.drop_constraint(CHECKPOINTS_PK, type_="primary")
        batch.create_primary_key(CHECKPOINTS_PK, ["session_id", "id"])
        batch.create_index(CHECKPOINTS_ID, ["id"])

    op.add_column(SESSIONS, sa.Column("key", sa.String(1024), nullable=True), schema=schema)
    op.add_column(SESSIONS, sa.Column("forked_from", sa.String(36), nullable=True), schema=schema)
    op.add_column(SESSIONS, sa.Column("forked_at", sa.String(128), nullable=True), schema=schema)
    op.create_index(SESSIONS_KEY, SESSIONS, ["agent_name", "key"], unique=True, schema=schema)
    op.create_index(SESSIONS_FORKED_FROM, SESSIONS, ["forked_from"], schema=schema)
    if op.get_context().dialect.name == "postgresql":
        op.create_index(
            SESSIONS_METADATA,
            SESSIONS,
            ["metadata"],
            schema=schema,
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        )


def downgrade() -> None:
    schema = op.get_context().version_table_schema
    if not op.get_context().as_sql and read_layout(op.get_bind(), schema).partitioned:
        relayout(op.get_bind(), schema, 0)
    if op.get_context().dialect.name == "postgresql":
        op.drop_index(SESSIONS_METADATA, table_name=SESSIONS, schema=schema)
    op.drop_index(SESSIONS_FORKED_FROM, table_name=SESSIONS, schema=schema)
    op.drop_index(SESSIONS_KEY, table_name=SESSIONS, schema=schema)
    for column in reversed(NEW_COLUMNS):
        op.drop_column(SESSIONS, column, schema=schema)

    after = _checkpoints(["session_id", "id"], id_index=True, schema=schema)
    with op.batch_alter_table(CHECKPOINTS, schema=schema, copy_from=after) as batch:
        batch.drop_index(CHECKPOINTS_ID)
        batch.drop_constraint(CHECKPOINTS_PK, type_="primary")
        batch.create_primary_key(CHECKPOINTS_PK, ["id"])
