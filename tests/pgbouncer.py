"""A private PgBouncer in transaction mode, in front of the test server, for one test run.

Its configuration lives in a temporary directory: one wildcard database entry
pointing at the server of ``SESSIONS_DB_TEST_PG`` (so every test database is
reachable under its own name), transaction pooling, a user list holding the test
role's password (PgBouncer logs in to the server with it), a free local port,
no Unix socket. The process is ours: started here, waited for within a bound,
and stopped (by its process ID) at the end. When ``pgbouncer`` is missing
(``scripts/setup`` installs Debian's when run as root) the tests that need it
cannot run: they fail, or are skipped only with ``SESSIONS_DB_ALLOW_SKIP=1``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url

from .conftest import cannot_run

#: Where Debian's package puts the program (not on a normal user's PATH).
DEBIAN_PROGRAM = Path("/usr/sbin/pgbouncer")
#: How long PgBouncer may take to listen, and to stop.
START_DEADLINE = 30.0
STOP_DEADLINE = 10.0


@dataclass(frozen=True)
class Bouncer:
    """A running PgBouncer: where it listens, and the server it pools."""

    port: int
    server_url: str
    directory: Path

    def url(self, server_url: str | None = None) -> str:
        """The URL of ``server_url``'s database (default: the server's) through PgBouncer."""
        parsed = make_url(server_url or self.server_url)
        return parsed.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def log(self) -> str:
        """What PgBouncer logged so far."""
        path = self.directory / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _quoted(value: str) -> str:
    """A value of PgBouncer's user list: in double quotes, a quote doubled."""
    return '"' + value.replace('"', '""') + '"'


def program() -> str:
    """Return the path of ``pgbouncer``, or end the test: it cannot run here."""
    found = shutil.which("pgbouncer") or (str(DEBIAN_PROGRAM) if DEBIAN_PROGRAM.is_file() else "")
    if not found:
        cannot_run("pgbouncer is not installed (scripts/setup installs Debian's as root)")
    return found


@contextmanager
def private_pgbouncer(server_url: str, *, pool_size: int = 10) -> Iterator[Bouncer]:
    """Start PgBouncer in transaction mode in front of ``server_url``'s server; stop it after.

    ``pool_size`` is the number of server connections per database and user.
    """
    binary = program()
    server = make_url(server_url)
    if not server.username or server.password is None:
        cannot_run("SESSIONS_DB_TEST_PG must name a user and password for PgBouncer to log in")
    directory = Path(tempfile.mkdtemp(prefix="sessions_db_pgbouncer_"))
    port = _free_port()
    (directory / "userlist.txt").write_text(
        f"{_quoted(server.username)} {_quoted(server.password)}\n"
    )
    (directory / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server.host or '127.0.0.1'} port={server.port or 5432}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = scram-sha-256\n"
        f"auth_file = {directory / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool_size}\n"
        "min_pool_size = 0\n"
        "max_client_conn = 1000\n"
        "query_wait_timeout = 60\n"
        "server_connect_timeout = 10\n"
        "server_login_retry = 1\n"
        "log_connections = 0\n"
        "log_disconnections = 0\n"
        f"logfile = {directory / 'pgbouncer.log'}\n"
        f"pidfile = {directory / 'pgbouncer.pid'}\n"
    )
    command = [binary]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root: it switches to the postgres user.
        user = pwd.getpwnam("postgres")
        for path in (directory, *directory.iterdir()):
            os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(directory / "userlist.txt", 0o600)
        command += ["-u", "postgres"]
    command.append(str(directory / "pgbouncer.ini"))
    # Its output goes to a file: a pipe nobody reads would fill up and stop it.
    with (directory / "pgbouncer.out").open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    bouncer = Bouncer(port, server_url, directory)
    try:
        _wait_listening(process, bouncer)
        yield bouncer
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_DEADLINE)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_listening(process: subprocess.Popen[bytes], bouncer: Bouncer) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = (bouncer.directory / "pgbouncer.out").read_text(errors="replace")
            raise AssertionError(f"pgbouncer exited with {process.returncode}: {output}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", bouncer.port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(
        f"pgbouncer did not listen within {START_DEADLINE:.0f} s:\n{bouncer.log()}"
    )
