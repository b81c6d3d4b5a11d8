"""The ASGI middleware, through a real Starlette app and an HTTP client."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import sessions_db as sdb
from sessions_db.asgi import SessionMiddleware


class TestClient:
    """Sends each request to the ASGI app through httpx's ASGI transport."""

    __test__ = False

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.get(url, **kwargs)

        return anyio.run(go)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


def sync_chat(request: Request) -> JSONResponse:
    session = sdb.current_session()
    session.append_message(sdb.Message.new("user", {"content": request.query_params["q"]}))
    return JSONResponse(
        {
            "id": session.id,
            "user": session.user_id,
            "agent": session.agent_name,
            "count": len(session.get_messages()),
            "state": request.state.sessions_db_session.id,
        }
    )


async def async_chat(request: Request) -> JSONResponse:
    session = sdb.current_session()
    return JSONResponse({"id": session.id})


class HeaderAuth(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        name = conn.headers.get("x-user")
        return None if name is None else (AuthCredentials(["authenticated"]), SimpleUser(name))


def make_app(mgr: sdb.Manager, *, auth: bool) -> Starlette:
    middleware = [Middleware(AuthenticationMiddleware, backend=HeaderAuth())] if auth else []
    middleware.append(Middleware(SessionMiddleware, manager=mgr, agent_name="web"))
    routes = [Route("/chat", sync_chat), Route("/achat", async_chat)]
    return Starlette(routes=routes, middleware=middleware)


@pytest.fixture
def mgr(store_url: str) -> Iterator[sdb.Manager]:
    with sdb.connect(store_url) as manager:
        yield manager


def test_new_session_then_reuse(mgr: sdb.Manager) -> None:
    with TestClient(make_app(mgr, auth=False)) as client:
        first = client.get("/chat", params={"q": "hi"})
        assert first.status_code == 200
        sid = first.headers["X-Session-ID"]
        assert first.json() == {"id": sid, "user": None, "agent": "web", "count": 1, "state": sid}
        again = client.get("/chat", params={"q": "more"}, headers={"X-Session-ID": sid})
        assert again.status_code == 200
        assert again.json()["id"] == sid
        assert again.json()["count"] == 2
        assert again.headers["X-Session-ID"] == sid
        assert client.get("/achat", headers={"x-session-id": sid}).json() == {"id": sid}
        other = client.get("/achat")  # writes nothing: stores nothing, announces no ID
        assert other.json()["id"] != sid
        assert "X-Session-ID" not in other.headers
    assert [m.payload["content"] for m in mgr.get(sid).get_messages()] == ["hi", "more"]


def test_malformed_and_unknown_ids(mgr: sdb.Manager) -> None:
    with TestClient(make_app(mgr, auth=False)) as client:
        for bad in ("not-a-uuid", "../../etc/passwd", "x" * 300):
            response = client.get("/chat", params={"q": "x"}, headers={"X-Session-ID": bad})
            assert response.status_code == 400
            assert response.json() == {"detail": "malformed session ID"}
        unknown = client.get(
            "/chat", params={"q": "x"}, headers={"X-Session-ID": str(uuid.uuid4())}
        )
        assert unknown.status_code == 400
        assert unknown.json() == {"detail": "unknown session"}
    assert mgr.list("web") == []


def test_ownership(mgr: sdb.Manager) -> None:
    alices = mgr.create("web", user_id="alice").id
    anonymous = mgr.create("web").id
    with TestClient(make_app(mgr, auth=True)) as client:
        mine = client.get(
            "/chat", params={"q": "x"}, headers={"X-Session-ID": alices, "X-User": "alice"}
        )
        assert mine.status_code == 200
        assert mine.json()["user"] == "alice"
        unknown = client.get(
            "/chat", params={"q": "x"}, headers={"X-Session-ID": str(uuid.uuid4()), "X-User": "bob"}
        )
        for sid, user in ((alices, "bob"), (anonymous, "bob"), (alices, None)):
            headers = {"X-Session-ID": sid} | ({"X-User": user} if user else {})
            response = client.get("/chat", params={"q": "x"}, headers=headers)
            # Exactly what an unknown ID gets: nothing tells that the session exists.
            assert (response.status_code, response.content) == (
                unknown.status_code,
                unknown.content,
            )
        created = client.get("/chat", params={"q": "x"}, headers={"X-User": "bob"})
        assert created.json()["user"] == "bob"
    assert len(mgr.get(alices).get_messages()) == 1
    assert mgr.list("web", user_id="bob")[0].id == created.headers["X-Session-ID"]


def test_get_user_id_and_not_found_status(mgr: sdb.Manager) -> None:
    async def user_from_header(scope: MutableMapping[str, Any]) -> str | None:
        headers = dict(scope["headers"])
        value = headers.get(b"x-api-user")
        return None if value is None else value.decode()

    app = Starlette(
        routes=[Route("/chat", sync_chat)],
        middleware=[
            Middleware(
                SessionMiddleware, manager=mgr, get_user_id=user_from_header, not_found_status=404
            )
        ],
    )
    carols = mgr.create("web-agent", user_id="carol").id
    with TestClient(app) as client:
        ok = client.get(
            "/chat", params={"q": "x"}, headers={"X-Session-ID": carols, "X-Api-User": "carol"}
        )
        assert ok.status_code == 200
        denied = client.get(
            "/chat", params={"q": "x"}, headers={"X-Session-ID": carols, "X-Api-User": "dan"}
        )
        assert denied.status_code == 404
        new = client.get("/chat", params={"q": "x"}, headers={"X-Api-User": "dan"})
        assert new.json()["agent"] == "web-agent"
        assert new.json()["user"] == "dan"


def bound_only_inside(app: Any, seen: list[Any]) -> Any:
    """Wrap ``app`` (the middleware) to record the binding around each request.

    The wrapper runs in the same task and context as the middleware, so a
    binding that the middleware leaves behind is visible to it after the call.
    """

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        before = sdb.session_from_context()
        try:
            await app(scope, receive, send)
        finally:
            seen.append((before, sdb.session_from_context()))

    return wrapper


async def failing_chat(request: Request) -> JSONResponse:
    assert sdb.session_from_context() is not None
    raise RuntimeError("the endpoint failed")


def test_context_is_not_bound_outside_requests(mgr: sdb.Manager) -> None:
    seen: list[Any] = []
    routes = [Route("/chat", sync_chat), Route("/achat", async_chat), Route("/fail", failing_chat)]
    inner = Starlette(routes=routes)
    app = bound_only_inside(SessionMiddleware(inner, manager=mgr, agent_name="web"), seen)

    async def requests() -> list[Any]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first = await client.get("/achat")
            second = await client.get("/chat", params={"q": "x"})
            # the session the endpoint saw was bound only while the request ran
            assert first.json()["id"] != second.json()["id"]
            failed = await client.get("/fail")
            assert failed.status_code == 500
            return [first, second, failed]

    assert len(anyio.run(requests)) == 3
    assert seen == [(None, None)] * 3  # before and after each request
    assert sdb.session_from_context() is None


def test_store_unavailable_during_a_request_is_503(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with sdb.connect(url) as mgr:
        known = mgr.create("web").id
    backend = sdb.SQLBackend(url, busy_timeout=0.1)
    backend.engine.dispose()  # no pooled connection: the next call opens one
    # Another process takes the database for itself (exclusive locking mode):
    # even reading the session fails past the busy timeout.
    holder = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with TestClient(make_app(sdb.Manager(backend), auth=False)) as client:
            refused = client.get("/chat", params={"q": "x"}, headers={"X-Session-ID": known})
            assert refused.status_code == 503
            assert refused.json() == {"detail": "session store unavailable"}
            assert "X-Session-ID" not in refused.headers
            holder.close()  # the store is back
            served = client.get("/chat", params={"q": "x"}, headers={"X-Session-ID": known})
            assert served.status_code == 200
            assert served.json()["count"] == 1  # the refused request stored nothing
    finally:
        holder.close()
        backend.close()
