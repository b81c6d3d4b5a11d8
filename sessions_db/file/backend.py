"""FileBackend: the StorageBackend on a directory of JSONL files (the seed's layout)."""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from .. import ids
from ..backend import (
    WHOLE_BRANCH,
    BranchQuery,
    CallsUnitOfWork,
    NewCheckpoint,
    StorageBackend,
    checkpoint_entry,
)
from ..checksum import branch_checksum
from ..errors import (
    CheckpointNotFoundError,
    DuplicateEntryError,
    DuplicateKeyError,
    EntryNotFoundError,
    InvalidArgumentError,
    SessionNotFoundError,
    SessionsDBError,
    StorageClosedError,
    StorageUnavailableError,
)
from ..storage import Cursor, contains, select_sessions
from ..types import Checkpoint, EntryType, SessionEntry, SessionMetadata
from . import checkpoints, durable, index, lists, locking, paths
from .caches import DEFAULT_SIZE, LockTable, LruMap
from .jsonl import Commit, SessionLog, entry_lines, session_line
from .locking import locked, try_lock, unlock
from .paths import CHECKPOINTS, INDEX, opened
from .repair import RepairReport, repair_store

#: Where the store lives when no directory is given (``~`` is expanded).
DEFAULT_BASE = "~/.sessions_db/sessions"

P = ParamSpec("P")
T = TypeVar("T")

_log = logging.getLogger("sessions_db.file")


def _io(
    method: Callable[Concatenate[FileBackend, P], T],
) -> Callable[Concatenate[FileBackend, P], T]:
    """Refuse calls after close, and turn OS errors into ``StorageUnavailableError`` (once).

    The call is counted while it runs: ``close()`` waits for it before it
    closes the base directory's descriptor the call works through.
    """

    @functools.wraps(method)
    def wrapper(self: FileBackend, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self._calls:
            if self._closed:
                raise StorageClosedError("the file store is closed")
            self._active += 1
        try:
            result = method(self, *args, **kwargs)
            if self._dirty_count > self._cache_size:
                self._refresh_indexes()
            return result
        except SessionsDBError:
            raise
        except OSError as exc:
            raise StorageUnavailableError(f"file store {self._base}: {exc}") from exc
        finally:
            with self._calls:
                self._active -= 1
                if self._active == 0:
                    self._calls.notify_all()

    return wrapper


def _read_from(fd: int, offset: int) -> bytes:
    """Return the bytes of ``fd`` from ``offset`` to its end."""
    size = os.fstat(fd).st_size
    chunks: list[bytes] = []
    while True:
        chunk = os.pread(fd, max(size - offset, 1 << 16), offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _key(info: os.stat_result) -> tuple[int, int, int]:
    """Return what identifies one version of a file: inode, modification time, size."""
    return (info.st_ino, info.st_mtime_ns, info.st_size)


class FileBackend(StorageBackend):
    """Sessions as JSONL files in a directory: ``<base>/<agent>/<session-id>.jsonl``.

    Appends are one ``O_APPEND`` write followed by fsync, under an OS lock on the
    session's file, so threads and processes append to one chain and an append
    that returned survives a crash. A session's entries are cached after the first
    load (``release`` drops them); the cache reads only what other processes
    appended since. See :mod:`sessions_db.file` for the format.

    ``<agent>/sessions.json`` lists every session after each create and delete;
    records' ``updated_at``, ``message_count`` and ``current_leaf`` may lag behind
    appends until a listing or :meth:`close` (see :mod:`sessions_db.file.index`). A page
    of a listing (``limit=``) reads only the end of an ordered journal in ``<agent>/lists/``
    that every write adds to first (see :mod:`sessions_db.file.lists`).
    ``cache_size`` bounds what the store remembers per session (its lock and
    where it and its checkpoints live). POSIX only: elsewhere the constructor
    raises :class:`~sessions_db.ConfigurationError`.
    """

    def __init__(
        self, base_dir: str | os.PathLike[str] = DEFAULT_BASE, *, cache_size: int = DEFAULT_SIZE
    ) -> None:
        locking.require()
        if cache_size < 1:
            raise InvalidArgumentError(f"cache_size must be at least 1, not {cache_size}")
        path = Path(base_dir).expanduser()
        if not path.exists():
            try:
                path.mkdir(parents=True, mode=paths.DIR_MODE)
                path.chmod(paths.DIR_MODE)
            except FileExistsError:
                pass  # another process made it first
        self._base = Path(os.path.realpath(path))
        self._base_fd = os.open(self._base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._closed = False
        self._calls = threading.Condition()  # guards _closed, _active and _shut
        self._active = 0  # calls running
        self._shut = False  # the descriptor is closed
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._session_locks = LockTable(cache_size)
        self._holding = threading.local()  # the sessions a unit of work of this thread holds
        self._logs: dict[str, SessionLog] = {}  # full, until release
        self._summaries: dict[str, SessionLog] = {}  # metadata only, for listing
        self._indexes: dict[str, tuple[tuple[int, int, int], dict[str, SessionLog]]] = {}
        self._damaged_indexes: set[str] = set()
        self._agents = LruMap(cache_size)  # session ID -> agent
        self._checkpoint_agents = LruMap(cache_size)  # checkpoint ID -> agent
        self._dirty: dict[str, set[str]] = {}  # agent -> sessions whose record may lag
        self._dirty_count = 0

    @property
    def base(self) -> Path:
        """The store's directory (symlinks resolved)."""
        return self._base

    def __repr__(self) -> str:
        return f"FileBackend({str(self._base)!r})"

    # -- locating -------------------------------------------------------------------

    def _session_lock(self, session_id: str) -> AbstractContextManager[None]:
        if session_id in self._held():
            return nullcontext()
        return self._session_locks.hold(session_id)

    def _held(self) -> dict[str, tuple[str, int, int]]:
        """Return the sessions this thread's unit of work holds: agent, agent dir and file."""
        held: dict[str, tuple[str, int, int]] | None = getattr(self._holding, "sessions", None)
        if held is None:
            held = self._holding.sessions = {}
        return held

    @contextmanager
    def holding(self, session_id: str) -> Iterator[None]:
        """Hold the session's locks (thread and OS) while the block runs, for a unit of work.

        The calls the block makes on this thread work on the held session
        without locking it again; no other thread or process writes it meanwhile.
        """
        session_id = ids.session_id(session_id)
        with self._calls:
            if self._closed:
                raise StorageClosedError("the file store is closed")
            self._active += 1
        try:
            with self._writing(session_id) as (agent, agent_fd, fd, _):
                held = self._held()
                held[session_id] = (agent, agent_fd, fd)
                try:
                    yield
                finally:
                    held.pop(session_id, None)
        except OSError as exc:
            raise StorageUnavailableError(f"file store {self._base}: {exc}") from exc
        finally:
            with self._calls:
                self._active -= 1
                if self._active == 0:
                    self._calls.notify_all()

    def unit_of_work(self, *, write: bool = True) -> FileUnitOfWork:
        """Open a unit of work (see :class:`FileUnitOfWork`)."""
        return FileUnitOfWork(self)

    def _exists(self, relative: str) -> bool:
        try:
            os.stat(relative, dir_fd=self._base_fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def _where(self, session_id: str) -> str:
        """Return the agent whose directory holds the session: cached, else one stat per agent."""
        name = paths.session_file(session_id)
        agent = self._agents.get(session_id)
        if agent is not None and self._exists(f"{agent}/{name}"):
            return agent
        for agent in paths.agent_dirs(self._base_fd):
            if self._exists(f"{agent}/{name}"):
                self._agents.put(session_id, agent)
                return agent
        self._forget(session_id)
        raise SessionNotFoundError(f"session {session_id} not found")

    def _forget(self, session_id: str) -> None:
        self._agents.pop(session_id)
        self._logs.pop(session_id, None)
        self._summaries.pop(session_id, None)

    @contextmanager
    def _agent_dir(self, agent_name: str, *, create: bool = False) -> Iterator[int]:
        name = ids.agent_name(agent_name)
        try:
            fd = paths.open_dir(name, self._base_fd)
        except FileNotFoundError:
            if not create:
                raise
            fd = paths.open_dir(name, self._base_fd, create=True)
            with ExitStack() as stack:
                stack.callback(os.close, fd)
                # A new agent gets its journals (lists) at once: no listing has to build them.
                with locked(fd):
                    if not lists.exists(fd):
                        self._rebuild_lists(name, fd)
                stack.pop_all()
        with opened(fd):
            yield fd

    # -- reading a session file -----------------------------------------------------------

    def _refresh(
        self, log: SessionLog | None, session_id: str, fd: int, info: os.stat_result
    ) -> SessionLog:
        """Bring ``log`` (or a new log) up to date with the file open as ``fd``."""
        keep = True if log is None else log.keep_entries
        if log is not None and log.is_current(info.st_ino, info.st_size):
            return log
        if log is None or log.ino != info.st_ino or info.st_size < log.offset:
            log = SessionLog(session_id, keep_entries=keep)
            log.ino = info.st_ino
        log.feed(_read_from(fd, log.offset))
        return log

    def _full(self, session_id: str, agent_fd: int) -> SessionLog:
        """Return the session's cached entries, read up to date (hold its session lock)."""
        name = paths.session_file(session_id)
        info = paths.lstat(name, agent_fd)
        if info is None:
            self._forget(session_id)
            raise SessionNotFoundError(f"session {session_id} not found")
        log = self._logs.get(session_id)
        if log is not None and log.is_current(info.st_ino, info.st_size):
            return log
        try:
            fd = paths.open_file(name, agent_fd, os.O_RDONLY)
        except FileNotFoundError:
            self._forget(session_id)
            raise SessionNotFoundError(f"session {session_id} not found") from None
        with opened(fd):
            log = self._refresh(log, session_id, fd, os.fstat(fd))
        self._logs[session_id] = log
        return log

    @contextmanager
    def _reading(self, session_id: str) -> Iterator[tuple[str, SessionLog]]:
        """Yield the session's agent and its up-to-date entries."""
        agent = self._where(session_id)
        with self._session_lock(session_id), self._agent_dir(agent) as agent_fd:
            yield agent, self._full(session_id, agent_fd)

    @contextmanager
    def _writing(self, session_id: str) -> Iterator[tuple[str, int, int, SessionLog]]:
        """Lock the session's file (OS lock) and yield agent, agent dir, file and entries.

        Whatever follows the last commit line (a torn or unfinished write of a
        writer that died) is cut off first, so new lines never glue onto it.
        """
        held = self._held().get(session_id)
        if held is not None:
            yield self._rewrite_held(session_id, *held)
            self._mark_dirty(held[0], session_id)
            return
        agent = self._where(session_id)
        name = paths.session_file(session_id)
        with self._session_lock(session_id), self._agent_dir(agent) as agent_fd:
            for _ in range(5):
                try:
                    fd = paths.open_file(name, agent_fd, os.O_RDWR | os.O_APPEND)
                except FileNotFoundError:
                    break
                with opened(fd), locked(fd):
                    info = os.fstat(fd)
                    now = paths.lstat(name, agent_fd)
                    if now is None or info.st_nlink == 0:
                        break  # deleted while we waited for the lock
                    if now.st_ino != info.st_ino:
                        continue  # replaced while we waited: lock the new file
                    log = self._refresh(self._logs.get(session_id), session_id, fd, info)
                    if not log.keep_entries:
                        log = self._refresh(None, session_id, fd, info)
                    self._logs[session_id] = log
                    if log.pending:
                        os.ftruncate(fd, log.offset)
                        os.fsync(fd)
                        log.seen = log.offset
                    yield agent, agent_fd, fd, log
                    self._mark_dirty(agent, session_id)
                    return
            self._forget(session_id)
            raise SessionNotFoundError(f"session {session_id} not found")

    def _rewrite_held(
        self, session_id: str, agent: str, agent_fd: int, fd: int
    ) -> tuple[str, int, int, SessionLog]:
        """Return what :meth:`_writing` yields, for a session this thread holds."""
        info = os.fstat(fd)
        if info.st_nlink == 0:
            raise SessionNotFoundError(f"session {session_id} not found")
        log = self._refresh(self._logs.get(session_id), session_id, fd, info)
        if not log.keep_entries:
            log = self._refresh(None, session_id, fd, info)
        self._logs[session_id] = log
        return agent, agent_fd, fd, log

    @staticmethod
    def _after(log: SessionLog, data: bytes) -> SessionLog:
        """Return the session's summary as it will be once ``data`` is appended to its file."""
        after = SessionLog(log.session_id, keep_entries=False)
        for name in ("agent_name", "user_id", "metadata", "created_at", "updated_at"):
            setattr(after, name, getattr(log, name))
        for name in ("message_count", "leaf", "key", "forked_from", "forked_at", "ino"):
            setattr(after, name, getattr(log, name))
        after.offset = after.seen = log.offset
        after.feed(data)
        return after

    def _append(self, agent_fd: int, fd: int, log: SessionLog, data: bytes) -> None:
        """Append one write to a session file (locked), its journal lines first (see lists)."""
        after = self._after(log, data)
        intent = lists.Intent(agent_fd, after)
        try:
            durable.append(fd, data, log.offset)
            intent.done(after)
        finally:
            intent.close()

    def _summary(
        self, session_id: str, agent_fd: int, known: dict[str, SessionLog]
    ) -> SessionLog | None:
        """Return the session's metadata read up to date, ``None`` if its file is gone.

        Starts from what this process read before, else from the index record
        (``known``), and reads only the bytes appended since.
        """
        name = paths.session_file(session_id)
        with self._session_lock(session_id):
            info = paths.lstat(name, agent_fd)
            if info is None:
                self._forget(session_id)
                return None
            log = self._logs.get(session_id) or self._summaries.get(session_id)
            if log is None or log.ino != info.st_ino:
                record = known.get(session_id)
                log = copy.copy(record) if record is not None else None
            if log is not None and log.is_current(info.st_ino, info.st_size):
                return log
            try:
                fd = paths.open_file(name, agent_fd, os.O_RDONLY)
            except FileNotFoundError:
                self._forget(session_id)
                return None
            with opened(fd):
                if log is None:
                    log = SessionLog(session_id, keep_entries=False)
                    log.ino = info.st_ino
                log = self._refresh(log, session_id, fd, os.fstat(fd))
            if log.keep_entries:
                self._logs[session_id] = log
            else:
                self._summaries[session_id] = log
            return log

    def _meta(self, log: SessionLog, agent: str) -> SessionMetadata:
        if log.created_at is None or log.updated_at is None:
            raise SessionNotFoundError(f"session {log.session_id} not found")
        return SessionMetadata.model_construct(
            id=log.session_id,
            agent_name=agent,
            user_id=log.user_id,
            created_at=log.created_at,
            updated_at=log.updated_at,
            message_count=log.message_count,
            current_leaf=log.leaf,
            metadata=json.loads(json.dumps(log.metadata)),
            key=log.key,
            forked_from=log.forked_from,
            forked_at=log.forked_at,
        )

    # -- the index ------------------------------------------------------------------

    def _index(self, agent: str, agent_fd: int, *, held: bool = False) -> dict[str, SessionLog]:
        """Return the agent's index records (cached while the file is unchanged).

        ``held``: the caller holds the agent's lock. Without it, an index that
        does not parse is read again under a shared lock, in case a record was
        being added to it (:func:`index.add`) at that instant.
        """
        if held:
            return self._load_index(agent, agent_fd, quiet=False)
        try:
            return self._load_index(agent, agent_fd, quiet=True)
        except index.DamagedIndexError:
            with locked(agent_fd, shared=True):
                return self._load_index(agent, agent_fd, quiet=False)

    def _load_index(self, agent: str, agent_fd: int, *, quiet: bool) -> dict[str, SessionLog]:
        info = paths.lstat(INDEX, agent_fd)
        if info is None:
            return {}
        key = _key(info)
        cached = self._indexes.get(agent)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            fd = paths.open_file(INDEX, agent_fd, os.O_RDONLY)
        except FileNotFoundError:
            return {}
        with opened(fd):
            key = _key(os.fstat(fd))
            raw = _read_from(fd, 0)
        try:
            records = index.decode(raw, agent)
            self._damaged_indexes.discard(agent)
        except index.DamagedIndexError as exc:
            if quiet:
                raise
            if agent not in self._damaged_indexes:
                index.log.warning(
                    "%s/%s/%s is damaged (%s); it is rebuilt from the session files",
                    self._base,
                    agent,
                    INDEX,
                    exc,
                )
            self._damaged_indexes.add(agent)
            records = {}
        self._indexes[agent] = (key, records)
        return records

    def _scan(
        self, agent: str, agent_fd: int, *, held: bool = False
    ) -> tuple[list[SessionLog], bool]:
        """Return every session of the agent, up to date, and whether the index is stale."""
        known = self._index(agent, agent_fd, held=held)
        found = paths.session_files(agent_fd)
        stale = agent in self._damaged_indexes or len(found) != len(known)
        summaries = []
        for session_id in found:
            summary = self._summary(session_id, agent_fd, known)
            if summary is None or summary.created_at is None:
                continue
            self._agents.put(session_id, agent)
            record = known.get(session_id)
            if record is None or record.offset != summary.offset or record.ino != summary.ino:
                stale = True
            summaries.append(summary)
        return summaries, stale

    def _rewrite_index(self, agent: str, agent_fd: int) -> None:
        """Rewrite the index from the session files if it is out of date (hold the agent lock)."""
        summaries, stale = self._scan(agent, agent_fd, held=True)
        if stale or paths.lstat(INDEX, agent_fd) is None:
            index.write(agent_fd, agent, summaries)
            self._damaged_indexes.discard(agent)

    def _index_add(
        self, agent: str, agent_fd: int, summary: SessionLog, before: os.stat_result | None
    ) -> None:
        """List a new session in the index (hold the agent lock since ``before`` was read).

        Its record is added in place when the index is there and sound; else
        the index is rebuilt from the session files.
        """
        if (
            before is not None
            and agent not in self._damaged_indexes
            and index.add(agent_fd, summary)
        ):
            cached = self._indexes.get(agent)
            after = paths.lstat(INDEX, agent_fd)
            if cached is not None and after is not None and cached[0] == _key(before):
                cached[1][summary.session_id] = summary
                self._indexes[agent] = (_key(after), cached[1])
            return
        self._rewrite_index(agent, agent_fd)

    def _mark_dirty(self, agent: str, session_id: str) -> None:
        """Note that the session's index record may lag behind its file."""
        with self._lock:
            sessions = self._dirty.setdefault(agent, set())
            if session_id not in sessions:
                sessions.add(session_id)
                self._dirty_count += 1

    def _refresh_indexes(self) -> None:
        """Bring the index records of the sessions this store changed up to date.

        Called by ``close()``, and whenever more sessions than the cache size
        await it. A failure is logged, not raised: the index is only a snapshot,
        which the next listing brings up to date as well.
        """
        with self._lock:
            dirty, self._dirty, self._dirty_count = self._dirty, {}, 0
        for agent, session_ids in dirty.items():
            try:
                with self._agent_dir(agent) as agent_fd, locked(agent_fd):
                    self._update_index(agent, agent_fd, session_ids)
            except FileNotFoundError:
                continue  # the agent's directory is gone: nothing to list
            except (OSError, SessionsDBError) as exc:
                _log.warning(
                    "could not bring %s/%s/%s up to date: %s", self._base, agent, INDEX, exc
                )

    def _update_index(self, agent: str, agent_fd: int, session_ids: set[str]) -> None:
        """Rewrite the records of ``session_ids`` from their files (hold the agent lock).

        The other records stay as they are; a missing or damaged index is
        rebuilt whole.
        """
        known = self._index(agent, agent_fd, held=True)
        if agent in self._damaged_indexes or paths.lstat(INDEX, agent_fd) is None:
            self._rewrite_index(agent, agent_fd)
            return
        records = dict(known)
        for session_id in session_ids:
            summary = self._summary(session_id, agent_fd, known)
            if summary is None or summary.created_at is None:
                records.pop(session_id, None)
            else:
                records[session_id] = summary
        if records.keys() != known.keys() or any(
            (r.offset, r.ino) != (known[k].offset, known[k].ino) for k, r in records.items()
        ):
            index.write(agent_fd, agent, records.values())

    # -- sessions -----------------------------------------------------------------------

    def _create(
        self,
        agent: str,
        agent_fd: int,
        meta: SessionMetadata,
        entries: Sequence[SessionEntry] = (),
    ) -> bool:
        """Create the session's file and list it in the index; ``False`` if it already exists.

        The file is written whole at once: its session line and ``entries``,
        linked one after the other, with one commit line. The caller holds the
        agent's lock, so that concurrent creations each find the others'
        records in the index (and keys stay unique per agent).
        """
        if meta.key is not None and self._keyed(agent, agent_fd, meta.key) is not None:
            raise DuplicateKeyError("another session of the agent has this key")
        lineage = {
            name: value
            for name, value in (
                ("key", meta.key),
                ("forked_from", meta.forked_from),
                ("forked_at", meta.forked_at),
            )
            if value is not None
        }
        messages = sum(e.type is EntryType.MESSAGE for e in entries)
        commit = Commit(meta.updated_at, messages)
        line = session_line(
            meta.id,
            meta.created_at,
            agent,
            meta.user_id,
            meta.metadata,
            None if entries else commit,
            lineage=lineage,
        )
        if entries:
            line += entry_lines(list(entries), None, commit)[0]
        name = paths.session_file(meta.id)
        # Also refuses a planted symlink in the index's place before anything is made.
        index_before = paths.lstat(INDEX, agent_fd)
        with self._session_lock(meta.id):
            if paths.lstat(name, agent_fd) is not None:
                return False
            summary = SessionLog(meta.id, keep_entries=False)
            summary.feed(line)  # inode 0 in its journal lines: not known before the file is
            intent = lists.Intent(agent_fd, summary)
            try:
                fd = durable.create(agent_fd, name, line)
                if fd is None:
                    return False
                with opened(fd):
                    log = SessionLog(meta.id)
                    log.ino = summary.ino = os.fstat(fd).st_ino
                    log.feed(line)
                intent.done(summary)
            finally:
                intent.close()
            self._logs[meta.id] = log
            self._agents.put(meta.id, agent)
        try:
            self._index_add(agent, agent_fd, summary, index_before)
        except OSError as exc:
            # The session is stored; the index is only a snapshot, which the
            # next listing rebuilds. Failing here would invite a duplicate.
            _log.warning(
                "could not list session %s in %s/%s/%s: %s", meta.id, self._base, agent, INDEX, exc
            )
        return True

    def _keyed(self, agent: str, agent_fd: int, key: str) -> SessionLog | None:
        """Return the summary of the agent's session with external key ``key``, if any."""
        summaries, _ = self._scan(agent, agent_fd, held=True)
        return next((s for s in summaries if s.key == key), None)

    @_io
    def load_session_by_key(self, agent_name: str, key: str) -> SessionMetadata:  # noqa: D102
        agent = ids.agent_name(agent_name)
        try:
            with self._agent_dir(agent) as agent_fd:
                summaries, _ = self._scan(agent, agent_fd)
        except FileNotFoundError:
            summaries = []
        found = next((s for s in summaries if s.key == key), None)
        if found is None:
            raise SessionNotFoundError(f"no session of agent {agent!r} has this key")
        return self._meta(found, agent)

    @_io
    def create_session(  # noqa: D102 - see Storage
        self, meta: SessionMetadata, entries: Sequence[SessionEntry]
    ) -> None:
        session_id = ids.session_id(meta.id)
        agent = ids.agent_name(meta.agent_name)
        try:
            self._where(session_id)
        except SessionNotFoundError:
            with self._agent_dir(agent, create=True) as agent_fd, locked(agent_fd):
                if self._create(agent, agent_fd, meta, entries):
                    return
        raise DuplicateEntryError(f"session {session_id} already exists")

    @_io
    def save_session(self, meta: SessionMetadata) -> None:  # noqa: D102 - see StorageBackend
        session_id = ids.session_id(meta.id)
        agent = ids.agent_name(meta.agent_name)
        try:
            self._where(session_id)
        except SessionNotFoundError:
            with self._agent_dir(agent, create=True) as agent_fd, locked(agent_fd):
                if self._create(agent, agent_fd, meta):
                    return
        with self._writing(session_id) as (owner, agent_fd, fd, log):
            assert log.created_at is not None
            assert log.updated_at is not None
            line = session_line(
                session_id,
                log.created_at,
                log.agent_name or owner,
                meta.user_id,
                meta.metadata,
                Commit(log.updated_at, log.message_count),
            )
            self._append(agent_fd, fd, log, line)
            log.feed(line)

    @_io
    def load_session(self, session_id: str) -> SessionMetadata:  # noqa: D102
        session_id = ids.session_id(session_id)
        agent = self._where(session_id)
        with self._agent_dir(agent) as agent_fd:
            summary = self._summary(session_id, agent_fd, self._index(agent, agent_fd))
        if summary is None:
            raise SessionNotFoundError(f"session {session_id} not found")
        return self._meta(summary, agent)

    def _delete(
        self,
        session_id: str,
        users: set[str | None],
        *,
        updated_before: datetime | None = None,
    ) -> bool:
        """Delete a session's file and checkpoints; ``False`` if it was updated meanwhile.

        Adds the session's user to ``users`` (whose journals then drop its lines).
        """
        with self._writing(session_id) as (_agent, agent_fd, _, log):
            if updated_before is not None and (
                log.updated_at is None or log.updated_at >= updated_before
            ):
                return False
            users.add(log.user_id)
            checkpoint_ids = self._checkpoint_ids(log)
            os.unlink(paths.session_file(session_id), dir_fd=agent_fd)
            os.fsync(agent_fd)
            self._forget(session_id)
            self._remove_checkpoints(agent_fd, session_id, checkpoint_ids)
        return True

    def _remove_checkpoints(
        self, agent_fd: int, session_id: str, checkpoint_ids: list[str]
    ) -> None:
        try:
            cfd = paths.open_dir(CHECKPOINTS, agent_fd)
        except FileNotFoundError:
            return
        with opened(cfd):
            for checkpoint_id in checkpoint_ids:
                self._checkpoint_agents.pop(checkpoint_id)
                checkpoints.remove(cfd, checkpoint_id, session_id)
            os.fsync(cfd)

    def _drop_from_index(self, agent: str, session_ids: list[str], users: set[str | None]) -> None:
        """Take deleted sessions out of the index and the journals of the agent and ``users``.

        The index is rebuilt whole if missing or damaged. (Journals of users a
        session belonged to before a change of user keep its lines until
        ``repair``; a listing skips them.)
        """
        with self._agent_dir(agent) as agent_fd, locked(agent_fd):
            names = [lists.ALL, *(lists.journal_name(u) for u in users)]
            lists.drop(agent_fd, agent, session_ids, names)
            known = self._index(agent, agent_fd, held=True)
            if agent in self._damaged_indexes or paths.lstat(INDEX, agent_fd) is None:
                self._rewrite_index(agent, agent_fd)
                return
            if not any(s in known for s in session_ids):
                return
            gone = set(session_ids)
            index.write(agent_fd, agent, [s for k, s in known.items() if k not in gone])

    @_io
    def delete_session(self, session_id: str) -> None:  # noqa: D102
        session_id = ids.session_id(session_id)
        agent = self._where(session_id)
        users: set[str | None] = set()
        self._delete(session_id, users)
        self._drop_from_index(agent, [session_id], users)

    @_io
    def list_sessions(  # noqa: D102
        self,
        agent_name: str,
        *,
        user_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        metadata: dict[str, Any] | None = None,
        after: Cursor | None = None,
    ) -> list[SessionMetadata]:
        agent = ids.agent_name(agent_name)
        if limit is not None:
            try:
                with self._agent_dir(agent) as agent_fd:
                    page = self._list_page(
                        agent,
                        agent_fd,
                        user_id=user_id,
                        limit=limit,
                        offset=offset,
                        updated_after=updated_after,
                        updated_before=updated_before,
                        metadata=metadata,
                        after=after,
                    )
            except FileNotFoundError:
                return []
            if page is not None:
                return page
        try:
            with self._agent_dir(agent) as agent_fd:
                summaries, stale = self._scan(agent, agent_fd)
                # Rewritten only if no one else holds the agent's lock (it is only
                # a snapshot), and from a scan under it, so that no record added
                # meanwhile is lost.
                if stale and try_lock(agent_fd):
                    try:
                        self._rewrite_index(agent, agent_fd)
                    finally:
                        unlock(agent_fd)
        except FileNotFoundError:
            return []
        if user_id is not None:
            summaries = [s for s in summaries if s.user_id == user_id]
        return select_sessions(
            (self._meta(s, agent) for s in summaries),
            limit=limit,
            offset=offset,
            updated_after=updated_after,
            updated_before=updated_before,
            metadata=metadata,
            after=after,
        )

    def _list_page(
        self,
        agent: str,
        agent_fd: int,
        *,
        user_id: str | None,
        limit: int,
        offset: int,
        updated_after: datetime | None,
        updated_before: datetime | None,
        metadata: dict[str, Any] | None,
        after: Cursor | None,
    ) -> list[SessionMetadata] | None:
        """Return a page of the listing from the journals (:mod:`.lists`); ``None``: scan instead.

        Reads the end of one journal (the user's, or the agent's), about a page
        of lines when the clock moves forward. Journals that are not ready are
        rebuilt first, unless another writer holds the agent's lock (then the
        listing scans the session files as before).
        """
        need = offset + limit
        if need <= 0:
            return []
        if not lists.is_ready(agent_fd):
            if not try_lock(agent_fd):
                return None
            try:
                if not lists.is_ready(agent_fd):
                    self._rebuild_lists(agent, agent_fd)
            finally:
                unlock(agent_fd)

        def accept(s: SessionLog) -> bool:
            assert s.updated_at is not None
            return (
                (user_id is None or s.user_id == user_id)
                and (updated_after is None or s.updated_at > updated_after)
                and (updated_before is None or s.updated_at < updated_before)
                and (metadata is None or contains(s.metadata, metadata))
                and (after is None or (s.updated_at, s.session_id) < after)
            )

        resolve = functools.partial(self._resolve, agent_fd)
        try:
            found, read, distinct = lists.page(
                agent_fd,
                agent,
                user_id,
                by_user=user_id is not None,
                need=need,
                accept=accept,
                resolve=resolve,
                updated_after=updated_after,
            )
        except lists.DamagedJournalError as exc:
            _log.warning(
                "a journal of %s/%s is damaged (%s); it is rebuilt", self._base, agent, exc
            )
            lists.unready(agent_fd)
            return None
        if read > 1024 and read > 4 * distinct:
            # Mostly lines of sessions written again since: keep one line per session.
            name = lists.journal_name(user_id) if user_id is not None else lists.ALL
            lists.compact(agent_fd, agent, name)
        for s in found:
            self._agents.put(s.session_id, agent)
        return select_sessions((self._meta(s, agent) for s in found), limit=limit, offset=offset)

    def _resolve(self, agent_fd: int, record: SessionLog) -> SessionLog | None:
        """Return the session of a journal record as it is now (``None``: it is gone)."""
        info = paths.lstat(paths.session_file(record.session_id), agent_fd)
        if info is None:
            return None
        if info.st_size == record.offset and record.ino in (0, info.st_ino):
            return record  # the file is as the line's write left it
        return self._summary(record.session_id, agent_fd, {})

    def _rebuild_lists(self, agent: str, agent_fd: int) -> None:
        """Write the agent's journals afresh from its session files (hold the agent's lock)."""
        lists.make(agent_fd)
        summaries, _ = self._scan(agent, agent_fd, held=True)
        lists.rebuild(agent_fd, summaries, functools.partial(self._resolve, agent_fd))

    @_io
    def list_agents(self) -> list[str]:  # noqa: D102
        found = []
        for agent in paths.agent_dirs(self._base_fd):
            try:
                with self._agent_dir(agent) as agent_fd:
                    if paths.session_files(agent_fd):
                        found.append(agent)
            except (FileNotFoundError, SessionsDBError):
                continue
        return found

    @_io
    def prune_sessions(  # noqa: D102
        self, updated_before: datetime, *, agent_name: str | None = None, dry_run: bool = False
    ) -> list[str]:
        return self._prune(updated_before, agent_name, dry_run, None)

    @_io
    def prune_batch(  # noqa: D102 - see Storage
        self, updated_before: datetime, *, agent_name: str | None = None, limit: int
    ) -> list[str]:
        return self._prune(updated_before, agent_name, False, limit)

    def _prune(
        self, updated_before: datetime, agent_name: str | None, dry_run: bool, limit: int | None
    ) -> list[str]:
        """Delete (or with ``dry_run`` list) the sessions updated before; the oldest ``limit``."""
        agents = (
            [ids.agent_name(agent_name)]
            if agent_name is not None
            else paths.agent_dirs(self._base_fd)
        )
        pruned: list[str] = []
        for agent in agents:
            if limit is not None and len(pruned) >= limit:
                break
            try:
                with self._agent_dir(agent) as agent_fd:
                    summaries, _ = self._scan(agent, agent_fd)
            except FileNotFoundError:
                continue
            old = sorted(
                (
                    s
                    for s in summaries
                    if s.updated_at is not None and s.updated_at < updated_before
                ),
                key=lambda s: (s.updated_at, s.session_id),
            )
            expired = [s.session_id for s in old]
            if limit is not None:
                expired = expired[: limit - len(pruned)]
            if dry_run:
                pruned += expired
                continue
            deleted = []
            users: set[str | None] = set()
            for session_id in expired:
                try:
                    if self._delete(session_id, users, updated_before=updated_before):
                        deleted.append(session_id)
                except SessionNotFoundError:
                    continue
            if deleted:
                self._drop_from_index(agent, deleted, users)
            pruned += deleted
        return sorted(pruned)

    @_io
    def find_or_create_session(self, meta: SessionMetadata) -> SessionMetadata:  # noqa: D102
        agent = ids.agent_name(meta.agent_name)
        ids.session_id(meta.id)
        with self._agent_dir(agent, create=True) as agent_fd, locked(agent_fd):
            if meta.key is not None:
                keyed = self._keyed(agent, agent_fd, meta.key)
                if keyed is not None:
                    return self._meta(keyed, agent)
                self._create(agent, agent_fd, meta)
                return meta
            summaries, _ = self._scan(agent, agent_fd, held=True)
            mine = [s for s in summaries if s.user_id == meta.user_id]
            if mine:
                latest = max(mine, key=lambda s: (s.updated_at, s.session_id))
                return self._meta(latest, agent)
            self._create(agent, agent_fd, meta)
        return meta

    # -- entries ------------------------------------------------------------------------

    @_io
    def append_entries(  # noqa: D102
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        *,
        fork_from: str | None = None,
        at_root: bool = False,
        updated_at: datetime,
    ) -> None:
        session_id = ids.session_id(session_id)
        if not entries:
            return
        with self._writing(session_id) as (_, agent_fd, fd, log):
            if at_root:
                parent, depth = None, 0
            elif fork_from is None:
                parent, depth = log.leaf, log.message_count
            else:
                at = log.by_id.get(fork_from)
                if at is None:
                    raise EntryNotFoundError(f"entry {fork_from} not found in session {session_id}")
                parent, depth = fork_from, log.records[at].depth
            seen: set[str] = set()
            for entry in entries:
                if entry.id in log.by_id or entry.id in seen:
                    raise DuplicateEntryError(
                        f"entry {entry.id} is already in session {session_id}"
                    )
                seen.add(entry.id)
                if entry.type is EntryType.MESSAGE:
                    depth += 1
            batch = list(entries)
            data, _ = entry_lines(batch, parent, Commit(updated_at, depth))
            self._append(agent_fd, fd, log, data)
            log.feed_own(batch, parent, data)

    @_io
    def load_entries(self, session_id: str) -> list[SessionEntry]:  # noqa: D102
        session_id = ids.session_id(session_id)
        with self._reading(session_id) as (_, log):
            return [log.entry(i) for i in range(len(log.records))]

    @staticmethod
    def _branch(log: SessionLog, query: BranchQuery) -> list[SessionEntry]:
        session_id = log.session_id
        if query.before is not None:
            at = log.by_id.get(query.before)
            if at is None or log.records[at].type is not EntryType.MESSAGE:
                raise EntryNotFoundError(
                    f"message {query.before} not found in session {session_id}"
                )
            start = log.records[at].parent
        elif query.leaf is not None:
            found = log.by_id.get(query.leaf)
            if found is None:
                raise EntryNotFoundError(f"entry {query.leaf} not found in session {session_id}")
            start = found
        else:
            start = -1 if log.leaf is None else log.by_id[log.leaf]
        picked: list[int] = []
        limit = query.limit
        at = start
        while at >= 0 and (limit is None or len(picked) < limit):
            record = log.records[at]
            if not query.messages_only or record.type is EntryType.MESSAGE:
                picked.append(at)
            at = record.parent
        picked.reverse()
        return [log.entry(i) for i in picked]

    @_io
    def load_branch(  # noqa: D102
        self, session_id: str, query: BranchQuery = WHOLE_BRANCH
    ) -> list[SessionEntry]:
        session_id = ids.session_id(session_id)
        with self._reading(session_id) as (_, log):
            return self._branch(log, query)

    @_io
    def load_entries_by_id(  # noqa: D102 - see Storage
        self, session_id: str, entry_ids: Sequence[str]
    ) -> list[SessionEntry]:
        session_id = ids.session_id(session_id)
        with self._reading(session_id) as (_, log):
            found = {log.by_id[i] for i in entry_ids if i in log.by_id}
            return [log.entry(i) for i in sorted(found)]

    @_io
    def load_children(self, session_id: str, entry_id: str) -> list[SessionEntry]:  # noqa: D102
        session_id = ids.session_id(session_id)
        with self._reading(session_id) as (_, log):
            at = log.by_id.get(entry_id)
            if at is None:
                raise EntryNotFoundError(f"entry {entry_id} not found in session {session_id}")
            # A child is always appended after its parent.
            return [
                log.entry(i) for i in range(at + 1, len(log.records)) if log.records[i].parent == at
            ]

    # -- checkpoints ------------------------------------------------------------------

    @staticmethod
    def _checkpoint_ids(log: SessionLog) -> list[str]:
        found = []
        for record in log.records:
            if record.type is EntryType.CHECKPOINT:
                value = json.loads(record.line)["data"].get("checkpoint_id")
                if isinstance(value, str):
                    found.append(value)
        return found

    @_io
    def create_checkpoint(self, session_id: str, new: NewCheckpoint) -> Checkpoint:  # noqa: D102
        session_id = ids.session_id(session_id)
        with self._writing(session_id) as (agent, agent_fd, fd, log):
            cfd = paths.open_dir(CHECKPOINTS, agent_fd, create=True)
            with opened(cfd):
                if new.entry_id in log.by_id:
                    raise DuplicateEntryError(
                        f"entry {new.entry_id} is already in session {session_id}"
                    )
                if checkpoints.is_live(checkpoints.read(cfd, new.id), agent_fd):
                    raise DuplicateEntryError(f"checkpoint {new.id} already exists")
                leaf = log.leaf
                branch = self._branch(log, BranchQuery(leaf=leaf)) if leaf is not None else []
                entry = checkpoint_entry(new, leaf)
                checkpoint = Checkpoint.model_construct(
                    id=new.id,
                    session_id=session_id,
                    timestamp=new.timestamp,
                    entry_id=entry.id,
                    checksum=branch_checksum([*branch, entry]),
                    metadata=new.metadata,
                )
                content = checkpoints.encode(checkpoint)
                data, _ = entry_lines([entry], leaf, Commit(new.timestamp, log.message_count))
                # The entry first: a crash before the checkpoint file is written
                # leaves an entry no checkpoint points to, never the reverse.
                self._append(agent_fd, fd, log, data)
                log.feed_own([entry], leaf, data)
                checkpoints.write_new(cfd, agent_fd, new.id, content)
                self._checkpoint_agents.put(new.id, agent)
        return checkpoint

    @_io
    def save_checkpoint(self, checkpoint: Checkpoint) -> None:  # noqa: D102
        session_id = ids.session_id(checkpoint.session_id)
        name = paths.checkpoint_file(checkpoint.id)
        content = checkpoints.encode(checkpoint)
        with self._writing(session_id) as (agent, agent_fd, _, log):
            if checkpoint.entry_id not in log.by_id:
                raise EntryNotFoundError(
                    f"entry {checkpoint.entry_id} not found in session {session_id}"
                )
            # Checkpoint IDs are unique in the store, as in SQL: not only in this agent.
            for other in paths.agent_dirs(self._base_fd):
                if (
                    other != agent
                    and self._exists(f"{other}/{CHECKPOINTS}/{name}")
                    and self._read_checkpoint(other, checkpoint.id) is not None
                ):
                    raise DuplicateEntryError(f"checkpoint {checkpoint.id} already exists")
            with opened(paths.open_dir(CHECKPOINTS, agent_fd, create=True)) as cfd:
                checkpoints.write_new(cfd, agent_fd, checkpoint.id, content)
            self._checkpoint_agents.put(checkpoint.id, agent)

    def _read_checkpoint(self, agent: str, checkpoint_id: str) -> Checkpoint | None:
        name = paths.checkpoint_file(checkpoint_id)
        try:
            with (
                self._agent_dir(agent) as agent_fd,
                opened(paths.open_dir(CHECKPOINTS, agent_fd)) as cfd,
                opened(paths.open_file(name, cfd, os.O_RDONLY)) as fd,
            ):
                found = checkpoints.decode(_read_from(fd, 0), name)
                # A checkpoint whose session is gone (a delete interrupted by a
                # crash) is not found.
                if paths.lstat(paths.session_file(found.session_id), agent_fd) is None:
                    return None
                return found
        except FileNotFoundError:
            return None

    @_io
    def load_checkpoint(self, checkpoint_id: str) -> Checkpoint:  # noqa: D102
        checkpoint_id = ids.checkpoint_id(checkpoint_id)
        name = paths.checkpoint_file(checkpoint_id)
        agent = self._checkpoint_agents.get(checkpoint_id)
        candidates = [agent] if agent is not None else []
        candidates += [
            a
            for a in paths.agent_dirs(self._base_fd)
            if a != agent and self._exists(f"{a}/{CHECKPOINTS}/{name}")
        ]
        for candidate in candidates:
            found = self._read_checkpoint(candidate, checkpoint_id)
            if found is not None:
                self._checkpoint_agents.put(checkpoint_id, candidate)
                return found
        self._checkpoint_agents.pop(checkpoint_id)
        raise CheckpointNotFoundError(f"checkpoint {checkpoint_id} not found")

    @_io
    def list_checkpoints(self, session_id: str) -> list[Checkpoint]:  # noqa: D102
        session_id = ids.session_id(session_id)
        with self._reading(session_id) as (agent, log):
            checkpoint_ids = self._checkpoint_ids(log)
        found = []
        for checkpoint_id in checkpoint_ids:
            checkpoint = self._read_checkpoint(agent, checkpoint_id)
            if checkpoint is not None and checkpoint.session_id == session_id:
                found.append(checkpoint)
        found.sort(key=lambda c: (c.timestamp, c.id))
        return found

    # -- maintenance ----------------------------------------------------------------

    @_io
    def repair(self) -> RepairReport:
        """Rebuild every agent's index from the session files, and clean up after crashes.

        Cuts torn or unfinished writes off the session files, removes temporary
        files of interrupted rewrites and checkpoint files whose session is gone,
        rewrites each ``sessions.json`` and each listing journal (``lists/``) from
        the ``.jsonl`` files, and reports what
        it found and fixed. Safe to run while the store is in use.
        """
        with self._lock:
            self._logs.clear()
            self._summaries.clear()
            self._indexes.clear()
            self._damaged_indexes.clear()
        return repair_store(self._base_fd, self._base)

    def release(self, session_id: str) -> None:
        """Drop the session's cached entries (``Session.close``)."""
        with self._lock:
            self._logs.pop(session_id, None)

    def close(self) -> None:
        """Close the store. Idempotent; later calls raise ``StorageClosedError``.

        Waits for the calls already running to finish, then brings the
        ``sessions.json`` of every agent this store changed up to date (message
        counts and update times lag behind appends until then, see
        :mod:`sessions_db.file.index`) and closes the directory. A second
        ``close()`` racing the first returns once the store is closed.
        """
        with self._calls:
            if self._closed:
                while not self._shut:
                    self._calls.wait()
                return
            self._closed = True
            while self._active:
                self._calls.wait()
        try:
            self._refresh_indexes()
        finally:
            with self._lock:
                self._logs.clear()
                self._summaries.clear()
                self._indexes.clear()
                self._agents.clear()
                self._checkpoint_agents.clear()
            os.close(self._base_fd)
            with self._calls:
                self._shut = True
                self._calls.notify_all()

    # -- erasure ------------------------------------------------------------------------

    @_io
    def erase_user(self, user_id: str) -> int:
        """Delete the user's session and checkpoint files of every agent; rewrite its indexes.

        Each agent is done under its lock (no ``get_or_create`` for it runs
        meanwhile): its sessions of the user are deleted, each durably (the
        directories are fsynced), and its ``sessions.json`` is rewritten without
        the user's records; then the user's files that adapters keep in the
        agent's ``users`` directory (:func:`~sessions_db.file.paths.user_file`)
        are deleted, under that directory's lock. Not one transaction: after a
        crash part way, some of the user's sessions or files remain, and
        erasing again removes them.
        """
        count = 0
        for agent in paths.agent_dirs(self._base_fd):
            try:
                with self._agent_dir(agent) as agent_fd, locked(agent_fd):
                    summaries, _ = self._scan(agent, agent_fd)
                    erased = [
                        s.session_id
                        for s in summaries
                        if s.user_id == user_id and self._erase_session(s.session_id, user_id)
                    ]
                    known = self._index(agent, agent_fd)
                    keep = [
                        record
                        for sid, record in known.items()
                        if sid not in erased and record.user_id != user_id
                    ]
                    if len(keep) != len(known) or agent in self._damaged_indexes:
                        index.write(agent_fd, agent, keep)
                        self._damaged_indexes.discard(agent)
                    if erased:
                        lists.drop(agent_fd, agent, erased)
            except FileNotFoundError:
                continue
            count += len(erased)
            self._erase_user_files(agent, user_id)
        return count

    def _erase_user_files(self, agent: str, user_id: str) -> None:
        """Delete the user's files in the agent's ``users`` directory, durably."""
        try:
            with self._agent_dir(agent) as agent_fd:
                users_fd = paths.open_dir(paths.USERS, agent_fd)
        except FileNotFoundError:
            return
        with opened(users_fd), locked(users_fd):
            with os.scandir(users_fd) as it:
                names = [e.name for e in it if paths.is_user_file(e.name, user_id)]
            for name in names:
                os.unlink(name, dir_fd=users_fd)
            if names:
                os.fsync(users_fd)

    def _erase_session(self, session_id: str, user_id: str) -> bool:
        """Delete the session's file and checkpoints if it still belongs to ``user_id``."""
        try:
            with self._writing(session_id) as (_, agent_fd, _, log):
                if log.user_id != user_id:
                    return False
                checkpoint_ids = self._checkpoint_ids(log)
                os.unlink(paths.session_file(session_id), dir_fd=agent_fd)
                os.fsync(agent_fd)
                self._forget(session_id)
                self._remove_checkpoints(agent_fd, session_id, checkpoint_ids)
        except SessionNotFoundError:
            return False
        return True


__all__ = ["DEFAULT_BASE", "FileBackend"]


class FileUnitOfWork(CallsUnitOfWork):
    """A unit of work on the file store: each call is one transaction, ended by a commit line.

    :meth:`lock_session` holds the session's locks (the thread lock and the OS
    lock on its file) until the unit commits, rolls back or ends, so that an
    operation that reads, decides and writes (a restore, an automatic
    checkpoint) sees no other writer in between. Writes are durable one call
    at a time: the file store has no rollback of a call that returned.
    """

    def __init__(self, backend: FileBackend) -> None:
        super().__init__(backend)
        self._file = backend
        self._locks = ExitStack()
        self._locked: set[str] = set()

    def lock_session(self, session_id: str) -> None:
        if session_id not in self._locked:
            self._locks.enter_context(self._file.holding(session_id))
            self._locked.add(session_id)

    def commit(self) -> None:
        self._release()

    def rollback(self) -> None:
        self._release()

    def end(self) -> None:
        self._release()

    def _release(self) -> None:
        self._locked.clear()
        self._locks.close()
