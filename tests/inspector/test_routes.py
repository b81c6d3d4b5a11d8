"""Every page of the inspector, through Starlette's test client, on every kind of store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import sessions_db as sdb
from sessions_db.cli import main
from sessions_db.inspector.branches import MAX_COLUMNS
from sessions_db.inspector.session_pages import MESSAGES

from .conftest import TestClient
from .seeding import Seeded


def ids_in(html: str, pattern: str) -> list[str]:
    return re.findall(pattern, html)


def test_agents_page_lists_agents_with_session_counts(client: TestClient, seeded: Seeded) -> None:
    page = client.get("/")
    assert page.status_code == 200
    rows = re.findall(
        r'<tr><td><a href="/sessions\?agent=([\w.-]+)">[^<]*</a></td>'
        r'<td class="num">(\d+)</td>',
        page.text,
    )
    assert rows == [("coder", "1"), ("support", "2")]


def test_empty_store_has_an_agents_page(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "the store holds no sessions" in page.text


def test_agent_sessions_newest_first(client: TestClient, seeded: Seeded) -> None:
    page = client.get("/sessions", params={"agent": "support"})
    assert page.status_code == 200
    listed = ids_in(page.text, r'<a class="id" href="/sessions/([0-9a-f-]{36})"')
    assert listed == [seeded.hostile_id, seeded.session_id]
    assert 'rel="next"' not in page.text


def test_user_sessions_across_agents(client: TestClient, seeded: Seeded) -> None:
    page = client.get("/sessions", params={"user": "alice"})
    listed = ids_in(page.text, r'<a class="id" href="/sessions/([0-9a-f-]{36})"')
    assert listed == [seeded.other_id, seeded.session_id]
    one_agent = client.get("/sessions", params={"user": "alice", "agent": "coder"})
    assert ids_in(one_agent.text, r'<a class="id" href="/sessions/([0-9a-f-]{36})"') == [
        seeded.other_id
    ]


def test_session_list_pages_by_keyset(client: TestClient, manager: sdb.Manager) -> None:
    made = [manager.create("many", user_id=f"u{n % 3}").id for n in range(7)]
    seen: list[str] = []
    url: str | None = "/sessions?agent=many&limit=3"
    while url is not None:
        page = client.get(url)
        assert page.status_code == 200
        seen.extend(ids_in(page.text, r'<a class="id" href="/sessions/([0-9a-f-]{36})"'))
        found = re.search(r'rel="next" class="next" href="([^"]+)"', page.text)
        url = None if found is None else found.group(1).replace("&amp;", "&")
    assert seen == list(reversed(made))


def test_session_list_time_filter(client: TestClient, seeded: Seeded) -> None:
    today = client.get("/sessions", params={"agent": "support", "from": "2000-01-01"})
    assert len(ids_in(today.text, r'class="id" href="/sessions/([0-9a-f-]{36})"')) == 2
    past = client.get("/sessions", params={"agent": "support", "to": "2000-01-01"})
    assert past.status_code == 200
    assert ids_in(past.text, r'class="id" href="/sessions/([0-9a-f-]{36})"') == []
    wrong = client.get("/sessions", params={"agent": "support", "from": "yesterday"})
    assert wrong.status_code == 400


def test_session_list_needs_an_agent_or_a_user(client: TestClient) -> None:
    assert client.get("/sessions").status_code == 400
    assert client.get("/sessions", params={"agent": "x", "after": "nonsense"}).status_code == 400


def test_search_finds_a_users_messages(client: TestClient, seeded: Seeded) -> None:
    page = client.get("/search", params={"user": "alice", "q": "umbrella haiku"})
    assert page.status_code == 200
    sessions = ids_in(page.text, r'class="id session-link" href="/sessions/([0-9a-f-]{36})"')
    assert seeded.other_id in sessions
    assert sessions[0] == seeded.other_id  # both words: ranked first
    narrowed = client.get("/search", params={"user": "alice", "q": "umbrellas", "agent": "coder"})
    assert set(ids_in(narrowed.text, r'session-link" href="/sessions/([0-9a-f-]{36})"')) == {
        seeded.other_id
    }
    nothing = client.get("/search", params={"user": "alice", "q": "zebra"})
    assert "No message of alice matches" in nothing.text
    assert client.get("/search").status_code == 200  # the empty form


def test_session_page_draws_the_tree(client: TestClient, seeded: Seeded) -> None:
    page = client.get(f"/sessions/{seeded.session_id}")
    assert page.status_code == 200
    html = page.text
    assert '<svg class="tree"' in html
    assert html.count('class="node checkpoint checkpoint') == 2
    assert html.count('class="node event ev-restore') == 2
    assert "3 branches" in html
    assert 'class="edge cur run"' in html  # the 60 turns drawn as one dashed line
    assert "⋯ 60 messages" in html
    assert "Sunny all week." in html
    assert "<details>" in html  # the long payload is folded


def test_session_page_shows_newest_messages_and_pages_back(
    client: TestClient, seeded: Seeded, manager: sdb.Manager
) -> None:
    page = client.get(f"/sessions/{seeded.session_id}")
    newest = manager.get(seeded.session_id).get_messages()
    shown = ids_in(page.text, r'<li class="message" id="m-([^"]+)">')
    assert shown == [m.id for m in reversed(newest)][:MESSAGES]
    older = re.search(r'data-older href="([^"]+)"', page.text)
    assert older is not None
    rest = client.get(older.group(1).replace("&amp;", "&"))
    assert rest.status_code == 200
    more = ids_in(rest.text, r'<li class="message" id="m-([^"]+)">')
    assert shown + more == [m.id for m in reversed(newest)]
    assert "data-older" not in rest.text


def test_entry_page_of_another_branch(
    client: TestClient, seeded: Seeded, manager: sdb.Manager
) -> None:
    entries = manager.get(seeded.session_id).get_entries()
    rain = next(e for e in entries if e.data.get("payload", {}).get("content") == "rain, 12°C")
    page = client.get(f"/sessions/{seeded.session_id}/entries/{rain.id}")
    assert page.status_code == 200
    assert "not on the current branch" in page.text
    assert "Rain all day" in page.text  # its child
    checkpoint = client.get(f"/sessions/{seeded.session_id}/entries/{entries[2].id}")
    assert "before tool call" in checkpoint.text


def test_verify_recomputes_checksums(client: TestClient, seeded: Seeded) -> None:
    page = client.get(f"/sessions/{seeded.session_id}/verify")
    assert page.status_code == 200
    assert "All 2 checkpoints verify" in page.text
    assert page.text.count('<tr class="ok">') == 2


def test_verify_reports_a_tampered_history(
    client: TestClient, seeded: Seeded, manager: sdb.Manager, tamper: object
) -> None:
    first = manager.get(seeded.session_id).get_entries()[0]
    assert callable(tamper)
    tamper(manager, seeded.session_id, first.id, {"role": "user", "payload": {"content": "edited"}})
    page = client.get(f"/sessions/{seeded.session_id}/verify")
    assert page.status_code == 200
    assert "2 of 2 checkpoints do not verify" in page.text
    assert page.text.count('<tr class="bad">') == 2
    # Verifying restored nothing: the session is as it was.
    assert manager.get(seeded.session_id).info().message_count == seeded.messages


def test_export_is_the_command_lines_export(
    client: TestClient, seeded: Seeded, store_url: str, tmp_path: Path
) -> None:
    response = client.get(f"/sessions/{seeded.session_id}/export.jsonl")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in response.headers["content-disposition"]
    target = tmp_path / "cli.jsonl"
    result = CliRunner().invoke(
        main, ["export", "--session", seeded.session_id, "-o", str(target), "--url", store_url]
    )
    assert result.exit_code == 0, result.output
    served = [json.loads(line) for line in response.text.splitlines()]
    written = [json.loads(line) for line in target.read_text().splitlines()]
    for records in (served, written):
        records[0].pop("exported_at")
    assert served == written
    assert served[-1]["kind"] == "end"


def test_stats_counts_sessions_and_messages_per_day(client: TestClient, seeded: Seeded) -> None:
    page = client.get("/stats")
    assert page.status_code == 200
    rows = re.findall(
        r'<a href="/sessions\?agent=([\w.-]+)">[^<]*</a></td><td class="num">(\d+)</td>'
        r'<td class="num">([\d,]+)</td>',
        page.text,
    )
    assert ("coder", "1", "1") in rows
    support = next(row for row in rows if row[0] == "support")
    assert support[1] == "2"
    assert '<svg class="chart"' in page.text
    assert client.get("/stats", params={"days": 7}).status_code == 200
    assert client.get("/stats", params={"days": 8}).status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        "/sessions/00000000-0000-4000-8000-000000000000",
        "/sessions/not-an-id",
        "/sessions/00000000-0000-4000-8000-000000000000/verify",
        "/sessions/00000000-0000-4000-8000-000000000000/export.jsonl",
        "/sessions/00000000-0000-4000-8000-000000000000/entries/x",
        "/no/such/page",
        "/static/nothing.css",
    ],
)
def test_unknown_ids_are_404_pages(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Not found" in page.text


def test_unknown_entries_and_messages_are_404(client: TestClient, seeded: Seeded) -> None:
    base = f"/sessions/{seeded.session_id}"
    assert client.get(f"{base}/entries/nope").status_code == 404
    assert client.get(f"{base}/messages", params={"before": "nope"}).status_code == 404
    assert client.get(f"{base}/messages", params={"before": "../x"}).status_code == 404
    assert client.get(f"{base}/messages").status_code == 400
    assert client.get("/find", params={"session": "junk"}).status_code == 404


def test_find_goes_to_the_session(client: TestClient, seeded: Seeded) -> None:
    found = client.get("/find", params={"session": seeded.session_id}, follow_redirects=False)
    assert found.status_code == 303
    assert found.headers["location"] == f"/sessions/{seeded.session_id}"


def test_head_requests_are_answered(client: TestClient, seeded: Seeded) -> None:
    for path in ("/", f"/sessions/{seeded.session_id}", "/static/inspector.js"):
        response = client.head(path)
        assert response.status_code == 200
        assert response.content == b""


def test_static_files_are_served(client: TestClient) -> None:
    css = client.get("/static/inspector.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    js = client.get("/static/inspector.js")
    assert "javascript" in js.headers["content-type"]


def test_collapsed_counts_on_a_real_store(
    client: TestClient, manager: sdb.Manager, store_kind: str
) -> None:
    session = manager.create("support")
    session.append_message(sdb.Message.new("user", {"content": "start"}))
    checkpoint = session.checkpoint()
    for n in range(MAX_COLUMNS + 3):
        session.restore(checkpoint.id)
        session.append_message(sdb.Message.new("assistant", {"content": f"answer {n}"}))
    page = client.get(f"/sessions/{session.id}")
    assert f"{MAX_COLUMNS} shown, 3 collapsed" in page.text
    assert '<a href="/sessions/' + session.id + '?all=1#tree" class="pill">' in page.text
    every = client.get(f"/sessions/{session.id}", params={"all": "1"})
    assert "all shown" in every.text
    assert every.text.count('class="node event ev-restore') == MAX_COLUMNS + 3


def test_an_encrypted_store_is_shown_decrypted_and_verifies(store_url: str) -> None:
    from sessions_db.crypto import Keyring, generate_key
    from sessions_db.inspector import app

    plain = sdb.connect(store_url)
    with sdb.Manager(plain.backend, keyring=Keyring({"k1": generate_key()})) as manager:
        session = manager.create("vault", user_id="carol", metadata={"secret": "plans"})
        session.append_message(sdb.Message.new("user", {"content": "the sealed question"}))
        session.checkpoint(metadata={"label": "sealed label"})
        session.append_message(sdb.Message.new("assistant", {"content": "the sealed answer"}))
        with TestClient(app(manager)) as client:
            page = client.get(f"/sessions/{session.id}")
            assert "the sealed answer" in page.text
            assert "sealed label" in page.text
            assert "plans" in page.text
            assert "The checkpoint verifies" in client.get(f"/sessions/{session.id}/verify").text
            found = client.get("/search", params={"user": "carol", "q": "sealed question"})
            assert "the sealed question" in found.text
            exported = client.get(f"/sessions/{session.id}/export.jsonl").text
            assert "the sealed answer" not in exported  # as stored: encrypted
