"""Google ADK session services side by side: ours and ADK's ``DatabaseSessionService``.

``python -m benchmarks.adk [--small] [--backends postgres,sqlite,file] [--json out.json]``

Both services run in one process, one after the other, on the same store: the
same throwaway PostgreSQL database (ADK's through ``postgresql+psycopg://``, the
same psycopg 3 driver as ours) and the same SQLite file (ADK's through
``sqlite+aiosqlite://``). ``file`` runs ours alone (ADK has no file store).
Every event carries a ~200-character text part. Measured, for each service:

* ``append_event``: N events appended one after the other to one session (each
  append timed; median and p95), the two services taking turns event by event;
* ``get_session`` of that session of N events (whole history), and with
  ``num_recent_events=10``, taking turns as well;
* 8 writers: 8 tasks, each with its own ``Session`` object (read once), append
  100 events each to one session at once; stored events, errors and events per
  second. ADK's service is run twice: as is (a writer whose copy is stale loses
  that event), and with each writer reloading its session and retrying a stale
  append until it lands.

Prints a table per backend and writes the figures as JSON (default
``benchmarks/results/adk.json``). Nothing here asserts on a time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from . import report
from .stores import hidden_password, pg_database, workdir
from .timing import percentile

DEFAULT_JSON = Path(__file__).parent / "results" / "adk.json"
BACKENDS = ("postgres", "sqlite", "file")
APP, USER = "bench_app", "bench_user"
TEXT = ("The quick brown fox jumps over the lazy dog. " * 5)[:200]


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does."""

    events: int = 1000
    loads: int = 20
    writers: int = 8
    per_writer: int = 100

    @classmethod
    def small(cls) -> Sizes:
        return cls(events=100, loads=5, writers=8, per_writer=10)


def _event(author: str, invocation: str, delta: dict[str, Any] | None = None) -> Any:
    from google.adk.events.event import Event
    from google.adk.events.event_actions import EventActions
    from google.genai import types

    return Event(
        author=author,
        invocation_id=invocation,
        content=types.Content(
            role="user" if author == "user" else "model", parts=[types.Part(text=TEXT)]
        ),
        actions=EventActions(state_delta=delta or {}),
    )


@contextmanager
def _no_gc() -> Any:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def _timed(call: Callable[[], Awaitable[Any]]) -> float:
    with _no_gc():
        start = time.perf_counter()
        await call()
        return (time.perf_counter() - start) * 1000.0


def _stats(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "median": statistics.median(samples),
        "p95": percentile(samples, 0.95),
    }


async def _latencies(services: dict[str, Any], sizes: Sizes) -> dict[str, dict[str, Any]]:
    """Append ``sizes.events`` events one by one, then load the session, for each service.

    The services take turns (one append of each, one load of each, ...), so that
    whatever else the machine does falls on both alike.
    """
    from google.adk.sessions.base_session_service import GetSessionConfig

    sessions = {
        name: await service.create_session(app_name=APP, user_id=USER)
        for name, service in services.items()
    }
    samples: dict[str, dict[str, list[float]]] = {
        name: {"append_event": [], "get_session": [], "get_session_recent10": []}
        for name in services
    }
    for i in range(sizes.events):
        for name, service in services.items():
            ev = _event("user" if i % 2 == 0 else "assistant", f"inv-{i // 2}")
            session = sessions[name]
            took = await _timed(lambda s=service, e=ev, x=session: s.append_event(x, e))
            samples[name]["append_event"].append(took)

    async def load(service: Any, session_id: str, config: Any, expected: int) -> None:
        got = await service.get_session(
            app_name=APP, user_id=USER, session_id=session_id, config=config
        )
        assert got is not None
        assert len(got.events) == expected

    recent = GetSessionConfig(num_recent_events=10)
    cases = [("get_session", None, sizes.events), ("get_session_recent10", recent, 10)]
    for case, config, expected in cases:
        rounds = sizes.loads if config is None else sizes.loads * 2
        for round_ in range(rounds + 2):  # the first two are warm-up
            for name, service in services.items():
                call = partial(load, service, sessions[name].id, config, expected)
                took = await _timed(call)
                if round_ >= 2:
                    samples[name][case].append(took)
    return {
        name: {case: _stats(values) for case, values in cases_of.items()}
        for name, cases_of in samples.items()
    }


async def _writers(service: Any, sizes: Sizes, *, retry: bool) -> dict[str, Any]:
    """``sizes.writers`` tasks append ``sizes.per_writer`` events each to one session."""
    session = await service.create_session(app_name=APP, user_id=USER)
    errors: dict[str, int] = {}

    async def write(k: int) -> None:
        mine = await service.get_session(app_name=APP, user_id=USER, session_id=session.id)
        for i in range(sizes.per_writer):
            ev = _event(f"writer{k}", f"{k}:{i}", {f"w{k}": i})
            while True:
                try:
                    await service.append_event(mine, ev)
                    break
                except Exception as exc:  # ADK's StaleSessionError, or anything else
                    name = type(exc).__name__
                    errors[name] = errors.get(name, 0) + 1
                    if not retry:
                        break
                    mine = await service.get_session(
                        app_name=APP, user_id=USER, session_id=session.id
                    )

    start = time.perf_counter()
    await asyncio.gather(*(write(k) for k in range(sizes.writers)))
    elapsed = time.perf_counter() - start
    final = await service.get_session(app_name=APP, user_id=USER, session_id=session.id)
    assert final is not None
    stored = len(final.events)
    ids = len({e.id for e in final.events})
    in_order = all(
        [int(e.invocation_id.split(":")[1]) for e in final.events if e.author == f"writer{k}"]
        == sorted(
            int(e.invocation_id.split(":")[1]) for e in final.events if e.author == f"writer{k}"
        )
        for k in range(sizes.writers)
    )
    deltas = sum(1 for k in range(sizes.writers) if f"w{k}" in final.state)
    return {
        "appends": sizes.writers * sizes.per_writer,
        "stored": stored,
        "distinct_ids": ids,
        "per_writer_order_kept": in_order,
        "writers_with_state": deltas,
        "errors": errors,
        "seconds": elapsed,
        "stored_per_s": stored / elapsed if elapsed else None,
        "retry": retry,
    }


@asynccontextmanager
async def _ours(url: str) -> AsyncIterator[Any]:
    from sessions_db import aio
    from sessions_db.integrations.adk import SessionsDBSessionService

    manager = await aio.connect(url, migrate=True)
    async with manager, SessionsDBSessionService(manager=manager) as service:
        yield service


@asynccontextmanager
async def _theirs(url: str) -> AsyncIterator[Any]:
    from google.adk.sessions.database_session_service import DatabaseSessionService

    service = DatabaseSessionService(url)
    await service.prepare_tables()
    try:
        yield service
    finally:
        await service.close()


async def _run_backend(kind: str, url: str, adk_url: str | None, sizes: Sizes) -> dict[str, Any]:
    result: dict[str, Any] = {"store_url": hidden_password(url)}
    async with AsyncExitStack() as stack:
        services = {"ours": await stack.enter_async_context(_ours(url))}
        if adk_url is not None:
            services["adk"] = await stack.enter_async_context(_theirs(adk_url))
        for name, figures in (await _latencies(services, sizes)).items():
            result[name] = figures
        result["ours"]["writers"] = await _writers(services["ours"], sizes, retry=False)
        if "adk" in services:
            theirs = services["adk"]
            result["adk"]["writers"] = await _writers(theirs, sizes, retry=False)
            result["adk"]["writers_retry"] = await _writers(theirs, sizes, retry=True)
    return result


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value >= 100 else f"{value:.2f}"


def _table(kind: str, result: dict[str, Any], sizes: Sizes) -> str:
    ours, theirs = result["ours"], result.get("adk")
    lines = [
        f"### {kind}",
        "",
        "| operation | sessions_db median | p95 | DatabaseSessionService median | p95 | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {
        "append_event": f"append_event (one at a time, to {sizes.events:,}), ms",
        "get_session": f"get_session of {sizes.events:,} events, ms",
        "get_session_recent10": f"get_session(num_recent_events=10) of {sizes.events:,}, ms",
    }
    for key, label in names.items():
        mine = ours[key]
        other = theirs[key] if theirs else None
        ratio = other["median"] / mine["median"] if other else None
        lines.append(
            f"| {label} | {_fmt(mine['median'])} | {_fmt(mine['p95'])} | "
            f"{_fmt(other['median']) if other else '-'} | {_fmt(other['p95']) if other else '-'} "
            f"| {f'{ratio:.1f}x' if ratio else '-'} |"
        )
    lines += [
        "",
        f"{sizes.writers} writers x {sizes.per_writer} events to one session, each writer with "
        "its own Session:",
        "",
        "| service | stored | errors | stored events/s |",
        "|---|---:|---|---:|",
    ]
    runs = [("sessions_db", ours["writers"])]
    if theirs:
        runs += [
            ("DatabaseSessionService", theirs["writers"]),
            ("DatabaseSessionService, reload and retry", theirs["writers_retry"]),
        ]
    for name, w in runs:
        errors = ", ".join(f"{n} {c:,}" for n, c in sorted(w["errors"].items())) or "0"
        lines.append(
            f"| {name} | {w['stored']:,} / {w['appends']:,} | {errors} | "
            f"{_fmt(w['stored_per_s'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.adk", description=__doc__)
    parser.add_argument("--small", action="store_true", help="scaled-down sizes (a smoke run)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    sizes = Sizes.small() if args.small else Sizes()
    kinds = [k.strip() for k in args.backends.split(",") if k.strip()]
    unknown = set(kinds) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY"):
        os.environ.pop(name, None)
    logging.getLogger("google_adk").setLevel(logging.ERROR)
    out: dict[str, Any] = {
        "command": "python -m benchmarks.adk "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "sizes": sizes.__dict__,
        "machine": report.machine(),
        "backends": {},
    }
    import google.adk

    out["google_adk"] = google.adk.__version__
    with workdir() as work:
        for kind in kinds:
            print(f"== {kind}", flush=True)
            if kind == "postgres":
                with pg_database() as url:
                    adk_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
                    result = asyncio.run(_run_backend(kind, url, adk_url, sizes))
            elif kind == "sqlite":
                path = work / "adk_bench.db"
                result = asyncio.run(
                    _run_backend(kind, f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}", sizes)
                )
            else:
                url = (work / "adk_files").as_uri()
                result = asyncio.run(_run_backend(kind, url, None, sizes))
            out["backends"][kind] = result
            print(_table(kind, result, sizes), flush=True)
            print(flush=True)
    report.write_json(args.json, out)
    print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
