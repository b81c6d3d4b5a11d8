"""``sessions-db serve`` in a subprocess on a free local port, for as long as a test needs it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

#: How long the server may take to answer its first request.
STARTUP_SECONDS = 30.0


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serving(
    url: str, *, token: str | None = None, log: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run the inspector of ``url``; yield its base URL and process, and stop it afterwards."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONS_DB_")}
    if token is not None:
        env["SESSIONS_DB_INSPECTOR_TOKEN"] = token
    command = [sys.executable, "-m", "sessions_db", "serve", "--url", url, "--port", str(port)]
    output = open(log or os.devnull, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"sessions-db serve exited with {process.returncode} before serving")
            try:
                httpx.get(base + "/static/favicon.svg", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail(f"sessions-db serve did not answer within {STARTUP_SECONDS} s")
                time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        output.close()
