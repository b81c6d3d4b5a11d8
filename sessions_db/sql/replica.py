"""Reads from a PostgreSQL streaming replica, without reading one's own writes backwards.

``connect(url, read_url=...)`` (or ``session.read_url`` / ``SESSIONS_DB_READ_URL``)
gives a backend that sends every write to the primary (``url``) and reads to the
replica (``read_url``) when the replica has replayed what the read must see:

* a read of one session (its history, its checkpoints, ``Manager.get``): every
  write this process made to that session;
* any other read (listings, search, the long-term memory, ``get_by_key``): every
  write this process made;
* every read: the writes this process made that are not tied to known sessions
  (``prune``, ``erase_user``).

Otherwise it reads from the primary. So a process never reads its own writes
backwards, while reads of sessions it has not written recently go to the
replica. Writes of *other* processes may show on the replica a little later
(at most ``max_lag``, below); a session, entry or checkpoint that the replica
does not have yet is looked for on the primary before ``SessionNotFoundError``
is raised.

**How it knows** (no extra round trip per write): each write this process
commits takes a number from a counter. A *probe*, at most every
:data:`PROBE_INTERVAL` seconds and only when a read needs it, reads the
primary's WAL insert position (``pg_current_wal_insert_lsn()``, sampled after
the writes counted so far had committed) and the replica's replay position
(``pg_last_wal_replay_lsn()``); once the replica has replayed past a position
sampled after write number *n*, every write up to *n* is visible there. A probe
costs one small statement on each server; a read that cannot wait for one goes
to the primary.

**How stale** (``max_lag``, :data:`MAX_LAG` seconds by default; configuration
``session.replica_max_lag``): a replica read happens only when the replica
has replayed a position the primary had at most ``max_lag`` seconds earlier, so
it misses no write committed (by any process) longer ago than that; a replica
further behind is left alone until it catches up. With ``max_lag = 0`` every
replica read is preceded by a probe and sees every write committed before it
began, as a read of the primary would (at the cost of the probe).

A replica that cannot be reached, or is not in recovery
(``pg_last_wal_replay_lsn()`` is NULL: a promoted or mistaken server), is
left alone for a while (:data:`RETRY_AFTER` seconds, doubling up to
:data:`MAX_RETRY_AFTER`), and its reads go to the primary meanwhile. A read the
replica cancels (a conflict with recovery) or fails is run again on the
primary.

Which session a read concerns is known from the work the manager hands the
backend (a rule bound to a ``session_id``); a read with no such hint is treated
as a read of everything, which is never less safe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from contextlib import ExitStack
from typing import Any, Literal, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ..errors import (
    CheckpointNotFoundError,
    ConfigurationError,
    EntryNotFoundError,
    SchemaError,
    SessionNotFoundError,
    StorageError,
    StorageTimeoutError,
    StorageUnavailableError,
)
from ..storage import Work
from ..types import Checkpoint, SessionMetadata
from .backend import SQLBackend
from .engine import build_engine, normalize_url
from .errors import translate
from .unit_of_work import SQLUnitOfWork

__all__ = [
    "MAX_LAG",
    "PROBE_INTERVAL",
    "RETRY_AFTER",
    "ReadRouter",
    "ReplicatedSQLBackend",
    "lsn",
    "session_of",
]

log = logging.getLogger("sessions_db.replica")

T = TypeVar("T")

#: The most often a probe runs (seconds), and only when a read needs one.
PROBE_INTERVAL = 0.1
#: By default, a replica read misses no write committed more than this long ago (seconds).
MAX_LAG = 1.0
#: How long an unreachable replica is left alone at first (seconds); it doubles
#: while it stays unreachable, up to :data:`MAX_RETRY_AFTER`.
RETRY_AFTER = 2.0
MAX_RETRY_AFTER = 60.0
#: How many sessions' last writes are remembered; older ones count as writes of everything.
MAX_SESSIONS = 100_000
#: The connect timeout of replica connections (seconds): a replica that does not
#: answer delays a read by at most this, then is left alone for a while.
REPLICA_CONNECT_TIMEOUT = 2.0

#: A read's target.
Target = Literal["primary", "replica", "probe"]

#: Errors of a read on the replica that send it to the primary instead.
FALLBACK = (
    StorageUnavailableError,
    StorageTimeoutError,
    StorageError,
    SchemaError,
    SessionNotFoundError,
    EntryNotFoundError,
    CheckpointNotFoundError,
)

PRIMARY_POSITION = "SELECT pg_current_wal_insert_lsn()::text"
REPLAY_POSITION = "SELECT pg_last_wal_replay_lsn()::text"


def lsn(text: str | None) -> int | None:
    """Return a PostgreSQL LSN (``16/B374D848``) as a number, ``None`` for NULL."""
    if text is None:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def session_of(work: object) -> str | None:
    """Return the session a unit of work concerns, when the work says (a rule bound to it)."""
    keywords = getattr(work, "keywords", None)
    if isinstance(keywords, dict):
        session_id = keywords.get("session_id")
        if isinstance(session_id, str):
            return session_id
    return None


def written(work: object, result: object) -> list[str] | None:
    """Return the sessions a write touched, or ``None`` when it cannot be told (any of them)."""
    touched = []
    session_id = session_of(work)
    if session_id is not None:
        touched.append(session_id)
    if isinstance(result, SessionMetadata):
        touched.append(result.id)
    elif isinstance(result, Checkpoint):
        touched.append(result.session_id)
    return touched or None


class ReadRouter:
    """Where each read goes: what this process wrote, and what the replica has replayed.

    ``max_lag`` (seconds) bounds how stale a replica read may be: the replica
    must have replayed a position of the primary sampled at most that long ago
    (``0``: sampled during the read itself, which then costs a probe). Probes
    run at most every ``min(PROBE_INTERVAL, max_lag / 4)`` seconds. Thread-safe;
    one per backend. The sync and asyncio backends share it and do the probes'
    I/O themselves: :meth:`target` says ``"probe"``, the caller runs
    :meth:`probe_point`, the two statements, then :meth:`probed`.
    """

    def __init__(self, *, max_lag: float = MAX_LAG, max_sessions: int = MAX_SESSIONS) -> None:
        if max_lag < 0:
            raise ConfigurationError("the replica's max lag must be 0 or more seconds")
        self._lock = threading.Lock()
        self._max_lag = max_lag
        self._probe_interval = min(PROBE_INTERVAL, max_lag / 4)
        self._max_sessions = max_sessions
        self._counter = 0  # writes committed by this process
        self._everything = 0  # the newest write not tied to known sessions
        self._sessions: OrderedDict[str, int] = OrderedDict()
        self._covered = 0  # every write up to this number is on the replica
        self._reached_at = float("-inf")  # the replica holds what the primary had then
        self._pending: list[tuple[int, int, float]] = []  # (write, position, sampled at)
        self._probed_at = float("-inf")
        self._probing = False
        self._down_until = float("-inf")
        self._retry_after = RETRY_AFTER
        self._warned_lag = False

    @property
    def max_lag(self) -> float:
        """The most a replica read may be behind the primary, in seconds."""
        return self._max_lag

    # -- writes --------------------------------------------------------------------

    def wrote(self, sessions: Iterable[str] | None) -> None:
        """Count a committed write of ``sessions`` (``None``: of any session)."""
        with self._lock:
            self._counter += 1
            if sessions is None:
                self._everything = self._counter
                return
            for session_id in sessions:
                self._sessions[session_id] = self._counter
                self._sessions.move_to_end(session_id)
            while len(self._sessions) > self._max_sessions:
                _, forgotten = self._sessions.popitem(last=False)
                self._everything = max(self._everything, forgotten)

    def need(self, session_id: str | None) -> int:
        """Return the newest write of ours that a read of ``session_id`` (or of all) must see."""
        with self._lock:
            if session_id is None:
                return self._counter
            return max(self._everything, self._sessions.get(session_id, 0))

    # -- reads ---------------------------------------------------------------------

    def target(self, need: int) -> Target:
        """Return where a read that must see write ``need`` goes: replica, primary, or probe.

        ``probe`` reserves the probe for the caller (see the class).
        """
        now = time.monotonic()
        with self._lock:
            if now < self._down_until:
                return "primary"
            behind = now - self._reached_at
            fresh = need <= self._covered and behind <= self._max_lag
            # A reader that never writes still probes now and then: lag shows that way.
            wanted = not fresh or behind > self._max_lag / 2
            if wanted and not self._probing and now - self._probed_at >= self._probe_interval:
                self._probing = True
                self._probed_at = now
                return "probe"
            return "replica" if fresh else "primary"

    def probe_point(self) -> tuple[int, float]:
        """Return the writes a probe's primary position will cover, and when it is sampled.

        Call it just before reading the primary's position: every write counted
        so far had committed before.
        """
        with self._lock:
            return self._counter, time.monotonic()

    def probed(self, point: tuple[int, float], primary: int | None, replayed: int | None) -> bool:
        """Record a probe; return whether the replica had replayed the position it sampled.

        ``primary`` is ``None`` when the primary could not be asked (the replica's
        position still counts for earlier samples); ``replayed`` is ``None``
        when the server at ``read_url`` is not a replica.
        """
        now = time.monotonic()
        with self._lock:
            self._probing = False
            if replayed is None:
                self._leave_alone(now, "the server at read_url is not in recovery (not a replica)")
                return False
            if primary is not None:
                self._pending.append((point[0], primary, point[1]))
            reached = [p for p in self._pending if p[1] <= replayed]
            if reached:
                self._covered = max(self._covered, *(p[0] for p in reached))
                self._reached_at = max(self._reached_at, *(p[2] for p in reached))
            self._pending = [p for p in self._pending if p[1] > replayed][-16:]
            lagging = now - self._reached_at > self._max_lag > 0
            if lagging and not self._warned_lag:
                log.warning(
                    "the replica is more than %.0f s behind: reading from the primary",
                    self._max_lag,
                )
            self._warned_lag = lagging
            self._retry_after = RETRY_AFTER
            return primary is not None and primary <= replayed

    def release(self) -> None:
        """Give back a probe reserved by :meth:`target` that did not run to its end."""
        with self._lock:
            self._probing = False

    def failed(self, why: str) -> None:
        """Leave the replica alone for a while: it could not be reached (``why``)."""
        with self._lock:
            self._probing = False
            self._leave_alone(time.monotonic(), why)

    def _leave_alone(self, now: float, why: str) -> None:
        self._down_until = now + self._retry_after
        log.warning("reading from the primary for %.0f s: %s", self._retry_after, why)
        self._retry_after = min(self._retry_after * 2, MAX_RETRY_AFTER)


class ReplicatedSQLBackend(SQLBackend):
    """A :class:`~sessions_db.SQLBackend` on a PostgreSQL primary that reads from a replica.

    ``url`` is the primary, ``read_url`` a streaming replica of it (see the
    module for which reads go where); ``max_lag`` (seconds) bounds how far
    behind the primary a replica read may be (:class:`ReadRouter`). Every
    other option is the :class:`~sessions_db.SQLBackend`'s and applies to
    both servers.
    """

    def __init__(
        self, url: str, *, read_url: str, max_lag: float = MAX_LAG, **options: Any
    ) -> None:
        if not isinstance(url, str) or not isinstance(read_url, str):
            raise ConfigurationError("a read replica needs the URLs of the primary and replica")
        for name, value in (("url", url), ("read_url", read_url)):
            if not normalize_url(value).startswith("postgresql"):
                raise ConfigurationError(f"{name}: a read replica needs PostgreSQL URLs")
        self._router = ReadRouter(max_lag=max_lag)
        super().__init__(url, **options)
        try:
            self._replica: Engine = build_engine(
                read_url,
                connect_timeout=min(options.get("connect_timeout", 10.0), REPLICA_CONNECT_TIMEOUT),
                pooled=bool(options.get("pooled", False)),
                timeouts=self._setup.timeouts,
            ).execution_options(isolation_level="AUTOCOMMIT")
        except BaseException:
            super()._dispose()
            raise

    @property
    def router(self) -> ReadRouter:
        """What this backend knows of its writes and of the replica."""
        return self._router

    @property
    def replica_engine(self) -> Engine:
        """The engine of the replica."""
        return self._replica

    def run(self, work: Work[T], *, write: bool = True) -> T:
        """Do ``work``: writes on the primary (counted), reads where :class:`ReadRouter` says."""
        if write:
            result = super().run(work, write=True)
            self._router.wrote(written(work, result))
            return result
        if self._on_replica(session_of(work)):
            try:
                return self._run_on_replica(work)
            except FALLBACK as exc:
                if isinstance(exc, StorageUnavailableError):
                    self._router.failed(f"the replica is unavailable: {exc}")
        return super().run(work, write=False)

    def _on_replica(self, session_id: str | None) -> bool:
        need = self._router.need(session_id)
        target = self._router.target(need)
        if target == "probe":
            if self._probe():
                return True  # the replica had replayed a position sampled after ``need``
            target = self._router.target(need)
        return target == "replica"

    def _probe(self) -> bool:
        try:
            point = self._router.probe_point()
            try:
                primary = self._position(self._engine, PRIMARY_POSITION)
            except SQLAlchemyError:
                primary = None  # the primary's own reads and writes will say what is wrong
            try:
                replayed = self._position(self._replica, REPLAY_POSITION)
            except SQLAlchemyError as exc:
                self._router.failed(f"the replica is unavailable: {translate(exc, 'postgresql')}")
                return False
            return self._router.probed(point, primary, replayed)
        finally:
            self._router.release()

    def _position(self, engine: Engine, query: str) -> int | None:
        with (
            engine.connect() as conn,
            self._setup.timeouts.applied(conn.connection.driver_connection),
        ):
            return lsn(conn.exec_driver_sql(query).scalar())

    def _run_on_replica(self, work: Work[T]) -> T:
        resources = ExitStack()
        try:
            conn: Connection = resources.enter_context(self._replica.connect())
            resources.enter_context(self._setup.timeouts.applied(conn.connection.driver_connection))
        except SQLAlchemyError as exc:
            resources.close()
            raise translate(exc, self._dialect, connecting=True) from exc
        except BaseException:
            resources.close()
            raise
        with SQLUnitOfWork(conn, self._setup.statements, write=False, resources=resources) as uow:
            result = work(uow)
            uow.commit()
            return result

    def _dispose(self) -> None:
        super()._dispose()
        replica = getattr(self, "_replica", None)
        if replica is not None:
            replica.dispose()
