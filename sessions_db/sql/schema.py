"""The typed SQLAlchemy models of the three tables.

``sessions_db_sessions`` holds one row per session with its current leaf, the
message count of the current branch and the last sequence number used;
``sessions_db_entries`` holds the entry tree (each entry links to its parent in
the same session); ``sessions_db_checkpoints`` holds checkpoints. The table
names carry a prefix, and on PostgreSQL the tables can live in a schema of
their own (:func:`tables_in`), so they never collide with a host's tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .columns import UTCDateTime, json_type

PREFIX = "sessions_db_"
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


def is_fts_object(name: str | None) -> bool:
    """Whether ``name`` is one of the full-text search objects (kept out of autogenerate)."""
    return bool(name) and (name == FTS_INDEX or str(name).startswith(FTS_TABLE))


#: Constraint names are fixed by convention, so SQLite, PostgreSQL and the
#: migrations agree on them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of the sessions_db models (their own MetaData)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: json_type()}


class SessionRow(Base):
    """A session: who it belongs to and where its current branch ends."""

    __tablename__ = f"{PREFIX}sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agent_name: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    #: Messages on the current branch (what ``get_messages()`` returns).
    message_count: Mapped[int] = mapped_column(Integer)
    #: The newest entry of the session, which is always the current leaf.
    current_leaf: Mapped[str | None] = mapped_column(String(128))
    #: The sequence number of the newest entry (0 for an empty session).
    last_seq: Mapped[int] = mapped_column(BigInteger)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata")

    __table_args__ = (
        Index(None, "agent_name", "updated_at", "id"),
        Index(None, "agent_name", "user_id", "updated_at", "id"),
        Index(None, "updated_at"),
        # The long-term memory reads a user's sessions across agents.
        Index(None, "user_id"),
    )


class EntryRow(Base):
    """An entry of a session's tree: a message, a checkpoint or a metadata event."""

    __tablename__ = f"{PREFIX}entries"

    session_id: Mapped[str] = mapped_column(
        String(36), ForeignKey(SessionRow.id, ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    parent_id: Mapped[str | None] = mapped_column(String(128))
    #: Order of appending within the session, from 1.
    seq: Mapped[int] = mapped_column(BigInteger)
    #: Messages on the path from the root to this entry, itself included.
    depth: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(16))
    #: The message's role (``Message.type``); NULL for other entry types.
    role: Mapped[str | None] = mapped_column(String(64))
    #: The message payload, or the data of a checkpoint or metadata entry.
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]

    __table_args__ = (
        ForeignKeyConstraint(
            ["session_id", "parent_id"],
            [f"{PREFIX}entries.session_id", f"{PREFIX}entries.id"],
            ondelete="CASCADE",
        ),
        CheckConstraint("type IN ('message', 'checkpoint', 'metadata')", name="type"),
        Index(None, "session_id", "seq", unique=True),
        Index(None, "session_id", "parent_id"),
        Index(None, "created_at"),
    )


class CheckpointRow(Base):
    """A checkpoint: an entry of a session and the checksum of its branch."""

    __tablename__ = f"{PREFIX}checkpoints"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        String(36), ForeignKey(SessionRow.id, ondelete="CASCADE")
    )
    entry_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    checksum: Mapped[str] = mapped_column(String(80))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata")

    __table_args__ = (
        ForeignKeyConstraint(
            ["session_id", "entry_id"],
            [f"{PREFIX}entries.session_id", f"{PREFIX}entries.id"],
            ondelete="CASCADE",
        ),
        Index(None, "session_id", "created_at"),
    )


@dataclass(frozen=True, slots=True)
class Tables:
    """The three tables, in the schema a backend was configured with."""

    sessions: Table
    entries: Table
    checkpoints: Table
    schema: str | None


@cache
def tables_in(schema: str | None) -> Tables:
    """Return the tables placed in ``schema`` (``None``: the connection's default)."""
    if schema is None:
        md = Base.metadata
    else:
        md = MetaData(naming_convention=NAMING_CONVENTION)
        for table in Base.metadata.sorted_tables:
            table.to_metadata(md, schema=schema)
    key = (lambda name: f"{schema}.{name}") if schema else (lambda name: name)
    return Tables(
        sessions=md.tables[key(SessionRow.__tablename__)],
        entries=md.tables[key(EntryRow.__tablename__)],
        checkpoints=md.tables[key(CheckpointRow.__tablename__)],
        schema=schema,
    )
