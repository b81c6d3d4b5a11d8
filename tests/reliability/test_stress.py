"""Concurrency stress: processes and threads mixing appends, checkpoints and restores."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import sessions_db as sdb

from .support import COUNTS, check_tree, scale
from .workers import Record, stress_worker

PROCESSES = 4
THREADS = 8
SESSIONS = 3


def test_processes_and_threads_keep_every_tree_whole(
    open_manager: Callable[[], sdb.Manager],
) -> None:
    ops = scale(12, 60)
    with open_manager() as mgr:
        session_ids = [mgr.create("stress", user_id=f"u{i}").id for i in range(SESSIONS)]
    context = multiprocessing.get_context("spawn")
    total = Record()
    with ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
        futures = [
            pool.submit(stress_worker, open_manager, session_ids, w, THREADS, ops, seed=7)
            for w in range(PROCESSES)
        ]
        for future in futures:
            total.merge(future.result())

    # No failure but documented ones (SessionsDBError subclasses).
    undocumented = [e for e in total.errors if not e[2]]
    assert not undocumented, undocumented
    assert len(total.errors) <= PROCESSES * THREADS * ops // 10, total.errors[:5]

    with open_manager() as mgr:
        stored: Counter[tuple[str, str]] = Counter()
        for sid in session_ids:
            session = mgr.get(sid)
            entries = check_tree(session)
            stored.update((sid, e.id) for e in entries if e.type is sdb.EntryType.MESSAGE)
        # Every acknowledged message is in its session's tree exactly once.
        missing = [m for m in total.messages if stored[m] != 1]
        assert not missing, missing[:5]
        assert sum(stored.values()) == len(total.messages)
        # Every acknowledged checkpoint still verifies and restores.
        for sid, cid in total.checkpoints:
            session = mgr.get(sid)
            session.restore(cid)
            assert session.info().message_count == len(session.get_messages())
        for sid in session_ids:
            check_tree(mgr.get(sid))

    COUNTS["stress: runs"] += 1
    COUNTS["stress: operations"] += PROCESSES * THREADS * ops
    COUNTS["stress: acknowledged messages"] += len(total.messages)
    COUNTS["stress: checkpoints verified"] += len(total.checkpoints)
    COUNTS["stress: restores under load"] += total.restores
    COUNTS["stress: documented errors"] += len(total.errors)
