"""Isolation: no API path returns another user's sessions; the RLS recipe works."""

from __future__ import annotations

import contextvars
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import create_engine, event, make_url, text

import sessions_db as sdb
from sessions_db import migrations
from sessions_db.sql.engine import normalize_url

from .support import COUNTS

LOOKALIKES = ["Alice", "alice ", " alice", "alic", "alice%", "al_ce", "\uff41lice", "alice\u0301"]
RECIPE = Path(__file__).resolve().parents[2] / "docs" / "row-level-security.md"


def test_no_api_path_returns_another_users_session(
    open_manager: Callable[[], sdb.Manager],
) -> None:
    with open_manager() as mgr:
        alice = mgr.create("bot", user_id="alice")
        alice.append_message(sdb.Message.new("user", {"secret": "alice's"}))
        bob = mgr.create("bot", user_id="bob")
        anonymous = mgr.create("bot")
        for user in ["bob", *LOOKALIKES]:
            with pytest.raises(sdb.SessionNotFoundError):
                mgr.get(alice.id, user_id=user)
            listed = mgr.list("bot", user_id=user)
            assert alice.id not in [m.id for m in listed]
            assert all(m.user_id == user for m in listed)
            found = mgr.get_or_create("bot", user)
            assert found.id != alice.id
            assert found.user_id == user
            COUNTS["isolation: lookups checked"] += 3
        with pytest.raises(sdb.SessionNotFoundError):
            mgr.get(anonymous.id, user_id="alice")
        assert mgr.get_or_create("bot", "alice").id == alice.id
        assert mgr.get_or_create("bot", "bob").id == bob.id
        assert [m.id for m in mgr.list("bot", user_id="alice")] == [alice.id]


def _recipe_sql(role: str, password: str) -> list[str]:
    """The SQL block of the documented recipe, for ``role``, split into statements."""
    doc = RECIPE.read_text()
    block = re.search(r"```sql\n(.*?)```", doc, re.S)
    assert block is not None
    sql = block.group(1).replace("sessions_app", role).replace("change-me", password)
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _drop_database(url: str) -> None:
    """Drop the database of ``url``, ending the connections still open to it."""
    parsed = make_url(url)
    DatabaseJanitor(
        user=parsed.username or "postgres",
        password=parsed.password,
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        dbname=parsed.database or "",
        connection_timeout=10,
    ).drop()


@pytest.fixture
def rls_database(pg_server: Callable[[], str]) -> Iterator[tuple[str, str]]:
    """A fresh database with the recipe applied; yields (owner URL, app URL).

    Cleanup works for an owner that may create roles but is not a superuser (it
    may not ``DROP OWNED BY`` a role it is no member of): it drops the whole
    database, which takes the role's grants and policies with it, then the role.
    Membership in the role lets it end the role's connections left open by a
    failed test.
    """
    owner_url = pg_server()
    role, password = f"sdb_rls_{secrets.token_hex(4)}", secrets.token_hex(8)
    owner = create_engine(normalize_url(owner_url))
    try:
        migrations.upgrade(owner_url)
        with owner.begin() as conn:
            for statement in _recipe_sql(role, password):
                conn.exec_driver_sql(statement)
            conn.exec_driver_sql(f'GRANT "{role}" TO CURRENT_USER')
            assert not conn.execute(
                text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = :r"),
                {"r": role},
            ).scalar_one()
        app_url = (
            make_url(owner_url)
            .set(username=role, password=password)
            .render_as_string(hide_password=False)
        )
        yield owner_url, app_url
    finally:
        owner.dispose()
        try:
            _drop_database(owner_url)
        finally:
            cluster = create_engine(
                normalize_url(make_url(owner_url).set(database="postgres").render_as_string(False))
            )
            try:
                with cluster.begin() as conn:
                    conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
            finally:
                cluster.dispose()


@pytest.mark.postgres
def test_row_level_security_recipe(rls_database: tuple[str, str]) -> None:
    owner_url, app_url = rls_database
    with sdb.connect(owner_url) as owner:
        alice = owner.create("bot", user_id="alice")
        alice.append_message(sdb.Message.new("user", {"content": "alice's"}))
        alice_cp = alice.checkpoint()
        bob = owner.create("bot", user_id="bob")
        bob.append_message(sdb.Message.new("user", {"content": "bob's"}))
        bob.checkpoint()

    # Plain SQL as the application role, with the variable set to alice.
    plain = create_engine(normalize_url(app_url))
    with plain.connect() as conn:
        conn.execute(text("SELECT set_config('sessions_db.user_id', 'alice', false)"))
        for table in ("sessions_db_sessions", "sessions_db_entries", "sessions_db_checkpoints"):
            column = "id" if table == "sessions_db_sessions" else "session_id"
            seen = set(conn.execute(text(f"SELECT {column} FROM {table}")).scalars())
            assert seen == {alice.id}, table
        conn.execute(text("SELECT set_config('sessions_db.user_id', '', false)"))
        assert conn.execute(text("SELECT count(*) FROM sessions_db_entries")).scalar_one() == 0
    plain.dispose()

    # A SQLBackend on an engine that sets the variable at checkout, as documented.
    current_user: contextvars.ContextVar[str | None] = contextvars.ContextVar("u", default=None)
    engine = create_engine(normalize_url(app_url))

    @event.listens_for(engine, "checkout")
    def _set_user(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        with dbapi_connection.cursor() as cur:
            cur.execute(
                "SELECT set_config('sessions_db.user_id', %s, false)", (current_user.get() or "",)
            )
        if not dbapi_connection.autocommit:
            dbapi_connection.commit()

    mgr = sdb.Manager(sdb.SQLBackend(engine))
    token = current_user.set("alice")
    try:
        # Even without a user_id argument, only alice's rows are reachable.
        assert [m.id for m in mgr.list("bot")] == [alice.id]
        with pytest.raises(sdb.SessionNotFoundError):
            mgr.get(bob.id)
        session = mgr.get(alice.id)
        assert [m.payload["content"] for m in session.get_messages()] == ["alice's"]
        session.append_message(sdb.Message.new("user", {"content": "more"}))
        session.restore(alice_cp.id)
        assert mgr.create("bot", user_id="alice").user_id == "alice"
        with pytest.raises(sdb.SessionsDBError):
            mgr.create("bot", user_id="bob")
        assert [m.user_id for m in mgr.list("bot")] == ["alice", "alice"]
    finally:
        current_user.reset(token)
        mgr.close()
        engine.dispose()
    COUNTS["isolation: RLS recipe checks"] += 1
