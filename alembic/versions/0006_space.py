"""Space per message: indexes no query reads go, the GIN indexes stop batching.

Measured with ``python -m benchmarks.space`` (docs/production.md, "Space per
message"), every index of the three tables was matched with the statements
that read it. Two had none:

* ``ix_sessions_db_entries_created_at``: no statement of the library filters
  entries by time; its one reader was the planner's choice for the newest
  messages of a user (long-term memory's ``list``), a backward walk of every
  message of every user filtered to one user. Without it that read goes
  through the user's sessions and their entries, and costs what the user has
  stored, not what the store holds.
* ``ix_sessions_db_checkpoints_session_id_created_at``: the primary key
  ``(session_id, id)`` finds a session's checkpoints; there are few per session,
  and they are sorted after.

``ix_sessions_db_sessions_forked_from`` becomes partial (``WHERE forked_from IS
NOT NULL``): only forks are ever looked up by it, and every append updates its
session's row, which otherwise added a NULL entry to it each time.

PostgreSQL: the two GIN indexes, the full-text index (when the store has it,
see :mod:`sessions_db.sql.fulltext`) and the sessions' metadata index, get
``fastupdate = off``. With the default, up to 4 MB of new entries wait in a
pending list (per index, and per partition) and are merged into the index in
bulk: pages that stay allocated, and that every search scans. The metadata
index takes a new entry on every append, as an append updates its session's
row. Now each insert puts its keys into the index itself: the full-text index
of 100,000 messages went from 111 to 80 bytes per message, loaded in bulk, and
from 619 to 157 appended one at a time. The option is set on the index of each
partition; the indexes are not rebuilt (``REINDEX`` compacts an old one).

The downgrade makes the two indexes again, the forked_from index whole, resets
the option and, as the revisions before this one always have it, makes the
full-text search objects again if the store was migrated without them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from alembic import op
from sqlalchemy import text

from sessions_db.sql.fulltext import create_sql, read_search

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: The tables this revision creates (none: it changes indexes).
TABLES: tuple[str, ...] = ()

SESSIONS = "sessions_db_sessions"
ENTRIES = "sessions_db_entries"
CHECKPOINTS = "sessions_db_checkpoints"
ENTRIES_CREATED_AT = "ix_sessions_db_entries_created_at"
CHECKPOINTS_SESSION_CREATED_AT = "ix_sessions_db_checkpoints_session_id_created_at"
SESSIONS_FORKED_FROM = "ix_sessions_db_sessions_forked_from"
FTS_INDEX = "ix_sessions_db_entries_fts"
SESSIONS_METADATA = "ix_sessions_db_sessions_metadata"
FORKS_ONLY = "forked_from IS NOT NULL"

# The full-text index of each partition, or the index itself on plain tables.
_FTS_LEAVES = text("""
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'i' AND (
    c.oid IN (SELECT t.relid FROM pg_partition_tree(to_regclass(:index)) t WHERE t.isleaf)
    OR c.oid = to_regclass(:index)
)""")


def _dialect() -> str:
    return op.get_context().dialect.name


def _quoted(schema: str | None, name: str) -> str:
    preparer = op.get_context().dialect.identifier_preparer
    return preparer.quote(name) if schema is None else f"{preparer.quote_schema(schema)}.{name}"


def _fts_option(schema: str | None, setting: str) -> None:
    """``ALTER INDEX ... {setting}`` on the full-text index of every partition (PostgreSQL)."""
    if op.get_context().as_sql:
        # A script from an empty database up: one plain index, named as made.
        op.execute(f"ALTER INDEX {_quoted(schema, FTS_INDEX)} {setting}")
        return
    preparer = op.get_context().dialect.identifier_preparer
    index = _quoted(schema, FTS_INDEX)
    for nspname, relname in op.get_bind().execute(_FTS_LEAVES, {"index": index}):
        op.execute(
            f"ALTER INDEX {preparer.quote_schema(nspname)}.{preparer.quote(relname)} {setting}"
        )


def upgrade() -> None:
    schema = op.get_context().version_table_schema
    # A store whose tables were made again by a change of partition layout at an
    # older revision got the indexes of the newest models, without these two.
    op.drop_index(ENTRIES_CREATED_AT, table_name=ENTRIES, schema=schema, if_exists=True)
    op.drop_index(
        CHECKPOINTS_SESSION_CREATED_AT, table_name=CHECKPOINTS, schema=schema, if_exists=True
    )
    op.drop_index(SESSIONS_FORKED_FROM, table_name=SESSIONS, schema=schema)
    op.create_index(
        SESSIONS_FORKED_FROM,
        SESSIONS,
        ["forked_from"],
        schema=schema,
        postgresql_where=text(FORKS_ONLY),
        sqlite_where=text(FORKS_ONLY),
    )
    if _dialect() == "postgresql":
        _fts_option(schema, "SET (fastupdate = off)")
        op.execute(f"ALTER INDEX {_quoted(schema, SESSIONS_METADATA)} SET (fastupdate = off)")


def downgrade() -> None:
    schema = op.get_context().version_table_schema
    if _dialect() == "postgresql":
        op.execute(f"ALTER INDEX {_quoted(schema, SESSIONS_METADATA)} RESET (fastupdate)")
        if op.get_context().as_sql or read_search(op.get_bind(), schema):
            _fts_option(schema, "RESET (fastupdate)")
        else:
            for statement in create_sql("postgresql", schema):
                op.execute(statement)
            _fts_option(schema, "RESET (fastupdate)")
    elif (
        _dialect() == "sqlite"
        and not op.get_context().as_sql
        and not read_search(op.get_bind(), schema)
    ):
        for statement in create_sql("sqlite", schema):
            op.execute(statement)
    op.drop_index(SESSIONS_FORKED_FROM, table_name=SESSIONS, schema=schema)
    op.create_index(SESSIONS_FORKED_FROM, SESSIONS, ["forked_from"], schema=schema)
    op.create_index(
        CHECKPOINTS_SESSION_CREATED_AT,
        CHECKPOINTS,
        ["session_id", "created_at"],
        schema=schema,
        if_not_exists=True,
    )
    op.create_index(ENTRIES_CREATED_AT, ENTRIES, ["created_at"], schema=schema, if_not_exists=True)
