"""Where the PostgreSQL timeouts come from: arguments, configuration, environment, defaults."""

from __future__ import annotations

import asyncio
import types
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

import sessions_db as sdb
from sessions_db.config import load_config
from sessions_db.sql.engine import normalize_url
from sessions_db.sql.timeouts import Timeouts

from .conftest import make_store


def test_configuration_keys_and_variables() -> None:
    cfg = load_config({"statement_timeout": "1m30s", "lock_timeout": "500ms"}, environ={})
    assert (cfg.session.statement_timeout, cfg.session.lock_timeout) == (90.0, 0.5)
    cfg = load_config(
        None, environ={"SESSIONS_DB_STATEMENT_TIMEOUT": "off", "SESSIONS_DB_LOCK_TIMEOUT": "2"}
    )
    assert (cfg.session.statement_timeout, cfg.session.lock_timeout) == (0.0, 2.0)
    # The file wins over the environment, field by field.
    cfg = load_config({"lock_timeout": 3}, environ={"SESSIONS_DB_LOCK_TIMEOUT": "9s"})
    assert cfg.session.lock_timeout == 3.0
    assert load_config({}, environ={}).session.statement_timeout is None


def test_bad_timeouts_name_the_field() -> None:
    with pytest.raises(sdb.ConfigurationError, match=r"session\.lock_timeout"):
        load_config({"lock_timeout": "soon"}, environ={})
    with pytest.raises(sdb.ConfigurationError, match=r"SESSIONS_DB_STATEMENT_TIMEOUT"):
        load_config(None, environ={"SESSIONS_DB_STATEMENT_TIMEOUT": "-5s"})


@pytest.mark.postgres
def test_connect_takes_arguments_then_configuration_then_defaults(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_store("postgres", request, tmp_path)
    for name in ("SESSIONS_DB_STATEMENT_TIMEOUT", "SESSIONS_DB_LOCK_TIMEOUT", "SESSIONS_DB_CONFIG"):
        monkeypatch.delenv(name, raising=False)

    def timeouts(**options: object) -> Timeouts:
        with sdb.connect(url, **options) as mgr:  # type: ignore[arg-type]
            backend = mgr.backend
            assert isinstance(backend, sdb.SQLBackend)
            return backend.timeouts

    assert timeouts() == Timeouts(60_000, 10_000)
    monkeypatch.setenv("SESSIONS_DB_LOCK_TIMEOUT", "250ms")
    assert timeouts(config={"statement_timeout": "2s"}) == Timeouts(2_000, 250)
    assert timeouts(config={"statement_timeout": "2s"}, statement_timeout=0.5) == Timeouts(500, 250)
    assert timeouts(statement_timeout=0, lock_timeout=0) == Timeouts(0, 0)


def test_sqlite_has_no_statement_timeouts(tmp_path: Path) -> None:
    with sdb.connect(f"sqlite:///{tmp_path / 's.db'}", statement_timeout=1) as mgr:
        backend = mgr.backend
        assert isinstance(backend, sdb.SQLBackend)
        assert backend.timeouts == Timeouts(None, None)
        assert backend.timeouts.prelude is None


class ConnectAttemptedError(Exception):
    """Raised by the stand-in drivers below when anything tries to connect."""


def _stand_in_driver(name: str, paramstyle: str) -> types.ModuleType:
    """A DBAPI module named ``name`` that refuses to connect: enough for SQLAlchemy to
    build an engine of that driver without the driver installed or a server."""
    module = types.ModuleType(name)
    module.__dict__.update(paramstyle=paramstyle, Error=type("Error", (Exception,), {}))

    def connect(*args: Any, **kwargs: Any) -> None:
        raise ConnectAttemptedError(name)

    module.__dict__["connect"] = connect
    return module


def _refusal(error: sdb.ConfigurationError, driver: str) -> None:
    """The refusal names the driver and both ways out."""
    message = str(error)
    assert repr(driver) in message
    assert "psycopg 3" in message
    assert "postgresql+psycopg://" in message
    assert "statement_timeout=None, lock_timeout=None" in message


@pytest.mark.parametrize("timeouts", [{}, {"lock_timeout": None}, {"statement_timeout": None}])
def test_a_host_engine_of_another_postgresql_driver_is_refused_before_connecting(
    timeouts: dict[str, Any],
) -> None:
    """The timeouts (on by default) need psycopg 3: on a pg8000 or asyncpg engine the
    constructor says so, names the driver and the two ways out, and never connects."""
    engine = create_engine(
        "postgresql+pg8000://app@127.0.0.1:1/app", module=_stand_in_driver("pg8000", "format")
    )
    with pytest.raises(sdb.ConfigurationError) as refused:
        sdb.SQLBackend(engine, **timeouts)
    _refusal(refused.value, "pg8000")
    async_engine = create_async_engine(
        "postgresql+asyncpg://app@127.0.0.1:1/app",
        module=_stand_in_driver("asyncpg", "numeric_dollar"),
    )
    with pytest.raises(sdb.ConfigurationError) as refused:
        sdb.aio.AsyncSQLBackend(async_engine, **timeouts)
    _refusal(refused.value, "asyncpg")


def test_without_timeouts_another_postgresql_driver_is_taken() -> None:
    engine = create_engine(
        "postgresql+pg8000://app@127.0.0.1:1/app", module=_stand_in_driver("pg8000", "format")
    )
    # Past the check, the backend goes on to open the database (here: the stand-in refuses).
    with pytest.raises(ConnectAttemptedError):
        sdb.SQLBackend(engine, statement_timeout=None, lock_timeout=None)
    async_engine = create_async_engine(
        "postgresql+asyncpg://app@127.0.0.1:1/app",
        module=_stand_in_driver("asyncpg", "numeric_dollar"),
    )
    backend = sdb.aio.AsyncSQLBackend(async_engine, statement_timeout=None, lock_timeout=None)
    assert backend.timeouts == Timeouts(None, None)
    asyncio.run(backend.close())


@pytest.mark.postgres
def test_a_psycopg_host_engine_takes_the_timeouts(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    engine = create_engine(normalize_url(make_store("postgres", request, tmp_path)))
    assert engine.dialect.driver == "psycopg"
    try:
        with sdb.Manager(sdb.SQLBackend(engine)) as mgr:
            backend = mgr.backend
            assert isinstance(backend, sdb.SQLBackend)
            assert backend.timeouts == Timeouts(60_000, 10_000)
            session = mgr.create("host", user_id="u")
            session.append_message(sdb.Message.new("user", {"content": "hi"}))
            assert [m.payload for m in mgr.get(session.id).get_messages()] == [{"content": "hi"}]
    finally:
        engine.dispose()


def test_a_sqlite_host_engine_is_not_concerned(tmp_path: Path) -> None:
    """SQLite's drivers are not psycopg, and the default timeouts do not refuse them."""
    engine = create_engine(f"sqlite:///{tmp_path / 'sync.db'}")
    assert engine.dialect.driver == "pysqlite"
    try:
        with sdb.Manager(sdb.SQLBackend(engine)) as mgr:
            backend = mgr.backend
            assert isinstance(backend, sdb.SQLBackend)
            assert backend.timeouts == Timeouts(None, None)
            session = mgr.create("host")
            session.append_message(sdb.Message.new("user", {"content": "hi"}))
            assert len(mgr.get(session.id).get_messages()) == 1
    finally:
        engine.dispose()

    async def run_async() -> None:
        async_engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'async.db'}")
        assert async_engine.dialect.driver == "aiosqlite"
        try:
            async with sdb.aio.AsyncManager(sdb.aio.AsyncSQLBackend(async_engine)) as amgr:
                session = await amgr.create("host")
                await session.append_message(sdb.Message.new("user", {"content": "hi"}))
                assert len(await (await amgr.get(session.id)).get_messages()) == 1
        finally:
            await async_engine.dispose()

    asyncio.run(run_async())
