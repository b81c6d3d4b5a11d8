"""The inspector's safety rules: escaped output, strict headers, read-only, token, error pages."""

from __future__ import annotations

import re
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Protocol

import httpx
import pytest

import sessions_db as sdb
from sessions_db.inspector import app
from sessions_db.inspector.security import COOKIE, cookie_value

from .conftest import TestClient
from .seeding import HOSTILE, HOSTILE_USER, SCRIPT, Seeded

TOKEN = "0123456789abcdef-secret"

#: Elements the pages are made of; anything else would be markup that came from data.
ELEMENTS = {
    *[
        "html",
        "head",
        "meta",
        "title",
        "link",
        "script",
        "body",
        "header",
        "nav",
        "main",
        "section",
        "span",
        "a",
        "h1",
        "h2",
        "p",
        "dl",
        "dt",
        "dd",
    ],
    *[
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "form",
        "label",
        "input",
        "select",
        "option",
        "button",
        "details",
        "summary",
    ],
    *[
        "pre",
        "ol",
        "ul",
        "li",
        "div",
        "time",
        "strong",
        "svg",
        "path",
        "rect",
        "circle",
        "text",
        "g",
        "line",
    ],
}


class Markup(HTMLParser):
    """Collects the elements and attributes of a page, and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_markup(html: str) -> str:
    """Assert that ``html`` holds only the inspector's own markup; return its text."""
    parsed = Markup()
    parsed.feed(html)
    for tag, attrs in parsed.tags:
        assert tag in ELEMENTS, f"unexpected element <{tag}>"
        for name, value in attrs:
            assert not name.startswith("on"), f"event handler attribute {name}"
            assert re.fullmatch(r"[a-z][a-z0-9-]*", name), f"odd attribute {name!r}"
            if name in ("href", "src", "action"):
                assert value is not None
                assert value.startswith(("/", "#")), f"{name}={value!r}"
        if tag == "script":
            assert dict(attrs).get("src") == "/static/inspector.js"
    return "".join(parsed.text)


def hostile_pages(seeded: Seeded, manager: sdb.Manager) -> list[str]:
    session = manager.get(seeded.hostile_id)
    entries = session.get_entries()
    return [
        "/",
        "/sessions?agent=support",
        "/sessions?" + httpx.QueryParams({"user": HOSTILE_USER}).__str__(),
        "/search?" + httpx.QueryParams({"user": HOSTILE_USER, "q": "alert script img"}).__str__(),
        f"/sessions/{seeded.hostile_id}",
        f"/sessions/{seeded.hostile_id}/verify",
        *(f"/sessions/{seeded.hostile_id}/entries/{entry.id}" for entry in entries),
        f"/sessions/{seeded.hostile_id}/messages?before={entries[-1].id}",
        "/stats",
    ]


def test_stored_text_is_escaped_everywhere(
    client: TestClient, seeded: Seeded, manager: sdb.Manager
) -> None:
    seen = ""
    for path in hostile_pages(seeded, manager):
        page = client.get(path)
        assert page.status_code == 200, path
        assert SCRIPT not in page.text, path
        seen += check_markup(page.text)
    # The hostile strings are shown, as text.
    assert "<script>window.__pwned" in seen
    assert 'onerror="window.__pwned=2"' in seen
    assert "javascript:alert(1)" in seen
    assert "<svg onload=alert(1)>" in seen


@pytest.mark.parametrize("text", HOSTILE)
def test_request_parameters_are_escaped_in_error_pages(client: TestClient, text: str) -> None:
    for path, params in [
        ("/sessions", {"agent": text}),
        ("/search", {"user": "alice", "agent": text, "q": "x"}),
        ("/sessions", {"agent": "support", "from": text}),
        ("/sessions", {"agent": "support", "after": text}),
        ("/stats", {"days": text}),
    ]:
        page = client.get(path, params=params)
        assert page.status_code == 400, (path, params)
        check_markup(page.text)
        assert "Traceback" not in page.text
    missing = client.get(f"/sessions/{text}")
    assert missing.status_code == 404
    check_markup(missing.text)


def test_the_tree_picture_escapes_its_text(
    client: TestClient, seeded: Seeded, manager: sdb.Manager
) -> None:
    page = client.get(f"/sessions/{seeded.hostile_id}")
    svg = page.text[page.text.index('<svg class="tree"') : page.text.index("</svg>")]
    check_markup(svg)
    assert "&lt;script&gt;" in svg
    assert "<title>" in svg


class _Answer(Protocol):
    """What the test client's responses have, whichever HTTP client package it uses."""

    @property
    def headers(self) -> Mapping[str, str]: ...


def headers_ok(response: _Answer) -> None:
    csp = response.headers.get("content-security-policy", "")
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_every_response_carries_the_security_headers(
    client: TestClient, seeded: Seeded, manager: sdb.Manager
) -> None:
    responses = [client.get(path) for path in hostile_pages(seeded, manager)]
    responses += [
        client.get("/static/inspector.css"),
        client.get(f"/sessions/{seeded.session_id}/export.jsonl"),
        client.get("/nowhere"),
        client.get("/sessions"),
        client.post("/"),
        client.get("/find", params={"session": seeded.session_id}, follow_redirects=False),
    ]
    for response in responses:
        headers_ok(response)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_no_route_changes_data(
    client: TestClient, seeded: Seeded, manager: sdb.Manager, method: str
) -> None:
    before = manager.get(seeded.session_id).get_entries()
    for path in [
        "/",
        f"/sessions/{seeded.session_id}",
        f"/sessions/{seeded.session_id}/verify",
        f"/sessions/{seeded.session_id}/export.jsonl",
        "/static/inspector.css",
    ]:
        response = client.request(method, path, content=b'{"content": "x"}')
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == "GET, HEAD"
        headers_ok(response)
    assert manager.get(seeded.session_id).get_entries() == before


def test_a_token_is_required_on_every_request(manager: sdb.Manager, seeded: Seeded) -> None:
    with TestClient(app(manager, token=TOKEN)) as client:
        assert client.get("/static/inspector.css").status_code == 200  # holds no data
        for path in ("/", f"/sessions/{seeded.session_id}", "/stats", "/static/../stats"):
            refused = client.get(path)
            assert refused.status_code == 401
            headers_ok(refused)
            assert "support" not in refused.text
        assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/", headers={"Authorization": TOKEN}).status_code == 401
        bearer = client.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200
        assert "support" in bearer.text
        assert client.get("/", params={"token": "wrong"}).status_code == 401
        assert client.post("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405


def test_the_token_in_the_address_sets_a_strict_cookie_once(
    manager: sdb.Manager, seeded: Seeded
) -> None:
    with TestClient(app(manager, token=TOKEN)) as client:
        path = f"/sessions/{seeded.session_id}"
        answer = client.get(path, params={"token": TOKEN, "all": "1"}, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"] == f"{path}?all=1"
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert TOKEN not in cookie  # the cookie holds an HMAC of the token
        assert client.get(answer.headers["location"]).status_code == 200
        client.cookies.clear()
        assert client.get(path).status_code == 401
        client.cookies.set(COOKIE, cookie_value("another token"))
        assert client.get(path).status_code == 401
        client.cookies.set(COOKIE, cookie_value(TOKEN))
        assert client.get(path).status_code == 200


def test_allowed_hosts_refuse_other_host_names(manager: sdb.Manager) -> None:
    inspector = app(manager, allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(inspector, base_url="http://localhost:8765") as client:
        assert client.get("/").status_code == 200
    with TestClient(inspector, base_url="http://rebound.example:8765") as client:
        refused = client.get("/")
        assert refused.status_code == 400
        headers_ok(refused)


def test_a_failing_store_shows_an_error_page_not_a_traceback(
    store_url: str, seeded: Seeded
) -> None:
    broken = sdb.connect(store_url)
    with TestClient(app(broken), raise_server_exceptions=False) as client:
        broken.close()
        for path in ("/", f"/sessions/{seeded.session_id}", "/stats"):
            page = client.get(path)
            assert page.status_code == 500
            assert page.headers["content-type"].startswith("text/html")
            assert "The store could not answer this request." in page.text
            assert "Traceback" not in page.text
            assert 'File "' not in page.text
            headers_ok(page)
