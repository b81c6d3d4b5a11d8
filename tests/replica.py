"""A real streaming replica of the test server, made for a test run and removed after it.

The test server (``SESSIONS_DB_TEST_PG``, a local Debian cluster) is the
primary. As its ``postgres`` superuser (``runuser``, so this needs root) the
helper creates a replication role with a random password, adds a ``pg_hba``
line letting that role replicate from 127.0.0.1 and reloads the server; then
``pg_basebackup -R`` copies the cluster into a temporary directory, which is
started as a hot standby on a free port (its own small ``postgresql.conf`` and
``pg_hba.conf``; a Unix socket in that directory for the superuser). Every wait
is bounded. At the end the standby is stopped and deleted, and the ``pg_hba``
line and the role are removed (and the server reloaded).

Where that cannot be done (not root, no ``pg_basebackup``, a server that is not
local) the tests that need a replica cannot run: they fail, or are skipped only
with ``SESSIONS_DB_ALLOW_SKIP=1``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy import make_url

from .conftest import cannot_run

VERSION = os.environ.get("SESSIONS_DB_PG_VERSION", "15")
#: Bounds of the waits: the copy, the start, catching up.
BACKUP_DEADLINE = 300.0
START_DEADLINE = 60.0
CATCH_UP_DEADLINE = 60.0
#: The line this helper adds to the primary's pg_hba.conf (and removes).
MARK = "# sessions_db tests: streaming replica"


def tool(name: str) -> str:
    """Return the path of a PostgreSQL program, or ``""``."""
    versioned = Path(f"/usr/lib/postgresql/{VERSION}/bin/{name}")
    if versioned.is_file():
        return str(versioned)
    return shutil.which(name) or ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_postgres(*args: str, timeout: float = 60.0, env: dict[str, str] | None = None) -> str:
    """Run a program as the ``postgres`` user; return its output; raise with it on failure."""
    done = subprocess.run(
        ["runuser", "-u", "postgres", "--", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if done.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({done.returncode}): {done.stderr}{done.stdout}")
    return done.stdout


def superuser_sql(sql: str, *, port: int = 5432, host: str | None = None) -> str:
    """Run ``sql`` as ``postgres`` with psql (the Unix socket: peer or trust login)."""
    where = ["-p", str(port)] + (["-h", host] if host else [])
    return _as_postgres(tool("psql") or "psql", "-X", "-q", "-At", *where, "-c", sql).strip()


@dataclass(frozen=True)
class Replica:
    """A running hot standby of the test server."""

    port: int
    data: Path
    primary_port: int

    def url(self, primary_url: str) -> str:
        """The URL of ``primary_url``'s database on the replica (same role and password)."""
        return make_url(primary_url).set(host="127.0.0.1", port=self.port).render_as_string(False)

    def sql(self, statement: str) -> str:
        """Run ``statement`` on the replica as its superuser."""
        return superuser_sql(statement, port=self.port, host=str(self.data))

    def pause(self) -> None:
        """Stop replaying the primary's WAL (what it receives waits); return once it stopped.

        The request takes effect a moment later: until then a record arriving
        may still be replayed.
        """
        self.sql("SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + START_DEADLINE
        while self.sql("SELECT pg_get_wal_replay_pause_state()") != "paused":
            if time.monotonic() > deadline:
                raise AssertionError(f"the replica did not pause within {START_DEADLINE} s")
            time.sleep(0.01)

    def resume(self) -> None:
        """Replay again."""
        self.sql("SELECT pg_wal_replay_resume()")

    def catch_up(self, primary_url: str) -> None:
        """Wait until the replica has replayed everything the primary had written by now."""
        with psycopg.connect(_libpq(primary_url), autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        target = row[0]
        deadline = time.monotonic() + CATCH_UP_DEADLINE
        while time.monotonic() < deadline:
            if self.sql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") == "t":
                return
            time.sleep(0.02)
        raise AssertionError(f"the replica did not reach {target} within {CATCH_UP_DEADLINE} s")


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _requirements(primary_url: str) -> int:
    """Return the primary's port, or end the test: a replica cannot be made here."""
    server = make_url(primary_url)
    if os.geteuid() != 0:
        cannot_run("a streaming replica of the test server needs root (to act as postgres)")
    if (server.host or "127.0.0.1") not in ("127.0.0.1", "localhost"):
        cannot_run("a streaming replica needs the test server on this machine")
    missing = [name for name in ("pg_basebackup", "pg_ctl", "psql") if not tool(name)]
    if missing or not shutil.which("runuser"):
        cannot_run(f"the PostgreSQL programs {', '.join(missing or ['runuser'])} are missing")
    return server.port or 5432


@contextmanager
def _hba_line(hba_file: Path, line: str, primary_port: int) -> Iterator[None]:
    """Put ``line`` first in the primary's pg_hba.conf (reloaded), and take it out after."""
    original = hba_file.read_text()
    stat = hba_file.stat()

    def write(text: str) -> None:
        staged = hba_file.with_name(hba_file.name + ".sessions_db_tests")
        staged.write_text(text)
        os.chown(staged, stat.st_uid, stat.st_gid)
        os.chmod(staged, stat.st_mode & 0o777)
        staged.replace(hba_file)
        superuser_sql("SELECT pg_reload_conf()", port=primary_port)

    write(f"{MARK}\n{line}\n{original}")
    try:
        yield
    finally:
        current = hba_file.read_text()
        write(current.replace(f"{MARK}\n{line}\n", ""))


@contextmanager
def streaming_replica(primary_url: str) -> Iterator[Replica]:
    """Make, start and yield a hot standby of the test server; remove everything after."""
    primary_port = _requirements(primary_url)
    role = f"sessions_db_replicator_{secrets.token_hex(4)}"
    password = secrets.token_hex(16)
    superuser_sql(
        f"CREATE ROLE {role} WITH REPLICATION LOGIN PASSWORD '{password}'", port=primary_port
    )
    data = Path(tempfile.mkdtemp(prefix="sessions_db_replica_"))
    try:
        shutil.chown(data, "postgres", "postgres")
        hba_file = Path(superuser_sql("SHOW hba_file", port=primary_port))
        line = f"host replication {role} 127.0.0.1/32 scram-sha-256"
        with _hba_line(hba_file, line, primary_port):
            _as_postgres(
                tool("pg_basebackup"),
                *("-h", "127.0.0.1", "-p", str(primary_port), "-U", role),
                *("-D", str(data / "pgdata"), "-R", "-X", "stream", "-c", "fast"),
                "--no-sync",
                timeout=BACKUP_DEADLINE,
                env={"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"},
            )
            with _running(data, primary_port) as replica:
                yield replica
    finally:
        shutil.rmtree(data, ignore_errors=True)
        superuser_sql(f"DROP ROLE IF EXISTS {role}", port=primary_port)


@contextmanager
def _running(data: Path, primary_port: int) -> Iterator[Replica]:
    pgdata = data / "pgdata"
    port = _free_port()
    max_connections = superuser_sql("SHOW max_connections", port=primary_port)
    (pgdata / "postgresql.conf").write_text(
        f"port = {port}\n"
        "listen_addresses = '127.0.0.1'\n"
        f"unix_socket_directories = '{data}'\n"
        f"hba_file = '{pgdata / 'pg_hba.conf'}'\n"
        "hot_standby = on\n"
        f"max_connections = {max_connections}\n"
        "shared_buffers = 32MB\n"
        "fsync = off\n"
        "wal_receiver_status_interval = 1s\n"
    )
    (pgdata / "pg_hba.conf").write_text(
        "local all postgres trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
    )
    for path in (pgdata / "postgresql.conf", pgdata / "pg_hba.conf"):
        shutil.chown(path, "postgres", "postgres")
    log = data / "replica.log"
    _as_postgres(
        tool("pg_ctl"),
        *("-D", str(pgdata), "-l", str(log), "-w", "-t", str(int(START_DEADLINE)), "start"),
        timeout=START_DEADLINE + 10,
    )
    replica = Replica(port, data, primary_port)
    try:
        deadline = time.monotonic() + START_DEADLINE
        while superuser_sql("SELECT pg_is_in_recovery()", port=port, host=str(data)) != "t":
            if time.monotonic() > deadline:
                raise AssertionError(f"the replica is not a standby: {log.read_text()}")
            time.sleep(0.1)
        yield replica
    finally:
        subprocess.run(
            [
                *("runuser", "-u", "postgres", "--", tool("pg_ctl"), "-D", str(pgdata)),
                *("-m", "immediate", "-w", "-t", "30", "stop"),
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
