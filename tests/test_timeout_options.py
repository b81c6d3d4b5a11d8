"""Where the PostgreSQL timeouts come from: arguments, configuration, environment, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

import sessions_db as sdb
from sessions_db.config import load_config
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
