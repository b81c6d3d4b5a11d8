"""What the command line prints of stored data: text, never markup or terminal commands.

User IDs, roles, payloads and metadata come from whoever wrote to the store. The
commands print them as plain text with control characters written out as
escapes, and ``--json`` still prints the exact strings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import sessions_db as sdb

from .test_cli import run

HOSTILE_USERS = ["[/bold]", "[link=http://x]y[/link]", ":thumbs_up: [red]x"]
HOSTILE_CONTENT = "red \x1b[31mALERT\x1b[0m bell\x07 csi\x9b2J cr\rover \u202eevil"


def _seed(url: str) -> dict[str, str]:
    """One session per hostile user ID; the first holds hostile content and metadata."""
    made: dict[str, str] = {}
    with sdb.connect(url) as mgr:
        for user in HOSTILE_USERS:
            session = mgr.create("web", user_id=user, metadata={"note": "[bold]m\x1b[2J"})
            session.append_message(sdb.Message.new("[i]user", {"content": HOSTILE_CONTENT}))
            session.checkpoint(metadata={"label": "[/]cp\x1b]8;;http://x\x07"})
            made[user] = session.id
    return made


def _run_colored(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    """Run the command as if on a color terminal (rich then writes styles and links)."""
    env = {k: v for k, v in os.environ.items() if k != "SESSIONS_DB_URL"}
    env.update(COLUMNS="200", FORCE_COLOR="1", TERM="xterm-256color")
    return subprocess.run(
        [sys.executable, "-m", "sessions_db", *args, "--url", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _assert_neutral(output: str) -> None:
    """No control character of the stored data reached the output raw."""
    for raw in ("\x1b[31m", "\x1b[2J", "\x1b]8;", "\x07", "\x9b", "\r", "\u202e"):
        assert raw not in output, (raw, output)


def test_list_prints_markup_like_user_ids_literally(store_url: str) -> None:
    made = _seed(store_url)
    for result in (run("list", "web", url=store_url), _run_colored("list", "web", url=store_url)):
        assert result.returncode == 0, result.stderr
        for user in HOSTILE_USERS:
            assert user in result.stdout  # not taken as markup, not a crash
        assert '{"note":"[bold]m\\u001b[2J"}' in result.stdout  # metadata as JSON text
        _assert_neutral(result.stdout)
    listed = json.loads(run("list", "web", "--json", url=store_url).stdout)
    assert {s["user_id"]: s["id"] for s in listed["sessions"]} == made
    assert {s["metadata"]["note"] for s in listed["sessions"]} == {"[bold]m\x1b[2J"}


def test_show_escapes_control_characters_of_payloads(store_url: str) -> None:
    made = _seed(store_url)
    session_id = made["[link=http://x]y[/link]"]
    for args in (("show", session_id), ("show", session_id, "--tree")):
        for result in (run(*args, url=store_url), _run_colored(*args, url=store_url)):
            assert result.returncode == 0, result.stderr
            out = result.stdout
            assert "red \\x1b[31mALERT\\x1b[0m bell\\x07 csi\\x9b2J" in out
            assert "\\x0dover \\u202eevil" in out
            assert "[link=http://x]y[/link]" in out
            assert "[i]user" in out
            _assert_neutral(out)
    shown = run("show", session_id, "--json", url=store_url)
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)  # still exact JSON
    (entry,) = [e for e in document["entries"] if e["type"] == "message"]
    assert entry["data"] == {"role": "[i]user", "payload": {"content": HOSTILE_CONTENT}}
    assert document["session"]["user_id"] == "[link=http://x]y[/link]"
    _assert_neutral(shown.stdout)  # C1 and bidirectional marks are \u escapes in JSON


def test_checkpoints_print_metadata_literally(store_url: str) -> None:
    made = _seed(store_url)
    result = _run_colored("checkpoints", made["[/bold]"], url=store_url)
    assert result.returncode == 0, result.stderr
    assert '"label":"[/]cp\\u001b]8;;http://x\\u0007"' in result.stdout
    _assert_neutral(result.stdout)
