"""OpenAI Agents SDK sessions kept in sessions_db: :class:`SessionsDBSession`.

Install with ``pip install sessions_db[openai-agents]``. The class implements
the SDK's session protocol (``agents.memory.Session``: ``session_id``,
``session_settings``, ``get_items``, ``add_items``, ``pop_item`` and
``clear_session``), so it goes wherever the SDK takes a session::

    from agents import Agent, Runner
    from sessions_db.integrations.openai_agents import SessionsDBSession

    session = SessionsDBSession("user:42/chat#1", url="postgresql://app@db/app")
    result = await Runner.run(agent, "Hello", session=session)

**How the session ID maps.** An SDK session ID (any non-empty string of up to
1,024 characters: ``"user:42/chat#1"``, non-ASCII text) is the *external key*
of one sessions_db session of the agent named ``agent_name`` (default
``"openai-agents"``): the pair (``agent_name``, ``session_id``) names it, in
SQL ``sessions_db_sessions.agent_name`` and ``sessions_db_sessions.key``, and
``await manager.get_by_key(agent_name, session_id)`` returns it. It is created
(for ``user_id``) on the first ``add_items``; reading an ID that was never
written creates nothing.

**How items are stored.** One message per item, in order: ``Message.type`` is
the item's role for messages (``user``, ``assistant``, ``system``,
``developer``) and its ``type`` for every other item (``function_call``,
``function_call_output``, ``reasoning``, ...; see :func:`item_type`); the
payload is the item itself, every key kept (the SDK's own ``provider_data``
and ``_agents_*`` keys too). On PostgreSQL the payload is ``jsonb``, so the
items can be queried with plain SQL.

The sessions written are ordinary sessions_db sessions: the sync API, the
``sessions-db`` command, checkpoints, restore and fork all work on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar, cast

from agents.items import TResponseInputItem
from agents.memory.session_settings import (
    SessionSettings,
    coerce_session_settings,
    resolve_session_limit,
)

from .. import ids
from ..aio.connect import connect
from ..aio.manager import AsyncManager, AsyncSession
from ..errors import SessionNotFoundError, StorageClosedError
from ..types import MAX_ROLE, Message

__all__ = ["DEFAULT_AGENT_NAME", "SessionsDBSession", "item_type"]

#: The agent name the sessions are kept under unless one is given.
DEFAULT_AGENT_NAME = "openai-agents"

#: ``Message.type`` of an item that has neither a usable role nor a usable ``type``.
OTHER_ITEM = "item"

T = TypeVar("T")


def _usable(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ROLE and value.isprintable()


def item_type(item: Mapping[str, Any]) -> str:
    """Return the ``Message.type`` an SDK item is stored under.

    A message (a ``role`` and no ``type``, or ``type`` ``"message"``) gives its
    role: ``user``, ``assistant``, ``system`` or ``developer``. Any other item
    gives its ``type``: ``function_call``, ``function_call_output``,
    ``reasoning``, ``computer_call``, ``mcp_call``, ... An item reference
    without a ``type`` (``{"id": "msg_1"}``) gives ``item_reference``, and an
    item with neither (or with one that cannot be a message type: longer than
    64 characters, or with control characters) gives ``item``.
    """
    role = item.get("role")
    kind = item.get("type")
    if kind in (None, "message") and _usable(role):
        return cast(str, role)
    if _usable(kind):
        return cast(str, kind)
    if kind is None and "id" in item and set(item) <= {"id", "type"}:
        return "item_reference"
    return OTHER_ITEM


class SessionsDBSession:
    """An OpenAI Agents SDK session stored in sessions_db (PostgreSQL, SQLite or files).

    Give the store one way: ``url`` (opened on first use, closed by
    :meth:`close`), ``manager`` (an :class:`~sessions_db.aio.AsyncManager` that
    is shared: its pool serves every session built on it, and :meth:`close`
    leaves it open), or neither: then ``sessions_db.aio.connect()`` opens the
    configured store (``SESSIONS_DB_CONFIG``, ``SESSIONS_DB_URL``, ...) on
    first use. ``agent_name`` and ``session_id`` name the sessions_db session
    (see the module's documentation); ``user_id`` is its owner: a session ID
    already used by another user of the same agent raises
    :class:`~sessions_db.SessionNotFoundError`. ``session_settings`` (a
    ``SessionSettings`` or a dict such as ``{"limit": 50}``) is the SDK's: its
    ``limit`` bounds what ``get_items()`` returns, and the ``Runner`` reads it.

    Any number of tasks of one event loop may share an instance. The SDK's
    ``Runner`` uses only the four protocol methods; :meth:`sessions_db_session`
    gives the sessions_db session behind them (checkpoints, restore, fork, info).
    """

    session_id: str
    """The SDK's session ID: the external key of the sessions_db session."""

    session_settings: SessionSettings | None
    """The SDK's session settings; ``limit`` is the default of ``get_items()``."""

    agent_name: str
    """The sessions_db agent the session is kept under."""

    user_id: str | None
    """The owner of the session (``None``: no user, and no ownership check)."""

    def __init__(
        self,
        session_id: str,
        *,
        url: str | None = None,
        manager: AsyncManager | None = None,
        agent_name: str = DEFAULT_AGENT_NAME,
        user_id: str | None = None,
        session_settings: SessionSettings | Mapping[str, Any] | None = None,
    ) -> None:
        if url is not None and manager is not None:
            raise ValueError("give url or manager, not both")
        if manager is not None and not isinstance(manager, AsyncManager):
            raise TypeError(
                "manager must be a sessions_db.aio.AsyncManager (the SDK's sessions are "
                f"async), not {type(manager).__name__}"
            )
        self.session_id = ids.session_key(session_id)
        self.agent_name = ids.agent_name(agent_name)
        self.user_id = ids.owner(user_id)
        self.session_settings = (
            SessionSettings()
            if session_settings is None
            else coerce_session_settings(
                session_settings
                if isinstance(session_settings, SessionSettings)
                else dict(session_settings)
            )
        )
        self._url = url
        self._manager = manager
        self._owns_manager = manager is None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: AsyncSession | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    def from_url(
        cls,
        session_id: str,
        *,
        url: str,
        agent_name: str = DEFAULT_AGENT_NAME,
        user_id: str | None = None,
        session_settings: SessionSettings | Mapping[str, Any] | None = None,
    ) -> Self:
        """Return a session on the store at ``url`` (``postgresql://``, ``sqlite:///``, ``file:///``).

        The store is opened on first use and closed by :meth:`close`; as
        ``SQLAlchemySession.from_url`` does, this does no I/O.
        """
        return cls(
            session_id,
            url=url,
            agent_name=agent_name,
            user_id=user_id,
            session_settings=session_settings,
        )

    # -- the SDK's session protocol ---------------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """Return the session's items, oldest first: all, or the newest ``limit``.

        Without ``limit``, ``session_settings.limit`` applies (``None``: all).
        Only the items returned are read. ``limit=0`` returns ``[]``; a
        negative limit returns every item, as the SDK's ``SQLiteSession`` does.
        """
        self._check_usable()
        effective = resolve_session_limit(limit, self.session_settings)
        if effective == 0:
            return []
        cap = None if effective is None or effective < 0 else effective

        async def read(handle: AsyncSession) -> list[Message]:
            return await handle.get_messages(limit=cap)

        nothing: list[Message] = []
        messages = await self._on_session(read, create=False, absent=nothing)
        return [cast(TResponseInputItem, message.payload) for message in messages]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` in order, as one append: all of them are stored, or none.

        One statement on PostgreSQL, whatever the number of items (the first
        call of an instance also finds or creates the session). An item that
        cannot be stored faithfully (a NUL character, a lone surrogate, NaN, an
        object that is not JSON) raises :class:`~sessions_db.PayloadError` and
        nothing is stored.
        """
        self._check_usable()
        if not items:
            return
        messages = [
            Message.new(item_type(item), cast(dict[str, Any], item)) for item in list(items)
        ]

        async def append(handle: AsyncSession) -> None:
            await handle.append_messages(messages)

        await self._on_session(append, create=True, absent=None)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove the newest item and return it; ``None`` when the session is empty.

        Atomic: two concurrent pops (from any number of instances or
        processes) never return the same item. Nothing is deleted from the
        store; a ``pop`` event ends the current branch before the item.
        """
        self._check_usable()

        async def pop(handle: AsyncSession) -> Message | None:
            return await handle.pop_message()

        message = await self._on_session(pop, create=False, absent=None)
        return None if message is None else cast(TResponseInputItem, message.payload)

    async def clear_session(self) -> None:
        """Remove every item: ``get_items()`` returns ``[]`` until items are added again.

        The sessions_db session stays, with its key, its checkpoints and its
        earlier branches (a checkpoint restores them); to delete it, call
        ``delete`` on the manager with :meth:`sessions_db_session`'s ``id``.
        """
        self._check_usable()

        async def clear(handle: AsyncSession) -> None:
            await handle.clear()

        await self._on_session(clear, create=False, absent=None)

    # -- sessions_db -------------------------------------------------------------------

    async def sessions_db_session(self) -> AsyncSession:
        """Return the sessions_db session behind this one, creating it if it does not exist yet.

        For what the protocol has no method for: ``checkpoint()``,
        ``restore()``, ``fork()``, ``info()``, ``update_metadata()``.
        """
        self._check_usable()
        handle = await self._resolve(create=True)
        assert handle is not None
        return handle

    async def get_manager(self) -> AsyncManager:
        """Return the :class:`~sessions_db.aio.AsyncManager` in use, opening it if need be."""
        self._check_usable()
        async with self._lock:
            return await self._open_manager()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    async def close(self) -> None:
        """Release the session; close the store if this instance opened it. Idempotent.

        A shared ``manager`` stays open. Later calls raise
        :class:`~sessions_db.StorageClosedError`.
        """
        if self._closed:
            return
        self._closed = True
        handle, self._handle = self._handle, None
        if handle is not None:
            await handle.close()
        if self._owns_manager and self._manager is not None:
            await self._manager.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(session_id={self.session_id!r}, "
            f"agent_name={self.agent_name!r}, user_id={self.user_id!r})"
        )

    # -- internals ---------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise StorageClosedError(f"session {self.session_id!r} is closed")
        if self._owns_manager and self._loop is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not self._loop:
                raise RuntimeError(
                    "this SessionsDBSession opened its store on another event loop; "
                    "make one per event loop, or pass manager= an AsyncManager of this loop"
                )

    async def _open_manager(self) -> AsyncManager:
        # Under self._lock.
        if self._manager is None:
            self._manager = await connect(self._url)
            self._loop = asyncio.get_running_loop()
        return self._manager

    async def _resolve(self, *, create: bool) -> AsyncSession | None:
        """Return the sessions_db session, found (or, with ``create``, created) once."""
        if self._handle is not None:
            return self._handle
        async with self._lock:
            if self._handle is None:
                manager = await self._open_manager()
                if create:
                    self._handle = await manager.get_or_create(
                        self.agent_name, self.user_id, key=self.session_id
                    )
                else:
                    try:
                        found = await manager.get_by_key(self.agent_name, self.session_id)
                    except SessionNotFoundError:
                        return None
                    if self.user_id is not None and found.user_id != self.user_id:
                        raise SessionNotFoundError(
                            f"no session of agent {self.agent_name!r} has this key"
                        )
                    self._handle = found
            return self._handle

    async def _on_session(
        self, operation: Callable[[AsyncSession], Awaitable[T]], *, create: bool, absent: T
    ) -> T:
        """Run ``operation`` on the sessions_db session; ``absent`` if there is none to read.

        A session deleted since it was found (``delete``, ``prune``,
        ``erase_user``) is looked up again, once: an append then starts a new
        session under the same key, and a read finds nothing.
        """
        handle = await self._resolve(create=create)
        if handle is None:
            return absent
        try:
            return await operation(handle)
        except SessionNotFoundError:
            if self._handle is handle:
                self._handle = None
        handle = await self._resolve(create=create)
        if handle is None:
            return absent
        return await operation(handle)
