"""``<agent>/lists/``: ordered journals, so that a page of a listing reads only that page.

``sessions.json`` (:mod:`.index`) is a snapshot that a listing would have to
read whole, and that lags behind appends. The journals here let a listing of
the newest sessions (of the agent, or of one user) read only the end of one
file, whatever the number of sessions:

    <agent>/lists/all.log            every session of the agent
    <agent>/lists/<sha256>.log       the sessions of one user (the SHA-256 of the user ID)
    <agent>/lists/none.log           the sessions without a user
    <agent>/lists/ready              the boot these journals were last built or checked in

A journal holds one line per write: the session's record as it is *after* the
write (the same fields as a ``sessions.json`` record, with its file's ``size``
and ``inode``), and ``m``, the greatest ``updated_at`` of that line and of every
line before it. A writer appends the line *before* it writes the session
file, while it holds the session's lock, and appends under the journal's own
lock (``flock``), so the ``m`` of each line is exact. Hence, for every session:

* its last line in a journal is at or after a line carrying its current
  ``updated_at``, so every session whose lines all lie before line *i* was
  updated at ``m(i)`` or earlier;
* that last line describes the session exactly when the file still has the
  line's inode and size; else (the write was interrupted, or is under way) the
  listing reads the session file itself.

A listing reads lines from the end, verifies each new session with one
``lstat`` and stops as soon as it holds a page of sessions all updated after
the ``m`` of the next line: with a clock that moves forward, after about a
page of lines. Lines of sessions that were deleted, or that moved to another
user, are skipped (and removed by deletes and compaction).

Crashes: a line is written before the session write and never removed while
its session lives, so a process killed at any instant leaves the journals
right (a torn last line is cut off by the next writer). Journals are not
fsynced: after the machine itself crashed they may miss lines, so ``ready``
names the boot (Linux's ``boot_id``) and journals of another boot are rebuilt
from the session files before a listing trusts them; so are missing or damaged
ones (where the system has no ``boot_id``, run ``repair`` after such a crash).
A rebuild replaces each journal atomically while writers go on: a writer whose
journal was replaced or created while it wrote adds its line again
(:meth:`Intent.done`), and the rebuild checks afterwards that every session's
file is still the one it read.

The line of a new session has inode 0 (the file does not exist yet), which
matches any inode. A listing that had to read past many lines of sessions
written again since compacts that journal (one line per session; a session
whose last write is unfinished keeps that line and one of its state).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import heapq
import json
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from ..errors import SessionsDBError
from . import durable, paths
from .index import record_summary, record_text
from .jsonl import SessionLog, parse_ts, ts_text
from .locking import lock, locked, unlock
from .paths import opened

DIR = "lists"
ALL = "all.log"
READY = "ready"
_NO_USER = "none.log"
_SUFFIX = ".log"
_M_HEAD = b',"m":"'
_M_TAIL = b'"}\n'
_TAIL = len(_M_HEAD) + len(ts_text(datetime.now().astimezone())) + len(_M_TAIL)

#: Returns the session of a journal record as it is now (``None``: gone).
Resolve = Callable[[SessionLog], SessionLog | None]


class DamagedJournalError(ValueError):
    """A journal has a line this store did not write."""


def journal_name(user_id: str | None) -> str:
    """Return the name of the journal of ``user_id``'s sessions (no ID reaches a path)."""
    if user_id is None:
        return _NO_USER
    digest = hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()
    return digest + _SUFFIX


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


#: This boot of the machine (Linux's ``boot_id``; ``"unknown"`` where there is none).
BOOT = _boot_id()


def _head(summary: SessionLog) -> bytes:
    return record_text(summary)[:-1].encode() + _M_HEAD


def encode_line(summary: SessionLog, m: datetime) -> bytes:
    """Return the journal line of ``summary`` with the running maximum ``m``."""
    return _head(summary) + ts_text(m).encode() + _M_TAIL


def decode_line(raw: bytes, agent_name: str) -> tuple[SessionLog, datetime]:
    """Return the record and ``m`` of one line; :class:`DamagedJournalError` if malformed."""
    try:
        rec = json.loads(raw)
        if not isinstance(rec, dict):
            raise ValueError("not an object")
        return record_summary(rec, agent_name), parse_ts(rec["m"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedJournalError(str(exc)) from exc


def _open_lists(agent_fd: int, *, create: bool = False) -> int | None:
    try:
        return paths.open_dir(DIR, agent_fd, create=create)
    except FileNotFoundError:
        return None


def _open_journal(lists_fd: int, name: str) -> int:
    """Open (or make) the journal ``name`` for appending, and lock it, current under its name.

    A journal replaced by a rebuild while we waited for its lock is opened again.
    """
    while True:
        try:
            fd = paths.open_file(name, lists_fd, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            try:
                fd = paths.open_file(name, lists_fd, os.O_RDWR | os.O_APPEND, create=True)
            except FileExistsError:
                continue
        try:
            lock(fd)
            now = paths.lstat(name, lists_fd)
            if now is not None and now.st_ino == os.fstat(fd).st_ino:
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # closing drops the lock


def _last_m(fd: int) -> tuple[datetime | None, bool]:
    """Return the ``m`` of the journal's last line, and whether that line is damaged.

    A torn last line (the machine crashed mid-write) is cut off first.
    """
    size = os.fstat(fd).st_size
    if size == 0:
        return None, False
    tail = os.pread(fd, _TAIL, max(size - _TAIL, 0))
    if not tail.endswith(b"\n"):
        size = _last_newline(fd, size)
        os.ftruncate(fd, size)
        if size == 0:
            return None, False
        tail = os.pread(fd, _TAIL, max(size - _TAIL, 0))
    if tail.endswith(_M_TAIL) and tail.startswith(_M_HEAD):
        try:
            return parse_ts(tail[len(_M_HEAD) : -len(_M_TAIL)].decode()), False
        except ValueError:
            pass
    return None, True


def _last_newline(fd: int, size: int) -> int:
    """Return the offset just after the last newline of the file's first ``size`` bytes."""
    pos = size
    while pos > 0:
        start = max(pos - 65536, 0)
        chunk = os.pread(fd, pos - start, start)
        at = chunk.rfind(b"\n")
        if at >= 0:
            return start + at + 1
        pos = start
    return 0


def _append(lists_fd: int, fd: int, summary: SessionLog, head: bytes) -> None:
    """Append ``summary``'s line to the journal open (and locked) as ``fd``.

    ``head`` is the line up to ``m`` (:func:`_head`). If the journal's last line
    is not one this store wrote, the journals are no longer ready: the next
    listing rebuilds them.
    """
    assert summary.updated_at is not None
    prev, damaged = _last_m(fd)
    if damaged:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(READY, dir_fd=lists_fd)
    m = summary.updated_at if prev is None or prev < summary.updated_at else prev
    line = head + ts_text(m).encode() + _M_TAIL
    view = memoryview(line)
    while view:
        view = view[os.write(fd, view) :]


def exists(agent_fd: int) -> bool:
    """Whether the agent has a ``lists`` directory (writers add their lines to it)."""
    fd = _open_lists(agent_fd)
    if fd is None:
        return False
    os.close(fd)
    return True


def _names(summary: SessionLog) -> tuple[str, str]:
    return ALL, journal_name(summary.user_id)


def note(agent_fd: int, summary: SessionLog) -> None:
    """Append ``summary``'s line to its journals, if the agent has journals."""
    lists_fd = _open_lists(agent_fd)
    if lists_fd is None:
        return
    head = _head(summary)
    with opened(lists_fd):
        for name in _names(summary):
            with opened(_open_journal(lists_fd, name)) as fd:
                _append(lists_fd, fd, summary, head)


class Intent:
    """The lines a writer adds before it writes a session file (see the module's text).

    Create it before the write, with the session as it will be after it; call
    :meth:`done` after the write with the session as it is then, and
    :meth:`close` in any case.
    """

    def __init__(self, agent_fd: int, summary: SessionLog) -> None:
        self._agent_fd = agent_fd
        self._fds: list[int] = []
        lists_fd = _open_lists(agent_fd)
        self._present = lists_fd is not None
        if lists_fd is None:
            return
        head = _head(summary)
        with opened(lists_fd):
            for name in _names(summary):
                fd = _open_journal(lists_fd, name)
                self._fds.append(fd)
                try:
                    _append(lists_fd, fd, summary, head)
                finally:
                    unlock(fd)

    def done(self, summary: SessionLog) -> None:
        """Add the line again where a rebuild replaced or made the journals meanwhile."""
        replaced = any(os.fstat(fd).st_nlink == 0 for fd in self._fds)
        if replaced or (not self._present and exists(self._agent_fd)):
            note(self._agent_fd, summary)

    def close(self) -> None:
        """Close the journals."""
        for fd in self._fds:
            os.close(fd)
        self._fds = []


# -- reading -----------------------------------------------------------------------------


def _reverse_lines(fd: int, size: int) -> Iterator[bytes]:
    """Yield the complete lines of the file's first ``size`` bytes, the last first.

    Bytes after the last newline (a line being written) are left out.
    """
    pos = size
    rest = b""
    chunk = 8192
    ended = False  # the last newline was found
    while pos > 0:
        start = max(pos - chunk, 0)
        buf = os.pread(fd, pos - start, start) + rest
        pos = start
        chunk = min(chunk * 2, 1 << 20)
        parts = buf.split(b"\n")
        if not ended:
            if len(parts) == 1:
                rest = b""  # all of it belongs to a line not yet whole
                continue
            parts.pop()  # after the last newline: empty, or a line not yet whole
            ended = True
        rest = parts[0]
        for line in reversed(parts[1:]):
            if line:
                yield line
    if rest and ended:
        yield rest


def is_ready(agent_fd: int) -> bool:
    """Whether the agent's journals are complete and from this boot."""
    lists_fd = _open_lists(agent_fd)
    if lists_fd is None:
        return False
    with opened(lists_fd):
        try:
            with opened(paths.open_file(READY, lists_fd, os.O_RDONLY)) as fd:
                return os.pread(fd, 256, 0).decode(errors="replace").strip() == BOOT
        except FileNotFoundError:
            return False


def unready(agent_fd: int) -> None:
    """Make the next listing rebuild the journals (one was found damaged)."""
    lists_fd = _open_lists(agent_fd)
    if lists_fd is not None:
        with opened(lists_fd), contextlib.suppress(FileNotFoundError):
            os.unlink(READY, dir_fd=lists_fd)


def page(
    agent_fd: int,
    agent_name: str,
    user_id: str | None,
    *,
    by_user: bool,
    need: int,
    accept: Callable[[SessionLog], bool],
    resolve: Resolve,
    updated_after: datetime | None = None,
) -> tuple[list[SessionLog], int, int]:
    """Return the ``need`` newest sessions that ``accept`` keeps, the lines read, the sessions.

    From the user's journal (``by_user``) or the agent's. ``resolve`` turns a
    line's record into the session as it is now (``None``: gone). Fewer than
    ``need`` sessions when the journal holds no more. :class:`DamagedJournalError`
    if a line is not one this store wrote.
    """
    name = journal_name(user_id) if by_user else ALL
    lists_fd = _open_lists(agent_fd)
    if lists_fd is None:
        raise DamagedJournalError("no journals")
    best: list[tuple[datetime, str, int, SessionLog]] = []  # a min-heap of the page
    seen: set[str] = set()
    lines = 0
    with opened(lists_fd):
        try:
            fd = paths.open_file(name, lists_fd, os.O_RDONLY)
        except FileNotFoundError:
            return [], 0, 0
        with opened(fd):
            for raw in _reverse_lines(fd, os.fstat(fd).st_size):
                lines += 1
                record, m = decode_line(raw, agent_name)
                # Every session not seen yet was updated at ``m`` or before.
                if updated_after is not None and m <= updated_after:
                    break
                if len(best) >= need and best[0][0] > m:
                    break
                if record.session_id in seen:
                    continue
                seen.add(record.session_id)
                current = resolve(record)
                if current is None or current.updated_at is None or not accept(current):
                    continue
                item = (current.updated_at, current.session_id, lines, current)
                if len(best) < need:
                    heapq.heappush(best, item)
                elif item[:2] > best[0][:2]:
                    heapq.heapreplace(best, item)
    return [item[3] for item in best], lines, len(seen)


def _read_all(fd: int, agent_name: str) -> list[SessionLog]:
    data = durable_read(fd)
    out = []
    for raw in data.split(b"\n"):
        if raw:
            out.append(decode_line(raw, agent_name)[0])
    return out


def durable_read(fd: int) -> bytes:
    """Return the complete lines of the file (up to its last newline)."""
    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0)
    while len(data) < size:
        more = os.pread(fd, size - len(data), len(data))
        if not more:
            break
        data += more
    return data[: data.rfind(b"\n") + 1]


# -- rewriting -----------------------------------------------------------------------------


def _encode_all(records: Iterable[SessionLog]) -> bytes:
    m: datetime | None = None
    out = []
    for record in records:
        assert record.updated_at is not None
        if m is None or m < record.updated_at:
            m = record.updated_at
        out.append(encode_line(record, m))
    return b"".join(out)


def _ordered(records: Iterable[SessionLog]) -> list[SessionLog]:
    return sorted(records, key=lambda s: (s.updated_at, s.session_id))


def _replace(lists_fd: int, name: str, data: bytes | None) -> None:
    """Replace (``None``: remove) journal ``name``, holding the old one's lock meanwhile."""
    try:
        old = paths.open_file(name, lists_fd, os.O_RDONLY)
    except FileNotFoundError:
        if data is not None:
            durable.replace(lists_fd, name, data)
        return
    with opened(old), locked(old):
        if data is None:
            os.unlink(name, dir_fd=lists_fd)
        else:
            durable.replace(lists_fd, name, data)


def _journals(lists_fd: int) -> list[str]:
    with os.scandir(lists_fd) as it:
        return [
            e.name
            for e in it
            if e.name.endswith(_SUFFIX) and not durable.is_temp(e.name) and e.is_file()
        ]


def rebuild(agent_fd: int, summaries: list[SessionLog], resolve: Resolve) -> None:
    """Write every journal of the agent afresh from ``summaries`` and mark them ready.

    The caller holds the agent's lock (no session is created or deleted
    meanwhile) and read ``summaries`` after making the ``lists`` directory
    (:func:`make`): writers that wrote meanwhile add their lines again, and
    sessions whose file changed since it was read are read again here.
    """
    lists_fd = _open_lists(agent_fd, create=True)
    assert lists_fd is not None
    with opened(lists_fd):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(READY, dir_fd=lists_fd)
        groups: dict[str, list[SessionLog]] = {ALL: []}
        for s in summaries:
            if s.updated_at is None:
                continue
            groups[ALL].append(s)
            groups.setdefault(journal_name(s.user_id), []).append(s)
        for name in set(_journals(lists_fd)) - groups.keys():
            _replace(lists_fd, name, None)
        for name, members in groups.items():
            _replace(lists_fd, name, _encode_all(_ordered(members)))
    for s in summaries:
        info = paths.lstat(paths.session_file(s.session_id), agent_fd)
        if info is not None and (info.st_ino, info.st_size) != (s.ino, s.offset):
            current = resolve(s)
            if current is not None and current.updated_at is not None:
                note(agent_fd, current)
    lists_fd = _open_lists(agent_fd, create=True)
    assert lists_fd is not None
    with opened(lists_fd):
        durable.replace(lists_fd, READY, (BOOT + "\n").encode())


def make(agent_fd: int) -> None:
    """Make the ``lists`` directory (before a rebuild reads the sessions)."""
    fd = _open_lists(agent_fd, create=True)
    if fd is not None:
        os.close(fd)


def rewrite(
    agent_fd: int,
    agent_name: str,
    names: Iterable[str] | None,
    keep: Callable[[list[SessionLog]], list[SessionLog] | None],
) -> None:
    """Rewrite journals (every one if ``names`` is None) to the lines ``keep`` returns.

    ``keep`` gets the journal's records in order and returns the records of
    the new journal in order, or ``None`` to leave it as it is. It runs under
    the journal's lock: no writer appends meanwhile.
    """
    lists_fd = _open_lists(agent_fd)
    if lists_fd is None:
        return
    with opened(lists_fd):
        for name in _journals(lists_fd) if names is None else names:
            try:
                fd = paths.open_file(name, lists_fd, os.O_RDONLY)
            except FileNotFoundError:
                continue
            with opened(fd), locked(fd):
                now = paths.lstat(name, lists_fd)
                if now is None or now.st_ino != os.fstat(fd).st_ino:
                    continue  # replaced meanwhile: by a rebuild, which is newer
                kept = keep(_read_all(fd, agent_name))
                if kept is None:
                    continue
                if kept or name == ALL:
                    durable.replace(lists_fd, name, _encode_all(kept))
                else:
                    os.unlink(name, dir_fd=lists_fd)  # no session of the user is left


def drop(
    agent_fd: int,
    agent_name: str,
    session_ids: Iterable[str],
    names: Iterable[str] | None = None,
) -> None:
    """Remove the lines of deleted sessions from journals ``names`` (``None``: every one)."""
    gone = set(session_ids)

    def keep(records: list[SessionLog]) -> list[SessionLog] | None:
        kept = [r for r in records if r.session_id not in gone]
        return None if len(kept) == len(records) else kept

    rewrite(agent_fd, agent_name, None if names is None else sorted(set(names)), keep)


def read_state(agent_fd: int, record: SessionLog) -> SessionLog | None:
    """Return the session of a journal record as its file holds it now (``None``: gone).

    Takes no lock (it runs under a journal's lock, which writers take while
    they hold their session's): a file that matches the record's inode and
    size is the record; another is read whole, up to its last commit line.
    """
    name = paths.session_file(record.session_id)
    try:
        with opened(paths.open_file(name, agent_fd, os.O_RDONLY)) as fd:
            info = os.fstat(fd)
            if info.st_size == record.offset and record.ino in (0, info.st_ino):
                return record
            log = SessionLog(record.session_id, keep_entries=False)
            log.ino = info.st_ino
            log.feed(durable_read(fd))
    except (FileNotFoundError, SessionsDBError):
        return None
    return log if log.created_at is not None else None


def compact(agent_fd: int, agent_name: str, name: str) -> None:
    """Keep one line per living session in journal ``name`` (two if a write is under way)."""
    resolve = functools.partial(read_state, agent_fd)

    def keep(records: list[SessionLog]) -> list[SessionLog]:
        last: dict[str, SessionLog] = {}
        for r in records:
            last[r.session_id] = r
        kept = []
        for r in last.values():
            current = resolve(r)
            if current is None:
                continue
            kept.append(r)
            if (current.ino, current.offset) != (r.ino, r.offset):
                kept.append(current)  # the line's write did not end (yet): keep both
        return _ordered(kept)

    rewrite(agent_fd, agent_name, [name], keep)
