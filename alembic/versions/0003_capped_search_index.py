"""Index only the first 100,000 characters of a message's text (PostgreSQL).

A PostgreSQL text-search vector must stay under 1 MB, and the index of 0002
built one from all of a payload's strings: a message with more than about 1 MB
of distinct words (a tool's output) could not be stored at all (error 54000).
The index now takes the payload's string values as a JSON array, cuts its text
to ``INDEXED_CHARS`` characters and turns JSON escapes into spaces (what the
text-search parser makes of the characters they stand for: separators), so the
same words are found as before, and a vector has at most 100,000 characters of
lexemes: at most 400 kB, whatever the script. The message itself is stored
whole; only words past the cut are not found by a search. SQLite's FTS5 has no
such limit and is unchanged.

Rebuilding the index locks writes to the entries table while it runs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FTS_INDEX = "ix_sessions_db_entries_fts"
#: How many characters of a message's text (its string values, in JSON) are indexed.
INDEXED_CHARS = 100_000
STRINGS = "jsonb_path_query_array(payload, 'strict $.** ? (@.type() == \"string\")'::jsonpath)"
VECTOR = (
    "to_tsvector('simple'::regconfig, regexp_replace("
    f"left(({STRINGS})::text, {INDEXED_CHARS}), "
    r"'\\(u[0-9A-Fa-f]{4}|.)', ' ', 'g'))"
)
OLD_VECTOR = "jsonb_to_tsvector('simple'::regconfig, payload, '[\"string\"]'::jsonb)"
#: The tables this revision creates (none: it replaces an index).
TABLES: tuple[str, ...] = ()


def _dialect() -> str:
    return op.get_context().dialect.name


def _in_schema(schema: str | None, name: str) -> str:
    """Return ``name`` qualified by ``schema``, quoted as the dialect needs."""
    if schema is None:
        return name
    return f"{op.get_context().dialect.identifier_preparer.quote_schema(schema)}.{name}"


def _rebuild(vector: str) -> None:
    schema = op.get_context().version_table_schema
    op.execute(f"DROP INDEX IF EXISTS {_in_schema(schema, FTS_INDEX)}")
    table = _in_schema(schema, "sessions_db_entries")
    op.execute(f"CREATE INDEX {FTS_INDEX} ON {table} USING gin ({vector}) WHERE type = 'message'")


def upgrade() -> None:
    if _dialect() == "postgresql":
        _rebuild(VECTOR)


def downgrade() -> None:
    if _dialect() == "postgresql":
        _rebuild(OLD_VECTOR)
