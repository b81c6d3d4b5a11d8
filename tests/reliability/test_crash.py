"""Crashes: a writer killed with SIGKILL at random moments loses nothing acknowledged."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import sessions_db as sdb

from .support import COUNTS, check_tree, scale

ROOT = Path(__file__).resolve().parents[2]


#: Operations the writer must have acknowledged before it is killed, every round:
#: a round that checks nothing acknowledged would prove nothing.
MIN_ACKED = 5
#: How long the writer may take to start and to acknowledge them.
STARTUP_DEADLINE = 60.0


def _run_and_kill(url: str, seed: int, session_ids: list[str], delay: float) -> list[str]:
    """Start the writer; once it has acknowledged ``MIN_ACKED`` operations, wait ``delay``
    seconds and kill it. Return the lines it printed in full."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.workers", url, str(seed), *session_ids],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    lines: list[str] = []
    enough = threading.Event()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            if line != "READY\n":
                lines.append(line)
                if len(lines) >= MIN_ACKED:
                    enough.set()
        enough.set()  # the writer ended: nothing more will come

    reader = threading.Thread(target=read)
    reader.start()
    try:
        enough.wait(STARTUP_DEADLINE)
        time.sleep(delay)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        reader.join()
    assert child.stderr is not None
    err = child.stderr.read()
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL, err
    # The last line may be cut short by the kill: only whole lines were acknowledged.
    acked = [line for line in lines if line.endswith("\n")]
    assert len(acked) >= MIN_ACKED, f"the writer acknowledged only {len(acked)} operations: {err}"
    return acked


def _verify(mgr: sdb.Manager, session_ids: list[str], lines: list[str]) -> int:
    """Check everything acknowledged is stored once and nothing half-written shows."""
    acked: list[tuple[str, str]] = []
    checkpoints: list[tuple[str, str]] = []
    for line in lines:
        kind, sid, *rest = line.split()
        if kind in ("M", "B"):
            acked += [(sid, mid) for mid in rest]
        elif kind == "C":
            checkpoints.append((sid, rest[0]))
    stored: Counter[tuple[str, str]] = Counter()
    for sid in session_ids:
        session = mgr.get(sid)
        entries = check_tree(session)
        messages = [e.id for e in entries if e.type is sdb.EntryType.MESSAGE]
        stored.update((sid, mid) for mid in messages)
        # Batches are all or nothing: every batch present has all its members.
        batches: Counter[str] = Counter()
        for mid in messages:
            if "of" in mid and "-" in mid and mid.startswith("s"):
                batches[mid.split("-")[0]] += 1
        for prefix, count in batches.items():
            assert count == int(prefix.split("of")[1]), f"half a batch: {prefix}"
    missing = [m for m in acked if stored[m] != 1]
    assert not missing, f"acknowledged but not stored once: {missing[:5]}"
    # The store works on: every acknowledged checkpoint restores, appends succeed.
    for sid, cid in checkpoints:
        mgr.get(sid).restore(cid)
    for sid in session_ids:
        session = mgr.get(sid)
        session.append_messages([sdb.Message.new("user", {"after": "crash"}) for _ in range(2)])
        check_tree(session)
    return len(acked)


def test_killed_writer_loses_nothing_acknowledged(store_url: str) -> None:
    rounds = scale(6, 30)
    rng = random.Random(os.environ.get("SESSIONS_DB_CRASH_SEED", "crash"))
    with sdb.connect(store_url) as mgr:
        session_ids = [mgr.create("crash").id for _ in range(2)]
    for round_no in range(rounds):
        lines = _run_and_kill(store_url, round_no, session_ids, rng.uniform(0.05, 0.8))
        with sdb.connect(store_url) as mgr:
            acked = _verify(mgr, session_ids, lines)
        COUNTS["crash: SIGKILLs injected"] += 1
        COUNTS["crash: acknowledged operations checked"] += len(lines)
        COUNTS["crash: acknowledged messages checked"] += acked
