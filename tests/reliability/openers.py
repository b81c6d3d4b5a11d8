"""Openers of one new SQLite file, racing, run in their own process.

``python -m tests.reliability.openers threads DIR ROUNDS N``: ROUNDS times, N
threads open a new file in DIR at the same moment (each a different way), append
one message each and close; then every message is read back. ``tasks`` does
the same with N asyncio tasks. Both print one JSON line and exit 0 only if
every opener succeeded and every message is there: run in a child process, a
crash (a segfault) shows as the return code rather than killing the test run.

``python -m tests.reliability.openers process URL INDEX GO`` is one of several
processes opening ``URL`` at once: it waits for the file ``GO`` to appear,
opens the store the INDEX-th way, appends one message and prints its session ID.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine

import sessions_db as sdb
from sessions_db import aio, migrations

AGENT = "race"
DEADLINE = 120.0


def _message(text: str) -> sdb.Message:
    return sdb.Message.new("user", {"content": text})


def _append_sync(backend: sdb.SQLBackend, text: str) -> str:
    with sdb.Manager(backend) as mgr:
        session = mgr.create(AGENT)
        session.append_message(_message(text))
        return session.id


async def _append_async(mgr: aio.AsyncManager, text: str) -> str:
    async with mgr:
        session = await mgr.create(AGENT)
        await session.append_message(_message(text))
        return session.id


def _via_url(url: str, text: str) -> str:
    return _append_sync(sdb.SQLBackend(url), text)


def _via_engine(url: str, text: str) -> str:
    engine = create_engine(url)
    try:
        return _append_sync(sdb.SQLBackend(engine), text)
    finally:
        engine.dispose()


def _via_connect(url: str, text: str) -> str:
    with sdb.connect(url) as mgr:
        session = mgr.create(AGENT)
        session.append_message(_message(text))
        return session.id


def _via_aio_connect(url: str, text: str) -> str:
    async def run() -> str:
        return await _append_async(await aio.connect(url), text)

    return asyncio.run(run())


def _via_async_backend(url: str, text: str) -> str:
    async def run() -> str:
        return await _append_async(aio.AsyncManager(aio.AsyncSQLBackend(url)), text)

    return asyncio.run(run())


def _via_explicit_upgrade(url: str, text: str) -> str:
    migrations.upgrade(url)
    return _append_sync(sdb.SQLBackend(url, migrate=False), text)


#: The ways of opening a store, each in a blocking call.
OPENERS: list[Callable[[str, str], str]] = [
    _via_url,
    _via_engine,
    _via_connect,
    _via_aio_connect,
    _via_async_backend,
    _via_explicit_upgrade,
]


def read_back(url: str, session_ids: dict[str, str]) -> list[str]:
    """Return what is wrong with the store: sessions or messages missing or extra."""
    problems: list[str] = []
    with sdb.connect(url, migrate=False) as mgr:
        listed = {meta.id for meta in mgr.list(AGENT)}
        if listed != set(session_ids.values()):
            problems.append(f"sessions {sorted(listed)} != {sorted(session_ids.values())}")
        for text, sid in session_ids.items():
            got = [m.payload["content"] for m in mgr.get(sid).get_messages()]
            if got != [text]:
                problems.append(f"session {sid}: {got} != {[text]}")
    return problems


def _threads_round(url: str, n: int, label: str) -> tuple[dict[str, str], list[str]]:
    barrier = threading.Barrier(n)
    done: dict[str, str] = {}
    errors: list[str] = []

    def opener(i: int) -> None:
        text = f"{label}-{i}"
        try:
            barrier.wait(timeout=DEADLINE)
            done[text] = OPENERS[i % len(OPENERS)](url, text)
        except BaseException as exc:  # reported; the round fails
            errors.append(f"{text}: {exc!r}")

    threads = [threading.Thread(target=opener, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE)
        if thread.is_alive():
            errors.append("an opener did not finish")
    return done, errors


async def _tasks_round(url: str, n: int, label: str) -> tuple[dict[str, str], list[str]]:
    async def opener(i: int) -> str:
        text = f"{label}-{i}"
        if i % 2:
            mgr = aio.AsyncManager(aio.AsyncSQLBackend(url))
        else:
            mgr = await aio.connect(url)
        return await _append_async(mgr, text)

    results = await asyncio.wait_for(
        asyncio.gather(*(opener(i) for i in range(n)), return_exceptions=True), DEADLINE
    )
    done: dict[str, str] = {}
    errors: list[str] = []
    for i, result in enumerate(results):
        if isinstance(result, BaseException):
            errors.append(f"{label}-{i}: {result!r}")
        else:
            done[f"{label}-{i}"] = result
    return done, errors


def race(kind: str, directory: Path, rounds: int, n: int) -> dict[str, object]:
    """Run ``rounds`` races of ``n`` openers (``threads`` or ``tasks``); return a summary."""
    summary: dict[str, object] = {"rounds": 0, "messages": 0, "errors": []}
    errors: list[str] = []
    for k in range(rounds):
        url = f"sqlite:///{directory / f'{kind}-{k}.db'}"
        if kind == "threads":
            done, failed = _threads_round(url, n, f"r{k}")
        else:
            done, failed = asyncio.run(_tasks_round(url, n, f"r{k}"))
        errors += failed
        if not failed:
            errors += read_back(url, done)
        summary["rounds"] = k + 1
        summary["messages"] = int(str(summary["messages"])) + len(done)
    summary["errors"] = errors
    return summary


def one_process(url: str, index: int, go: Path) -> str:
    """Wait for ``go``, then open ``url`` the ``index``-th way and append one message."""
    deadline = time.monotonic() + DEADLINE
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the start signal never came")
        time.sleep(0.001)
    return OPENERS[index % len(OPENERS)](url, f"p{index}")


def main(argv: list[str]) -> int:
    """Run the mode ``argv`` names (see the module's docstring)."""
    if argv[0] == "process":
        print(one_process(argv[1], int(argv[2]), Path(argv[3])), flush=True)
        return 0
    summary = race(argv[0], Path(argv[1]), int(argv[2]), int(argv[3]))
    print(json.dumps(summary), flush=True)
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
