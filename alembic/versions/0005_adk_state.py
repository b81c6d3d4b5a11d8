"""Google ADK state: the app-scoped and user-scoped state of ADK sessions.

``sessions_db_adk_app_state`` holds one row per app (an agent name) and
``sessions_db_adk_user_state`` one per app and user, each with a JSON object of
state keys (without their ``app:`` / ``user:`` prefix). Session-scoped state
lives in the session's own metadata. Nothing else changes; downgrading drops
the two tables.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

APP_STATE = "sessions_db_adk_app_state"
USER_STATE = "sessions_db_adk_user_state"
USER_STATE_USER = "ix_sessions_db_adk_user_state_user_id"

#: The tables this revision creates, in order (what its downgrade drops).
TABLES = (APP_STATE, USER_STATE)


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _utc() -> sa.types.TypeEngine:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    schema = op.get_context().version_table_schema
    op.create_table(
        APP_STATE,
        sa.Column("agent_name", sa.String(128), nullable=False),
        sa.Column("state", _json(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("agent_name", name=f"pk_{APP_STATE}"),
        schema=schema,
    )
    op.create_table(
        USER_STATE,
        sa.Column("agent_name", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("state", _json(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("agent_name", "user_id", name=f"pk_{USER_STATE}"),
        schema=schema,
    )
    op.create_index(USER_STATE_USER, USER_STATE, ["user_id"], schema=schema)


def downgrade() -> None:
    schema = op.get_context().version_table_schema
    op.drop_index(USER_STATE_USER, table_name=USER_STATE, schema=schema)
    op.drop_table(USER_STATE, schema=schema)
    op.drop_table(APP_STATE, schema=schema)
