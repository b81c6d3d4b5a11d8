"""``python -m benchmarks.profile [--backend postgres|sqlite] [--op OP] [-n N] [--small]``.

Where the time of one operation goes. The store is seeded as the main run seeds
it (``stores.py``: a session of 10 messages for ``append``, of 100 or 1,000 for
the loads, 100,000 sessions of 100 users for ``list``), then the operation runs
``N`` times three ways, after warm-up calls:

* plain, for the wall time per call (``time.perf_counter``) and the CPU time of
  this process per call (``time.process_time``); wall minus CPU is the time
  spent waiting (on the server, the disk, or another thread). Each call
  alternates with the same work through the raw driver (``baselines.py``),
  whose wall time per call is given too;
* under ``cProfile``, whose statistics are grouped by layer, from each
  function's file path: the driver (psycopg, with its waits for the server
  apart; sqlite3, whose calls include the waits for the disk), SQLAlchemy
  (statement building, compile and cache lookup, execution, result
  processing, pool checkout and return, events, the asyncio bridge),
  pydantic, sessions_db by module, and the rest.

Each layer has two figures, per call and as a share of the profiled time:
*self*, the time spent in the layer's own code (a C function without a module
of its own, such as ``list.append``, counts for its caller's layer; the
layers' self times add up to the total), and *cumulative*, the self time plus
everything the layer calls in other layers (counted from the calls into the
layer from outside it; a layer re-entered from below counts twice). The
profiler slows Python code far more than C code or waiting, so the shares
overstate the Python layers; the plain wall and CPU times are the reference.

Only the calling thread is profiled: work that a driver hands to a thread of
its own (aiosqlite) shows as waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import re
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .baselines import raw_for
from .scenarios import Sizes, message
from .stores import Store, open_store, workdir

OPS = ("append", "create", "list", "load_1k", "load_100", "async_append")
BACKENDS = ("postgres", "sqlite")

#: A function as pstats names it: (file, line, name); C functions have the file ``~``.
Func = tuple[str, int, str]

#: SQLAlchemy's layers, by the first path (under ``sqlalchemy/``) that matches.
SQLALCHEMY_PARTS: tuple[tuple[str, str], ...] = (
    ("pool/", "pool checkout/return"),
    ("event/", "events"),
    ("ext/asyncio/", "asyncio bridge (greenlet)"),
    ("util/_concurrency", "asyncio bridge (greenlet)"),
    ("sql/compiler", "compile / cache lookup"),
    ("sql/cache_key", "compile / cache lookup"),
    ("sql/traversals", "compile / cache lookup"),
    ("util/_collections", "compile / cache lookup"),
    ("util/_immutabledict", "compile / cache lookup"),
    ("engine/result", "result processing"),
    ("engine/_result", "result processing"),
    ("engine/cursor", "result processing"),
    ("engine/row", "result processing"),
    ("engine/_row", "result processing"),
    ("engine/processors", "result processing"),
    ("engine/_processors", "result processing"),
    ("sql/sqltypes", "result processing"),
    ("sql/type_api", "result processing"),
    ("engine/", "execution"),
    ("dialects/", "execution"),
    ("orm/", "ORM"),
    ("sql/", "statement building"),
)

DRIVER_PG = "driver: psycopg"
DRIVER_PG_WAIT = "driver: psycopg, waiting for the server"
DRIVER_SQLITE = "driver: sqlite3 (incl. disk wait)"
PYDANTIC = "pydantic"
EVENT_LOOP = "asyncio event loop (incl. waits)"


def layer_of(func: Func) -> str | None:
    """The layer of one function, from its file path; None for a C function that belongs to
    no module of its own (its time counts for its caller's layer)."""
    path, _, name = func
    if path == "~":
        if "sqlite3" in name:
            return DRIVER_SQLITE
        if "psycopg" in name:
            return DRIVER_PG_WAIT if "wait" in name else DRIVER_PG
        if "pydantic_core" in name:
            return PYDANTIC
        if "select" in name or "epoll" in name:
            return EVENT_LOOP
        return None
    p = path.replace("\\", "/")
    if "/psycopg" in p and (p.endswith("/waiting.py") or name.startswith("wait")):
        return DRIVER_PG_WAIT
    for marker, layer in (
        ("/psycopg/", DRIVER_PG),
        ("/psycopg_binary/", DRIVER_PG),
        ("/psycopg_c/", DRIVER_PG),
        ("/psycopg_pool/", DRIVER_PG),
        ("/sqlite3/", DRIVER_SQLITE),
        ("/aiosqlite/", "driver: aiosqlite (thread hop)"),
        ("/pydantic/", PYDANTIC),
        ("/pydantic_core/", PYDANTIC),
        ("/asyncio/", EVENT_LOOP),
        ("/selectors.py", EVENT_LOOP),
    ):
        if marker in p:
            return layer
    if p.startswith("<sqlalchemy generated"):
        return "SQLAlchemy: statement building"
    if "/sqlalchemy/" in p:
        sub = p.rsplit("/sqlalchemy/", 1)[1]
        for prefix, part in SQLALCHEMY_PARTS:
            if sub.startswith(prefix):
                return f"SQLAlchemy: {part}"
        return "SQLAlchemy: other"
    if "/sessions_db/" in p:
        module = p.rsplit("/sessions_db/", 1)[1].removesuffix(".py").replace("/", ".")
        return "sessions_db." + module.removesuffix(".__init__")
    if "/benchmarks/" in p:
        return "benchmark loop"
    return f"other: {_package(p)}"


def _package(path: str) -> str:
    """The top-level package or module of a file outside the named layers (``json``)."""
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in path:
            return path.rsplit(marker, 1)[1].split("/", 1)[0].removesuffix(".py")
    found = re.search(r"/lib/python3[.0-9]*/([^/]+)", path)
    if found:
        return found.group(1).removesuffix(".py")
    return Path(path).stem


@dataclass
class Layer:
    """One layer's figures, in seconds over all the profiled calls."""

    name: str
    self_s: float = 0.0
    cumulative_s: float = 0.0


def layers(stats: pstats.Stats) -> tuple[list[Layer], float]:
    """Group ``stats`` by layer; return the layers (largest self time first) and the total."""
    raw: dict[Func, Any] = stats.stats  # type: ignore[attr-defined]
    by: dict[str, Layer] = {}

    def get(name: str) -> Layer:
        return by.setdefault(name, Layer(name))

    def resolved(func: Func) -> str:
        layer = layer_of(func)
        if layer is not None:
            return layer
        callers = raw[func][4] if func in raw else {}
        # An unnamed C function called from C: its time goes to its first caller's layer.
        for caller in callers:
            if layer_of(caller) is not None:
                return resolved(caller)
        return "other: C functions"

    for func, (_cc, _nc, tt, ct, callers) in raw.items():
        layer = layer_of(func)
        if layer is None:
            if not callers:
                get("other: C functions").self_s += tt
            for caller, edge in callers.items():
                get(resolved(caller)).self_s += edge[2]
            continue
        get(layer).self_s += tt
        if not callers:
            get(layer).cumulative_s += ct
        for caller, edge in callers.items():
            if resolved(caller) != layer:
                get(layer).cumulative_s += edge[3]
    total = sum(found.self_s for found in by.values())
    for found in by.values():
        # Re-entry (SQLAlchemy's execution calling sessions_db's event handler, which
        # executes again) counts the inner part twice: never more than the whole.
        found.cumulative_s = min(max(found.cumulative_s, found.self_s), total)
    return sorted(by.values(), key=lambda found: -found.self_s), total


def families(found: list[Layer]) -> list[Layer]:
    """The self time of the driver, SQLAlchemy, pydantic, sessions_db and the rest, each
    summed over its layers."""
    sums: dict[str, Layer] = {}
    for layer in found:
        if layer.name.startswith("driver"):
            family = "driver (all)"
        elif layer.name.startswith("SQLAlchemy"):
            family = "SQLAlchemy (all)"
        elif layer.name.startswith("sessions_db"):
            family = "sessions_db (all)"
        elif layer.name == PYDANTIC:
            family = PYDANTIC
        else:
            family = "other (all)"
        sums.setdefault(family, Layer(family)).self_s += layer.self_s
    return sorted(sums.values(), key=lambda layer: -layer.self_s)


def core_layers(backend: str) -> list[str]:
    """The layers every report of ``backend`` lists, at zero when nothing ran in them."""
    driver = [DRIVER_PG, DRIVER_PG_WAIT] if backend == "postgres" else [DRIVER_SQLITE]
    parts = dict.fromkeys(part for _, part in SQLALCHEMY_PARTS if part != "ORM")
    return [*driver, *(f"SQLAlchemy: {part}" for part in parts), PYDANTIC]


def layer_table(
    found: list[Layer], total: float, n: int, core: Sequence[str] = (), minimum: float = 0.005
) -> str:
    """The layers as a Markdown table, µs per call and percent of the profiled time; the
    ``core`` layers always, the others under ``minimum`` of it summed into one line."""
    names = {layer.name for layer in found}
    found = found + [Layer(name) for name in core if name not in names]
    lines = [
        "| layer | self µs/call | self % | cumulative µs/call | cumulative % |",
        "|---|---:|---:|---:|---:|",
    ]
    small = Layer("(smaller layers)")
    for layer in found:
        if layer.name not in core and max(layer.self_s, layer.cumulative_s) < minimum * total:
            small.self_s += layer.self_s
            continue
        lines.append(_layer_line(layer, total, n))
    if small.self_s:
        small.cumulative_s = small.self_s
        lines.append(_layer_line(small, total, n))
    lines.append(f"| total (profiled) | {total / n * 1e6:,.0f} | 100 | | |")
    for family in families(found):
        lines.append(
            f"| {family.name} | {family.self_s / n * 1e6:,.0f} | "
            f"{100 * family.self_s / total:.1f} | | |"
        )
    return "\n".join(lines)


def _layer_line(layer: Layer, total: float, n: int) -> str:
    return (
        f"| {layer.name} | {layer.self_s / n * 1e6:,.0f} | {100 * layer.self_s / total:.1f} | "
        f"{layer.cumulative_s / n * 1e6:,.0f} | {100 * layer.cumulative_s / total:.1f} |"
    )


@dataclass
class Result:
    """The figures of one profiled operation."""

    backend: str
    op: str
    n: int
    plain: Plain
    stats: pstats.Stats

    def text(self, top: int = 12) -> str:
        """The report: wall and CPU per call, the layers, the top functions by self time."""
        found, total = layers(self.stats)
        wall = self.plain.mean(self.plain.walls)
        cpu = self.plain.mean(self.plain.cpus)
        lines = [
            f"### {self.backend} {self.op} (n = {self.n})",
            "",
            f"wall per call: median {self.plain.median(self.plain.walls):,.0f} µs, "
            f"mean {wall:,.0f} µs",
            f"CPU per call (process_time): mean {cpu:,.0f} µs",
            f"waiting per call (wall - CPU): mean {max(0.0, wall - cpu):,.0f} µs",
            *self._raw_lines(),
            f"profiled per call (profiler overhead included): {total / self.n * 1e6:,.0f} µs",
            "",
            layer_table(found, total, self.n, core_layers(self.backend)),
            "",
            "self: the layer's own code; cumulative: with what it calls in other layers, from",
            "the calls into it (the layers overlap, and one re-entered counts twice).",
        ]
        if top:
            lines += ["", f"top {top} functions by self time:", ""]
            lines += [_func_line(f, s, self.n) for f, s in _top(self.stats, top)]
        return "\n".join(lines)

    def _raw_lines(self) -> list[str]:
        p = self.plain
        wall, raw = p.median(p.walls), p.median(p.raws)
        return [
            f"raw driver per call (benchmarks/baselines.py, in alternation): median "
            f"{raw:,.0f} µs, mean {p.mean(p.raws):,.0f} µs",
            f"library / raw (medians): {wall / raw:.2f}x (over the raw driver: "
            f"{wall - raw:,.0f} µs)",
            f"raw driver CPU per call: mean {p.mean(p.raw_cpus):,.0f} µs (the library's "
            f"own CPU: {p.mean(p.cpus) - p.mean(p.raw_cpus):,.0f} µs more)",
        ]


def _top(stats: pstats.Stats, k: int) -> list[tuple[Func, float]]:
    raw: dict[Func, Any] = stats.stats  # type: ignore[attr-defined]
    ranked = sorted(raw.items(), key=lambda item: -item[1][2])[:k]
    return [(func, value[2]) for func, value in ranked]


def _func_line(func: Func, seconds: float, n: int) -> str:
    path, line, name = func
    where = name if path == "~" else f"{_short(path)}:{line}({name})"
    return f"  {seconds / n * 1e6:8,.1f} µs  {where}"


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/sessions_db/", "/benchmarks/"):
        if marker in path:
            head = "" if marker == "/site-packages/" else marker.strip("/") + "/"
            return head + path.rsplit(marker, 1)[1]
    return path


# -- the operations --------------------------------------------------------------------


@dataclass
class Prepared:
    """A seeded store, the call of an operation (its sync form), the same work through the
    raw driver (``baselines.py``), and the appended session's ID."""

    store: Store
    call: Callable[[], Any]
    raw: Callable[[], Any]
    session_id: str | None = None


@contextmanager
def prepared(backend: str, op: str, sizes: Sizes) -> Iterator[Prepared]:
    """Yield ``op`` ready to run on a store seeded like the main run."""
    with ExitStack() as stack:
        tmp = stack.enter_context(workdir())
        store = stack.enter_context(open_store(backend, tmp))
        mgr = stack.enter_context(store.connect())
        raw = raw_for(store)
        stack.callback(raw.close)
        if op in ("append", "async_append"):
            sid = store.seed_history(mgr, sizes.small_history)
            sess = mgr.get(sid)
            yield Prepared(
                store, lambda: sess.append_message(message()), lambda: raw.append("raw"), sid
            )
        elif op == "create":
            yield Prepared(store, lambda: mgr.create("bench-create", user_id="u1"), raw.create)
        elif op == "list":
            store.seed_sessions(mgr, "list-many", sizes.many_sessions, sizes.users)
            if len(mgr.list("list-many", user_id="u7", limit=10)) != 10:
                raise AssertionError("the seeded user should have 10 sessions to list")
            yield Prepared(
                store,
                lambda: mgr.list("list-many", user_id="u7", limit=10),
                lambda: raw.list("list-many", "u7", 10),
            )
        elif op in ("load_1k", "load_100"):
            n = sizes.mid_history if op == "load_1k" else 100
            sid = store.seed_history(mgr, n)
            loaded = mgr.get(sid)
            if len(loaded.get_messages()) != n or len(raw.load(sid)) != n:
                raise AssertionError(f"the seeded session should hold {n} messages")
            yield Prepared(store, loaded.get_messages, lambda: raw.load(sid))
        else:
            raise ValueError(f"unknown operation {op!r}")


@dataclass
class Plain:
    """Seconds per call, unprofiled: wall and CPU of the operation and of the raw driver."""

    walls: list[float]
    cpus: list[float]
    raws: list[float]
    raw_cpus: list[float]

    @staticmethod
    def median(values: list[float]) -> float:
        """The median, in µs."""
        return statistics.median(values) * 1e6

    @staticmethod
    def mean(values: list[float]) -> float:
        """The mean, in µs."""
        return statistics.fmean(values) * 1e6


def _plain(call: Callable[[], Any], raw: Callable[[], Any], n: int) -> Plain:
    """Time ``call`` and ``raw`` in alternation, ``n`` times each."""
    return asyncio.run(_aplain(_awaitable(call), raw, n))


def _awaitable(call: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def wrapped() -> Any:
        return call()

    return wrapped


async def _aplain(call: Callable[[], Awaitable[Any]], raw: Callable[[], Any], n: int) -> Plain:
    plain = Plain([], [], [], [])
    gc.collect()
    gc.disable()
    try:
        for _ in range(n):
            started, cpu_started = time.perf_counter(), time.process_time()
            await call()
            plain.walls.append(time.perf_counter() - started)
            plain.cpus.append(time.process_time() - cpu_started)
            started, cpu_started = time.perf_counter(), time.process_time()
            raw()
            plain.raws.append(time.perf_counter() - started)
            plain.raw_cpus.append(time.process_time() - cpu_started)
    finally:
        gc.enable()
    return plain


def _run(call: Callable[[], Any], n: int, profile: cProfile.Profile | None) -> tuple[float, float]:
    gc.collect()
    gc.disable()
    try:
        if profile is not None:
            profile.enable()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            call()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if profile is not None:
            profile.disable()
    finally:
        gc.enable()
    return wall, cpu


async def _arun(
    call: Callable[[], Awaitable[Any]], n: int, profile: cProfile.Profile | None
) -> tuple[float, float]:
    gc.collect()
    gc.disable()
    try:
        if profile is not None:
            profile.enable()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            await call()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if profile is not None:
            profile.disable()
    finally:
        gc.enable()
    return wall, cpu


def profile_op(backend: str, op: str, n: int, sizes: Sizes, warmup: int = 5) -> Result:
    """Seed a store, then time ``op`` ``n`` times plain (in alternation with the raw driver's
    same work), and ``n`` times under cProfile."""
    with prepared(backend, op, sizes) as ready:
        if op == "async_append":
            assert ready.session_id is not None
            return asyncio.run(_profile_async(backend, ready, n, warmup))
        _plain(ready.call, ready.raw, warmup)
        plain = _plain(ready.call, ready.raw, n)
        profile = cProfile.Profile()
        _run(ready.call, n, profile)
    return Result(backend, op, n, plain, pstats.Stats(profile))


async def _profile_async(backend: str, ready: Prepared, n: int, warmup: int) -> Result:
    from sessions_db import aio

    mgr = await aio.connect(ready.store.url)
    try:
        sess = await mgr.get(ready.session_id or "")

        def call() -> Awaitable[Any]:
            return sess.append_message(message())

        await _aplain(call, ready.raw, warmup)
        plain = await _aplain(call, ready.raw, n)
        profile = cProfile.Profile()
        await _arun(call, n, profile)
    finally:
        await mgr.close()
    return Result(backend, "async_append", n, plain, pstats.Stats(profile))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--backend", choices=BACKENDS, default="postgres")
    parser.add_argument("--op", choices=OPS, default="append")
    parser.add_argument("-n", type=int, default=200, help="calls timed and profiled (each)")
    parser.add_argument(
        "--small", action="store_true", help="the seeds of the main run's --small sizes"
    )
    parser.add_argument("--top", type=int, default=12, help="functions listed by self time")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("-n must be at least 1")
    sizes = Sizes.small() if args.small else Sizes()
    result = profile_op(args.backend, args.op, args.n, sizes)
    print(result.text(args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
