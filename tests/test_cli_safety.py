"""The command line's destructive and confusing corners, through the real ``sessions-db``.

A downgrade names its target, shows what it drops and asks first; the errors
name the store they are about and the way out.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import sessions_db as sdb
from sessions_db import migrations
from sessions_db.cli import EXIT_ERROR, EXIT_OK, EXIT_SCHEMA, EXIT_USAGE
from sessions_db.urls import redact_url

OUR_TABLES = ["sessions_db_checkpoints", "sessions_db_entries", "sessions_db_sessions"]


def cli(*args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    """Run ``sessions-db ARGS`` in a new process, its stdin not a terminal by default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONS_DB_")}
    return subprocess.run(
        [sys.executable, "-m", "sessions_db", *args],
        stdin=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def own_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated store of its own (the test may drop its tables)."""
    if request.param == "postgres":
        new_database: Callable[[], str] = request.getfixturevalue("pg_server")
        url = new_database()
    else:
        url = f"sqlite:///{tmp_path / 'own.db'}"
    migrations.upgrade(url)
    return url


def fill(url: str) -> str:
    """Store one session with two messages and a checkpoint; return its ID."""
    with sdb.connect(url) as mgr:
        session = mgr.create("assistant")
        session.append_messages(
            [
                sdb.Message.new("user", {"content": "hi"}),
                sdb.Message.new("assistant", {"content": "hello"}),
            ]
        )
        session.checkpoint()
        return session.id


def assert_intact(url: str, session_id: str) -> None:
    """The store is still at the newest revision and holds the session whole."""
    assert migrations.current(url) == migrations.head()
    with sdb.connect(url) as mgr:
        session = mgr.get(session_id)
        assert [m.payload["content"] for m in session.get_messages()] == ["hi", "hello"]
        assert len(session.list_checkpoints()) == 1


def test_downgrade_without_a_target_is_refused(own_url: str) -> None:
    session_id = fill(own_url)
    for extra in ([], ["--yes"], ["--yes", "--json"]):
        done = cli("migrate", "downgrade", "--url", own_url, *extra)
        assert done.returncode == EXIT_USAGE, done.stderr
        assert "--revision" in done.stderr
    done = cli("migrate", "downgrade", "--sql", "--revision", "base", "--yes", "--url", own_url)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert_intact(own_url, session_id)


def listed_tables(stderr: str) -> dict[str, str]:
    """The tables (ours, not the search index's) a downgrade listed, with their row counts."""
    listed = {}
    for line in stderr.splitlines():
        name, _, rows = line.strip().partition("  ")
        if name in OUR_TABLES:
            listed[name] = rows.strip()
    return listed


def test_downgrade_without_yes_off_a_terminal_is_refused(own_url: str) -> None:
    session_id = fill(own_url)
    done = cli("migrate", "downgrade", "--revision", "base", "--url", own_url)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "--yes" in done.stderr
    # It said what it would have dropped, with the row counts.
    # It said what it would have dropped, with the row counts.
    assert listed_tables(done.stderr) == {
        "sessions_db_checkpoints": "1 row",
        "sessions_db_entries": "3 rows",
        "sessions_db_sessions": "1 row",
    }
    assert_intact(own_url, session_id)


def test_downgrade_with_yes(own_url: str) -> None:
    fill(own_url)
    done = cli("migrate", "downgrade", "--revision", "base", "--yes", "--json", "--url", own_url)
    assert done.returncode == EXIT_OK, done.stderr
    report = json.loads(done.stdout)
    assert report["current"] is None
    assert {name: report["dropped"][name] for name in OUR_TABLES} == {
        "sessions_db_checkpoints": 1,
        "sessions_db_entries": 3,
        "sessions_db_sessions": 1,
    }
    assert migrations.current(own_url) is None
    assert migrations.tables_dropped(own_url, revision="base") == {}


def test_downgrade_one_step_names_what_it_drops(own_url: str) -> None:
    fill(own_url)
    done = cli("migrate", "downgrade", "--revision", "0001", "--yes", "--url", own_url)
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout == "downgraded to 0001\n"
    if own_url.startswith("sqlite"):  # the search index's tables
        assert "sessions_db_entries_fts " in done.stderr
    # Revision 0005's ADK state tables go as well; the sessions stay.
    assert "sessions_db_adk_app_state " in done.stderr
    assert "sessions_db_sessions" not in done.stderr
    assert migrations.current(own_url) == "0001"


def test_downgrade_to_an_unknown_revision_is_a_usage_error(own_url: str) -> None:
    session_id = fill(own_url)
    done = cli("migrate", "downgrade", "--revision", "nope", "--yes", "--url", own_url)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "nope" in done.stderr
    assert_intact(own_url, session_id)


def _on_a_terminal(url: str, answer: bytes) -> subprocess.CompletedProcess[str]:
    """Run a downgrade to base with a terminal as stdin, answering ``answer``."""
    leader, follower = pty.openpty()
    try:
        os.write(leader, answer)
        return cli("migrate", "downgrade", "--revision", "base", "--url", url, stdin=follower)
    finally:
        os.close(follower)
        os.close(leader)


def test_downgrade_asks_on_a_terminal(own_url: str) -> None:
    session_id = fill(own_url)
    declined = _on_a_terminal(own_url, b"n\n")
    assert declined.returncode == EXIT_ERROR, declined.stderr
    assert "Downgrade?" in declined.stderr
    assert "cancelled" in declined.stderr
    assert_intact(own_url, session_id)
    accepted = _on_a_terminal(own_url, b"y\n")
    assert accepted.returncode == EXIT_OK, accepted.stderr
    assert accepted.stdout.endswith("downgraded to base\n")
    assert migrations.current(own_url) is None


# -- messages -------------------------------------------------------------------------


@pytest.mark.postgres
def test_copy_to_an_unmigrated_target_names_it(
    pg_server: Callable[[], str], tmp_path: Path
) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    fill(source)
    target = pg_server()
    assert ":sessions_db@" in target  # the password the message must not show
    shown = target.replace(":sessions_db@", ":***@")
    export = tmp_path / "export.jsonl"
    assert cli("export", "--all", "-o", str(export), "--url", source).returncode == EXIT_OK
    for command in (
        ["copy", "--from", source, "--to", target],
        ["import", str(export), "--url", target],
    ):
        done = cli(*command)
        assert done.returncode == EXIT_SCHEMA, done.stderr
        assert f"the target store {shown} is not migrated" in done.stderr
        assert f"sessions-db migrate --url {shown}" in done.stderr
        assert "--migrate" in done.stderr
        assert ":sessions_db@" not in done.stderr
    assert migrations.current(target) is None
    copied = cli("copy", "--from", source, "--to", target, "--migrate")
    assert copied.returncode == EXIT_OK, copied.stderr


def test_redacted_urls_hide_the_whole_password() -> None:
    assert redact_url("postgresql://app:p@ss:w@db:5432/app") == "postgresql://app:***@db:5432/app"
    assert redact_url("postgresql://app@db/app") == "postgresql://app@db/app"
    assert redact_url("sqlite:////srv/a@b.db") == "sqlite:////srv/a@b.db"


@pytest.mark.parametrize("command", [["list", "assistant"], ["agents"], ["stats"], ["migrate"]])
def test_a_file_that_is_not_sqlite(command: list[str], tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    content = b"root:x:0:0:root:/root:/bin/bash\n"
    path.write_bytes(content)
    done = cli(*command, "--url", f"sqlite:///{path}")
    assert done.returncode == EXIT_USAGE, done.stderr
    assert (
        done.stderr
        == f"error: {path} is not a sessions_db SQLite file: it is not an SQLite database at all\n"
    )
    assert path.read_bytes() == content


def test_an_empty_file_is_a_new_sqlite_store(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    path.touch()
    done = cli("agents", "--url", f"sqlite:///{path}")
    assert done.returncode == EXIT_OK, done.stderr


@pytest.mark.parametrize(
    ("sessions", "summary"), [(1, "1 agent, 1 session"), (2, "1 agent, 2 sessions")]
)
def test_repair_counts_in_words(tmp_path: Path, sessions: int, summary: str) -> None:
    url = (tmp_path / "store").as_uri()
    with sdb.connect(url) as mgr:
        for _ in range(sessions):
            mgr.create("assistant")
    done = cli("repair", "--url", url)
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.splitlines()[0] == f"{tmp_path / 'store'}: {summary}"
