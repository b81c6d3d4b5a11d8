"""Database outage: PostgreSQL stopped and started under running clients.

The server is a private cluster of this test (see :mod:`.private_pg`): the
shared server is never stopped.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

import sessions_db as sdb

from .private_pg import private_cluster
from .support import COUNTS, check_tree, scale

CONNECT_TIMEOUT = 2.0
#: How long a call may take to fail during an outage: the connect timeout plus
#: generous slack for a loaded machine. A hang would blow far past it.
BOUND = CONNECT_TIMEOUT + 15.0

#: The longest a test waits for the writer to make progress before it fails.
PROGRESS_DEADLINE = 120.0

pytestmark = pytest.mark.postgres


class Writer(threading.Thread):
    """Appends to a session until stopped, recording what was acknowledged."""

    def __init__(self, mgr: sdb.Manager, session_id: str) -> None:
        super().__init__(daemon=True)
        self.session = mgr.get(session_id)
        self.acked: list[str] = []
        self.errors: Counter[str] = Counter()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            message = sdb.Message.new("user", {"n": len(self.acked)})
            try:
                self.session.append_message(message)
            except sdb.StorageUnavailableError:
                self.errors["StorageUnavailableError"] += 1
                time.sleep(0.05)
                continue
            except Exception as exc:
                self.errors[f"undocumented {type(exc).__name__}: {exc}"] += 1
                continue
            self.acked.append(message.id)


def _wait_for_acks(writer: Writer, count: int) -> None:
    """Wait until ``writer`` has ``count`` acknowledged appends; fail past the deadline."""
    deadline = time.monotonic() + PROGRESS_DEADLINE
    while len(writer.acked) < count:
        if time.monotonic() > deadline or not writer.is_alive():
            raise AssertionError(
                f"the writer acknowledged {len(writer.acked)} of {count} appends "
                f"within {PROGRESS_DEADLINE:.0f} s (errors: {dict(writer.errors)})"
            )
        time.sleep(0.01)


def _call_during_outage(mgr: sdb.Manager, session_id: str, n: int) -> float:
    """Make one call while the server is down; return how long it took to fail."""
    calls: list[Callable[[], object]] = [
        lambda: mgr.get(session_id).append_message(sdb.Message.new("user", {"down": n})),
        lambda: mgr.list("outage"),
        lambda: mgr.create("outage"),
    ]
    started = time.monotonic()
    with pytest.raises(sdb.StorageUnavailableError):
        calls[n % len(calls)]()
    return time.monotonic() - started


def _first_calls_after(mgr: sdb.Manager, session_id: str) -> None:
    """The first call after a restart succeeds or is unavailable; the next succeeds."""
    try:
        mgr.list("outage")
    except sdb.StorageUnavailableError:
        COUNTS["outage: first calls after restart unavailable"] += 1
    mgr.list("outage")
    mgr.get(session_id).get_messages(limit=1)


def test_calls_fail_fast_during_an_outage_and_recover_after() -> None:
    outages = scale(3, 10)
    with private_cluster("sdb_outage") as cluster:
        backend = sdb.SQLBackend(cluster.url, migrate=True, connect_timeout=CONNECT_TIMEOUT)
        with sdb.Manager(backend) as mgr:
            sid = mgr.create("outage", user_id="u").id
            writer = Writer(mgr, sid)
            writer.start()
            durations: list[float] = []
            try:
                for outage in range(outages):
                    _wait_for_acks(writer, 20 * (outage + 1))
                    cluster.stop()
                    for n in range(6):
                        durations.append(_call_during_outage(mgr, sid, n))
                    cluster.start()
                    _first_calls_after(mgr, sid)
                    COUNTS["outage: outages survived"] += 1
                # The writer goes on after the last restart, on the same manager.
                _wait_for_acks(writer, len(writer.acked) + 20)
            finally:
                writer.halt.set()
                writer.join(60)
            assert not writer.is_alive(), "the writer did not stop within 60 s"
            assert not [e for e in writer.errors if e.startswith("undocumented")], writer.errors
            stored = Counter(m.id for m in mgr.get(sid).get_messages())
            assert all(stored[m] == 1 for m in writer.acked), "an acknowledged append was lost"
            check_tree(mgr.get(sid))
        assert max(durations) < BOUND, durations
        COUNTS["outage: calls failed during outages"] += len(durations)
        COUNTS["outage: slowest failure (ms)"] = max(
            COUNTS["outage: slowest failure (ms)"], round(max(durations) * 1000)
        )
        COUNTS["outage: writer appends acknowledged"] += len(writer.acked)
        COUNTS["outage: writer calls unavailable"] += writer.errors["StorageUnavailableError"]


def test_a_silent_server_times_out() -> None:
    """A server that accepts connections but never answers: connect_timeout bounds the wait."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        url = f"postgresql://nobody@127.0.0.1:{port}/nothing"
        started = time.monotonic()
        with pytest.raises(sdb.StorageUnavailableError):
            sdb.SQLBackend(url, connect_timeout=CONNECT_TIMEOUT)
        elapsed = time.monotonic() - started
    assert elapsed < BOUND, elapsed
    COUNTS["outage: silent-server timeout (ms)"] = round(elapsed * 1000)
