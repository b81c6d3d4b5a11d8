"""Full-text search of message payloads, and sessions by user.

PostgreSQL: a GIN expression index on the text-search vector of the string
values of message payloads. SQLite: an FTS5 table of that text, a table mapping
its rows to entries (its INTEGER PRIMARY KEY keeps the mapping stable across
VACUUM), and triggers keeping both in step with the entries; existing messages
are indexed. Both: an index on the sessions' user_id.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FTS_INDEX = "ix_sessions_db_entries_fts"
FTS_TABLE = "sessions_db_entries_fts"
FTS_DOCS = "sessions_db_entries_fts_docs"
VECTOR = "jsonb_to_tsvector('simple'::regconfig, payload, '[\"string\"]'::jsonb)"
# The searchable text of an SQLite entry row: the string values of its payload.
TEXT = (
    "(SELECT coalesce(group_concat(value, ' '), '') "
    "FROM json_tree({row}.payload) WHERE type = 'text')"
)
#: The tables this revision creates, in order (what its downgrade drops; SQLite only).
TABLES = (FTS_DOCS, FTS_TABLE)

SQLITE_UP = [
    f"""CREATE TABLE {FTS_DOCS} (
    docid INTEGER PRIMARY KEY,
    session_id VARCHAR(36) NOT NULL,
    entry_id VARCHAR(128) NOT NULL,
    CONSTRAINT uq_{FTS_DOCS}_session_id_entry_id UNIQUE (session_id, entry_id),
    CONSTRAINT fk_{FTS_DOCS}_session_id_entry_id FOREIGN KEY (session_id, entry_id)
        REFERENCES sessions_db_entries (session_id, id) ON DELETE CASCADE
)""",
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(body, tokenize = 'unicode61')",
    f"""CREATE TRIGGER {FTS_TABLE}_insert AFTER INSERT ON sessions_db_entries
WHEN NEW.type = 'message' BEGIN
    INSERT INTO {FTS_DOCS} (session_id, entry_id) VALUES (NEW.session_id, NEW.id);
    INSERT INTO {FTS_TABLE} (rowid, body) VALUES (
        (SELECT docid FROM {FTS_DOCS} WHERE session_id = NEW.session_id AND entry_id = NEW.id),
        {TEXT.format(row="NEW")});
END""",
    f"""CREATE TRIGGER {FTS_TABLE}_update AFTER UPDATE OF payload ON sessions_db_entries
WHEN NEW.type = 'message' BEGIN
    UPDATE {FTS_TABLE} SET body = {TEXT.format(row="NEW")}
    WHERE rowid = (SELECT docid FROM {FTS_DOCS}
                   WHERE session_id = NEW.session_id AND entry_id = NEW.id);
END""",
    # Entries go by ON DELETE CASCADE (from their session), which deletes their
    # mapping rows, which take their FTS rows with them here.
    f"""CREATE TRIGGER {FTS_DOCS}_delete AFTER DELETE ON {FTS_DOCS} BEGIN
    DELETE FROM {FTS_TABLE} WHERE rowid = OLD.docid;
END""",
    f"""INSERT INTO {FTS_DOCS} (session_id, entry_id)
SELECT session_id, id FROM sessions_db_entries WHERE type = 'message'""",
    f"""INSERT INTO {FTS_TABLE} (rowid, body)
SELECT d.docid, {TEXT.format(row="e")}
FROM {FTS_DOCS} d
JOIN sessions_db_entries e ON e.session_id = d.session_id AND e.id = d.entry_id""",
]

SQLITE_DOWN = [
    f"DROP TRIGGER IF EXISTS {FTS_DOCS}_delete",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_update",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_insert",
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
    f"DROP TABLE IF EXISTS {FTS_DOCS}",
]


def _dialect() -> str:
    return op.get_context().dialect.name


def _in_schema(schema: str | None, name: str) -> str:
    """Return ``name`` qualified by ``schema``, quoted as the dialect needs."""
    if schema is None:
        return name
    return f"{op.get_context().dialect.identifier_preparer.quote_schema(schema)}.{name}"


def upgrade() -> None:
    schema = op.get_context().version_table_schema
    op.create_index(
        "ix_sessions_db_sessions_user_id", "sessions_db_sessions", ["user_id"], schema=schema
    )
    if _dialect() == "postgresql":
        table = _in_schema(schema, "sessions_db_entries")
        op.execute(
            f"CREATE INDEX {FTS_INDEX} ON {table} USING gin ({VECTOR}) WHERE type = 'message'"
        )
    elif _dialect() == "sqlite":
        for statement in SQLITE_UP:
            op.execute(statement)


def downgrade() -> None:
    schema = op.get_context().version_table_schema
    if _dialect() == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {_in_schema(schema, FTS_INDEX)}")
    elif _dialect() == "sqlite":
        for statement in SQLITE_DOWN:
            op.execute(statement)
    op.drop_index(
        "ix_sessions_db_sessions_user_id", table_name="sessions_db_sessions", schema=schema
    )
