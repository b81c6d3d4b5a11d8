"""The scenarios: every operation through the public API, next to its floor.

Each ``run_*`` function measures one group of scenarios on one store and
returns report rows. Scenario IDs are fixed (``append_10k`` is the append to the
large session whatever ``--small`` makes its size); the row's ``operation``
text and ``extra`` carry the real sizes.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sessions_db as sdb

from .baselines import Raw, RawFile, raw_for
from .stores import PAYLOAD, ROLES, Store
from .timing import Row, Timing, measure, measure_pair, peak_kib, row


@dataclass(frozen=True)
class Sizes:
    """The sizes of one run (``--small`` scales them down)."""

    small_history: int = 10
    mid_history: int = 1_000
    big_history: int = 10_000
    huge_history: int = 100_000
    few_sessions: int = 1_000
    many_sessions: int = 100_000
    page_sessions: int = 10_000
    users: int = 100
    reps: int = 30
    load_reps: int = 10
    per_worker: int = 50

    @classmethod
    def small(cls) -> Sizes:
        return cls(
            small_history=10,
            mid_history=100,
            big_history=500,
            huge_history=2_000,
            few_sessions=100,
            many_sessions=2_000,
            page_sessions=500,
            users=10,
            reps=5,
            load_reps=3,
            per_worker=10,
        )


#: Every scenario of a SQL backend, in report order (the file store adds one).
SCENARIOS = [
    "create",
    "append_10",
    "append_1k",
    "append_10k",
    "load_50",
    "load_100",
    "load_1k",
    "load_10k",
    "newest50_of_10k",
    "checkpoint",
    "restore",
    "list_all_100",
    "list_of_1k",
    "list_of_100k",
    "threads1_one",
    "threads8_one",
    "threads8_each",
    "procs4_one",
    "procs4_each",
    "mem_newest50_of_50",
    "mem_newest50_of_100k",
    "mem_list_page_of_50",
    "mem_list_page_of_10k",
]
FILE_ONLY = ["mem_file_cache"]
#: The OpenAI Agents SDK's own sessions on the same store, per backend (when it is installed):
#: ``SQLiteSession`` on SQLite, ``SQLAlchemySession`` on PostgreSQL.
PEERS = {
    "sqlite": ["peer_sqlitesession_append", "peer_sqlitesession_load_1k"],
    "postgres": ["peer_sqlalchemysession_append", "peer_sqlalchemysession_load_1k"],
}
CONCURRENCY = ["threads1_one", "threads8_one", "threads8_each", "procs4_one", "procs4_each"]


def message(i: int = 0) -> sdb.Message:
    return sdb.Message.new(ROLES[i % 2], PAYLOAD)


class Bench:
    """The scenarios of one store; ``log`` prints progress."""

    def __init__(self, store: Store, sizes: Sizes, log: Callable[[str], None]) -> None:
        self.store = store
        self.sizes = sizes
        self.log = log
        self.mgr = store.connect()
        self.raw: Raw = raw_for(store)
        self.rows: list[Row] = []
        self.histories: dict[int, str] = {}

    def close(self) -> None:
        self.raw.close()
        self.mgr.close()

    def history(self, n: int) -> str:
        """The ID of a seeded session of ``n`` messages (one per size, reused)."""
        if n not in self.histories:
            self.log(f"  seeding a session of {n:,} messages")
            self.histories[n] = self.store.seed_history(self.mgr, n)
        return self.histories[n]

    def add(self, r: Row) -> None:
        self.rows.append(r)
        self.log(f"  {r.scenario:<22} {r.median:>12.3f} {r.unit}")

    # -- latency ------------------------------------------------------------------

    def run_create(self) -> None:
        s = self.sizes
        t, base = measure_pair(
            lambda: self.mgr.create("bench-create", user_id="u1"), self.raw.create, s.reps
        )
        self.add(row("create", "Manager.create()", t, base, "raw insert of a session row"))

    def run_append(self) -> None:
        s = self.sizes
        raw_sid = "raw-append"
        if isinstance(self.raw, RawFile):
            self.raw.fill(raw_sid, 0)
        for key, n in (
            ("append_10", s.small_history),
            ("append_1k", s.mid_history),
            ("append_10k", s.big_history),
        ):
            sess = self.mgr.get(self.history(n))
            t, base = measure_pair(
                lambda sess=sess: sess.append_message(message()),
                lambda: self.raw.append(raw_sid),
                s.reps,
            )
            self.add(
                row(
                    key,
                    f"append_message() to a session of {n:,}",
                    t,
                    base,
                    "raw INSERT (O_APPEND+fsync on files)",
                    history=n,
                )
            )
            # Put the history back to its size for the loads that reuse it.
            self.histories.pop(n)

    def run_load(self) -> None:
        s = self.sizes
        for key, n in (
            ("load_50", 50),
            ("load_100", 100),
            ("load_1k", s.mid_history),
            ("load_10k", s.big_history),
        ):
            sid = self.history(n)
            sess = self.mgr.get(sid)
            reps = s.load_reps if n >= s.big_history else s.reps
            assert len(sess.get_messages()) == n
            t, base = measure_pair(sess.get_messages, self._raw_load(sid, n), reps)
            self.add(
                row(key, f"get_messages() of {n:,}", t, base, "raw SELECT ... ORDER BY", size=n)
            )
        sess = self.mgr.get(self.history(s.big_history))
        t = measure(lambda: sess.get_messages(limit=50), s.reps)
        load50 = next(r for r in self.rows if r.scenario == "load_50")
        self.add(
            row(
                "newest50_of_10k",
                f"get_messages(limit=50) of {s.big_history:,}",
                t,
                load50.median,
                "get_messages() of a 50-message session",
                size=s.big_history,
                raw_median=self._raw_newest(self.history(s.big_history), s.reps).median,
            )
        )

    def _raw_load(self, sid: str, n: int) -> Callable[[], Any]:
        if isinstance(self.raw, RawFile):
            self.raw.fill(f"load-{n}", n)
            return lambda: self.raw.load(f"load-{n}")
        return lambda: self.raw.load(sid)

    def _raw_newest(self, sid: str, reps: int) -> Timing:
        if isinstance(self.raw, RawFile):
            key = f"load-{self.sizes.big_history}"
            self.raw.fill(key, self.sizes.big_history)
            return measure(lambda: self.raw.newest(key, 50), reps)
        return measure(lambda: self.raw.newest(sid, 50), reps)

    def run_checkpoint_restore(self) -> None:
        s = self.sizes
        sess = self.mgr.get(self.store.seed_history(self.mgr, 100))
        t = measure(sess.checkpoint, s.reps)
        self.add(row("checkpoint", "checkpoint() of a 100-message branch", t))
        cp = sess.checkpoint()
        t = measure(lambda: sess.restore(cp.id), s.reps)
        self.add(row("restore", "restore() to a 100-message branch (checksum verified)", t))

    def run_list(self) -> None:
        s = self.sizes
        self.log("  seeding sessions for the listings")
        self.store.seed_sessions(self.mgr, "list-100", 100, 10)
        self.store.seed_sessions(self.mgr, "list-few", s.few_sessions, s.users)
        self.store.seed_sessions(self.mgr, "list-many", s.many_sessions, s.users)
        t = measure(lambda: self.mgr.list("list-100"), s.reps)
        assert len(self.mgr.list("list-100")) == 100
        self.add(row("list_all_100", "list() of an agent's 100 sessions", t))
        results: dict[str, Timing] = {}
        for key, agent, n in (
            ("list_of_1k", "list-few", s.few_sessions),
            ("list_of_100k", "list-many", s.many_sessions),
        ):
            page = self.mgr.list(agent, user_id="u7", limit=10)
            assert len(page) == 10, len(page)
            ours = lambda a=agent: self.mgr.list(a, user_id="u7", limit=10)  # noqa: E731
            base: Timing | None = None
            if isinstance(self.raw, RawFile):
                t = measure(ours, s.reps)
            else:
                t, base = measure_pair(ours, lambda a=agent: self.raw.list(a, "u7", 10), s.reps)
            results[key] = t
            self.add(
                row(
                    key,
                    f"list(user_id=, limit=10) among {n:,} sessions",
                    t,
                    base,
                    "raw SELECT ... ORDER BY ... LIMIT 10",
                    sessions=n,
                )
            )

    # -- peers ----------------------------------------------------------------------

    def run_peers(self) -> None:
        """The OpenAI Agents SDK's session next to ours: an append and a load of ``mid_history``.

        Each round times one call of ours (the sync API) and one of theirs (awaited, as the
        SDK's API is), the first to go switching every round; the row is theirs, with ours as
        the baseline (ratio above 1: ours is faster).
        """
        if self.store.kind in PEERS:
            asyncio.run(self._peers())

    @asynccontextmanager
    async def _peer(self, session_id: str) -> AsyncIterator[Any]:
        from . import peers_openai

        if self.store.kind == "sqlite":
            from agents.memory import SQLiteSession

            assert self.store.path is not None
            path = self.store.path.parent / "sdk_sqlite_session.db"
            session = SQLiteSession(session_id, db_path=path)
            try:
                yield session
            finally:
                session.close()
        else:
            url = peers_openai.async_pg_url(self.store.url)
            async with peers_openai.sqlalchemy_session(url, session_id) as session:
                yield session

    async def _peers(self) -> None:
        from . import peers_openai

        s = self.sizes
        kind = self.store.kind
        append_key, load_key = PEERS[kind]
        name = "SQLiteSession" if kind == "sqlite" else "SQLAlchemySession"
        hop = " (a thread hop per call)" if kind == "sqlite" else ""
        ours_sess = self.mgr.get(self.history(s.small_history))

        async def ours_append() -> None:
            ours_sess.append_message(message())

        async with self._peer("peer-append") as theirs:
            await peers_openai.seed(theirs, None, s.small_history, [PAYLOAD] * s.small_history)
            ours, them = await peers_openai.alternate(
                ours_append, lambda: theirs.add_items([PAYLOAD]), s.reps, 2
            )
        self.histories.pop(s.small_history)
        self.add(
            self._peer_row(
                append_key,
                f"{name}.add_items([one item]){hop}, a session of {s.small_history:,}",
                them,
                ours,
                f"append_message() to a session of {s.small_history:,}",
            )
        )
        n = s.mid_history
        ours_load = self.mgr.get(self.history(n))

        async def ours_get() -> None:
            ours_load.get_messages()

        async with self._peer("peer-load") as theirs:
            await peers_openai.seed(theirs, None, n, [PAYLOAD] * 100)
            peers_openai.analyze(kind, self.store.url)
            assert len(await theirs.get_items()) == n
            ours, them = await peers_openai.alternate(ours_get, theirs.get_items, s.reps, 2)
        self.add(
            self._peer_row(
                load_key,
                f"{name}.get_items() of {n:,}{hop}",
                them,
                ours,
                f"get_messages() of {n:,}",
            )
        )

    @staticmethod
    def _peer_row(key: str, what: str, theirs: Timing, ours: Timing, ours_what: str) -> Row:
        return row(
            key,
            what,
            theirs,
            ours,
            f"sessions_db: {ours_what}, in alternation",
            ours_p95=ours.p95,
        )

    # -- concurrency ---------------------------------------------------------------

    def run_concurrency(self) -> None:
        s = self.sizes
        k = s.per_worker
        one = self._threads(1, shared=True, k=k)
        self.add(one)
        for key, workers, shared in (
            ("threads8_one", 8, True),
            ("threads8_each", 8, False),
        ):
            r = self._threads(workers, shared=shared, k=k)
            r.scenario = key
            r.baseline, r.baseline_label = one.median, "one thread, msg/s"
            self.add(r)
        for key, workers, shared in (("procs4_one", 4, True), ("procs4_each", 4, False)):
            r = self._processes(workers, shared=shared, k=k)
            r.scenario = key
            r.baseline, r.baseline_label = one.median, "one thread, msg/s"
            self.add(r)

    def _sessions(self, workers: int, shared: bool) -> list[str]:
        if shared:
            sid = self.mgr.create("bench-conc").id
            return [sid] * workers
        return [self.mgr.create("bench-conc").id for _ in range(workers)]

    def _check(self, sids: list[str], k: int) -> dict[str, Any]:
        expected: dict[str, int] = {}
        for sid in sids:
            expected[sid] = expected.get(sid, 0) + k
        exact = True
        counts = {}
        for sid, want in expected.items():
            sess = self.mgr.get(sid)
            got = sess.info().message_count
            messages = sess.get_messages()
            distinct = len({m.id for m in messages})
            counts[sid] = got
            exact = exact and got == want == len(messages) == distinct
        return {
            "expected_total": sum(expected.values()),
            "counted_total": sum(counts.values()),
            "exact": exact,
        }

    def _threads(self, workers: int, *, shared: bool, k: int) -> Row:
        sids = self._sessions(workers, shared)
        barrier = threading.Barrier(workers + 1)
        errors: list[BaseException] = []

        def work(sid: str) -> None:
            sess = self.mgr.get(sid)
            barrier.wait()
            try:
                for i in range(k):
                    sess.append_message(message(i))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(sid,)) for sid in sids]
        for th in threads:
            th.start()
        barrier.wait()
        start = time.perf_counter()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - start
        if errors:
            raise errors[0]
        total = workers * k
        where = "one session" if shared else "one session each"
        return Row(
            "threads1_one",
            f"{workers} thread(s) x {k} appends, {where}",
            total,
            total / elapsed,
            None,
            "msg/s",
            extra={"workers": workers, "seconds": elapsed, **self._check(sids, k)},
        )

    def _processes(self, workers: int, *, shared: bool, k: int) -> Row:
        sids = self._sessions(workers, shared)
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(workers + 1)
        done = ctx.Queue()
        procs = [
            ctx.Process(target=_process_worker, args=(self.store.url, sid, k, barrier, done))
            for sid in sids
        ]
        for p in procs:
            p.start()
        barrier.wait(timeout=120)
        start = time.perf_counter()
        outcomes = [done.get(timeout=600) for _ in procs]
        elapsed = time.perf_counter() - start
        for p in procs:
            p.join()
        failures = [o for o in outcomes if o != "ok"]
        if failures:
            raise RuntimeError(f"worker process failed: {failures[0]}")
        total = workers * k
        where = "one session" if shared else "one session each"
        return Row(
            "procs",
            f"{workers} processes x {k} appends, {where}",
            total,
            total / elapsed,
            None,
            "msg/s",
            extra={"workers": workers, "seconds": elapsed, **self._check(sids, k)},
        )

    # -- memory ---------------------------------------------------------------------

    def run_memory(self) -> None:
        s = self.sizes
        small = self.mgr.get(self.history(50))
        huge = self.mgr.get(self.history(s.huge_history))
        small.get_messages(limit=50)
        huge.get_messages(limit=50)
        base, _ = peak_kib(lambda: small.get_messages(limit=50))
        self.add(_mem("mem_newest50_of_50", "peak of get_messages(limit=50) of 50", base))
        peak, got = peak_kib(lambda: huge.get_messages(limit=50))
        assert len(got) == 50
        self.add(
            _mem(
                "mem_newest50_of_100k",
                f"peak of get_messages(limit=50) of {s.huge_history:,}",
                peak,
                base,
                "the same of a 50-message session",
            )
        )
        self.store.seed_sessions(self.mgr, "page-50", 50, 5)
        self.store.seed_sessions(self.mgr, "page-many", s.page_sessions, 5)
        base, page = peak_kib(lambda: self.mgr.list("page-50", limit=50))
        assert len(page) == 50
        self.add(_mem("mem_list_page_of_50", "peak of list(limit=50) among 50 sessions", base))
        peak, page = peak_kib(lambda: self.mgr.list("page-many", limit=50))
        assert len(page) == 50
        self.add(
            _mem(
                "mem_list_page_of_10k",
                f"peak of list(limit=50) among {s.page_sessions:,} sessions",
                peak,
                base,
                "the same page among 50 sessions",
            )
        )
        if self.store.kind == "file":
            self.add(self._file_cache())

    def _file_cache(self) -> Row:
        sid = self.history(self.sizes.big_history)
        gc.collect()
        tracemalloc.start()
        try:
            start, _ = tracemalloc.get_traced_memory()
            sess = self.mgr.get(sid)
            sess.get_messages()
            gc.collect()
            loaded, _ = tracemalloc.get_traced_memory()
            sess.close()
            del sess
            gc.collect()
            closed, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        held = (loaded - start) / 1024.0
        after = (closed - start) / 1024.0
        return Row(
            "mem_file_cache",
            f"memory held by a {self.sizes.big_history:,}-message session: loaded vs closed",
            1,
            after,
            None,
            "KiB",
            held,
            "held while loaded (KiB)",
            {"loaded_kib": held, "closed_kib": after},
        )


def _mem(
    key: str, what: str, kib: float, base: float | None = None, label: str | None = None
) -> Row:
    return Row(key, what, 1, kib, None, "KiB", base, label)


def _process_worker(url: str, sid: str, k: int, barrier: Any, done: Any) -> None:
    try:
        with sdb.connect(url) as mgr:
            sess = mgr.get(sid)
            barrier.wait(timeout=120)
            for i in range(k):
                sess.append_message(message(i))
        done.put("ok")
    except BaseException as exc:
        done.put(repr(exc))


# -- asyncio ------------------------------------------------------------------------

ASYNC_SCENARIOS = [
    "async_create",
    "async_append_10",
    "async_load_1k",
    "async_newest50_of_10k",
    "async_list_of_100k",
    "async_tasks8_one",
    "async_tasks8_each",
]


def run_async(bench: Bench) -> list[Row]:
    """The asyncio API on the same store (``sessions_db.aio``), next to the sync figures."""
    return asyncio.run(_run_async(bench))


async def _ameasure(fn: Callable[[], Any], n: int, warmup: int = 2) -> Timing:
    samples = []
    for i in range(warmup + n):
        start = time.perf_counter()
        await fn()
        if i >= warmup:
            samples.append((time.perf_counter() - start) * 1000.0)
    return Timing(samples)


async def _run_async(bench: Bench) -> list[Row]:
    from sessions_db import aio

    s = bench.sizes
    sync = {r.scenario: r for r in bench.rows}
    rows: list[Row] = []
    mgr = await aio.connect(bench.store.url)
    try:

        def vs(key: str) -> dict[str, Any]:
            r = sync.get(key)
            return {"baseline": r.median if r else None, "baseline_label": f"sync {key}"}

        t = await _ameasure(lambda: mgr.create("bench-create", user_id="u1"), s.reps)
        rows.append(row("async_create", "await AsyncManager.create()", t, **(vs("create"))))
        sess = await mgr.get(bench.history(s.small_history))
        t = await _ameasure(lambda: sess.append_message(message()), s.reps)
        rows.append(row("async_append_10", "await append_message()", t, **(vs("append_10"))))
        bench.histories.pop(s.small_history, None)
        sess = await mgr.get(bench.history(s.mid_history))
        t = await _ameasure(sess.get_messages, s.reps)
        rows.append(
            row("async_load_1k", f"await get_messages() of {s.mid_history:,}", t, **(vs("load_1k")))
        )
        sess = await mgr.get(bench.history(s.big_history))
        t = await _ameasure(lambda: sess.get_messages(limit=50), s.reps)
        rows.append(
            row(
                "async_newest50_of_10k",
                "await get_messages(limit=50)",
                t,
                **(vs("newest50_of_10k")),
            )
        )
        t = await _ameasure(lambda: mgr.list("list-many", user_id="u7", limit=10), s.reps)
        rows.append(
            row("async_list_of_100k", "await list(user_id=, limit=10)", t, **(vs("list_of_100k")))
        )
        for key, shared in (("async_tasks8_one", True), ("async_tasks8_each", False)):
            sids = bench._sessions(8, shared)
            sessions = [await mgr.get(sid) for sid in sids]

            async def work(one: Any) -> None:
                for i in range(s.per_worker):
                    await one.append_message(message(i))

            start = time.perf_counter()
            await asyncio.gather(*(work(one) for one in sessions))
            elapsed = time.perf_counter() - start
            total = 8 * s.per_worker
            one = sync.get("threads1_one")
            rows.append(
                Row(
                    key,
                    f"8 tasks x {s.per_worker} appends, "
                    + ("one session" if shared else "one session each"),
                    total,
                    total / elapsed,
                    None,
                    "msg/s",
                    one.median if one else None,
                    "sync, one thread, msg/s",
                    {"workers": 8, "seconds": elapsed, **bench._check(sids, s.per_worker)},
                )
            )
    finally:
        await mgr.close()
    return rows
