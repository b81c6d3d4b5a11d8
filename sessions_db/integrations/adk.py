"""Google ADK sessions kept in sessions_db: :class:`SessionsDBSessionService`.

Install with ``pip install 'sessions_db[adk]'``. The class is an ADK
``BaseSessionService``, so it goes wherever ADK takes one; switching from ADK's
``DatabaseSessionService`` is one line::

    from sessions_db.integrations.adk import SessionsDBSessionService

    session_service = SessionsDBSessionService("postgresql://app@db/app")
    runner = Runner(app_name="my_app", agent=agent, session_service=session_service)

A PostgreSQL database is migrated once (``sessions-db migrate --url ...``, or
``sessions_db.aio.connect(url, migrate=True)`` passed as ``manager=``); SQLite
files and ``file://`` directories are prepared on open.

**How sessions map.** An ADK app is a sessions_db agent (``agent_name`` is the
app name); an ADK session is the sessions_db session of that agent whose
external key is ``adk:<length of the user ID>:<user ID>:<session ID>``
(:func:`session_key`): the length prefix keeps ``("a:b", "c")`` and
``("a", "b:c")`` apart, and the ``adk:`` prefix keeps the sessions of other
adapters apart. The session's ``user_id`` is the ADK user ID (none for an
empty or blank one), so :meth:`~sessions_db.Manager.erase_user` and
per-user listing work on them. A session created without an ID takes its
sessions_db session ID (a UUID) as its ADK ID. IDs are stripped, as ADK's
``InMemorySessionService`` does (``"order-42 "`` is ``"order-42"``; a blank
one gets a generated ID).

**How events are stored.** One message per event, in the order they were
appended: ``Message.type`` (the ``role`` column) is the event's author (``user``
or the agent's name; ``adk`` when the author is empty or cannot be a role), the
payload is the event's exact dump (``event.model_dump(mode="json",
exclude_none=True)``: content parts, function calls and responses, actions,
invocation ID, the float timestamp), and the message ID is the event ID. On
PostgreSQL the payload is ``jsonb``, so events can be queried with plain SQL.
``get_session`` returns ``Event.model_validate(payload)`` of each, equal to the
event appended.

**State.** ADK's scopes are kept apart as ADK keeps them: session keys in the
session's metadata (``adk_state``, with ``adk_last_update_time``, the exact
float), ``app:`` keys in ``sessions_db_adk_app_state`` and ``user:`` keys in
``sessions_db_adk_user_state`` (without their prefixes), ``temp:`` keys
nowhere: they are set on the caller's live ``Session`` and removed from the
event, as ADK does. An event's append, its session state, and its app and user
state are one transaction on the SQL stores; on the file store the event entry,
which carries its delta, is the record of truth and the state files follow it
(see :mod:`sessions_db.integrations._adk_state`): a change a crash interrupted
is applied, from the stored event, by the next reader or writer of the app's
state, so a read always sees every stored event's change; a session's own
state, written to its file right after its event, is completed the same way
from its entries on read; and state files that were lost or damaged are
rebuilt from the sessions' creation state and events (:meth:`rebuild_state`,
and by itself on reading a damaged file).

**No stale sessions.** Appends to one session are serialized by the store (the
session's row lock on PostgreSQL, SQLite's write lock, the session file's lock):
any number of tasks, each with its own ``Session`` object, all land exactly
once, in one order, each with its state delta, and never raise ADK's
``StaleSessionError``. The caller's ``Session`` is updated as ADK's
``InMemorySessionService`` updates it (the event appended, its state delta
applied, ``last_update_time`` set to the event's timestamp); it is not refreshed
with other writers' events.

**Semantics.** Where ADK's ``InMemorySessionService`` and
``DatabaseSessionService`` differ, this service follows the in-memory one:

* session IDs are stripped (the database service keeps ``" s1 "`` as another session);
* events come back in the order they were appended (the database service
  orders them by timestamp, then event ID);
* ``after_timestamp`` keeps the events after the newest one older than it
  (walking back from the newest, inclusive: with timestamps that only grow,
  exactly the events at or after it; the database service takes every event at
  or after it, and ignores ``after_timestamp=0.0``);
* an equal re-delivery of a stored event (same ID, equal fields) is stored
  once and its delta applied once; a different event reusing an ID is stored
  as well (the database service raises an integrity error);
* a writer holding an older copy of the session is accepted (the database
  service raises ``StaleSessionError``).

``get_session`` reads only what it returns: ``num_recent_events`` reads the
newest events of the session's branch (``num_recent_events=0`` reads none),
and ``after_timestamp`` walks back from the newest in pages. ``list_sessions``
returns the sessions of an app (and user) oldest update first, ordered by
``(last_update_time, user_id, id)``, with their merged state and no events.
Errors are ADK's: ``AlreadyExistsError`` for a duplicate ID,
``SessionNotFoundError`` (a ``ValueError``) for an append to a missing session;
IDs that cannot be stored (an app name that is not a sessions_db agent name, a
user ID over 255 characters or with control characters, a key over 1,024
characters) raise ``ValueError`` on create and append, and find nothing on reads.

**Limits.** Encrypted stores are refused (the state tables would hold state in
clear). A redactor configured on the manager rewrites event payloads before
they are stored, so redacted events read back redacted. Values sessions_db
cannot store (NaN, NUL characters) raise :class:`~sessions_db.PayloadError`
and store nothing.

The sessions written are ordinary sessions_db sessions: the ``sessions-db``
command, checkpoints, forks and analytics work on them.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import Any, Self, TypeVar

try:
    from google.adk.errors.already_exists_error import AlreadyExistsError
    from google.adk.errors.session_not_found_error import (
        SessionNotFoundError as AdkSessionNotFoundError,
    )
    from google.adk.events.event import Event
    from google.adk.sessions import _session_util
    from google.adk.sessions.base_session_service import (
        BaseSessionService,
        GetSessionConfig,
        ListSessionsResponse,
    )
    from google.adk.sessions.session import Session
    from google.adk.sessions.state import State
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "sessions_db.integrations.adk needs Google ADK: pip install 'sessions_db[adk]'"
    ) from exc

from .. import ids, payload, rules
from ..aio.connect import connect
from ..aio.manager import AsyncManager
from ..aio.sql import AsyncSQLBackend
from ..aio.threaded import ThreadedBackend
from ..errors import (
    ConfigurationError,
    DuplicateEntryError,
    DuplicateKeyError,
    InvalidIDError,
    SessionNotFoundError,
    StorageClosedError,
)
from ..file.backend import FileBackend
from ..manager import Manager
from ..sql.backend import SQLBackend
from ..storage import BranchQuery, UnitOfWork, Work
from ..types import MAX_ROLE, EntryType, Message, utcnow
from ._adk_state import (
    KEY_PREFIX,
    AdkStore,
    Deltas,
    FileAdkStore,
    SQLAdkStore,
    parse_key,
    session_key,
    session_metadata,
)

__all__ = [
    "KEY_PREFIX",
    "OTHER_AUTHOR",
    "SessionsDBSessionService",
    "parse_key",
    "session_key",
]

#: ``Message.type`` of an event whose author cannot be a message type (empty, too long).
OTHER_AUTHOR = "adk"
#: How many events a walk back for ``after_timestamp`` reads first (then twice as many).
_FIRST_PAGE = 32

T = TypeVar("T")


def _role(author: str) -> str:
    if 0 < len(author) <= MAX_ROLE and author.isprintable():
        return author
    return OTHER_AUTHOR


def _when(timestamp: float) -> datetime:
    """Return the event's time as a datetime (the float in the payload stays the truth)."""
    try:
        return datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError):
        return utcnow()


def _merged(
    session_state: dict[str, Any], app_state: dict[str, Any], user_state: dict[str, Any]
) -> dict[str, Any]:
    """ADK's merged view: the session's keys, then ``app:`` keys, then ``user:`` keys."""
    state = dict(session_state)
    for key, value in app_state.items():
        state[State.APP_PREFIX + key] = value
    for key, value in user_state.items():
        state[State.USER_PREFIX + key] = value
    return state


@dataclass(frozen=True, slots=True)
class _Names:
    """The checked names of one ADK session: agent, key and the sessions_db owner."""

    agent: str
    user_id: str
    owner: str | None
    session_id: str
    key: str


class _MissingError(LookupError):
    """The session of an append is not stored (ADK's ``SessionNotFoundError`` outside)."""


@dataclass(frozen=True, slots=True)
class _Found:
    """A session as read: its ADK names, state, events (stored payloads) and update time."""

    user_id: str
    session_id: str
    state: dict[str, Any]
    last_update_time: float
    events: list[dict[str, Any]]


class SessionsDBSessionService(BaseSessionService):
    """An ADK ``BaseSessionService`` on a sessions_db store (see the module).

    Give it a store URL (``postgresql://...``, ``sqlite:///...``,
    ``file:///...``; ``None``: the configured store, as
    :func:`sessions_db.connect` reads it), opened on first use and closed by
    :meth:`close`; or a ``manager`` (an :class:`~sessions_db.aio.AsyncManager`
    or a :class:`~sessions_db.Manager`) that the caller owns. The store must be
    a SQL store or the file store, without encryption.
    """

    def __init__(
        self, url: str | None = None, *, manager: AsyncManager | Manager | None = None
    ) -> None:
        if url is not None and manager is not None:
            raise ValueError("give a url or a manager, not both")
        self._url = url
        self._manager: AsyncManager | Manager | None = manager
        self._owns = manager is None
        self._store: AdkStore | None = None
        self._opening: asyncio.Lock | None = None
        self._closed = False

    # -- the store ------------------------------------------------------------------

    @property
    def manager(self) -> AsyncManager | Manager | None:
        """The manager the service stores through (``None`` until a URL is opened)."""
        return self._manager

    async def _ready(self) -> tuple[AsyncManager | Manager, AdkStore]:
        if self._closed:
            raise StorageClosedError("the ADK session service is closed")
        if self._manager is None or self._store is None:
            if self._opening is None:
                self._opening = asyncio.Lock()
            async with self._opening:
                if self._manager is None:
                    self._manager = await connect(self._url)
                if self._store is None:
                    self._store = _store_of(self._manager)
        return self._manager, self._store

    async def _run(self, manager: AsyncManager | Manager, work: Work[T], *, write: bool) -> T:
        if isinstance(manager, AsyncManager):
            return await manager.run(work, write=write)
        return await asyncio.to_thread(manager.run, work, write=write)

    async def close(self) -> None:
        """Close the store if the service opened it (not a manager it was given). Idempotent."""
        if self._closed:
            return
        self._closed = True
        manager = self._manager
        if self._owns and manager is not None:
            if isinstance(manager, AsyncManager):
                await manager.close()
            else:
                await asyncio.to_thread(manager.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- names ----------------------------------------------------------------------

    @staticmethod
    def _names(app_name: str, user_id: str, session_id: str) -> _Names:
        """Check the names of a session; ``ValueError`` if they cannot be stored."""
        try:
            agent = ids.agent_name(app_name)
            owner = ids.owner(user_id)
            key = ids.session_key(session_key(user_id, session_id))
        except InvalidIDError as exc:
            raise ValueError(f"cannot store this ADK session: {exc}") from None
        return _Names(agent, user_id, owner, session_id, key)

    @classmethod
    def _lookup(cls, app_name: str, user_id: str, session_id: str) -> _Names | None:
        """Return the names of a session to read; ``None`` when no stored session has them."""
        try:
            return cls._names(app_name, user_id, session_id)
        except ValueError:
            return None

    # -- BaseSessionService -----------------------------------------------------------

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        """Create a session (``AlreadyExistsError`` if the user has one with ``session_id``).

        ``state`` is split by scope: ``app:`` and ``user:`` keys update the
        shared state, ``temp:`` keys are dropped, the rest is the session's.
        The session returned holds the merged state of all three scopes.
        """
        manager, store = await self._ready()
        given = (session_id.strip() if session_id else None) or None
        deltas = _deltas(state or {}, "state")
        created = time.time()
        self._names(app_name, user_id, given or ids.new_id())  # before anything is stored
        work = partial(
            self._create_work,
            app_name=app_name,
            user_id=user_id,
            given=given,
            deltas=deltas,
            created=created,
            store=store,
            manager=manager,
        )
        try:
            adk_id, merged = await self._run(manager, work, write=True)
        except DuplicateKeyError:
            raise AlreadyExistsError(f"Session with id {given} already exists.") from None
        return Session(
            id=adk_id,
            app_name=app_name,
            user_id=user_id,
            state=merged,
            events=[],
            last_update_time=created,
        )

    def _create_work(
        self,
        uow: UnitOfWork,
        *,
        app_name: str,
        user_id: str,
        given: str | None,
        deltas: Deltas,
        created: float,
        store: AdkStore,
        manager: AsyncManager | Manager,
    ) -> tuple[str, dict[str, Any]]:
        uow.begin()
        metadata = session_metadata(deltas, created)
        meta = rules.new_session(app_name, ids.owner(user_id), metadata, manager.clock)
        names = self._names(app_name, user_id, given or meta.id)
        meta = meta.model_copy(update={"key": names.key})
        app_state, user_state = store.create(uow, meta, user_id, deltas, manager.clock())
        return names.session_id, _merged(deltas.session, app_state, user_state)

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> Session | None:
        """Return the session with its merged state and its events, or ``None``.

        ``config.num_recent_events`` keeps the newest N events (0: none, and
        none are read); ``config.after_timestamp`` keeps the events after the
        newest one older than it (see the module).
        """
        manager, store = await self._ready()
        names = self._lookup(app_name, user_id, session_id.strip() if session_id else "")
        if names is None:
            return None
        limit = config.num_recent_events if config is not None else None
        after = config.after_timestamp if config is not None else None
        work = partial(self._get_work, names=names, limit=limit, after=after, store=store)
        found = await self._run(manager, work, write=False)
        if found is None:
            return None
        return Session(
            id=found.session_id,
            app_name=app_name,
            user_id=user_id,
            state=found.state,
            events=[Event.model_validate(event) for event in found.events],
            last_update_time=found.last_update_time,
        )

    def _get_work(
        self,
        uow: UnitOfWork,
        *,
        names: _Names,
        limit: int | None,
        after: float | None,
        store: AdkStore,
    ) -> _Found | None:
        store.begin_read(uow)
        found = store.find(uow, names.agent, names.key, names.user_id)
        if found is None:
            return None
        events = [] if limit == 0 else self._events(uow, found.session_id, limit, after)
        merged = _merged(found.state, found.app, found.user)
        return _Found(names.user_id, names.session_id, merged, found.last_update_time, events)

    @staticmethod
    def _events(
        uow: UnitOfWork, session_id: str, limit: int | None, after: float | None
    ) -> list[dict[str, Any]]:
        """Read the newest ``limit`` events (``None``: all), back to one older than ``after``."""
        if after is None:
            query = BranchQuery(messages_only=True, limit=limit)
            return [m.payload for m in uow.load_messages(session_id, query)]
        kept: list[dict[str, Any]] = []
        before: str | None = None
        page = _FIRST_PAGE
        while True:
            want = page if limit is None else min(page, limit - len(kept))
            older: list[Message] = uow.load_messages(
                session_id, BranchQuery(before=before, messages_only=True, limit=want)
            )
            for message in reversed(older):
                timestamp = message.payload.get("timestamp")
                if isinstance(timestamp, int | float) and timestamp < after:
                    kept.reverse()
                    return kept
                kept.append(message.payload)
            if len(older) < want or (limit is not None and len(kept) >= limit):
                kept.reverse()
                return kept
            before = older[0].id
            page *= 2

    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        """Return the app's sessions (of ``user_id``; all users' for ``None``), without events.

        Each holds its merged state; they are ordered by ``(last_update_time,
        user_id, id)``, oldest first, as ADK orders them.
        """
        manager, store = await self._ready()
        try:
            agent = ids.agent_name(app_name)
            owner = None if user_id is None else ids.owner(user_id)
        except InvalidIDError:
            return ListSessionsResponse()
        work = partial(self._list_work, agent=agent, user_id=user_id, owner=owner, store=store)
        found = await self._run(manager, work, write=False)
        sessions = [
            Session(
                id=item.session_id,
                app_name=app_name,
                user_id=item.user_id,
                state=item.state,
                events=[],
                last_update_time=item.last_update_time,
            )
            for item in found
        ]
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    def _list_work(
        self,
        uow: UnitOfWork,
        *,
        agent: str,
        user_id: str | None,
        owner: str | None,
        store: AdkStore,
    ) -> list[_Found]:
        store.begin_read(uow)
        listed: list[tuple[str, str, dict[str, Any], float]] = []
        for meta in uow.list_sessions(agent, user_id=owner):
            parsed = parse_key(meta.key)
            if parsed is None or (user_id is not None and parsed[0] != user_id):
                continue
            state, updated = store.session_state(uow, meta)
            listed.append((*parsed, state, updated))
        app_state, users = store.read(uow, agent, {uid for uid, _, _, _ in listed})
        return [
            _Found(uid, sid, _merged(state, app_state, users.get(uid, {})), updated, [])
            for uid, sid, state, updated in listed
        ]

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session and its events (nothing if there is none).

        The app and user state stay, as in ADK.
        """
        manager, store = await self._ready()
        names = self._lookup(app_name, user_id, session_id.strip() if session_id else "")
        if names is None:
            return

        def work(uow: UnitOfWork) -> None:
            uow.begin()
            store.forget(names.agent, names.key)
            with suppress(SessionNotFoundError):  # none, or deleted meanwhile
                uow.delete_session(uow.load_session_by_key(names.agent, names.key).id)

        await self._run(manager, work, write=True)

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """Return the user's state in the app, keys without the ``user:`` prefix (``{}``: none)."""
        manager, store = await self._ready()
        try:
            agent = ids.agent_name(app_name)
        except InvalidIDError:
            return {}

        def work(uow: UnitOfWork) -> dict[str, Any]:
            store.begin_read(uow)
            _, users = store.read(uow, agent, [user_id])
            return users.get(user_id, {})

        return await self._run(manager, work, write=False)

    async def rebuild_state(self, app_name: str) -> None:
        """Rebuild the app's ``app:`` and ``user:`` state from its stored sessions and events.

        For the file store, whose state files follow the events, after they were
        lost or edited by hand (a damaged one is rebuilt on read by itself):
        each session's creation state, then every event's delta, in timestamp
        order across the app's sessions. Changes made by sessions deleted since
        are not in the result. On SQL stores, where the state is written in each
        event's transaction, there is nothing to rebuild, and nothing is done.
        """
        _, store = await self._ready()
        app = ids.agent_name(app_name)
        if isinstance(store, FileAdkStore):
            await asyncio.to_thread(store.rebuild, app)

    async def append_event(self, session: Session, event: Event) -> Event:
        """Append the event to the session, with its state delta, in one transaction.

        A partial event is returned untouched. ``temp:`` keys of its delta go
        to the caller's ``session.state`` only and are removed from the event;
        the caller's ``session`` gets the event and its delta, and
        ``last_update_time`` becomes the event's timestamp. ADK's
        ``SessionNotFoundError`` if the session is not stored.
        """
        if event.partial:
            return event
        manager, store = await self._ready()
        names = self._names(session.app_name, session.user_id, session.id)
        delta = (event.actions.state_delta if event.actions else None) or {}
        kept = {k: v for k, v in delta.items() if not k.startswith(State.TEMP_PREFIX)}
        stored = event
        if len(kept) != len(delta):
            actions = event.actions.model_copy(update={"state_delta": kept})
            stored = event.model_copy(update={"actions": actions})
        deltas = _deltas(kept, "state delta")
        dumped = stored.model_dump(mode="json", exclude_none=True)
        message_id = event.id if _entry_id(event.id) else ids.new_id()
        for attempt in range(2):
            message = Message.new(
                _role(event.author), dumped, id=message_id, timestamp=_when(event.timestamp)
            )
            work = partial(
                self._append_work,
                names=names,
                message=message,
                deltas=deltas,
                timestamp=event.timestamp,
                store=store,
                manager=manager,
            )
            try:
                await self._run(manager, work, write=True)
                break
            except _MissingError:
                raise AdkSessionNotFoundError(f"Session {session.id} not found.") from None
            except DuplicateEntryError:
                if attempt:
                    raise
            # The event ID is already in the session: an equal event is this one
            # delivered again (stored once); a different one is stored as well.
            same = partial(self._stored_equal, names=names, entry_id=message_id, event=event)
            if await self._run(manager, same, write=False):
                return event
            message_id = ids.new_id()
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        commit = getattr(self, "_commit_event_to_session", None)
        if commit is not None:
            commit(session, event)
        else:  # pragma: no cover - ADK before 2.10
            self._update_session_state(session, event)
            session.events.append(event)
        session.last_update_time = event.timestamp
        return event

    def _append_work(
        self,
        uow: UnitOfWork,
        *,
        names: _Names,
        message: Message,
        deltas: Deltas,
        timestamp: float,
        store: AdkStore,
        manager: AsyncManager | Manager,
    ) -> None:
        uow.begin()
        (entry,) = rules.message_entries([message], manager.privacy)
        now = manager.clock()
        try:
            session_id = store.append(
                uow, names.agent, names.key, names.user_id, entry, deltas, timestamp, now
            )
        except SessionNotFoundError:
            raise _MissingError from None
        interval = manager.auto_checkpoint
        if interval is not None:
            uow.commit()
            rules.auto_checkpoint_due(uow, session_id, interval, now, manager.privacy)

    @staticmethod
    def _stored_equal(uow: UnitOfWork, *, names: _Names, entry_id: str, event: Event) -> bool:
        """Whether the session's entry ``entry_id`` records an event equal to ``event``."""
        try:
            meta = uow.load_session_by_key(names.agent, names.key)
            (entry,) = uow.load_branch(meta.id, BranchQuery(leaf=entry_id, limit=1))
        except (SessionNotFoundError, ValueError):
            return False
        if entry.type is not EntryType.MESSAGE:
            return False
        try:
            return bool(Event.model_validate(entry.data["payload"]) == event)
        except ValueError:
            return False


def _deltas(state: dict[str, Any], what: str) -> Deltas:
    """Split ``state`` by scope (``temp:`` dropped), JSON-safe as ADK stores it."""
    split = _session_util.extract_json_safe_state_delta(state)
    payload.check(split, what)
    return Deltas(session=split["session"], app=split["app"], user=split["user"])


def _entry_id(value: str) -> bool:
    try:
        ids.entry_id(value)
    except InvalidIDError:
        return False
    return True


def _store_of(manager: AsyncManager | Manager) -> AdkStore:
    """Return how the manager's store keeps ADK sessions; refuse the stores it cannot use."""
    if manager.privacy.encrypted:
        raise ConfigurationError(
            "the ADK session service does not support encrypted stores: "
            "its app and user state would be stored in clear"
        )
    backend: object = manager.backend
    if isinstance(backend, ThreadedBackend):
        backend = backend.backend
    if isinstance(backend, AsyncSQLBackend | SQLBackend):
        return SQLAdkStore()
    if isinstance(backend, FileBackend):
        return FileAdkStore(backend)
    raise ConfigurationError(
        f"the ADK session service needs a SQL store or the file store, not {type(backend).__name__}"
    )
