"""The file store's ordered journals (``<agent>/lists/``): a page of a listing reads only its end.

Every check compares a listing with a limit (read from the journals) with the
same listing without one (which reads every session file), on a real
directory, after creates, appends, metadata and user changes, deletes, prune,
erasure, crashes left as a killed process leaves them, and concurrent writers.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import sessions_db as sdb
from sessions_db.file import lists
from sessions_db.testing.contract import msg

AGENT = "assistant"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand (backwards too)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def full(backend: sdb.FileBackend, user_id: str | None = None, **kw: Any) -> list[Any]:
    """The listing without a limit: it reads every session file of the agent."""
    return [
        (s.id, s.user_id, s.updated_at, s.message_count, s.current_leaf, s.metadata)
        for s in backend.list_sessions(AGENT, user_id=user_id, **kw)
    ]


def paged(backend: sdb.FileBackend, user_id: str | None, limit: int, **kw: Any) -> list[Any]:
    return [
        (s.id, s.user_id, s.updated_at, s.message_count, s.current_leaf, s.metadata)
        for s in backend.list_sessions(AGENT, user_id=user_id, limit=limit, **kw)
    ]


def check(backend: sdb.FileBackend, users: Sequence[str]) -> None:
    """Every page of every user (and of the agent) is the head of the full listing."""
    everyone: list[str | None] = [None, *users]
    for user in everyone:
        everything = full(backend, user)
        for limit in (1, 3, 10, len(everything) + 1):
            assert paged(backend, user, limit) == everything[:limit], (user, limit)
        assert paged(backend, user, 3, offset=2) == everything[2:5]
        if len(everything) > 2:
            cursor = (everything[1][2], everything[1][0])
            assert paged(backend, user, 2, after=cursor) == everything[2:4]
            cut = everything[2][2]
            assert (
                paged(backend, user, 5, updated_after=cut)
                == [e for e in everything if e[2] > cut][:5]
            )
            assert (
                paged(backend, user, 5, updated_before=cut)
                == [e for e in everything if e[2] < cut][:5]
            )
        assert (
            paged(backend, user, 4, metadata={"tag": "b"})
            == [e for e in everything if e[5].get("tag") == "b"][:4]
        )


def lists_dir(base: Path) -> Path:
    return base / AGENT / lists.DIR


def test_pages_are_exact_after_creates_appends_updates_and_deletes(tmp_path: Path) -> None:
    backend = sdb.FileBackend(tmp_path / "s")
    mgr = sdb.Manager(backend, clock=Clock())
    users = ["u0", "u1", "u2"]
    made = [
        mgr.create(AGENT, user_id=users[i % 3], metadata={"tag": "ab"[i % 2]}) for i in range(4)
    ]
    check(backend, users)  # the journals are built; the writes below append to them
    made += [
        mgr.create(AGENT, user_id=users[i % 3], metadata={"tag": "ab"[i % 2]}) for i in range(4, 24)
    ]
    check(backend, users)
    for i, session in enumerate(made[::3]):
        session.append_messages([msg(f"m{k}") for k in range(i + 1)])
    made[5].checkpoint()
    made[7].update_metadata({"tag": "b"})
    made[9].pop_message()
    check(backend, users)
    # a session that moves to another user is listed under that user only
    meta = backend.load_session(made[4].id)
    backend.save_session(meta.model_copy(update={"user_id": "u0"}))
    assert made[4].id in [e[0] for e in full(backend, "u0")]
    assert made[4].id not in [e[0] for e in paged(backend, "u1", 100)]
    check(backend, users)
    mgr.delete(made[0].id)
    mgr.delete(made[3].id)
    check(backend, users)
    # deleted sessions leave no line behind
    text = b"".join(p.read_bytes() for p in lists_dir(tmp_path / "s").glob("*.log"))
    assert made[0].id.encode() not in text
    assert made[3].id.encode() not in text
    mgr.close()


def test_pages_are_exact_when_the_clock_goes_back(tmp_path: Path) -> None:
    clock = Clock()
    backend = sdb.FileBackend(tmp_path / "s")
    mgr = sdb.Manager(backend, clock=clock)
    made = [mgr.create(AGENT, user_id="u") for _ in range(12)]
    check(backend, ["u"])  # the journals are built; the writes below append to them
    clock.now = T0 - timedelta(days=1)  # later writes carry earlier times
    made[11].append_message(msg("older"))
    made[2].append_message(msg("older still?"))
    clock.now = T0 + timedelta(days=1)
    made[6].append_message(msg("newest"))
    clock.now = T0 - timedelta(days=2)
    made[6].append_message(msg("now oldest"))
    check(backend, ["u"])
    assert paged(backend, "u", 1)[0][0] == made[10].id
    assert paged(backend, "u", 12)[-1][0] == made[6].id
    mgr.close()


def test_prune_and_erase_leave_exact_pages_and_no_lines(tmp_path: Path) -> None:
    clock = Clock()
    backend = sdb.FileBackend(tmp_path / "s")
    mgr = sdb.Manager(backend, clock=clock)
    old = [mgr.create(AGENT, user_id=f"u{i % 2}") for i in range(6)]
    check(backend, ["u0", "u1"])
    clock.now = T0 + timedelta(days=30)
    new = [mgr.create(AGENT, user_id=f"u{i % 2}", metadata={"tag": "b"}) for i in range(6)]
    pruned = mgr.prune(T0 + timedelta(days=1))
    assert sorted(pruned) == sorted(s.id for s in old)
    check(backend, ["u0", "u1"])
    assert mgr.erase_user("u1") == 3
    check(backend, ["u0", "u1"])
    assert paged(backend, None, 10) == full(backend)
    assert [e[0] for e in full(backend)] == [s.id for s in reversed(new[::2])]
    assert not (lists_dir(tmp_path / "s") / lists.journal_name("u1")).exists()
    text = (lists_dir(tmp_path / "s") / lists.ALL).read_bytes()
    assert all(s.id.encode() not in text for s in [*old, *new[1::2]])
    mgr.close()


# -- a listing reads what it returns -------------------------------------------------------

_watches: list[list[str]] = []  # the blocks of ``watching`` running


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _watches:
        if event == "open":
            name = os.fsdecode(args[0]) if isinstance(args[0], str | bytes) else "?"
            _watches[-1].append(name)
        elif event in ("os.scandir", "os.listdir"):
            _watches[-1].append("<directory listing>")


sys.addaudithook(_audit)


def _rchar() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


@contextmanager
def watching() -> Iterator[list[str]]:
    """Collect the files opened (and directories listed) in the block."""
    seen: list[str] = []
    _watches.append(seen)
    try:
        yield seen
    finally:
        _watches.remove(seen)


def _seed(base: Path, n: int, users: int) -> sdb.FileBackend:
    backend = sdb.FileBackend(base)
    mgr = sdb.Manager(backend, clock=Clock())
    for i in range(n):
        s = mgr.create(AGENT, user_id=f"u{i % users}", metadata={"pad": "x" * 200})
        if i % 97 == 0:
            s.append_messages([msg("a"), msg("b")])
    return backend


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/self/io (Linux)")
def test_a_page_reads_neither_the_index_nor_other_sessions(tmp_path: Path) -> None:
    small = _seed(tmp_path / "small", 40, 4)
    big = _seed(tmp_path / "big", 4000, 4)
    index_size = (tmp_path / "big" / AGENT / "sessions.json").stat().st_size
    assert index_size > 1_000_000
    read: dict[str, int] = {}
    for name, backend in (("small", small), ("big", big)):
        backend.list_sessions(AGENT, user_id="u1", limit=10)  # journals built once
        with watching() as opened:
            before = _rchar()
            page = backend.list_sessions(AGENT, user_id="u1", limit=10)
            read[name] = _rchar() - before
            assert len(page) == 10
            whole = backend.list_sessions(AGENT, limit=30)
            assert len(whole) == 30
        # the journal and its ready mark: no index, no session file, no directory listing
        assert "sessions.json" not in opened, opened
        assert not any(p.endswith(".jsonl") for p in opened), opened
        assert "<directory listing>" not in opened
        assert [e[0] for e in paged(backend, "u1", 10)] == [e[0] for e in full(backend, "u1")[:10]]
    assert read["big"] < 32_768, read
    assert read["big"] < 2 * read["small"] + 4096, read
    small.close()
    big.close()


# -- crashes -------------------------------------------------------------------------------


def _last_line(path: Path, session_id: str) -> dict[str, Any]:
    lines = [json.loads(x) for x in path.read_bytes().splitlines()]
    rec: dict[str, Any] = [x for x in lines if x["id"] == session_id][-1]
    return rec


def test_a_writer_killed_between_its_line_and_its_write(tmp_path: Path) -> None:
    base = tmp_path / "s"
    backend = sdb.FileBackend(base)
    mgr = sdb.Manager(backend, clock=Clock())
    made = [mgr.create(AGENT, user_id="u", metadata={"tag": "a"}) for _ in range(8)]
    made[2].append_message(msg("x"))
    check(backend, ["u"])
    # The journal lines of a write that never reached the file (a torn tail only):
    # the newest time of all, a bigger file.
    victim = made[1]
    for name in (lists.ALL, lists.journal_name("u")):
        path = lists_dir(base) / name
        rec = _last_line(path, victim.id)
        rec.update(updated_at="2030-01-01T00:00:00.000000Z", message_count=7, size=rec["size"] + 99)
        rec["m"] = rec["updated_at"]
        with path.open("ab") as f:
            f.write(json.dumps(rec, separators=(",", ":")).encode() + b"\n")
    with (base / AGENT / f"{victim.id}.jsonl").open("ab") as f:
        f.write(b'{"id":"torn","parent_id":null,"timest')
    check(backend, ["u"])
    listed = paged(backend, "u", 8)
    assert next(e for e in listed if e[0] == victim.id)[3] == 0  # as its file says
    # the next write to it cuts the torn tail and lists it first
    mgr.get(victim.id).append_message(msg("after the crash"))
    assert paged(backend, "u", 1)[0][0] == victim.id
    check(backend, ["u"])
    mgr.close()


def test_a_torn_journal_line_is_skipped_then_cut(tmp_path: Path) -> None:
    base = tmp_path / "s"
    backend = sdb.FileBackend(base)
    mgr = sdb.Manager(backend, clock=Clock())
    made = [mgr.create(AGENT, user_id="u", metadata={"big": "x" * 40_000}) for _ in range(5)]
    check(backend, ["u"])
    path = lists_dir(base) / lists.journal_name("u")
    whole = path.read_bytes()
    with path.open("ab") as f:
        f.write(whole.splitlines(keepends=True)[-1][:30_000])  # part of a line, no newline
    check(backend, ["u"])
    made[0].append_message(msg("x"))
    assert path.read_bytes().endswith(b"}\n")
    assert all(json.loads(x) for x in path.read_bytes().splitlines())
    check(backend, ["u"])
    mgr.close()


def test_journals_of_another_boot_or_an_unfinished_rebuild_are_rebuilt(tmp_path: Path) -> None:
    base = tmp_path / "s"
    backend = sdb.FileBackend(base)
    mgr = sdb.Manager(backend, clock=Clock())
    made = [mgr.create(AGENT, user_id=f"u{i % 2}") for i in range(10)]
    check(backend, ["u0", "u1"])
    for s in made[:4]:
        s.append_message(msg("x"))
    # the machine crashed: the journals lost their last lines, the files did not
    for path in lists_dir(base).glob("*.log"):
        path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:3]))
    (lists_dir(base) / lists.READY).write_text("another-boot\n")
    check(backend, ["u0", "u1"])
    assert (lists_dir(base) / lists.READY).read_text().strip() == lists.BOOT
    # a rebuild killed half way: no ready mark, a journal missing
    (lists_dir(base) / lists.READY).unlink()
    (lists_dir(base) / lists.ALL).unlink()
    check(backend, ["u0", "u1"])
    # a store written before the journals existed
    for path in lists_dir(base).iterdir():
        path.unlink()
    lists_dir(base).rmdir()
    check(backend, ["u0", "u1"])
    mgr.close()


def test_a_damaged_journal_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    base = tmp_path / "s"
    backend = sdb.FileBackend(base)
    mgr = sdb.Manager(backend, clock=Clock())
    made = [mgr.create(AGENT, user_id="u") for _ in range(4)]
    check(backend, ["u"])
    path = lists_dir(base) / lists.ALL
    path.write_bytes(path.read_bytes() + b"not json\n")
    made[1].append_message(msg("written after the damage"))  # the writer is not stopped
    assert not (lists_dir(base) / lists.READY).exists()
    check(backend, ["u"])
    path.write_bytes(path.read_bytes()[:-20] + b"not json\n")
    check(backend, ["u"])
    assert "damaged" in caplog.text
    assert all(json.loads(x) for x in path.read_bytes().splitlines())
    mgr.close()


def test_repair_rebuilds_the_journals(tmp_path: Path) -> None:
    base = tmp_path / "s"
    backend = sdb.FileBackend(base)
    mgr = sdb.Manager(backend, clock=Clock())
    made = [mgr.create(AGENT, user_id=f"u{i % 3}") for i in range(9)]
    made[4].append_message(msg("x"))
    check(backend, ["u0", "u1", "u2"])
    (lists_dir(base) / lists.journal_name("u1")).write_bytes(b"")
    (lists_dir(base) / ".all.log.0123456789ab.tmp").write_bytes(b"left by a crash")
    report = backend.repair()
    assert any("lists" in t for t in report.temp_files_removed)
    assert (lists_dir(base) / lists.READY).read_text().strip() == lists.BOOT
    assert len((lists_dir(base) / lists.journal_name("u1")).read_bytes().splitlines()) == 3
    check(backend, ["u0", "u1", "u2"])
    mgr.close()


def _killed_writer(base: str, ids: list[str], seed: int) -> None:
    import random

    rng = random.Random(seed)
    mgr = sdb.Manager(sdb.FileBackend(base))
    while True:
        mgr.get(rng.choice(ids)).append_message(msg("w" * rng.randint(1, 300)))


def test_writers_killed_at_random_instants_leave_exact_pages(tmp_path: Path) -> None:
    base = tmp_path / "s"
    backend = sdb.FileBackend(base)
    mgr = sdb.Manager(backend)
    made = [
        mgr.create(AGENT, user_id=f"u{i % 3}", metadata={"tag": "ab"[i % 2]}) for i in range(15)
    ]
    check(backend, ["u0", "u1", "u2"])
    ctx = multiprocessing.get_context("spawn")
    for round_ in range(4):
        workers = [
            ctx.Process(
                target=_killed_writer, args=(str(base), [s.id for s in made], round_ * 10 + k)
            )
            for k in range(2)
        ]
        for w in workers:
            w.start()
        time.sleep(0.6 + 0.15 * round_)
        for w in workers:
            assert w.pid is not None
            os.kill(w.pid, signal.SIGKILL)
        for w in workers:
            w.join()
        check(backend, ["u0", "u1", "u2"])
    mgr.close()


def test_threads_and_a_process_writing_while_pages_are_read(tmp_path: Path) -> None:
    base = tmp_path / "s"
    backend = sdb.FileBackend(base)
    mgr = sdb.Manager(backend)
    made = [mgr.create(AGENT, user_id=f"u{i % 2}") for i in range(10)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(k: int) -> None:
        try:
            for i in range(40):
                made[(k * 7 + i) % len(made)].append_message(msg(f"{k}-{i}"))
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            while not stop.is_set():
                page = backend.list_sessions(AGENT, user_id="u1", limit=3)
                assert all(s.user_id == "u1" for s in page)
                keys = [(s.updated_at, s.id) for s in page]
                assert keys == sorted(keys, reverse=True)
        except BaseException as exc:
            errors.append(exc)

    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_appender, args=(str(base), [s.id for s in made]))
    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    watcher = threading.Thread(target=reader)
    proc.start()
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    proc.join()
    stop.set()
    watcher.join()
    assert not errors, errors
    assert proc.exitcode == 0
    check(backend, ["u0", "u1"])
    assert sum(e[3] for e in full(backend)) == 4 * 40 + 40
    mgr.close()


def _appender(base: str, ids: list[str]) -> None:
    mgr = sdb.Manager(sdb.FileBackend(base))
    for i in range(40):
        mgr.get(ids[i % len(ids)]).append_message(msg(f"p{i}"))
    mgr.close()


def test_a_journal_full_of_one_sessions_writes_is_compacted(tmp_path: Path) -> None:
    base = tmp_path / "s"
    backend = sdb.FileBackend(base)
    mgr = sdb.Manager(backend, clock=Clock())
    made = [mgr.create(AGENT, user_id="u") for _ in range(6)]
    hot = made[2]
    for i in range(1100):
        hot.append_message(msg(f"m{i}"))
    path = lists_dir(base) / lists.journal_name("u")
    assert len(path.read_bytes().splitlines()) > 1100
    stop = threading.Event()
    errors: list[BaseException] = []
    writes = [0]

    def writer() -> None:  # goes on writing while the listing compacts
        try:
            while not stop.is_set():
                made[writes[0] % 6].append_message(msg("during"))
                writes[0] += 1
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        # reads past a thousand lines of one session, then keeps one line per session
        page = backend.list_sessions(AGENT, user_id="u", limit=6)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert {s.id for s in page} == {s.id for s in made}
    # one line per session (two for one being written), and the lines written since
    assert len(path.read_bytes().splitlines()) <= 2 * 6 + writes[0] < 1100
    check(backend, ["u"])
    mgr.close()
