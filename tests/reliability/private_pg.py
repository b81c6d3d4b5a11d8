"""A private, throwaway PostgreSQL cluster that a test may stop and start.

The shared server is never touched: the cluster gets its own name, port and
data directory (Debian's ``pg_createcluster``), and is dropped afterwards.
Creating one needs root and the Debian PostgreSQL tools; without them the test
fails when ``CI`` is set (CI must run it) and is skipped otherwise.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

VERSION = os.environ.get("SESSIONS_DB_PG_VERSION", "15")


@dataclass(frozen=True)
class Cluster:
    """A running private cluster: its name, port and superuser URL."""

    name: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        _run("pg_ctlcluster", VERSION, self.name, "stop", "-m", "fast")

    def start(self) -> None:
        _run("pg_ctlcluster", VERSION, self.name, "start")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise AssertionError(f"cluster {self.name} did not start")


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=120)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test, but {reason}", pytrace=False)
    pytest.skip(reason)


@contextmanager
def private_cluster(prefix: str) -> Iterator[Cluster]:
    """Create, start, yield and finally drop a private cluster."""
    if os.geteuid() != 0:
        _unavailable("creating a private PostgreSQL cluster needs root")
    if not shutil.which("pg_createcluster"):
        _unavailable("the Debian PostgreSQL tools (pg_createcluster) are missing")
    cluster = Cluster(f"{prefix}_{secrets.token_hex(4)}", _free_port())
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
