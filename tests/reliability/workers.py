"""Code that runs in other processes: stress workers and the crash-test writer.

Run as ``python -m tests.reliability.workers URL SEED SESSION_ID...`` it is the
writer the crash test kills: it appends, appends batches, checkpoints and
restores forever, printing (and flushing) one line per acknowledged operation.
"""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import sessions_db as sdb


@dataclass
class Record:
    """What one worker saw acknowledged, and what failed."""

    messages: list[tuple[str, str]] = field(default_factory=list)
    checkpoints: list[tuple[str, str]] = field(default_factory=list)
    restores: int = 0
    errors: list[tuple[str, str, bool]] = field(default_factory=list)

    def merge(self, other: Record) -> None:
        self.messages += other.messages
        self.checkpoints += other.checkpoints
        self.restores += other.restores
        self.errors += other.errors


def _thread_ops(
    mgr: sdb.Manager, session_ids: list[str], tag: str, ops: int, rng: random.Random
) -> Record:
    record = Record()
    sessions = {sid: mgr.get(sid) for sid in session_ids}
    for n in range(ops):
        sid = rng.choice(session_ids)
        session = sessions[sid]
        roll = rng.random()
        op = "append"
        try:
            if roll < 0.5:
                message = sdb.Message.new("user", {"w": tag, "n": n})
                session.append_message(message)
                record.messages.append((sid, message.id))
            elif roll < 0.7:
                op = "batch"
                batch = [sdb.Message.new("user", {"w": tag, "n": n, "i": i}) for i in range(3)]
                session.append_messages(batch)
                record.messages += [(sid, m.id) for m in batch]
            elif roll < 0.85:
                op = "checkpoint"
                record.checkpoints.append((sid, session.checkpoint().id))
            else:
                op = "restore"
                mine = [cid for s, cid in record.checkpoints if s == sid]
                if mine:
                    session.restore(rng.choice(mine))
                    record.restores += 1
        except Exception as exc:  # every failure is recorded and judged by the test
            record.errors.append(
                (op, f"{type(exc).__name__}: {exc}", isinstance(exc, sdb.SessionsDBError))
            )
    return record


def stress_worker(
    open_manager: Callable[[], sdb.Manager],
    session_ids: list[str],
    worker: int,
    threads: int,
    ops: int,
    seed: int,
) -> Record:
    """Run ``threads`` threads of ``ops`` mixed operations each on one manager."""
    results: list[Record] = [Record() for _ in range(threads)]
    with open_manager() as mgr:

        def run(i: int) -> None:
            rng = random.Random(seed * 1000 + worker * 100 + i)
            results[i] = _thread_ops(mgr, session_ids, f"p{worker}t{i}", ops, rng)

        pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    total = Record()
    for r in results:
        total.merge(r)
    return total


def crash_writer(url: str, seed: int, session_ids: list[str]) -> None:
    """Write forever, printing each acknowledged operation; the test kills this."""
    rng = random.Random(seed)
    out = sys.stdout
    mgr = sdb.connect(url)
    sessions = [mgr.get(sid) for sid in session_ids]
    checkpoints: dict[str, list[str]] = {sid: [] for sid in session_ids}
    out.write("READY\n")
    out.flush()
    n = 0
    while True:
        n += 1
        session = rng.choice(sessions)
        roll = rng.random()
        if roll < 0.45:
            message = sdb.Message.new("user", {"n": n, "pad": "x" * rng.randrange(2000)})
            session.append_message(message)
            out.write(f"M {session.id} {message.id}\n")
        elif roll < 0.75:
            size = rng.randrange(2, 8)
            batch = [
                sdb.Message.new("user", {"n": n, "i": i}, id=f"s{seed}b{n}of{size}-{i}")
                for i in range(size)
            ]
            session.append_messages(batch)
            out.write(f"B {session.id} {' '.join(m.id for m in batch)}\n")
        elif roll < 0.9:
            cp = session.checkpoint()
            checkpoints[session.id].append(cp.id)
            out.write(f"C {session.id} {cp.id}\n")
        elif checkpoints[session.id]:
            cid = rng.choice(checkpoints[session.id])
            session.restore(cid)
            out.write(f"R {session.id} {cid}\n")
        out.flush()


if __name__ == "__main__":
    crash_writer(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
