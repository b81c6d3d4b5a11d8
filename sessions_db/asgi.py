"""ASGI middleware: one session per HTTP conversation, from the ``X-Session-ID`` header.

Pure ASGI, so it works with Starlette, FastAPI and any other ASGI framework::

    app = FastAPI()
    app.add_middleware(SessionMiddleware, manager=mgr, agent_name="web-agent")

    @app.post("/chat")
    def chat(body: dict) -> dict:
        sess = sdb.current_session()
        ...

For every HTTP request:

* no ``X-Session-ID`` header: the request gets a new session for ``agent_name``
  (and for the authenticated user, if any), which is stored when the request
  first writes to it (an append, a checkpoint): a request that only reads, or
  does nothing, stores nothing. Once it is stored, its ID is returned in the
  ``X-Session-ID`` response header, as the ID of a named session is on every
  response. A streaming response whose start is sent before the first write
  cannot carry the header: write before streaming, or send ``session.id``
  in the body;
* a malformed ID: ``400``; an ID that names no session: ``400``;
* when the app authenticates users, a session of another user (or of no user)
  gets exactly the response of an unknown ID, so IDs of other users' sessions
  cannot be probed; a session that has a user is never served to an
  anonymous request. ``not_found_status`` changes that status (``404``);
* the store is unavailable (before the response has started): ``503``.

The user comes from ``get_user_id(scope)`` (a function, sync or async), or by
default from ``scope["user"]`` as Starlette's ``AuthenticationMiddleware`` sets
it (its ``identity``, else ``username``, when ``is_authenticated``). ``None``,
``""`` and a blank string all mean an anonymous request: it may use only
sessions of no user, and its new sessions belong to no user. A user ID that is
not valid (see :func:`sessions_db.ids.user_id`) gets ``400``.

The session is bound with :func:`~sessions_db.use_session` while the app runs,
so ``sdb.current_session()`` works in the endpoint (sync endpoints too: they
run in a copy of the context), and is also at
``request.state.sessions_db_session``. Manager calls run in a worker thread, so
the event loop is never blocked by the store.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from . import ids
from ._unstored import PendingSession
from .context import use_session
from .errors import (
    InvalidIDError,
    SessionNotFoundError,
    StorageTimeoutError,
    StorageUnavailableError,
)
from .manager import Manager, Session

# Errors that pass: the store is down, or busy past its timeouts; the client may retry.
_TRANSIENT = (StorageUnavailableError, StorageTimeoutError)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
UserGetter = Callable[[Scope], "str | Awaitable[str | None] | None"]

T = TypeVar("T")

HEADER = "X-Session-ID"


async def _in_thread(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        import anyio.to_thread  # noqa: PLC0415 - optional: present with Starlette
    except ImportError:  # pragma: no cover - anyio comes with every ASGI framework we test
        import asyncio  # noqa: PLC0415

        return await asyncio.to_thread(func, *args, **kwargs)
    return await anyio.to_thread.run_sync(lambda: func(*args, **kwargs))


def scope_user_id(scope: Scope) -> str | None:
    """Return the authenticated user of ``scope["user"]`` (Starlette's authentication), if any."""
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    for attribute in ("identity", "username"):
        try:
            value = getattr(user, attribute)
        except (AttributeError, NotImplementedError):
            continue
        if value:
            return str(value)
    return None


class SessionMiddleware:
    """Binds the session named by the ``X-Session-ID`` header (or a new one) to each request."""

    def __init__(
        self,
        app: ASGIApp,
        manager: Manager,
        *,
        agent_name: str = "web-agent",
        header: str = HEADER,
        get_user_id: UserGetter | None = None,
        not_found_status: int = 400,
    ) -> None:
        self.app = app
        self.manager = manager
        self.agent_name = ids.agent_name(agent_name)
        self.header = header
        self._header_key = header.lower().encode("latin-1")
        self.get_user_id = get_user_id
        self.not_found_status = not_found_status

    async def _user(self, scope: Scope) -> str | None:
        if self.get_user_id is None:
            return scope_user_id(scope)
        result = self.get_user_id(scope)
        if inspect.isawaitable(result):
            result = await result
        return None if result is None else str(result)

    async def _user_or_anonymous(self, scope: Scope) -> str | None:
        # An empty or blank user is no user: never pass it on, where it would be
        # refused (or, worse, read as "no ownership check").
        return ids.owner(await self._user(scope))

    def _lookup(self, session_id: str, user_id: str | None) -> Session:
        session = self.manager.get(session_id, user_id=user_id)
        if user_id is None and session.user_id is not None:
            # A user's session is not served to a request without a user.
            raise SessionNotFoundError(f"session {session_id} not found")
        return session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with the request's session bound (HTTP only; others pass through)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = None
        for key, value in scope.get("headers", []):
            if key.lower() == self._header_key:
                raw = value.decode("latin-1").strip()
                break
        try:
            user_id = await self._user_or_anonymous(scope)
        except InvalidIDError:
            await _error(send, 400, "invalid user ID")
            return
        try:
            if not raw:
                session: Session = PendingSession.new(self.manager, self.agent_name, user_id)
            else:
                session = await _in_thread(self._lookup, ids.session_id(raw), user_id)
        except InvalidIDError:
            await _error(send, 400, "malformed session ID")
            return
        except SessionNotFoundError:
            await _error(send, self.not_found_status, "unknown session")
            return
        except _TRANSIENT:
            await _error(send, 503, "session store unavailable")
            return

        header = (self._header_key, session.id.encode("latin-1"))
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [h for h in message.get("headers", []) if h[0].lower() != header[0]]
                stored = not isinstance(session, PendingSession) or session.stored
                message["headers"] = [*headers, header] if stored else headers
            await send(message)

        state = scope.setdefault("state", {})
        state["sessions_db_session"] = session
        try:
            with use_session(session):
                await self.app(scope, receive, send_with_id)
        except _TRANSIENT:
            if started:
                raise
            await _error(send, 503, "session store unavailable")
        finally:
            session.close()


async def _error(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
