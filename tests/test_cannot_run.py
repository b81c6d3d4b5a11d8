"""The suite's one rule for tests that cannot run on this machine: they fail, and are
skipped only when the user opts out with SESSIONS_DB_ALLOW_SKIP=1 (CI or not)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from . import pgbouncer, replica
from .conftest import cannot_run, reach_postgres
from .reliability import private_pg

NOWHERE = "postgresql://nobody:secret@127.0.0.1:1/postgres"
FAILED = pytest.fail.Exception
SKIPPED = pytest.skip.Exception


def outcome(call: Callable[[], object]) -> tuple[type[BaseException], str]:
    """How ``call`` ends the test: failed or skipped (caught here, whichever it is), and why."""
    try:
        call()
    except (FAILED, SKIPPED) as ended:
        return type(ended), str(ended)
    raise AssertionError("it neither failed nor skipped")


def no_cluster() -> None:
    with private_pg.private_cluster("x"):
        raise AssertionError("no cluster can be made here")


@pytest.fixture(params=["no CI", "CI"])
def environment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """With or without the CI variable: it no longer decides anything."""
    monkeypatch.delenv("SESSIONS_DB_ALLOW_SKIP", raising=False)
    if request.param == "CI":
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)


@pytest.mark.usefixtures("environment")
def test_a_test_that_cannot_run_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    ended, why = outcome(lambda: cannot_run("no tool"))
    assert ended is FAILED
    assert "cannot run here: no tool" in why
    assert "SESSIONS_DB_ALLOW_SKIP=1" in why
    for value in ("", "0", "true"):  # only the documented value opts out
        monkeypatch.setenv("SESSIONS_DB_ALLOW_SKIP", value)
        assert outcome(lambda: cannot_run("no tool"))[0] is FAILED


@pytest.mark.usefixtures("environment")
def test_it_is_skipped_only_when_the_user_opts_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONS_DB_ALLOW_SKIP", "1")
    assert outcome(lambda: cannot_run("no tool")) == (SKIPPED, "no tool")


@pytest.mark.usefixtures("environment")
@pytest.mark.parametrize("root", [True, False])
def test_the_outage_cluster_follows_the_rule(monkeypatch: pytest.MonkeyPatch, root: bool) -> None:
    """Without the tools to make its private cluster, the outage test fails (it used to
    be skipped unless CI was set), and is skipped only on request."""
    monkeypatch.setattr(os, "geteuid", lambda: 0 if root else 1000)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(private_pg, "_tool", lambda name: "")
    missing = "pg_createcluster" if root else "initdb, pg_ctl"
    ended, why = outcome(no_cluster)
    assert ended is FAILED
    assert missing in why
    monkeypatch.setenv("SESSIONS_DB_ALLOW_SKIP", "1")
    ended, why = outcome(no_cluster)
    assert ended is SKIPPED
    assert missing in why


@pytest.mark.usefixtures("environment")
def test_no_postgresql_server_fails_and_says_where(monkeypatch: pytest.MonkeyPatch) -> None:
    ended, why = outcome(lambda: reach_postgres(NOWHERE))
    assert ended is FAILED
    assert "127.0.0.1:1" in why
    assert "SESSIONS_DB_TEST_PG" in why
    assert "secret" not in why
    monkeypatch.setenv("SESSIONS_DB_ALLOW_SKIP", "1")
    assert outcome(lambda: reach_postgres(NOWHERE))[0] is SKIPPED


@pytest.mark.usefixtures("environment")
def test_no_pgbouncer_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``pgbouncer`` the tests through it fail, saying how to get it."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(pgbouncer, "DEBIAN_PROGRAM", Path("/nonexistent/pgbouncer"))
    ended, why = outcome(pgbouncer.program)
    assert ended is FAILED
    assert "pgbouncer is not installed" in why
    assert "scripts/setup" in why
    monkeypatch.setenv("SESSIONS_DB_ALLOW_SKIP", "1")
    assert outcome(pgbouncer.program)[0] is SKIPPED


@pytest.mark.usefixtures("environment")
def test_no_replica_can_be_made_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without root (to act as postgres) or pg_basebackup the replica tests fail, saying why."""
    url = "postgresql://u:p@127.0.0.1:5432/postgres"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    ended, why = outcome(lambda: replica._requirements(url))
    assert ended is FAILED
    assert "needs root" in why
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(replica, "tool", lambda name: "")
    ended, why = outcome(lambda: replica._requirements(url))
    assert ended is FAILED
    assert "pg_basebackup" in why
    monkeypatch.setenv("SESSIONS_DB_ALLOW_SKIP", "1")
    assert outcome(lambda: replica._requirements(url))[0] is SKIPPED
