"""What the SQL layer knows of the tables beyond their models.

The tables themselves are defined once, by the models of :mod:`sessions_db.models`
(imported here under their old names too). This module adds the name of the
version table, the full-text search objects that the migrations make outside
the models. A configured schema is applied to the models' tables when
statements run (``schema_translate_map``), never by copying them.
"""

from __future__ import annotations

from ..models import NAMING_CONVENTION, PREFIX, Base, CheckpointRow, EntryRow, SessionRow

__all__ = [
    "FTS_DOCS",
    "FTS_INDEX",
    "FTS_TABLE",
    "METADATA_INDEX",
    "NAMING_CONVENTION",
    "PG_FTS_CHARS",
    "PG_FTS_VECTOR",
    "PREFIX",
    "VERSION_TABLE",
    "Base",
    "CheckpointRow",
    "EntryRow",
    "SessionRow",
    "is_fts_object",
]

VERSION_TABLE = f"{PREFIX}alembic_version"

#: Full-text search objects, made by migrations 0002 and 0003 outside the models (they are
#: dialect-specific: a GIN expression index on PostgreSQL; on SQLite an FTS5
#: table, its shadow tables, a table mapping its rows to entries, and triggers).
FTS_INDEX = f"ix_{PREFIX}entries_fts"
FTS_TABLE = f"{PREFIX}entries_fts"
FTS_DOCS = f"{PREFIX}entries_fts_docs"
#: How many characters of a message's text PostgreSQL indexes (migration 0003): a
#: text-search vector must stay under 1 MB, and this many characters make at most
#: 400 kB of lexemes. Messages are stored whole; words past this are not searched.
PG_FTS_CHARS = 100_000
#: The PostgreSQL text-search vector of a message payload (the index's expression,
#: ``{payload}`` being the column): the payload's string values as a JSON array,
#: cut to :data:`PG_FTS_CHARS`, with JSON escapes turned into spaces.
PG_FTS_VECTOR = (
    "to_tsvector('simple'::regconfig, regexp_replace(left((jsonb_path_query_array("
    "{payload}, 'strict $.** ? (@.type() == \"string\")'::jsonpath))::text, "
    f"{PG_FTS_CHARS}), "
    r"'\\(u[0-9A-Fa-f]{{4}}|.)', ' ', 'g'))"
)


#: The GIN index of the sessions' metadata (PostgreSQL only, made by migration 0004).
METADATA_INDEX = f"ix_{PREFIX}sessions_metadata"


def is_fts_object(name: str | None) -> bool:
    """Whether ``name`` is a dialect-specific object the migrations make outside the models.

    The full-text search objects and the GIN index of the sessions' metadata
    are kept out of autogenerate.
    """
    return bool(name) and (name in (FTS_INDEX, METADATA_INDEX) or str(name).startswith(FTS_TABLE))
