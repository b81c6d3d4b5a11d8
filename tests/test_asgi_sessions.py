"""The ASGI middleware: anonymous requests, and new sessions stored on their first write."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import sessions_db as sdb
from sessions_db.asgi import SessionMiddleware
from sessions_db.crypto import Keyring, generate_key

from .test_asgi import HeaderAuth, TestClient

Scope = MutableMapping[str, Any]


def read(request: Request) -> JSONResponse:
    session = sdb.current_session()
    return JSONResponse(
        {
            "id": session.id,
            "user": session.user_id,
            "contents": [m.payload["content"] for m in session.get_messages()],
            "count": session.info().message_count,
            "checkpoints": len(session.list_checkpoints()),
        }
    )


def nothing(request: Request) -> Response:
    return Response("ok")


def write(request: Request) -> JSONResponse:
    session = sdb.current_session()
    before = len(session.get_messages())
    for word in request.query_params["q"].split(","):
        session.append_message(sdb.Message.new("user", {"content": word}))
    session.checkpoint()
    return JSONResponse({"id": session.id, "user": session.user_id, "before": before})


async def awrite(request: Request) -> JSONResponse:
    session = sdb.current_session()
    session.append_message(sdb.Message.new("user", {"content": "async"}))
    return JSONResponse({"id": session.id})


ROUTES = [
    Route("/read", read),
    Route("/nothing", nothing),
    Route("/write", write),
    Route("/awrite", awrite),
]


def app_with(mgr: sdb.Manager, **options: Any) -> Starlette:
    middleware = [Middleware(SessionMiddleware, manager=mgr, agent_name="web", **options)]
    return Starlette(routes=ROUTES, middleware=middleware)


def users_from(anonymous: str | None) -> Callable[[Scope], str | None]:
    """``get_user_id``: the ``X-Api-User`` header, else what the app says of anonymous requests."""

    def get_user_id(scope: Scope) -> str | None:
        value = dict(scope["headers"]).get(b"x-api-user")
        return anonymous if value is None else value.decode()

    return get_user_id


@pytest.fixture
def mgr(store_url: str) -> Iterator[sdb.Manager]:
    with sdb.connect(store_url) as manager:
        yield manager


def alices_session(mgr: sdb.Manager) -> str:
    session = mgr.create("web", user_id="alice")
    session.append_message(sdb.Message.new("user", {"content": "alice's secret"}))
    return session.id


@pytest.mark.parametrize("anonymous", ["", " ", None])
@pytest.mark.parametrize("status", [400, 404])
def test_an_anonymous_request_never_reads_an_owned_session(
    mgr: sdb.Manager, anonymous: str | None, status: int
) -> None:
    alices = alices_session(mgr)
    nobodys = mgr.create("web").id
    app = app_with(mgr, get_user_id=users_from(anonymous), not_found_status=status)
    with TestClient(app) as client:
        unknown = client.get("/read", headers={"X-Session-ID": str(uuid.uuid4())})
        denied = client.get("/read", headers={"X-Session-ID": alices})
        # Exactly what an unknown ID gets: nothing tells that the session exists.
        assert (denied.status_code, denied.content) == (status, unknown.content)
        assert b"secret" not in denied.content
        written = client.get("/write", params={"q": "x"}, headers={"X-Session-ID": alices})
        assert written.status_code == status
        mine = client.get("/read", headers={"X-Session-ID": alices, "X-Api-User": "alice"})
        assert mine.json()["contents"] == ["alice's secret"]
        shared = client.get("/read", headers={"X-Session-ID": nobodys})
        assert (shared.status_code, shared.json()["user"]) == (200, None)
        new = client.get("/write", params={"q": "hello"})
        assert new.json()["user"] is None
    assert [m.payload["content"] for m in mgr.get(alices).get_messages()] == ["alice's secret"]
    assert mgr.get(new.headers["X-Session-ID"]).user_id is None


@pytest.mark.parametrize("name", ["", " "])
def test_an_authenticated_user_with_a_blank_name_is_anonymous(mgr: sdb.Manager, name: str) -> None:
    alices = alices_session(mgr)
    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(AuthenticationMiddleware, backend=HeaderAuth()),
            Middleware(SessionMiddleware, manager=mgr, agent_name="web"),
        ],
    )
    with TestClient(app) as client:
        denied = client.get("/read", headers={"X-Session-ID": alices, "X-User": name})
        assert denied.status_code == 400
        assert denied.json() == {"detail": "unknown session"}
        new = client.get("/write", params={"q": "x"}, headers={"X-User": name})
        assert new.json()["user"] is None


def test_an_invalid_user_id_is_refused(mgr: sdb.Manager) -> None:
    app = app_with(mgr, get_user_id=lambda scope: "line\nbreak")
    with TestClient(app) as client:
        response = client.get("/write", params={"q": "x"})
    assert response.status_code == 400
    assert response.json() == {"detail": "invalid user ID"}
    assert mgr.list("web") == []


def test_requests_that_write_nothing_store_nothing(mgr: sdb.Manager) -> None:
    with TestClient(app_with(mgr)) as client:
        for i in range(50):
            response = client.get("/read" if i % 2 else "/nothing")
            assert response.status_code == 200
            assert "X-Session-ID" not in response.headers
            if i % 2:
                body = response.json()
                assert (body["contents"], body["count"], body["checkpoints"]) == ([], 0, 0)
    assert mgr.list("web") == []


@pytest.mark.parametrize("user", [None, "alice"])
def test_the_first_write_stores_exactly_one_session(mgr: sdb.Manager, user: str | None) -> None:
    headers = {} if user is None else {"X-Api-User": user}
    with TestClient(app_with(mgr, get_user_id=users_from(None))) as client:
        first = client.get("/write", params={"q": "a,b"}, headers=headers)
        assert first.status_code == 200
        sid = first.headers["X-Session-ID"]
        assert first.json() == {"id": sid, "user": user, "before": 0}
        again = client.get("/read", headers={"X-Session-ID": sid, **headers})
        assert again.headers["X-Session-ID"] == sid
        assert (again.json()["contents"], again.json()["checkpoints"]) == (["a", "b"], 1)
        other = client.get("/awrite")
        assert other.json()["id"] == other.headers["X-Session-ID"] != sid
    stored = mgr.list("web")
    assert {m.id for m in stored} == {sid, other.headers["X-Session-ID"]}
    assert [m.payload["content"] for m in mgr.get(sid).get_messages()] == ["a", "b"]
    assert mgr.get(sid).user_id == user


def test_a_new_session_reads_as_empty_before_its_first_write(store_url: str) -> None:
    keyring = Keyring({"k1": generate_key()})
    with sdb.Manager(sdb.connect(store_url).backend, keyring=keyring) as mgr:
        with TestClient(app_with(mgr)) as client:
            assert client.get("/read").json()["count"] == 0
            response = client.get("/write", params={"q": "sealed"})
        sid = response.headers["X-Session-ID"]
        assert [m.id for m in mgr.list("web")] == [sid]
        assert [m.payload for m in mgr.get(sid).get_messages()] == [{"content": "sealed"}]
        assert mgr.get(sid).metadata == {}


def test_reads_of_a_new_session_fail_as_they_would_for_an_empty_one(mgr: sdb.Manager) -> None:
    seen: dict[str, str] = {}

    def probe(request: Request) -> Response:
        session = sdb.current_session()
        calls: dict[str, Callable[[], object]] = {
            "before": lambda: session.get_messages(before="no-such-message"),
            "restore": lambda: session.restore(str(uuid.uuid4())),
            "limit": lambda: session.get_messages(limit=-1),
        }
        for name, call in calls.items():
            try:
                call()
            except sdb.SessionsDBError as exc:
                seen[name] = type(exc).__name__
        return Response("ok")

    app = Starlette(
        routes=[Route("/probe", probe)],
        middleware=[Middleware(SessionMiddleware, manager=mgr, agent_name="web")],
    )
    with TestClient(app) as client:
        assert "X-Session-ID" not in client.get("/probe").headers
    assert seen == {
        "before": "EntryNotFoundError",
        "restore": "CheckpointNotFoundError",
        "limit": "InvalidArgumentError",
    }
    assert mgr.list("web") == []


def test_a_store_outage_at_the_first_write_is_503(tmp_path: Path) -> None:
    base = tmp_path / "sessions"
    with sdb.connect(base.as_uri()) as mgr:
        shutil.rmtree(base)
        base.write_text("not a directory")  # every write to the store now fails
        with TestClient(app_with(mgr)) as client:
            assert client.get("/read").status_code == 200
            failed = client.get("/write", params={"q": "x"})
    assert failed.status_code == 503
    assert failed.json() == {"detail": "session store unavailable"}
    assert "X-Session-ID" not in failed.headers
