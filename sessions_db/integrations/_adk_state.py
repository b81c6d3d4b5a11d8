"""How the Google ADK session service keeps sessions and state on each kind of store.

ADK shares ``app:`` keys among all sessions of an app and ``user:`` keys among
a user's sessions of the app; the other keys (but ``temp:``) are the session's.
An event's change of them is applied with the event itself:

* **SQL stores** keep a session's state in its metadata (``adk_state``, with
  ``adk_last_update_time`` and ``adk_applied``, the last event applied) and the
  shared state in the tables of :class:`~sessions_db.models.AdkAppStateRow` and
  :class:`~sessions_db.models.AdkUserStateRow`, all changed in the transaction
  that appends the event (PostgreSQL merges with ``jsonb ||``, server-side;
  SQLite reads and writes inside its write transaction, which excludes every
  other writer). A session is read with its state in one query.
* **The file store** cannot write two files atomically: there the event entry,
  which carries its state delta, is the record of truth, and the rest follows
  it. The session's metadata line is written right after its event, under the
  session's lock; if a crash comes between, the session's state is completed
  from the entries after the last one its metadata names, on every read, until
  the next append writes it. The shared state lives in
  ``<base>/<app>/adk/app.json`` and ``<base>/<app>/users/<user hash>.adk.json``.
  A change of it is made under the lock of the app's ``adk`` directory: first an
  *intent* (``adk/intent.json``: the session, the event's entry and the
  fingerprint of its payload, and the deltas) is written durably, then the event
  is appended, then the state files are rewritten, then the intent is removed.
  A writer that dies part way leaves the intent, and the next reader or writer
  of the app's state applies it exactly when the event is in the session (its
  stored payload has the recorded fingerprint), and drops it otherwise. So a
  read always sees the change of every stored event. State files that were
  lost or damaged are rebuilt from the sessions: each one's creation deltas
  (kept in its metadata, ``adk_created``) and its events' deltas, in timestamp
  order across the app (a damaged file is rebuilt when it is read).

Nothing here imports ADK.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Text, bindparam, cast, func, select, type_coerce, update
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
from ..models import AdkAppStateRow, AdkUserStateRow, Base, SessionRow
from ..sql.unit_of_work import SQLUnitOfWork
from ..storage import BranchQuery, UnitOfWork
from ..types import EntryType, SessionEntry, SessionMetadata

__all__ = [
    "APPLIED_KEY",
    "CREATED_KEY",
    "KEY_PREFIX",
    "STATE_KEY",
    "TIME_KEY",
    "AdkStore",
    "Deltas",
    "FileAdkStore",
    "Located",
    "SQLAdkStore",
    "fingerprint",
    "parse_key",
    "session_key",
]

#: The session metadata keys: session-scoped state, its exact update time (a float),
#: and the entry of the last event whose delta the state holds.
STATE_KEY = "adk_state"
TIME_KEY = "adk_last_update_time"
APPLIED_KEY = "adk_applied"
#: The session metadata key of the app and user deltas the session was created with (on the
#: file store, what a rebuild of the shared state starts each session with).
CREATED_KEY = "adk_created"

#: The prefix of the external key of every ADK session.
KEY_PREFIX = "adk:"

#: ADK's scope prefixes (``google.adk.sessions.state.State``).
APP_PREFIX, USER_PREFIX, TEMP_PREFIX = "app:", "user:", "temp:"

#: The file store's directory of an app's ADK state, in the app's agent directory.
ADK_DIR = "adk"
APP_FILE = "app.json"
INTENT_FILE = "intent.json"
#: The name of a user's state file in the agent's ``users`` directory (after the user hash).
USER_FILE = "adk.json"

#: The errors a store raises before it writes anything (so that an intent can go).
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

State = dict[str, Any]


def fingerprint(value: dict[str, Any]) -> str:
    """Return the SHA-256 of a payload's canonical JSON (the same from every store)."""
    return hashlib.sha256(payload.canonical(value).encode("utf-8")).hexdigest()


def session_key(user_id: str, session_id: str) -> str:
    """Return the external key of ADK session ``session_id`` of ``user_id``.

    ``adk:<len(user_id)>:<user_id>:<session_id>``: unambiguous for any two
    strings, and apart from the keys of other adapters.
    """
    return f"{KEY_PREFIX}{len(user_id)}:{user_id}:{session_id}"


def parse_key(key: str | None) -> tuple[str, str] | None:
    """Return ``(user_id, session_id)`` of an ADK session's key; ``None`` for any other key."""
    if key is None or not key.startswith(KEY_PREFIX):
        return None
    length, sep, rest = key[len(KEY_PREFIX) :].partition(":")
    if not sep or not length.isascii() or not length.isdigit():
        return None
    size = int(length)
    if len(rest) <= size or rest[size] != ":":
        return None
    return rest[:size], rest[size + 1 :]


def session_metadata(deltas: Deltas, last_update_time: float) -> dict[str, Any]:
    """Return the metadata of a new ADK session created with ``deltas``."""
    metadata: dict[str, Any] = {
        STATE_KEY: deltas.session,
        TIME_KEY: last_update_time,
        APPLIED_KEY: None,
    }
    if deltas.shared:
        metadata[CREATED_KEY] = {"app": deltas.app, "user": deltas.user}
    return metadata


def _fields(metadata: dict[str, Any]) -> tuple[State, float, str | None]:
    """Return the session state, update time and last applied entry kept in metadata."""
    state = metadata.get(STATE_KEY)
    updated = metadata.get(TIME_KEY)
    applied = metadata.get(APPLIED_KEY)
    return (
        dict(state) if isinstance(state, dict) else {},
        float(updated) if isinstance(updated, int | float) else 0.0,
        applied if isinstance(applied, str) else None,
    )


def session_delta(delta: dict[str, Any]) -> State:
    """Return the session-scoped keys of a stored event's ``state_delta``."""
    return {
        key: value
        for key, value in delta.items()
        if not key.startswith((APP_PREFIX, USER_PREFIX, TEMP_PREFIX))
    }


@dataclass(frozen=True, slots=True)
class Deltas:
    """An event's (or a creation's) state delta, split by scope, without prefixes."""

    session: State = field(default_factory=dict)
    app: State = field(default_factory=dict)
    user: State = field(default_factory=dict)

    @property
    def shared(self) -> bool:
        """Whether the delta changes app or user state."""
        return bool(self.app or self.user)


@dataclass(frozen=True, slots=True)
class Located:
    """A stored ADK session: its sessions_db ID, its state in each scope, its update time."""

    session_id: str
    state: State
    last_update_time: float
    app: State
    user: State


class AdkStore(ABC):
    """ADK sessions and their state on one kind of store, in a unit of work.

    Keeps a cache of the sessions_db ID of each session it found (a session's
    key never changes, and a deleted one is looked up again).
    """

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], str] = {}

    def forget(self, agent: str, key: str) -> None:
        """Drop the cached ID of a session (it was deleted)."""
        self._ids.pop((agent, key), None)

    def begin_read(self, uow: UnitOfWork) -> None:  # noqa: B027 - most stores need nothing
        """Make the reads that follow one consistent snapshot where that costs nothing."""

    def rebuild(self, app: str) -> bool:
        """Rebuild the app's shared state from its sessions; ``False``: nothing to rebuild.

        Only the file store derives it (its state files follow the events); on
        SQL it is written in each event's transaction.
        """
        return False

    @abstractmethod
    def find(self, uow: UnitOfWork, agent: str, key: str, user_id: str) -> Located | None:
        """Return the session with the agent's ``key`` and its merged scopes, or ``None``."""

    @abstractmethod
    def session_state(self, uow: UnitOfWork, meta: SessionMetadata) -> tuple[State, float]:
        """Return the session state and the exact update time of a listed session."""

    @abstractmethod
    def read(
        self, uow: UnitOfWork, app: str, users: Collection[str]
    ) -> tuple[State, dict[str, State]]:
        """Return the app's state and the state of each of ``users`` that has one."""

    @abstractmethod
    def create(
        self, uow: UnitOfWork, meta: SessionMetadata, user_id: str, deltas: Deltas, now: datetime
    ) -> tuple[State, State]:
        """Store a new session and its shared deltas; return the app and user state after.

        ``DuplicateKeyError`` if the agent has a session with its key.
        """

    @abstractmethod
    def append(
        self,
        uow: UnitOfWork,
        agent: str,
        key: str,
        user_id: str,
        entry: SessionEntry,
        deltas: Deltas,
        timestamp: float,
        now: datetime,
    ) -> str:
        """Append the event's entry with its deltas; return the session's sessions_db ID.

        ``SessionNotFoundError`` if the session is not stored.
        """


# -- SQL ---------------------------------------------------------------------------

APP_STATE = Base.metadata.tables[AdkAppStateRow.__tablename__]
USER_STATE = Base.metadata.tables[AdkUserStateRow.__tablename__]
SESSIONS = Base.metadata.tables[SessionRow.__tablename__]


def _sql(uow: UnitOfWork) -> SQLUnitOfWork:
    if not isinstance(uow, SQLUnitOfWork):  # pragma: no cover - chosen by the store
        raise TypeError(f"expected a SQL unit of work, not {type(uow).__name__}")
    return uow


def _jsonb(name: str) -> Any:
    return cast(bindparam(name, type_=Text), JSONB)


def _find_statement() -> Any:
    """Return the query of a session by key, with its app's and user's state."""
    s, a, u = SESSIONS.c, APP_STATE.c, USER_STATE.c
    app = select(a.state).where(a.agent_name == bindparam("agent")).scalar_subquery()
    user = (
        select(u.state)
        .where(u.agent_name == bindparam("agent"), u.user_id == bindparam("user"))
        .scalar_subquery()
    )
    return select(s.id, s.metadata, app.label("app"), user.label("user")).where(
        s.agent_name == bindparam("agent"), s.key == bindparam("key")
    )


def _pg_session_update() -> Any:
    """Set an appended event's session state, server-side (the row is already locked)."""
    stored = type_coerce(SESSIONS.c.metadata, JSONB)
    state = func.coalesce(stored.op("->")(STATE_KEY), cast("{}", JSONB)).op("||")(_jsonb("delta"))
    changes = func.jsonb_build_object(
        STATE_KEY, state, TIME_KEY, _jsonb("time"), APPLIED_KEY, _jsonb("entry")
    )
    return (
        update(SESSIONS)
        .where(SESSIONS.c.id == bindparam("sid"))
        .values({SESSIONS.c.metadata: stored.op("||")(changes)})
    )


FIND = _find_statement()
PG_SESSION_UPDATE = _pg_session_update()


class SQLAdkStore(AdkStore):
    """PostgreSQL and SQLite: everything of an append in its transaction (see the module)."""

    def begin_read(self, uow: UnitOfWork) -> None:
        """On SQLite, one read transaction (a snapshot of the WAL); PostgreSQL reads as it goes."""
        sql = _sql(uow)
        if sql.dialect == "sqlite":
            sql.begin()

    def find(self, uow: UnitOfWork, agent: str, key: str, user_id: str) -> Located | None:
        """Read the session and both shared states in one query."""
        params = {"agent": agent, "key": key, "user": user_id}
        row = _sql(uow).execute(FIND, params).first()
        if row is None:
            return None
        self._ids[(agent, key)] = row.id
        state, updated, _ = _fields(row.metadata)
        return Located(row.id, state, updated, dict(row.app or {}), dict(row.user or {}))

    def session_state(self, uow: UnitOfWork, meta: SessionMetadata) -> tuple[State, float]:
        """Return the state in the metadata: current (one transaction with the events)."""
        state, updated, _ = _fields(meta.metadata)
        return state, updated

    def read(
        self, uow: UnitOfWork, app: str, users: Collection[str]
    ) -> tuple[State, dict[str, State]]:
        """Read the app's row and the users' rows."""
        sql = _sql(uow)
        a, u = APP_STATE.c, USER_STATE.c
        row = sql.execute(select(a.state).where(a.agent_name == app)).first()
        app_state: State = dict(row.state) if row is not None else {}
        found: dict[str, State] = {}
        if users:
            stmt = select(u.user_id, u.state).where(
                u.agent_name == app, u.user_id.in_(sorted(set(users)))
            )
            found = {r.user_id: dict(r.state) for r in sql.execute(stmt)}
        return app_state, found

    def create(
        self, uow: UnitOfWork, meta: SessionMetadata, user_id: str, deltas: Deltas, now: datetime
    ) -> tuple[State, State]:
        """Insert the session and merge the shared deltas, in the unit's transaction."""
        sql = _sql(uow)
        sql.begin()
        sql.save_session(meta)
        self._merge_shared(sql, meta.agent_name, user_id, deltas, now)
        assert meta.key is not None
        self._ids[(meta.agent_name, meta.key)] = meta.id
        app_state, users = self.read(sql, meta.agent_name, [user_id])
        return app_state, users.get(user_id, {})

    def append(
        self,
        uow: UnitOfWork,
        agent: str,
        key: str,
        user_id: str,
        entry: SessionEntry,
        deltas: Deltas,
        timestamp: float,
        now: datetime,
    ) -> str:
        """Append (locking the session), set its state, merge the shared deltas."""
        sql = _sql(uow)
        sql.begin()
        session_id = self._ids.get((agent, key))
        for retry in (False, True):
            if session_id is None:
                session_id = sql.load_session_by_key(agent, key).id
            try:
                sql.append_entries(session_id, [entry], updated_at=now)
                break
            except SessionNotFoundError:  # deleted since it was cached: look it up again
                self.forget(agent, key)
                if retry:
                    raise
                session_id = None
        assert session_id is not None
        self._ids[(agent, key)] = session_id
        self._set_session_state(sql, session_id, deltas.session, timestamp, entry.id)
        self._merge_shared(sql, agent, user_id, deltas, now)
        return session_id

    def _set_session_state(
        self, sql: SQLUnitOfWork, session_id: str, delta: State, timestamp: float, entry_id: str
    ) -> None:
        if sql.dialect == "postgresql":
            params = {
                "sid": session_id,
                "delta": payload.dumps(delta),
                "time": payload.dumps(timestamp),
                "entry": payload.dumps(entry_id),
            }
            sql.execute(PG_SESSION_UPDATE, params)
            return
        # SQLite: the unit holds the database's write lock.
        row = sql.execute(select(SESSIONS.c.metadata).where(SESSIONS.c.id == session_id)).one()
        metadata = dict(row.metadata)
        state, _, _ = _fields(metadata)
        metadata.update({STATE_KEY: {**state, **delta}, TIME_KEY: timestamp, APPLIED_KEY: entry_id})
        text = bindparam(None, payload.dumps(metadata), type_=Text)
        sql.execute(update(SESSIONS).where(SESSIONS.c.id == session_id).values(metadata=text))

    def _merge_shared(
        self, sql: SQLUnitOfWork, agent: str, user_id: str, deltas: Deltas, now: datetime
    ) -> None:
        if deltas.app:
            self._merge(sql, APP_STATE, {"agent_name": agent}, deltas.app, now)
        if deltas.user:
            keys = {"agent_name": agent, "user_id": user_id}
            self._merge(sql, USER_STATE, keys, deltas.user, now)

    @staticmethod
    def _merge(
        sql: SQLUnitOfWork, table: Any, keys: dict[str, str], delta: State, now: datetime
    ) -> None:
        """Insert the row, or set each key of ``delta`` in its state (a shallow merge)."""
        if sql.dialect == "postgresql":
            text = bindparam(None, payload.dumps(delta), type_=Text)
            ins = postgresql.insert(table).values(**keys, state=cast(text, JSONB), updated_at=now)
            sql.execute(
                ins.on_conflict_do_update(
                    index_elements=list(keys),
                    set_={
                        # jsonb || jsonb: the right side's keys replace the left's, at
                        # the top level only, and a null is stored, as dict.update does.
                        "state": table.c.state.op("||")(ins.excluded.state),
                        "updated_at": ins.excluded.updated_at,
                    },
                )
            )
            return
        where = [table.c[name] == value for name, value in keys.items()]
        row = sql.execute(select(table.c.state).where(*where)).first()
        merged = {**(row.state if row is not None else {}), **delta}
        text = bindparam(None, payload.dumps(merged), type_=Text)
        ins_sqlite = sqlite.insert(table).values(**keys, state=text, updated_at=now)
        sql.execute(
            ins_sqlite.on_conflict_do_update(
                index_elements=list(keys),
                set_={"state": ins_sqlite.excluded.state, "updated_at": now},
            )
        )


# -- the file store ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """A change of shared state, and the stored record it comes with (an intent).

    ``entry_id`` is the event's entry in the session (``fingerprint``: that of its
    stored payload); ``None`` for the creation of the session.
    """

    session_id: str
    entry_id: str | None
    fingerprint: str | None
    user_id: str
    app: State
    user: State


class FileAdkStore(AdkStore):
    """The file store: the entries are the record of truth (see the module)."""

    def __init__(self, backend: FileBackend) -> None:
        super().__init__()
        self._backend = backend

    # -- sessions ---------------------------------------------------------------------

    def _lookup(self, uow: UnitOfWork, agent: str, key: str) -> SessionMetadata | None:
        cached = self._ids.get((agent, key))
        if cached is not None:
            try:
                meta = uow.load_session(cached)
            except SessionNotFoundError:
                self.forget(agent, key)
            else:
                if meta.key == key:
                    return meta
        try:
            meta = uow.load_session_by_key(agent, key)
        except SessionNotFoundError:
            return None
        self._ids[(agent, key)] = meta.id
        return meta

    def find(self, uow: UnitOfWork, agent: str, key: str, user_id: str) -> Located | None:
        """Find the session (cached ID, else a scan of the agent's sessions) and its state."""
        meta = self._lookup(uow, agent, key)
        if meta is None:
            return None
        state, updated = self.session_state(uow, meta)
        app_state, users = self.read(uow, agent, [user_id])
        return Located(meta.id, state, updated, app_state, users.get(user_id, {}))

    def session_state(self, uow: UnitOfWork, meta: SessionMetadata) -> tuple[State, float]:
        """Return the state in the metadata, completed from the entries appended after it."""
        state, updated, applied = _fields(meta.metadata)
        if meta.current_leaf is None or meta.current_leaf == applied:
            return state, updated
        entries = uow.load_entries(meta.id)
        start = 0
        for index, entry in enumerate(entries):
            if entry.id == applied:
                start = index + 1
        for entry in entries[start:]:
            if entry.type is not EntryType.MESSAGE:
                continue
            event = entry.data.get("payload") or {}
            actions = event.get("actions") or {}
            state.update(session_delta(actions.get("state_delta") or {}))
            timestamp = event.get("timestamp")
            if isinstance(timestamp, int | float):
                updated = float(timestamp)
        return state, updated

    def create(
        self, uow: UnitOfWork, meta: SessionMetadata, user_id: str, deltas: Deltas, now: datetime
    ) -> tuple[State, State]:
        """Create the session file; the shared deltas through an intent."""
        assert meta.key is not None
        change = Change(meta.id, None, None, user_id, deltas.app, deltas.user)
        if deltas.shared:
            with self._changing(meta.agent_name) as recorder:
                recorder.intend(change)
                uow.save_session(meta)
                recorder.apply(change)
        else:
            uow.save_session(meta)
        self._ids[(meta.agent_name, meta.key)] = meta.id
        app_state, users = self.read(uow, meta.agent_name, [user_id])
        return app_state, users.get(user_id, {})

    def append(
        self,
        uow: UnitOfWork,
        agent: str,
        key: str,
        user_id: str,
        entry: SessionEntry,
        deltas: Deltas,
        timestamp: float,
        now: datetime,
    ) -> str:
        """Lock the session, append the entry, then write its metadata and the shared state."""
        if not deltas.shared:
            return self._append(uow, agent, key, user_id, entry, deltas, timestamp, now, None)
        with self._changing(agent) as recorder:
            return self._append(uow, agent, key, user_id, entry, deltas, timestamp, now, recorder)

    def _append(
        self,
        uow: UnitOfWork,
        agent: str,
        key: str,
        user_id: str,
        entry: SessionEntry,
        deltas: Deltas,
        timestamp: float,
        now: datetime,
        recorder: _Recorder | None,
    ) -> str:
        meta = self._lock(uow, agent, key)
        state, _ = self.session_state(uow, meta)
        change = Change(
            meta.id, entry.id, fingerprint(entry.data["payload"]), user_id, deltas.app, deltas.user
        )
        if recorder is not None:
            recorder.intend(change)
        uow.append_entries(meta.id, [entry], updated_at=now)
        metadata = {
            **meta.metadata,
            STATE_KEY: {**state, **deltas.session},
            TIME_KEY: timestamp,
            APPLIED_KEY: entry.id,
        }
        uow.save_session(meta.model_copy(update={"metadata": metadata}))
        if recorder is not None:
            recorder.apply(change)
        return meta.id

    def _lock(self, uow: UnitOfWork, agent: str, key: str) -> SessionMetadata:
        """Hold the session's file against other writers; return it as it is now."""
        for _ in range(2):
            meta = self._lookup(uow, agent, key)
            if meta is None:
                break
            try:
                uow.lock_session(meta.id)
                meta = uow.load_session(meta.id)
            except SessionNotFoundError:  # deleted meanwhile
                self.forget(agent, key)
                continue
            return meta
        raise SessionNotFoundError("no such session")

    # -- shared state -----------------------------------------------------------------

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
    ) -> tuple[State, dict[str, State]]:
        """Read the state files (after applying a change a dead writer left, if any)."""
        with self._app_dir(app, create=False) as app_fd:
            if app_fd is None:
                return {}, {}
            with self._dir(app_fd, ADK_DIR, create=False) as adk_fd:
                if adk_fd is None:
                    return {}, {}
                with locked(adk_fd, shared=True):
                    if paths.lstat(INTENT_FILE, adk_fd) is None:
                        with suppress(_DamagedError):
                            return self._load(app_fd, adk_fd, users)
                with locked(adk_fd):
                    self._recover(app, app_fd, adk_fd)
                    try:
                        return self._load(app_fd, adk_fd, users)
                    except _DamagedError:
                        self._rebuild(app, app_fd, adk_fd)
                        return self._load(app_fd, adk_fd, users)

    @contextmanager
    def _changing(self, app: str) -> Iterator[_Recorder]:
        """Hold the app's ``adk`` directory lock (a dead writer's change is applied first)."""
        with self._app_dir(app, create=True) as app_fd:
            assert app_fd is not None
            with self._dir(app_fd, ADK_DIR, create=True) as adk_fd:
                assert adk_fd is not None
                with locked(adk_fd):
                    self._recover(app, app_fd, adk_fd)
                    recorder = _Recorder(app, app_fd, adk_fd, self)
                    try:
                        yield recorder
                    except NOTHING_WRITTEN:
                        # Refused before anything was stored: the intent goes (left, an
                        # intent for an event already stored under the same ID would
                        # apply its deltas again, later).
                        recorder.forget()
                        raise

    def _load(
        self, app_fd: int, adk_fd: int, users: Collection[str]
    ) -> tuple[State, dict[str, State]]:
        """Read the state files (``_DamagedError`` if one does not parse)."""
        app_state = _read_state(adk_fd, APP_FILE)
        found: dict[str, State] = {}
        if users:
            with self._dir(app_fd, paths.USERS, create=False) as users_fd:
                if users_fd is not None:
                    for user in set(users):
                        state = _read_state(users_fd, paths.user_file(user, USER_FILE))
                        if state:
                            found[user] = state
        return app_state, found

    def rebuild(self, app: str) -> bool:
        """Rewrite the app's state files from its sessions: their creation and event deltas.

        Each session's creation deltas, then every event's, across the app's
        sessions in timestamp order (then session and append order). Deleted
        sessions are gone, so their changes are not in the result. For state
        files that were lost or damaged; a damaged one is rebuilt on read.
        """
        with self._app_dir(app, create=False) as app_fd:
            if app_fd is None:
                return False
            with self._dir(app_fd, ADK_DIR, create=True) as adk_fd:
                assert adk_fd is not None
                with locked(adk_fd):
                    self._rebuild(app, app_fd, adk_fd)
        return True

    def _rebuild(self, app: str, app_fd: int, adk_fd: int) -> None:
        """See :meth:`rebuild` (hold the ``adk`` lock)."""
        changes: list[tuple[float, str, int, str, State, State]] = []
        for meta in self._backend.list_sessions(app):
            parsed = parse_key(meta.key)
            if parsed is None:
                continue
            user = parsed[0]
            created = meta.metadata.get(CREATED_KEY) or {}
            changes.append(
                (
                    meta.created_at.timestamp(),
                    meta.id,
                    -1,
                    user,
                    dict(created.get("app") or {}),
                    dict(created.get("user") or {}),
                )
            )
            try:
                entries = self._backend.load_entries(meta.id)
            except SessionNotFoundError:
                continue
            for seq, entry in enumerate(entries):
                if entry.type is not EntryType.MESSAGE:
                    continue
                event = entry.data.get("payload") or {}
                delta = (event.get("actions") or {}).get("state_delta") or {}
                stamp = event.get("timestamp")
                when = float(stamp) if isinstance(stamp, int | float) else 0.0
                app_part = _scoped(delta, APP_PREFIX)
                user_part = _scoped(delta, USER_PREFIX)
                if app_part or user_part:
                    changes.append((when, meta.id, seq, user, app_part, user_part))
        changes.sort(key=lambda c: (c[0], c[1], c[2]))
        app_state: State = {}
        users: dict[str, State] = {}
        for _, _, _, user, app_part, user_part in changes:
            app_state.update(app_part)
            if user_part:
                users.setdefault(user, {}).update(user_part)
        durable.replace(adk_fd, APP_FILE, payload.dumps({"state": app_state}).encode("utf-8"))
        users_fd = paths.open_dir(paths.USERS, app_fd, create=True)
        with opened(users_fd), locked(users_fd):
            for user, state in users.items():
                name = paths.user_file(user, USER_FILE)
                durable.replace(users_fd, name, payload.dumps({"state": state}).encode("utf-8"))
        with suppress(FileNotFoundError):
            os.unlink(INTENT_FILE, dir_fd=adk_fd)
        os.fsync(adk_fd)

    def _recover(self, app: str, app_fd: int, adk_fd: int) -> None:
        """Apply or drop the change a writer that died left in ``intent.json`` (hold the lock)."""
        raw = _read(adk_fd, INTENT_FILE)
        if raw is None:
            return
        try:
            change: Change | None = Change(**json.loads(raw))
        except (ValueError, TypeError):
            change = None  # cannot be: the intent is renamed into place whole
        if change is not None and self._stored(change):
            try:
                _apply(app_fd, adk_fd, change)
            except _DamagedError:
                self._rebuild(app, app_fd, adk_fd)  # the change's event is among the events
                return
        os.unlink(INTENT_FILE, dir_fd=adk_fd)
        os.fsync(adk_fd)

    def _stored(self, change: Change) -> bool:
        """Whether the record the change came with is in the session."""
        try:
            if change.entry_id is None:
                self._backend.load_session(change.session_id)
                return True
            found: Sequence[SessionEntry] = self._backend.load_branch(
                change.session_id, BranchQuery(leaf=change.entry_id, limit=1)
            )
        except (SessionNotFoundError, EntryNotFoundError):
            return False
        return bool(found) and fingerprint(found[-1].data.get("payload", {})) == change.fingerprint


class _Recorder:
    """Writes the intent of a change, then the change (under the ``adk`` lock)."""

    def __init__(self, app: str, app_fd: int, adk_fd: int, store: FileAdkStore) -> None:
        self._app = app
        self._app_fd = app_fd
        self._adk_fd = adk_fd
        self._store = store
        self._intended = False

    def intend(self, change: Change) -> None:
        durable.replace(self._adk_fd, INTENT_FILE, json.dumps(asdict(change)).encode("utf-8"))
        self._intended = True

    def apply(self, change: Change) -> None:
        try:
            _apply(self._app_fd, self._adk_fd, change)
        except _DamagedError:
            # The event is stored: the rebuild from the events includes its change.
            self._store._rebuild(self._app, self._app_fd, self._adk_fd)
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


def _merge(dir_fd: int, name: str, delta: State) -> None:
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


class _DamagedError(StorageError):
    """A state file does not parse (it is rebuilt from the events)."""


def _read_state(dir_fd: int, name: str) -> State:
    raw = _read(dir_fd, name)
    if raw is None:
        return {}
    try:
        state = json.loads(raw)["state"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _DamagedError(f"ADK state file {name} is damaged: {exc}") from None
    if not isinstance(state, dict):
        raise _DamagedError(f"ADK state file {name} is damaged: no state object")
    return state


def _scoped(delta: dict[str, Any], prefix: str) -> State:
    """Return the keys of ``delta`` with ``prefix``, without it."""
    return {k.removeprefix(prefix): v for k, v in delta.items() if k.startswith(prefix)}
