"""``python -m benchmarks.peers_openai [--small] [--backends sqlite,postgres] [--json out.json]``.

The OpenAI Agents SDK session of sessions_db (``SessionsDBSession``) next to the
SDK's own ``SQLAlchemySession``, in one run, on the same PostgreSQL database
(a throwaway one, dropped at the end) and on SQLite files side by side in one
temporary directory. Both use the same driver: psycopg 3 (async) on
PostgreSQL, aiosqlite on SQLite.

Each operation is timed on ours and on theirs in alternation (one call of
each per round, after warm-up rounds), so that a load change on the machine
touches both alike; the report gives the median and p95 of each and the ratio
ours / theirs (below 1: ours is faster). Never asserted in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from . import report
from .stores import hidden_password, libpq, pg_admin_url, pg_database, workdir
from .timing import Timing

DEFAULT_JSON = Path(__file__).parent / "results" / "peers_openai.json"
ALL_BACKENDS = ("sqlite", "postgres")

#: A user turn and an assistant answer as the SDK's Runner stores them (~200 bytes each).
USER_ITEM: dict[str, Any] = {
    "role": "user",
    "content": "What's the weather in Paris today, and should I take an umbrella with me?",
}
ASSISTANT_ITEM: dict[str, Any] = {
    "id": "msg_0123456789abcdef",
    "type": "message",
    "role": "assistant",
    "status": "completed",
    "content": [
        {
            "type": "output_text",
            "text": "Light rain until noon, then sunny; 14 to 19 degrees. Take an umbrella.",
            "annotations": [],
        }
    ],
}


@dataclass
class Sizes:
    """How many timed rounds, and how long the read history is."""

    rounds_add: int = 200
    rounds_get: int = 30
    history: int = 1000
    others: int = 20
    warmup: int = 5

    @classmethod
    def small(cls) -> Sizes:
        return cls(rounds_add=20, rounds_get=5, history=1000, others=3, warmup=2)


@dataclass
class Pair:
    """One operation timed on both sessions."""

    scenario: str
    operation: str
    ours: Timing
    theirs: Timing

    @property
    def ratio(self) -> float:
        return self.ours.median / self.theirs.median

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "operation": self.operation,
            "n": self.ours.n,
            "unit": "ms",
            "ours": {"median": self.ours.median, "p95": self.ours.p95},
            "sqlalchemy_session": {"median": self.theirs.median, "p95": self.theirs.p95},
            "ratio": self.ratio,
        }


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    """Return the duration of one awaited call in ms, the garbage collector paused."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        await call()
        return (time.perf_counter() - start) * 1000.0
    finally:
        if enabled:
            gc.enable()


async def alternate(
    ours: Callable[[], Awaitable[Any]],
    theirs: Callable[[], Awaitable[Any]],
    rounds: int,
    warmup: int,
) -> tuple[Timing, Timing]:
    """Time ``ours`` and ``theirs`` in alternation; the first to go switches every round."""
    a: list[float] = []
    b: list[float] = []
    for i in range(warmup + rounds):
        if i % 2:
            tb = await timed(theirs)
            ta = await timed(ours)
        else:
            ta = await timed(ours)
            tb = await timed(theirs)
        if i >= warmup:
            a.append(ta)
            b.append(tb)
    return Timing(a), Timing(b)


@contextmanager
def store_urls(kind: str, tmp: Path) -> Any:
    """Yield (our URL, the SQLAlchemySession's async URL) of one backend's store."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'sessions_db.db'}", f"sqlite+aiosqlite:///{tmp / 'sdk.db'}"
        return
    with pg_database() as url:
        yield url, async_pg_url(url)


def async_pg_url(url: str) -> str:
    """Return the PostgreSQL ``url`` with the async driver the SDK's session uses (psycopg 3)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@asynccontextmanager
async def sqlalchemy_session(url: str, session_id: str) -> AsyncIterator[Any]:
    """Yield the SDK's ``SQLAlchemySession`` named ``session_id`` on the async ``url``.

    Its tables are created once, before anything is timed; the engine is disposed at the end.
    """
    from agents.extensions.memory import SQLAlchemySession
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        setup = SQLAlchemySession(session_id, engine=engine, create_tables=True)
        await setup.get_items(limit=1)
        yield SQLAlchemySession(session_id, engine=engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def sessions(
    kind: str, ours_url: str, theirs_url: str, session_id: str
) -> AsyncIterator[tuple[Any, Any]]:
    """Yield (ours, theirs): a SessionsDBSession and a SQLAlchemySession named ``session_id``."""
    import sessions_db as sdb
    from sessions_db.integrations.openai_agents import SessionsDBSession

    manager = await sdb.aio.connect(ours_url, migrate=True if kind == "postgres" else None)
    try:
        async with sqlalchemy_session(theirs_url, session_id) as theirs:
            yield SessionsDBSession(session_id, manager=manager), theirs
    finally:
        await manager.close()


async def seed(ours: Any, theirs: Any | None, n: int, batch: list[Any] | None = None) -> None:
    """Give both sessions (or ``ours`` alone) the same ``n`` items, in batches of 100 (a turn
    each would be slower): a user and an assistant item in turn, or ``batch``."""
    batch = batch or [USER_ITEM, ASSISTANT_ITEM] * 50
    for session in (ours,) if theirs is None else (ours, theirs):
        for _ in range(n // len(batch)):
            await session.add_items(batch)
        count = len(await session.get_items())
        if count != n:
            raise AssertionError(f"seeded {count} items, expected {n}")


def analyze(kind: str, url: str) -> None:
    """Refresh the planner's statistics after seeding, as autovacuum would in a live database."""
    if kind != "postgres":
        return
    import psycopg

    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("ANALYZE")


async def run_backend(kind: str, sizes: Sizes, log: Callable[[str], None]) -> dict[str, Any]:
    """Measure every scenario on one backend."""
    from agents.extensions.memory import SQLAlchemySession

    from sessions_db.integrations.openai_agents import SessionsDBSession

    pairs: list[Pair] = []
    with workdir() as tmp, store_urls(kind, tmp) as (ours_url, theirs_url):
        async with sessions(kind, ours_url, theirs_url, "bench-add") as (ours, theirs):
            for session in (ours, theirs):
                await session.add_items([USER_ITEM, ASSISTANT_ITEM] * 5)
            log(f"  add_items of one item ({sizes.rounds_add} rounds)")
            a, b = await alternate(
                lambda: ours.add_items([USER_ITEM]),
                lambda: theirs.add_items([USER_ITEM]),
                sizes.rounds_add,
                sizes.warmup,
            )
            pairs.append(Pair("add_items_1", "add_items([one item])", a, b))
            log(f"  add_items of a turn of 3 items ({sizes.rounds_add} rounds)")
            turn = [USER_ITEM, ASSISTANT_ITEM, ASSISTANT_ITEM]
            a, b = await alternate(
                lambda: ours.add_items(turn),
                lambda: theirs.add_items(turn),
                sizes.rounds_add,
                sizes.warmup,
            )
            pairs.append(Pair("add_items_3", "add_items([three items])", a, b))
        async with sessions(kind, ours_url, theirs_url, "bench-read") as (ours, theirs):
            await seed(ours, theirs, sizes.history)
            analyze(kind, ours_url)
            log(f"  get_items(limit=50) of {sizes.history:,} ({sizes.rounds_add} rounds)")
            a, b = await alternate(
                lambda: ours.get_items(limit=50),
                lambda: theirs.get_items(limit=50),
                sizes.rounds_add,
                sizes.warmup,
            )
            few = f"get_items(limit=50) of {sizes.history:,}, a store of 2 sessions"
            pairs.append(Pair("get_items_50_of_1k_2s", few, a, b))
            log(f"  {sizes.others} other sessions of {sizes.history:,} items")
            manager = await ours.get_manager()
            for i in range(sizes.others):
                await seed(
                    SessionsDBSession(f"other-{i}", manager=manager),
                    SQLAlchemySession(f"other-{i}", engine=theirs.engine),
                    sizes.history,
                )
            analyze(kind, ours_url)
            stored = f"a store of {sizes.others + 2} sessions"
            log(f"  get_items() of {sizes.history:,} ({sizes.rounds_get} rounds)")
            a, b = await alternate(ours.get_items, theirs.get_items, sizes.rounds_get, sizes.warmup)
            pairs.append(Pair("get_items_1k", f"get_items() of {sizes.history:,}, {stored}", a, b))
            log(f"  get_items(limit=50) of {sizes.history:,} ({sizes.rounds_add} rounds)")
            a, b = await alternate(
                lambda: ours.get_items(limit=50),
                lambda: theirs.get_items(limit=50),
                sizes.rounds_add,
                sizes.warmup,
            )
            many = f"get_items(limit=50) of {sizes.history:,}, {stored}"
            pairs.append(Pair("get_items_50_of_1k", many, a, b))
        stores = {"ours": hidden_password(ours_url), "sqlalchemy_session": theirs_url}
        if kind == "postgres":
            stores["sqlalchemy_session"] = hidden_password(theirs_url)
    return {"pairs": pairs, "stores": stores}


def table(kind: str, pairs: list[Pair]) -> str:
    """Return one backend's figures as a Markdown table."""
    lines = [
        f"### {kind}",
        "",
        "| scenario | operation | n | ours median | ours p95 | SQLAlchemySession median "
        "| SQLAlchemySession p95 | ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in pairs:
        lines.append(
            f"| {p.scenario} | {p.operation} | {p.ours.n} | {p.ours.median:.3f} | "
            f"{p.ours.p95:.3f} | {p.theirs.median:.3f} | {p.theirs.p95:.3f} | {p.ratio:.2f} |"
        )
    return "\n".join(lines)


def versions() -> dict[str, str]:
    """The versions of what is compared."""
    from importlib.metadata import version

    return {
        name: version(name) for name in ("sessions_db", "openai-agents", "sqlalchemy", "psycopg")
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers_openai", description=__doc__)
    parser.add_argument("--small", action="store_true", help="fewer rounds (smoke run)")
    parser.add_argument(
        "--backends", default=",".join(ALL_BACKENDS), help="comma-separated: sqlite,postgres"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the JSON")
    parser.add_argument("--quiet", action="store_true", help="print only the tables")
    args = parser.parse_args(argv)
    sizes = Sizes.small() if args.small else Sizes()
    kinds = [k.strip() for k in args.backends.split(",") if k.strip()]
    unknown = set(kinds) - set(ALL_BACKENDS)
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    try:
        import agents  # noqa: F401
    except ImportError:
        parser.error(
            "the OpenAI Agents SDK is not installed: pip install 'sessions_db[openai-agents]'"
        )

    def log(text: str) -> None:
        if not args.quiet:
            print(text, flush=True)

    out: dict[str, Any] = {
        "command": "python -m benchmarks.peers_openai "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "small": args.small,
        "sizes": sizes.__dict__,
        "machine": report.machine(),
        "versions": versions(),
        "backends": {},
    }
    out["machine"]["load_average_before"] = os.getloadavg()
    if "postgres" in kinds:
        out["machine"]["postgres_url_host"] = pg_admin_url().rsplit("@", 1)[-1]
    tables = []
    for kind in kinds:
        log(f"== {kind}")
        started = time.perf_counter()
        result = asyncio.run(run_backend(kind, sizes, log))
        pairs = cast(list[Pair], result.pop("pairs"))
        result["seconds"] = round(time.perf_counter() - started, 1)
        result["rows"] = [p.as_json() for p in pairs]
        out["backends"][kind] = result
        tables.append(table(f"{kind} ({result['seconds']} s)", pairs))
    print()
    print("\n\n".join(tables))
    report.write_json(args.json, out)
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
