"""Sessions, the entry tree and checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

#: The tables this revision creates, in order (what its downgrade drops).
TABLES = ("sessions_db_sessions", "sessions_db_entries", "sessions_db_checkpoints")


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _utc() -> sa.types.TypeEngine:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    schema = op.get_context().version_table_schema
    op.create_table(
        "sessions_db_sessions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("agent_name", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("message_count", sa.Integer(), nullable=False),
        sa.Column("current_leaf", sa.String(128), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("metadata", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sessions_db_sessions"),
        schema=schema,
    )
    op.create_index(
        "ix_sessions_db_sessions_agent_name_updated_at_id",
        "sessions_db_sessions",
        ["agent_name", "updated_at", "id"],
        schema=schema,
    )
    op.create_index(
        "ix_sessions_db_sessions_agent_name_user_id_updated_at_id",
        "sessions_db_sessions",
        ["agent_name", "user_id", "updated_at", "id"],
        schema=schema,
    )
    op.create_index(
        "ix_sessions_db_sessions_updated_at", "sessions_db_sessions", ["updated_at"], schema=schema
    )
    ref = f"{schema}." if schema else ""
    op.create_table(
        "sessions_db_entries",
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("parent_id", sa.String(128), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("role", sa.String(64), nullable=True),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "id", name="pk_sessions_db_entries"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            [f"{ref}sessions_db_sessions.id"],
            name="fk_sessions_db_entries_session_id",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id", "parent_id"],
            [f"{ref}sessions_db_entries.session_id", f"{ref}sessions_db_entries.id"],
            name="fk_sessions_db_entries_session_id_parent_id",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "type IN ('message', 'checkpoint', 'metadata')", name="ck_sessions_db_entries_type"
        ),
        schema=schema,
    )
    op.create_index(
        "ix_sessions_db_entries_session_id_seq",
        "sessions_db_entries",
        ["session_id", "seq"],
        unique=True,
        schema=schema,
    )
    op.create_index(
        "ix_sessions_db_entries_session_id_parent_id",
        "sessions_db_entries",
        ["session_id", "parent_id"],
        schema=schema,
    )
    op.create_index(
        "ix_sessions_db_entries_created_at", "sessions_db_entries", ["created_at"], schema=schema
    )
    op.create_table(
        "sessions_db_checkpoints",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("entry_id", sa.String(128), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("checksum", sa.String(80), nullable=False),
        sa.Column("metadata", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sessions_db_checkpoints"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            [f"{ref}sessions_db_sessions.id"],
            name="fk_sessions_db_checkpoints_session_id",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id", "entry_id"],
            [f"{ref}sessions_db_entries.session_id", f"{ref}sessions_db_entries.id"],
            name="fk_sessions_db_checkpoints_session_id_entry_id",
            ondelete="CASCADE",
        ),
        schema=schema,
    )
    op.create_index(
        "ix_sessions_db_checkpoints_session_id_created_at",
        "sessions_db_checkpoints",
        ["session_id", "created_at"],
        schema=schema,
    )


def downgrade() -> None:
    schema = op.get_context().version_table_schema
    op.drop_table("sessions_db_checkpoints", schema=schema)
    op.drop_table("sessions_db_entries", schema=schema)
    op.drop_table("sessions_db_sessions", schema=schema)
