"""A private, throwaway PostgreSQL cluster that a test may stop and start.

The shared server is never touched: the cluster gets its own name, port and
data directory, and is dropped afterwards. As root it is made with Debian's
``pg_createcluster`` (the server runs as the ``postgres`` user); as any other
user, with ``initdb`` and ``pg_ctl`` in a temporary directory. When neither
works the test cannot run here: it fails, or is skipped only with
``SESSIONS_DB_ALLOW_SKIP=1`` (see :func:`tests.conftest.cannot_run`).
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

from ..conftest import cannot_run

VERSION = os.environ.get("SESSIONS_DB_PG_VERSION", "15")


@dataclass(frozen=True)
class Cluster:
    """A running private cluster: its port, superuser URL, and how to stop and start it."""

    name: str
    port: int
    #: The pg_ctl data directory; ``None`` for a Debian cluster (``pg_ctlcluster``).
    data: Path | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        if self.data is None:
            _run("pg_ctlcluster", VERSION, self.name, "stop", "-m", "fast")
        else:
            _run(_tool("pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w")

    def start(self) -> None:
        if self.data is None:
            _run("pg_ctlcluster", VERSION, self.name, "start")
        else:
            options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
            log = str(self.data / "server.log")
            _run(_tool("pg_ctl"), "start", "-D", str(self.data), "-o", options, "-l", log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise AssertionError(f"cluster {self.name} did not start within 60 s")


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=120)


def _tool(name: str) -> str:
    """Return the path of a PostgreSQL server program (``initdb``, ``pg_ctl``), or ``""``."""
    versioned = Path(f"/usr/lib/postgresql/{VERSION}/bin/{name}")
    if versioned.is_file():
        return str(versioned)
    return shutil.which(name) or ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def private_cluster(prefix: str) -> Iterator[Cluster]:
    """Create, start, yield and finally drop a private cluster."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    if os.geteuid() == 0:
        if not shutil.which("pg_createcluster"):
            cannot_run("as root it needs the Debian PostgreSQL tools (pg_createcluster)")
        with _debian_cluster(name) as cluster:
            yield cluster
    else:
        if not (_tool("initdb") and _tool("pg_ctl")):
            cannot_run("the PostgreSQL server programs (initdb, pg_ctl) are missing")
        with _pg_ctl_cluster(name) as cluster:
            yield cluster


@contextmanager
def _debian_cluster(name: str) -> Iterator[Cluster]:
    cluster = Cluster(name, _free_port())
    _run(
        "pg_createcluster",
        VERSION,
        cluster.name,
        "-p",
        str(cluster.port),
        "--start-conf=manual",
        "--",
        "--auth-local=trust",
        "--auth-host=trust",
    )
    try:
        cluster.start()
        yield cluster
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", VERSION, cluster.name],
            check=False,
            capture_output=True,
            timeout=120,
        )


@contextmanager
def _pg_ctl_cluster(name: str) -> Iterator[Cluster]:
    data = Path(tempfile.mkdtemp(prefix=f"{name}_"))
    try:
        _run(_tool("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        cluster = Cluster(name, _free_port(), data)
        try:
            cluster.start()
            yield cluster
        finally:
            subprocess.run(
                [_tool("pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w"],
                check=False,
                capture_output=True,
                timeout=120,
            )
    finally:
        shutil.rmtree(data, ignore_errors=True)
