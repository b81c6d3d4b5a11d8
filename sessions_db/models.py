"""The sessions_db tables as SQLAlchemy models: the one definition of the schema.

``sessions_db_sessions`` (:class:`SessionRow`) holds one row per session with
its current leaf, the message count of the current branch and the last
sequence number used; ``sessions_db_entries`` (:class:`EntryRow`) holds the
entry tree (each entry links to its parent in the same session);
``sessions_db_checkpoints`` (:class:`CheckpointRow`) holds checkpoints.
``sessions_db_adk_app_state`` (:class:`AdkAppStateRow`) and
``sessions_db_adk_user_state`` (:class:`AdkUserStateRow`) hold the app- and
user-scoped state of Google ADK sessions (see :mod:`sessions_db.integrations.adk`;
they are plain tables, and need no ADK installed). The alembic migrations create
exactly these tables (a test compares them), plus the dialect-specific
full-text search objects, which are not modelled.

A host may query the tables with its own ORM :class:`~sqlalchemy.orm.Session`
through these classes (see ``docs/analytics.md``); the relationships between
them are view-only: write through the :class:`~sessions_db.Manager`, which keeps
the checksums, counters and tree links consistent.

**Schemas.** The models carry no schema (``schema=None``). On PostgreSQL a
store configured with a schema keeps the same tables in that schema, and
statements are pointed at it with SQLAlchemy's schema translation, never with a
copy of the metadata::

    engine.execution_options(schema_translate_map={None: "agents_store"})

Everything that runs on such a connection, lazy loads included, then reads and
writes ``agents_store.sessions_db_sessions`` and so on. The translation applies
to every table without a schema of its own, so give it to connections (or an
ORM ``Session`` bind) used for these tables.

**Keys.** Every primary key and unique index of the entries and checkpoints
tables leads with ``session_id``, so that they can be hash-partitioned by
session. Table names carry a prefix (:data:`PREFIX`) so that they never
collide with a host's tables, and constraint names follow
:data:`NAMING_CONVENTION`, so that SQLite, PostgreSQL and the migrations agree
on them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "NAMING_CONVENTION",
    "PREFIX",
    "AdkAppStateRow",
    "AdkUserStateRow",
    "Base",
    "CheckpointRow",
    "EntryRow",
    "SessionRow",
    "UTCDateTime",
    "json_type",
]

#: The prefix of every table, index and constraint name of sessions_db.
PREFIX = "sessions_db_"

#: Constraint and index names, fixed by convention so that SQLite, PostgreSQL
#: and the migrations agree on them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC; refuses naive datetimes, returns aware UTC ones.

    ``timestamptz`` on PostgreSQL; on SQLite a fixed-width text that sorts in
    time order.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC (naive UTC on SQLite); refuse naive datetimes."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: sessions_db stores timezone-aware UTC")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type() -> TypeEngine[Any]:
    """Return the payload column type: JSONB on PostgreSQL, JSON elsewhere."""
    return JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base of the sessions_db models, with a MetaData of their own.

    Its ``metadata`` holds the tables of this module (no schema); it is what the
    migrations are compared with. Keep a host's models on a base of their own.
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: json_type()}


class SessionRow(Base):
    """A session: who it belongs to and where its current branch ends."""

    __tablename__ = f"{PREFIX}sessions"

    #: The session ID (a UUID).
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: The agent the session belongs to.
    agent_name: Mapped[str] = mapped_column(String(128))
    #: The user the session belongs to; NULL for a session of no user.
    user_id: Mapped[str | None] = mapped_column(String(255))
    #: When the session was created (UTC).
    created_at: Mapped[datetime]
    #: When the session last changed (UTC).
    updated_at: Mapped[datetime]
    #: Messages on the current branch (what ``get_messages()`` returns).
    message_count: Mapped[int] = mapped_column(Integer)
    #: The newest entry of the session, which is always the current leaf.
    current_leaf: Mapped[str | None] = mapped_column(String(128))
    #: The sequence number of the newest entry (0 for an empty session).
    last_seq: Mapped[int] = mapped_column(BigInteger)
    #: The session's metadata (column ``metadata``; an envelope in an encrypted store).
    meta: Mapped[dict[str, Any]] = mapped_column("metadata")
    #: An external key a framework gives the session: unique per agent, or NULL.
    key: Mapped[str | None] = mapped_column(String(1024))
    #: The session this one was forked from, or NULL. No foreign key: the
    #: source may be deleted after the fork.
    forked_from: Mapped[str | None] = mapped_column(String(36))
    #: The entry of the source session the fork was taken at, or NULL.
    forked_at: Mapped[str | None] = mapped_column(String(128))

    #: All entries of the session, every branch, in the order they were appended
    #: (view-only, loaded on first access).
    entries: Mapped[list[EntryRow]] = relationship(
        viewonly=True, order_by="EntryRow.seq", back_populates="session"
    )
    #: The session's checkpoints, oldest first (view-only, loaded on first access).
    checkpoints: Mapped[list[CheckpointRow]] = relationship(
        viewonly=True,
        order_by="(CheckpointRow.created_at, CheckpointRow.id)",
        back_populates="session",
    )

    __table_args__ = (
        Index(None, "agent_name", "updated_at", "id"),
        Index(None, "agent_name", "user_id", "updated_at", "id"),
        Index(None, "updated_at"),
        # The long-term memory reads a user's sessions across agents.
        Index(None, "user_id"),
        # NULL keys never collide (on PostgreSQL and SQLite alike).
        Index(None, "agent_name", "key", unique=True),
        # Only forks are looked up by their source; appends update every session row.
        Index(
            None,
            "forked_from",
            postgresql_where=text("forked_from IS NOT NULL"),
            sqlite_where=text("forked_from IS NOT NULL"),
        ),
    )


class EntryRow(Base):
    """An entry of a session's tree: a message, a checkpoint or a metadata event."""

    __tablename__ = f"{PREFIX}entries"

    #: The session the entry belongs to.
    session_id: Mapped[str] = mapped_column(
        String(36), ForeignKey(SessionRow.id, ondelete="CASCADE"), primary_key=True
    )
    #: The entry ID, unique within its session.
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: The entry this one follows in the same session; NULL for a root.
    parent_id: Mapped[str | None] = mapped_column(String(128))
    #: Order of appending within the session, from 1.
    seq: Mapped[int] = mapped_column(BigInteger)
    #: Messages on the path from the root to this entry, itself included.
    depth: Mapped[int] = mapped_column(Integer)
    #: ``message``, ``checkpoint`` or ``metadata``.
    type: Mapped[str] = mapped_column(String(16))
    #: The message's role (``Message.type``); NULL for other entry types.
    role: Mapped[str | None] = mapped_column(String(64))
    #: The message payload, or the data of a checkpoint or metadata entry.
    payload: Mapped[dict[str, Any]]
    #: The entry's timestamp (UTC).
    created_at: Mapped[datetime]

    #: The session the entry belongs to (view-only).
    session: Mapped[SessionRow] = relationship(viewonly=True, back_populates="entries")

    __table_args__ = (
        ForeignKeyConstraint(
            ["session_id", "parent_id"],
            [f"{PREFIX}entries.session_id", f"{PREFIX}entries.id"],
            ondelete="CASCADE",
        ),
        CheckConstraint("type IN ('message', 'checkpoint', 'metadata')", name="type"),
        Index(None, "session_id", "seq", unique=True),
        # The children of an entry, and the ON DELETE CASCADE of the parent link.
        Index(None, "session_id", "parent_id"),
    )


class CheckpointRow(Base):
    """A checkpoint: an entry of a session and the checksum of its branch."""

    __tablename__ = f"{PREFIX}checkpoints"

    #: The checkpoint ID (a UUID). The primary key is ``(session_id, id)`` (it
    #: also finds a session's checkpoints); an index on ``id`` alone serves
    #: lookups by checkpoint ID.
    id: Mapped[str] = mapped_column(String(36))
    #: The session the checkpoint belongs to.
    session_id: Mapped[str] = mapped_column(
        String(36), ForeignKey(SessionRow.id, ondelete="CASCADE")
    )
    #: The checkpoint's entry in the session (of type ``checkpoint``).
    entry_id: Mapped[str] = mapped_column(String(128))
    #: When the checkpoint was taken (UTC).
    created_at: Mapped[datetime]
    #: The checksum of the branch from the root to the checkpoint's entry.
    checksum: Mapped[str] = mapped_column(String(80))
    #: The checkpoint's metadata (column ``metadata``; an envelope in an encrypted store).
    meta: Mapped[dict[str, Any]] = mapped_column("metadata")

    #: The session the checkpoint belongs to (view-only).
    session: Mapped[SessionRow] = relationship(viewonly=True, back_populates="checkpoints")

    __table_args__ = (
        PrimaryKeyConstraint("session_id", "id"),
        ForeignKeyConstraint(
            ["session_id", "entry_id"],
            [f"{PREFIX}entries.session_id", f"{PREFIX}entries.id"],
            ondelete="CASCADE",
        ),
        Index(None, "id"),
    )


class AdkAppStateRow(Base):
    """The state a Google ADK app shares with all its users (its ``app:`` keys).

    One row per app: the app is the ``agent_name`` of its sessions. ``state``
    holds the keys without their ``app:`` prefix. Written by
    :class:`sessions_db.integrations.adk.SessionsDBSessionService` in the
    transaction of the event that changes it.
    """

    __tablename__ = f"{PREFIX}adk_app_state"

    #: The ADK app name (the agent name of its sessions).
    agent_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: The app-scoped state, keys without the ``app:`` prefix.
    state: Mapped[dict[str, Any]]
    #: When the state last changed (UTC).
    updated_at: Mapped[datetime]


class AdkUserStateRow(Base):
    """The state a Google ADK user shares across their sessions of one app (``user:`` keys).

    One row per app and user. ``user_id`` is the ADK user ID as given (``""``
    included); :meth:`sessions_db.Manager.erase_user` deletes a user's rows on
    every app.
    """

    __tablename__ = f"{PREFIX}adk_user_state"

    #: The ADK app name (the agent name of its sessions).
    agent_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: The ADK user ID.
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: The user-scoped state, keys without the ``user:`` prefix.
    state: Mapped[dict[str, Any]]
    #: When the state last changed (UTC).
    updated_at: Mapped[datetime]

    __table_args__ = (
        # Erasure finds a user's rows across apps.
        Index(None, "user_id"),
    )
