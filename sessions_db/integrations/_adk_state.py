"""Where the Google ADK session service keeps app- and user-scoped state.

ADK shares ``app:`` keys among all sessions of an app and ``user:`` keys among
a user's sessions of the app. An event's change of them is applied with the
event itself:

* **SQL stores** keep them in the tables of
  :class:`~sessions_db.models.AdkAppStateRow` and
  :class:`~sessions_db.models.AdkUserStateRow`, changed in the transaction that
  appends the event (PostgreSQL merges with ``jsonb ||``; SQLite reads and
  writes inside its write transaction, which excludes every other writer).
* **The file store** cannot write two files atomically: there the event entry,
  which carries its state delta, is the record of truth, and the state files
  (``<base>/<app>/adk/app.json``, and ``<base>/<app>/users/<user hash>.adk.json``
  for each user) follow it. A change is made under the lock of the app's
  ``adk`` directory: first an *intent* (``adk/intent.json``: the session, the
  event's entry and the fingerprint of its payload, and the deltas) is written
  durably, then the event is appended, then the state files are rewritten, then
  the intent is removed. A writer that dies part way leaves the intent, and the
  next reader or writer of the app's state applies it exactly when the event is
  in the session (its stored payload has the recorded fingerprint), and drops
  it otherwise. So the state files always hold every change whose event is
  stored, by the time anyone reads them.

Nothing here imports ADK.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Text, bindparam, cast, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB

from .. import ids, payload
from ..errors import (
    DuplicateEntryError,
    DuplicateKeyError,
    EntryNotFoundError,
    InvalidIDError,
    PayloadError,
    SessionNotFoundError,
    StorageError,
)
from ..file import durable, paths
from ..file.backend import FileBackend
from ..file.locking import locked
from ..file.paths import opened
from ..models import AdkAppStateRow, AdkUserStateRow
from ..sql.unit_of_work import SQLUnitOfWork
from ..storage import BranchQuery, UnitOfWork

__all__ = ["Change", "FileScopes", "Recorder", "SQLScopes", "Scopes", "fingerprint"]

#: The file store's directory of an app's ADK state, in the app's agent directory.
ADK_DIR = "adk"
APP_FILE = "app.json"
INTENT_FILE = "intent.json"
#: The name of a user's state file in the agent's ``users`` directory (after the user hash).
USER_FILE = "adk.json"

#: The errors a store raises before it writes anything (so an intent can go).
NOTHING_WRITTEN = (
    SessionNotFoundError,
    EntryNotFoundError,
    DuplicateEntryError,
    DuplicateKeyError,
    PayloadError,
    InvalidIDError,
    LookupError,
)

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def fingerprint(value: dict[str, Any]) -> str:
    """Return the SHA-256 of a payload's canonical JSON (the same from every store)."""
    return hashlib.sha256(payload.canonical(value).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Change:
    """A change of app and user state, and the stored record it comes with.

    ``entry_id`` is the event's entry in the session (with ``fingerprint``, the
    fingerprint of its stored payload); ``None`` for the creation of the session.
    """

    session_id: str
    entry_id: str | None
    fingerprint: str | None
    user_id: str
    app: dict[str, Any] = field(default_factory=dict)
    user: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        """Whether the change changes anything."""
        return bool(self.app or self.user)


class Recorder(ABC):
    """Records one change of state, inside :meth:`Scopes.changing`."""

    @abstractmethod
    def intend(self, change: Change) -> None:
        """Say what is about to be stored (before the session is written)."""

    @abstractmethod
    def apply(self, change: Change, now: datetime) -> None:
        """Apply the change (after the session is written)."""


class Scopes(ABC):
    """App and user state of ADK sessions, read and changed in a unit of work."""

    #: Whether a session's own state is written in one transaction with its
    #: events (else it may lag behind them after a crash; see the module).
    atomic: bool = True

    @abstractmethod
    def read(
        self, uow: UnitOfWork, app: str, users: Collection[str]
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Return the app's state and the state of each of ``users`` that has one."""

    @abstractmethod
    def changing(self, uow: UnitOfWork, app: str) -> AbstractContextManager[Recorder]:
        """Hold the app's state for a change; yield the recorder of the change."""

    def begin_read(self, uow: UnitOfWork) -> None:  # noqa: B027 - most stores need nothing
        """Make the reads that follow one consistent snapshot where that costs nothing."""


# -- SQL ---------------------------------------------------------------------------

APP_STATE = AdkAppStateRow.__table__
USER_STATE = AdkUserStateRow.__table__


def _sql(uow: UnitOfWork) -> SQLUnitOfWork:
    if not isinstance(uow, SQLUnitOfWork):  # pragma: no cover - chosen by the store
        raise TypeError(f"expected a SQL unit of work, not {type(uow).__name__}")
    return uow


class SQLScopes(Scopes):
    """The state tables, changed in the unit's transaction."""

    atomic = True

    def begin_read(self, uow: UnitOfWork) -> None:
        """On SQLite, one read transaction (a snapshot of the WAL); PostgreSQL reads as it goes."""
        sql = _sql(uow)
        if sql.dialect == "sqlite":
            sql.begin()

    def read(
        self, uow: UnitOfWork, app: str, users: Collection[str]
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Read the app's row and the users' rows (one query each)."""
        sql = _sql(uow)
        a, u = APP_STATE.c, USER_STATE.c
        row = sql.execute(select(a.state).where(a.agent_name == app)).first()
        app_state: dict[str, Any] = dict(row.state) if row is not None else {}
        found: dict[str, dict[str, Any]] = {}
        if users:
            stmt = select(u.user_id, u.state).where(
                u.agent_name == app, u.user_id.in_(sorted(set(users)))
            )
            found = {r.user_id: dict(r.state) for r in sql.execute(stmt)}
        return app_state, found

    @contextmanager
    def changing(self, uow: UnitOfWork, app: str) -> Iterator[Recorder]:
        """Nothing to hold: the rows are locked by the upserts, in the unit's transaction."""
        yield _SQLRecorder(_sql(uow), app)


class _SQLRecorder(Recorder):
    def __init__(self, sql: SQLUnitOfWork, app: str) -> None:
        self._sql = sql
        self._app = app

    def intend(self, change: Change) -> None:
        pass  # one transaction: nothing to announce

    def apply(self, change: Change, now: datetime) -> None:
        if change.app:
            self._merge(APP_STATE, {"agent_name": self._app}, change.app, now)
        if change.user:
            keys = {"agent_name": self._app, "user_id": change.user_id}
            self._merge(USER_STATE, keys, change.user, now)

    def _merge(
        self, table: Any, keys: dict[str, str], delta: dict[str, Any], now: datetime
    ) -> None:
        """Insert the row, or set each key of ``delta`` in its state (a shallow merge)."""
        text = payload.dumps(payload.check(delta, "state delta"))
        if self._sql.dialect == "postgresql":
            ins = postgresql.insert(table).values(
                **keys, state=cast(bindparam(None, text, type_=Text), JSONB), updated_at=now
            )
            stmt = ins.on_conflict_do_update(
                index_elements=list(keys),
                set_={
                    # jsonb || jsonb: the right side's keys replace the left's, at the
                    # top level only, and a null is stored, as ADK's dict.update does.
                    "state": table.c.state.op("||")(ins.excluded.state),
                    "updated_at": ins.excluded.updated_at,
                },
            )
            self._sql.execute(stmt)
            return
        # SQLite: the unit holds the database's write lock, so read, merge, write.
        where = [table.c[name] == value for name, value in keys.items()]
        row = self._sql.execute(select(table.c.state).where(*where)).first()
        merged = {**(row.state if row is not None else {}), **delta}
        text = payload.dumps(merged)
        ins_sqlite = sqlite.insert(table).values(
            **keys, state=bindparam(None, text, type_=Text), updated_at=now
        )
        self._sql.execute(
            ins_sqlite.on_conflict_do_update(
                index_elements=list(keys),
                set_={"state": ins_sqlite.excluded.state, "updated_at": now},
            )
        )


# -- the file store ----------------------------------------------------------------


class FileScopes(Scopes):
    """State files next to the app's sessions, following the events (see the module)."""

    atomic = False

    def __init__(self, backend: FileBackend) -> None:
        self._backend = backend

    @contextmanager
    def _dir(self, parent_fd: int, name: str, *, create: bool) -> Iterator[int | None]:
        try:
            fd = paths.open_dir(name, parent_fd, create=create)
        except FileNotFoundError:
            yield None
            return
        with opened(fd):
            yield fd

    @contextmanager
    def _app_dir(self, app: str, *, create: bool) -> Iterator[int | None]:
        with (
            opened(os.open(self._backend.base, _DIR_FLAGS)) as base_fd,
            self._dir(base_fd, ids.agent_name(app), create=create) as app_fd,
        ):
            yield app_fd

    def read(
        self, uow: UnitOfWork, app: str, users: Collection[str]
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Read the state files (after applying a change a dead writer left, if any)."""
        with self._app_dir(app, create=False) as app_fd:
            if app_fd is None:
                return {}, {}
            with self._dir(app_fd, ADK_DIR, create=False) as adk_fd:
                if adk_fd is None:
                    return {}, {}
                with locked(adk_fd, shared=True):
                    if paths.lstat(INTENT_FILE, adk_fd) is None:
                        return self._load(app_fd, adk_fd, users)
                with locked(adk_fd):
                    self._recover(app_fd, adk_fd)
                    return self._load(app_fd, adk_fd, users)

    @contextmanager
    def changing(self, uow: UnitOfWork, app: str) -> Iterator[Recorder]:
        """Hold the app's ``adk`` directory lock (a dead writer's change is applied first)."""
        with self._app_dir(app, create=True) as app_fd:
            assert app_fd is not None
            with self._dir(app_fd, ADK_DIR, create=True) as adk_fd:
                assert adk_fd is not None
                with locked(adk_fd):
                    self._recover(app_fd, adk_fd)
                    recorder = _FileRecorder(app_fd, adk_fd)
                    try:
                        yield recorder
                    except NOTHING_WRITTEN:
                        # Refused before anything was stored: the intent goes (an
                        # intent left for an event already stored under the same
                        # ID would apply its deltas a second time, later).
                        recorder.forget()
                        raise

    def _load(
        self, app_fd: int, adk_fd: int, users: Collection[str]
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        app_state = _read_state(adk_fd, APP_FILE)
        found: dict[str, dict[str, Any]] = {}
        if users:
            with self._dir(app_fd, paths.USERS, create=False) as users_fd:
                if users_fd is not None:
                    for user in set(users):
                        state = _read_state(users_fd, paths.user_file(user, USER_FILE))
                        if state:
                            found[user] = state
        return app_state, found

    def _recover(self, app_fd: int, adk_fd: int) -> None:
        """Apply or drop the change a writer that died left in ``intent.json`` (hold the lock)."""
        raw = _read(adk_fd, INTENT_FILE)
        if raw is None:
            return
        try:
            change = Change(**json.loads(raw))
        except (ValueError, TypeError):
            change = None  # torn by a crash before its rename: nothing was written after it
        if change is not None and self._stored(change):
            _apply(app_fd, adk_fd, change)
        os.unlink(INTENT_FILE, dir_fd=adk_fd)
        os.fsync(adk_fd)

    def _stored(self, change: Change) -> bool:
        """Whether the record the change came with is in the session."""
        try:
            if change.entry_id is None:
                self._backend.load_session(change.session_id)
                return True
            found = self._backend.load_branch(
                change.session_id, BranchQuery(leaf=change.entry_id, limit=1)
            )
        except (SessionNotFoundError, EntryNotFoundError):
            return False
        return bool(found) and fingerprint(found[-1].data.get("payload", {})) == change.fingerprint


class _FileRecorder(Recorder):
    def __init__(self, app_fd: int, adk_fd: int) -> None:
        self._app_fd = app_fd
        self._adk_fd = adk_fd
        self._intended = False

    def intend(self, change: Change) -> None:
        durable.replace(self._adk_fd, INTENT_FILE, json.dumps(asdict(change)).encode("utf-8"))
        self._intended = True

    def apply(self, change: Change, now: datetime) -> None:
        _apply(self._app_fd, self._adk_fd, change)
        self.forget()

    def forget(self) -> None:
        """Remove the intent (nothing of it is stored, or all of it is applied)."""
        if self._intended:
            self._intended = False
            os.unlink(INTENT_FILE, dir_fd=self._adk_fd)
            # Durably: a stale intent must not come back after an erasure.
            os.fsync(self._adk_fd)


def _apply(app_fd: int, adk_fd: int, change: Change) -> None:
    """Merge the change into the state files (hold the ``adk`` lock)."""
    if change.app:
        _merge(adk_fd, APP_FILE, change.app)
    if change.user:
        users_fd = paths.open_dir(paths.USERS, app_fd, create=True)
        with opened(users_fd), locked(users_fd):
            _merge(users_fd, paths.user_file(change.user_id, USER_FILE), change.user)


def _merge(dir_fd: int, name: str, delta: dict[str, Any]) -> None:
    state = {**_read_state(dir_fd, name), **delta}
    durable.replace(dir_fd, name, payload.dumps({"state": state}).encode("utf-8"))


def _read(dir_fd: int, name: str) -> bytes | None:
    try:
        fd = paths.open_file(name, dir_fd, os.O_RDONLY)
    except FileNotFoundError:
        return None
    with opened(fd):
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    return b"".join(chunks)


def _read_state(dir_fd: int, name: str) -> dict[str, Any]:
    raw = _read(dir_fd, name)
    if raw is None:
        return {}
    try:
        state = json.loads(raw)["state"]
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"ADK state file {name} is damaged: {exc}") from None
    if not isinstance(state, dict):
        raise StorageError(f"ADK state file {name} is damaged: no state object")
    return state
