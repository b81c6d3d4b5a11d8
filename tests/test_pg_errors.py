"""PostgreSQL errors that are not about the connection: a distinct error, with its cause.

Only a database that cannot be reached is ``StorageUnavailableError``; a
statement the server (or the driver) refuses for another reason is
``StorageError``, with the driver's error chained as ``__cause__``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

import sessions_db as sdb
from sessions_db.sql.engine import normalize_url
from sessions_db.sql.errors import translate

from .conftest import make_store

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_store("postgres", request, tmp_path)


def _message(text_: str) -> sdb.Message:
    return sdb.Message.new("user", {"content": text_})


def _cause_sqlstate(error: BaseException) -> str | None:
    orig = getattr(error.__cause__, "orig", None)
    return getattr(orig, "sqlstate", None)


def test_a_server_error_is_a_storage_error_with_its_cause(pg_url: str) -> None:
    """A statement the server refuses for a reason of its own: not "unavailable"."""
    with sdb.connect(pg_url) as mgr:
        session = mgr.create("assistant")
        session.append_message(_message("fine"))
        engine = create_engine(normalize_url(pg_url))
        try:
            with engine.begin() as conn:  # a host's rule on our table
                conn.execute(
                    text(
                        "ALTER TABLE sessions_db_entries ADD CONSTRAINT host_rule "
                        "CHECK (payload->>'content' IS DISTINCT FROM 'forbidden') NOT VALID"
                    )
                )
            with pytest.raises(sdb.StorageError) as caught:
                session.append_messages([_message("ok"), _message("forbidden")])
            assert _cause_sqlstate(caught.value) == "23514"  # check_violation
            assert not isinstance(caught.value, sdb.StorageUnavailableError)
            assert [m.payload["content"] for m in session.get_messages()] == ["fine"]
        finally:
            with engine.begin() as conn:
                conn.execute(
                    text("ALTER TABLE sessions_db_entries DROP CONSTRAINT IF EXISTS host_rule")
                )
            engine.dispose()
        session.append_message(_message("after"))
        assert session.info().message_count == 2


def test_a_client_error_without_sqlstate_is_not_unavailable(pg_url: str) -> None:
    """psycopg refuses more than 65,535 parameters before sending: the connection is fine."""
    engine = create_engine(normalize_url(pg_url))
    try:
        with engine.connect() as conn:
            names = [f"p{i}" for i in range(70_000)]
            sql = text("SELECT " + " + ".join(f":{n}" for n in names))
            with pytest.raises(DBAPIError) as caught:
                conn.execute(sql, dict.fromkeys(names, 1))
            raw = caught.value
            assert getattr(getattr(raw, "orig", None), "sqlstate", "missing") is None
            error = translate(raw, "postgresql")
            assert isinstance(error, sdb.StorageError)
            assert not isinstance(error, sdb.StorageUnavailableError)
            assert error.__cause__ is raw
            assert conn.execute(text("SELECT 1")).scalar() == 1  # still connected
    finally:
        engine.dispose()
