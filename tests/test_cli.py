"""The ``sessions-db`` command line, against every store kind.

Every command runs at least once as a real subprocess (``python -m sessions_db``)
against each store kind; the many small cases (JSON documents, flags, error
paths) run in-process through click's runner, which is much faster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import sessions_db as sdb
from sessions_db.cli import (
    EXIT_CONFLICT,
    EXIT_MISMATCH,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    main,
)
from sessions_db.types import utcnow

UNREACHABLE = "postgresql://x@127.0.0.1:1/x"
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def run(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sessions_db ARGS`` (with ``--url`` if given) in a new process."""
    env = {k: v for k, v in os.environ.items() if k != "SESSIONS_DB_URL"}
    env["COLUMNS"] = "200"
    command = [sys.executable, "-m", "sessions_db", *args]
    if url is not None:
        command += ["--url", url]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, check=False
    )


def invoke(*args: str, url: str | None = None) -> Result:
    """Run the command in this process (fast), stdout and stderr kept apart."""
    command = [*args, *(["--url", url] if url is not None else [])]
    return CliRunner().invoke(main, command, env={"SESSIONS_DB_URL": None, "COLUMNS": "200"})


def as_json(result: Result | subprocess.CompletedProcess[str]) -> Any:
    """Return the one JSON document the command printed."""
    return json.loads(result.stdout)


def one_error_line(stderr: str) -> str:
    """Assert ``stderr`` is one ``error:`` line (no traceback) and return it."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@dataclass(frozen=True)
class Seeded:
    """A store with a forked session (restore), a second session and a second agent."""

    url: str
    forked: str
    checkpoint: str
    checkpoint_entry: str
    first_message: str
    plain: str
    coder: str


def seed(url: str) -> Seeded:
    """Fill a store: support/alice with a restore fork, support/bob, coder."""
    with sdb.connect(url) as mgr:
        forked = mgr.create("support", user_id="alice", metadata={"channel": "web"})
        first = sdb.Message.new("user", {"content": "What's the weather in Lyon?"})
        forked.append_message(first)
        forked.append_message(sdb.Message.new("assistant", {"content": "Let me check."}))
        cp = forked.checkpoint(metadata={"label": "before tool call"})
        forked.append_message(sdb.Message.new("tool", {"content": "rain, 12C"}))
        forked.append_message(sdb.Message.new("assistant", {"content": "Rain all day."}))
        forked.restore(cp.id)
        forked.append_message(sdb.Message.new("assistant", {"content": "Sunny, 24C."}))
        plain = mgr.create("support", user_id="bob")
        plain.append_messages(
            [
                sdb.Message.new("user", {"content": "Reset my password", "n": 1.5}),
                sdb.Message.new("assistant", {"content": "Done."}),
            ]
        )
        coder = mgr.create("coder")
        coder.append_message(
            sdb.Message.new("user", {"content": [{"type": "text", "text": "Write a haiku"}]})
        )
        coder.checkpoint()
        return Seeded(url, forked.id, cp.id, cp.entry_id, first.id, plain.id, coder.id)


@pytest.fixture
def seeded(store_url: str) -> Seeded:
    return seed(store_url)


def snapshot(url: str) -> dict[str, Any]:
    """Everything the store holds, session by session, as the backend returns it."""
    with sdb.connect(url) as mgr:
        backend = mgr.backend
        return {
            meta.id: (
                backend.load_session(meta.id),
                backend.load_entries(meta.id),
                backend.list_checkpoints(meta.id),
            )
            for agent in mgr.list_agents()
            for meta in mgr.list(agent)
        }


# -- reading ------------------------------------------------------------------------


def test_list_agents_show_tree_checkpoints(seeded: Seeded) -> None:
    url = seeded.url
    listed = run("list", "support", url=url)
    assert listed.returncode == 0, listed.stderr
    # Most recently updated first: bob's session was written last.
    assert listed.stdout.index(seeded.plain) < listed.stdout.index(seeded.forked)
    assert "alice" in listed.stdout
    assert seeded.coder not in listed.stdout

    agents = run("agents", url=url)
    assert agents.returncode == 0
    assert "coder" in agents.stdout
    assert "support" in agents.stdout

    show = run("show", seeded.forked, url=url)
    assert show.returncode == 0, show.stderr
    assert "What's the weather in Lyon?" in show.stdout
    assert "Sunny, 24C." in show.stdout
    assert "Rain all day." not in show.stdout  # not on the current branch
    assert f"to checkpoint {seeded.checkpoint} (before tool call)" in show.stdout
    assert "3 messages on the current branch" in show.stdout

    tree = run("show", seeded.forked, "--tree", url=url)
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    rain = next(line for line in lines if "Rain all day." in line)
    sunny = next(line for line in lines if "Sunny, 24C." in line)
    assert rain.startswith("│  ")  # first branch, indented under the fork
    assert sunny.startswith("   ")  # last branch
    assert "◀ current leaf" in sunny
    assert "◀ current leaf" not in rain
    assert any(line.startswith("├─ branch 1/2") for line in lines)
    assert any(line.startswith("└─ branch 2/2 (current)") for line in lines)
    checkpoint_line = next(line for line in lines if line.startswith("◆ "))
    assert seeded.checkpoint in checkpoint_line
    assert lines.index(checkpoint_line) < lines.index(rain)

    cps = run("checkpoints", seeded.forked, url=url)
    assert cps.returncode == 0
    assert seeded.checkpoint in cps.stdout
    assert "before tool call" in cps.stdout


def test_reading_as_json(seeded: Seeded) -> None:
    url = seeded.url
    listed = as_json(invoke("list", "support", "--json", url=url))
    assert [s["id"] for s in listed["sessions"]] == [seeded.plain, seeded.forked]
    assert listed["sessions"][1]["message_count"] == 3
    assert listed["sessions"][1]["metadata"] == {"channel": "web"}

    alice = as_json(invoke("list", "support", "--user", "alice", "--json", url=url))
    assert [s["id"] for s in alice["sessions"]] == [seeded.forked]
    page = as_json(invoke("list", "support", "--limit", "1", "--offset", "1", "--json", url=url))
    assert [s["id"] for s in page["sessions"]] == [seeded.forked]
    assert as_json(invoke("list", "nobody", "--json", url=url))["sessions"] == []
    assert invoke("list", "nobody", url=url).stdout.startswith("no sessions")

    assert as_json(invoke("agents", "--json", url=url)) == {"agents": ["coder", "support"]}

    shown = as_json(invoke("show", seeded.forked, "--json", url=url))
    kinds = [(e["type"], e["data"].get("role")) for e in shown["entries"]]
    assert kinds == [
        ("message", "user"),
        ("message", "assistant"),
        ("checkpoint", None),
        ("metadata", None),
        ("message", "assistant"),
    ]
    tree = as_json(invoke("show", seeded.forked, "--tree", "--json", url=url))
    assert len(tree["entries"]) == 7
    off_branch = [
        e["data"]["payload"]["content"] for e in tree["entries"] if not e["on_current_branch"]
    ]
    assert off_branch == ["rain, 12C", "Rain all day."]
    assert [e["depth"] for e in tree["entries"]] == [0, 0, 0, 1, 1, 1, 1]
    assert tree["session"]["current_leaf"] == tree["entries"][-1]["id"]

    cps = as_json(invoke("checkpoints", seeded.forked, "--json", url=url))
    assert [c["id"] for c in cps["checkpoints"]] == [seeded.checkpoint]
    assert cps["checkpoints"][0]["checksum"].startswith("sha256:")
    assert invoke("checkpoints", seeded.plain, url=url).stdout.startswith(
        f"session {seeded.plain} has no checkpoints"
    )


def test_tree_of_nested_forks(store_url: str) -> None:
    with sdb.connect(store_url) as mgr:
        sess = mgr.create("support")
        sess.append_message(sdb.Message.new("user", {"content": "root"}))
        cp = sess.checkpoint()
        sess.append_message(sdb.Message.new("assistant", {"content": "first"}))
        inner = sess.checkpoint()
        sess.append_message(sdb.Message.new("assistant", {"content": "first-a"}))
        sess.restore(inner.id)
        sess.append_message(sdb.Message.new("assistant", {"content": "first-b"}))
        sess.restore(cp.id)
        sess.append_message(sdb.Message.new("assistant", {"content": "second"}))
        sess.restore(inner.id)  # back onto the first branch: it is current again
        sess_id = sess.id
    result = invoke("show", sess_id, "--tree", url=store_url)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()

    def line_of(text: str) -> str:
        return next(line for line in lines if line.endswith(text) or f"{text}  ◀" in line)

    assert line_of("first").startswith("│  • ")
    assert line_of("first-a").startswith("│  │  • ")
    assert line_of("first-b").startswith("│  │  • ")
    assert line_of("second").startswith("   • ")
    assert any(line.startswith("├─ branch 1/2 (current)") for line in lines)
    assert any(line.startswith("└─ branch 2/2") and "current" not in line for line in lines)
    # The last restore made a third branch under the inner checkpoint: it is current.
    assert any(line.startswith("│  └─ branch 3/3 (current)") for line in lines)
    current = next(line for line in lines if "◀ current leaf" in line)
    assert current.startswith("│     ↺ ")
    assert f"to checkpoint {inner.id}" in current


# -- export and import --------------------------------------------------------------


def test_export_import_round_trip(seeded: Seeded, tmp_path: Path) -> None:
    url = seeded.url
    before = snapshot(url)
    dump = tmp_path / "all.jsonl"
    exported = run("export", "--all", "-o", str(dump), url=url)
    assert exported.returncode == 0, exported.stderr
    assert "exported 3 sessions (11 entries, 2 checkpoints)" in exported.stdout
    records = [json.loads(line) for line in dump.read_text().splitlines()]
    assert records[0]["kind"] == "header"
    assert records[-1] == {"kind": "end", "sessions": 3, "entries": 11, "checkpoints": 2}

    with sdb.connect(url) as mgr:
        for session_id in before:
            mgr.delete(session_id)
    imported = run("import", str(dump), url=url)
    assert imported.returncode == 0, imported.stderr
    assert "imported 3 sessions (11 entries, 2 checkpoints)" in imported.stdout

    after = snapshot(url)
    assert after.keys() == before.keys()
    for session_id, (meta, entries, checkpoints) in before.items():
        got_meta, got_entries, got_checkpoints = after[session_id]
        assert got_meta == meta  # times, counts, current leaf, user, metadata
        assert got_entries == entries  # ids, parents, timestamps, data, append order
        assert got_checkpoints == checkpoints  # ids, entries, checksums, metadata
    with sdb.connect(url) as mgr:
        for session_id, (_, _, checkpoints) in before.items():
            for checkpoint in checkpoints:
                mgr.get(session_id).restore(checkpoint.id)  # the checksums verify


def test_export_selections_and_import_errors(seeded: Seeded, tmp_path: Path) -> None:
    url = seeded.url
    one = invoke("export", "--session", seeded.forked, url=url)
    assert one.exit_code == 0, one.stderr
    records = [json.loads(line) for line in one.stdout.splitlines()]
    assert [r["session"]["id"] for r in records if r["kind"] == "session"] == [seeded.forked]
    assert sum(r["kind"] == "entry" for r in records) == 7

    agent_file = tmp_path / "support.jsonl"
    summary = as_json(
        invoke("export", "--agent", "support", "-o", str(agent_file), "--json", url=url)
    )
    assert summary["total"] == {"sessions": 2, "entries": 9, "checkpoints": 1}

    assert invoke("export", url=url).exit_code == EXIT_USAGE  # none of --session/--agent/--all
    assert invoke("export", "--all", "--agent", "x", url=url).exit_code == EXIT_USAGE
    assert invoke("export", "--session", UNKNOWN, url=url).exit_code == EXIT_NOT_FOUND

    # Importing into the store that holds them: a conflict, nothing changed.
    before = snapshot(url)
    conflict = invoke("import", str(agent_file), url=url)
    assert conflict.exit_code == EXIT_CONFLICT
    assert "already exists" in one_error_line(conflict.stderr)
    assert snapshot(url) == before

    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(agent_file.read_text().splitlines(keepends=True)[:-1]))
    target = f"sqlite:///{tmp_path / 'target.db'}"
    result = invoke("import", str(cut), url=target)
    assert result.exit_code == EXIT_USAGE
    assert "end record" in one_error_line(result.stderr)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    assert invoke("import", str(bad), url=target).exit_code == EXIT_USAGE
    assert invoke("import", str(tmp_path / "missing.jsonl"), url=target).exit_code == EXIT_USAGE
    with sdb.connect(target) as mgr:
        assert mgr.list_agents() == []  # nothing half-imported


# -- copy ---------------------------------------------------------------------------


@pytest.mark.postgres
def test_copy_to_the_other_sql_kind(
    seeded: Seeded, pg_server: Callable[[], str], tmp_path: Path
) -> None:
    """sqlite -> postgres and postgres -> sqlite (any other kind -> postgres).

    Every variant needs the server (as its source or its target), so all are marked.
    """
    source = seeded.url
    # Into a fresh, empty PostgreSQL database (--migrate creates the tables), or
    # from PostgreSQL into a new SQLite file.
    target = f"sqlite:///{tmp_path / 'copy.db'}" if source.startswith("postgresql") else pg_server()
    copied = run("copy", "--from", source, "--to", target, "--migrate", "--json")
    assert copied.returncode == 0, copied.stderr
    report = json.loads(copied.stdout)
    assert report["ok"] is True
    assert report["counts_match"] is True
    assert report["agents"]["support"]["target"] == {"sessions": 2, "entries": 9, "checkpoints": 1}
    assert report["agents"]["coder"]["target"] == {"sessions": 1, "entries": 2, "checkpoints": 1}
    assert "sessions_db:sessions_db@" not in copied.stdout  # the password is not printed
    assert snapshot(target) == snapshot(source)

    again = invoke("copy", "--from", source, "--to", target)
    assert again.exit_code == EXIT_CONFLICT
    assert invoke("copy", "--from", source, "--to", source).exit_code == EXIT_USAGE


def test_copy_one_agent_human_output(seeded: Seeded, tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path / 'coder.db'}"
    result = invoke("copy", "--from", seeded.url, "--to", target, "--agent", "coder")
    assert result.exit_code == 0, result.stderr
    assert "copied 1 session (2 entries, 1 checkpoint)" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "coder" in line)
    assert "1 → 1" in row
    assert "yes" in row
    with sdb.connect(target) as mgr:
        assert mgr.list_agents() == ["coder"]


# -- maintenance --------------------------------------------------------------------


def test_prune(store_url: str) -> None:
    old_clock = lambda: utcnow() - timedelta(days=40)  # noqa: E731
    with sdb.connect(store_url) as mgr:
        old_mgr = sdb.Manager(mgr.backend, clock=old_clock)
        old = [old_mgr.create("support").id, old_mgr.create("coder").id]
        fresh = mgr.create("support").id

    dry = run("prune", "--older-than", "30d", "--dry-run", url=store_url)
    assert dry.returncode == 0, dry.stderr
    assert "would delete 2 sessions" in dry.stdout
    assert all(session_id in dry.stdout for session_id in old)
    assert fresh not in dry.stdout
    assert len(snapshot(store_url)) == 3  # nothing deleted

    only = as_json(
        invoke("prune", "--older-than", "30d", "--agent", "coder", "--json", url=store_url)
    )
    assert only["sessions"] == [old[1]]
    assert only["dry_run"] is False
    assert as_json(invoke("prune", "--older-than", "1d12h", "--json", url=store_url))[
        "sessions"
    ] == [old[0]]
    assert set(snapshot(store_url)) == {fresh}
    bad = invoke("prune", "--older-than", "soon", url=store_url)
    assert bad.exit_code == EXIT_USAGE
    assert "invalid duration" in one_error_line(bad.stderr)


def test_stats(seeded: Seeded) -> None:
    result = run("stats", "--json", url=seeded.url)
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    by_agent = {row["agent"]: row for row in stats["agents"]}
    assert (by_agent["support"]["sessions"], by_agent["support"]["messages"]) == (2, 5)
    assert (by_agent["coder"]["sessions"], by_agent["coder"]["messages"]) == (1, 1)
    assert stats["total"] == {"agents": 2, "sessions": 3, "messages": 6}
    assert stats["storage_bytes"] > 0

    human = invoke("stats", url=seeded.url)
    assert human.exit_code == 0
    total = next(line for line in human.stdout.splitlines() if "total" in line)
    assert [cell.strip() for cell in total.split("│")[2:4]] == ["3", "6"]
    assert "storage: " in human.stdout


def _damage_file_store(base: Path) -> dict[str, Any]:
    """Leave what crashes leave in a file store; return what repair must report and keep.

    Two sessions survive (one with a torn last write, one with a checkpoint); a
    third session's file is gone, leaving its checkpoint an orphan; there is a
    temporary file of an interrupted rewrite and a damaged index.
    """
    with sdb.connect(base.as_uri()) as mgr:
        torn = mgr.create("assistant")
        torn.append_messages([sdb.Message.new("user", {"content": c}) for c in ("a1", "a2")])
        kept = mgr.create("assistant", user_id="bob")
        kept.append_message(sdb.Message.new("user", {"content": "b1"}))
        checkpoint = kept.checkpoint()
        gone = mgr.create("assistant")
        orphan = gone.checkpoint()
    agent = base / "assistant"
    (agent / f"{gone.id}.jsonl").unlink()
    with (agent / f"{torn.id}.jsonl").open("ab") as f:
        f.write(b'{"id":"torn","parent_id":null,"type":"mess')
    temp = ".sessions.json.0123456789ab.tmp"
    (agent / temp).write_bytes(b"{half a rewrite")
    (agent / "sessions.json").write_bytes(b"{damaged")
    return {
        "report": {
            "agents": ["assistant"],
            "sessions": 2,
            "indexes_rebuilt": ["assistant"],
            "damaged_indexes": ["assistant"],
            "torn_tails": [f"assistant/{torn.id}.jsonl"],
            "damaged_sessions": [],
            "temp_files_removed": [f"assistant/{temp}"],
            "orphan_checkpoints_removed": [f"assistant/checkpoints/{orphan.id}.json"],
            "refused": [],
        },
        "sessions": {torn.id: ["a1", "a2"], kept.id: ["b1"]},
        "checkpoint": (kept.id, checkpoint.id),
    }


def test_repair(tmp_path: Path) -> None:
    shown = _damage_file_store(tmp_path / "human")
    expected = _damage_file_store(tmp_path / "json")
    url = (tmp_path / "json").as_uri()
    report = as_json(invoke("repair", "--json", url=url))
    assert report["repaired"] is True
    assert report["needed"] is True
    result = report["result"]
    assert result.pop("base") == str(tmp_path / "json")
    assert result == expected["report"]
    base = tmp_path / "json"
    for removed in expected["report"]["temp_files_removed"]:
        assert not (base / removed).exists()
    for removed in expected["report"]["orphan_checkpoints_removed"]:
        assert not (base / removed).exists()
    for cut in expected["report"]["torn_tails"]:
        assert (base / cut).read_bytes().endswith(b"}\n")

    # What the human form says, in a real process, about the same damage.
    human = run("repair", url=(tmp_path / "human").as_uri())
    assert human.returncode == 0, human.stderr
    report_lists = [v for v in shown["report"].values() if isinstance(v, list)]
    for item in (path for paths in report_lists for path in paths):
        assert item in human.stdout
    assert "nothing to repair" not in human.stdout

    # A second repair finds nothing left to do, and the store reads back whole.
    again = as_json(invoke("repair", "--json", url=url))
    assert again["needed"] is False, again
    fixes = [k for k, v in expected["report"].items() if isinstance(v, list) and k != "agents"]
    assert {k: again["result"][k] for k in fixes} == {k: [] for k in fixes}
    assert again["result"]["sessions"] == 2
    with sdb.connect(url) as mgr:
        listed = {m.id: m.message_count for m in mgr.list("assistant")}
        assert listed == {sid: len(c) for sid, c in expected["sessions"].items()}
        for sid, contents in expected["sessions"].items():
            assert [m.payload["content"] for m in mgr.get(sid).get_messages()] == contents
        sid, checkpoint = expected["checkpoint"]
        mgr.get(sid).restore(checkpoint)  # verifies its checksum


def test_repair_leaves_sql_stores_alone(sql_url: str) -> None:
    seed(sql_url)
    before = snapshot(sql_url)
    report = as_json(invoke("repair", "--json", url=sql_url))
    assert (report["repaired"], report["needed"]) == (False, False)
    assert "keeps no separate index" in report["message"]
    human = run("repair", url=sql_url)
    assert human.returncode == 0, human.stderr
    assert "nothing to repair" in human.stdout
    assert snapshot(sql_url) == before


def test_verify_clean_then_tampered(seeded: Seeded, tamper: Callable[..., None]) -> None:
    clean = run("verify", url=seeded.url)
    assert clean.returncode == 0, clean.stderr
    assert "checked 2 checkpoints in 3 sessions: all verify" in clean.stdout

    with sdb.connect(seeded.url) as mgr:
        tamper(
            mgr,
            seeded.forked,
            seeded.first_message,
            {"role": "user", "payload": {"content": "What's the weather in Paris?"}},
        )
    broken = run("verify", url=seeded.url)
    assert broken.returncode == EXIT_MISMATCH
    assert seeded.checkpoint in broken.stdout
    assert seeded.checkpoint in one_error_line(broken.stderr)
    report = as_json(invoke("verify", "--json", url=seeded.url))
    assert report["ok"] is False
    assert [m["checkpoint_id"] for m in report["mismatches"]] == [seeded.checkpoint]
    assert invoke("verify", "--agent", "coder", url=seeded.url).exit_code == 0


def test_migrate_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    done = run("migrate", url=url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("migrated to ")
    current = as_json(invoke("migrate", "current", "--json", url=url))
    assert current["at_head"] is True


# -- errors -------------------------------------------------------------------------


def test_unknown_and_malformed_ids(seeded: Seeded) -> None:
    unknown = run("show", UNKNOWN, url=seeded.url)
    assert unknown.returncode == EXIT_NOT_FOUND
    assert UNKNOWN in one_error_line(unknown.stderr)
    assert unknown.stdout == ""
    malformed = run("show", "../etc/passwd", url=seeded.url)
    assert malformed.returncode == EXIT_USAGE
    assert "malformed session ID" in one_error_line(malformed.stderr)
    for args in (("checkpoints", UNKNOWN), ("show", UNKNOWN, "--tree")):
        result = invoke(*args, url=seeded.url)
        assert result.exit_code == EXIT_NOT_FOUND
        one_error_line(result.stderr)
    bad_agent = invoke("list", "../x", url=seeded.url)
    assert bad_agent.exit_code == EXIT_USAGE
    one_error_line(bad_agent.stderr)


def test_unreachable_database_and_bad_urls(tmp_path: Path) -> None:
    down = run("list", "support", url=UNREACHABLE)
    assert down.returncode == EXIT_UNAVAILABLE
    assert "unavailable" in one_error_line(down.stderr)
    bad = run("stats", url="foo://bar")
    assert bad.returncode == EXIT_USAGE
    assert "unsupported store URL" in one_error_line(bad.stderr)
    for args in (("agents",), ("verify",), ("copy", "--from", UNREACHABLE, "--to", "sqlite://")):
        result = invoke(*args, url=None if args[0] == "copy" else UNREACHABLE)
        assert result.exit_code == EXIT_UNAVAILABLE, result.output
        one_error_line(result.stderr)
    missing = invoke("agents", url=f"sqlite:///{tmp_path / 'typo.db'}")
    assert missing.exit_code == EXIT_UNAVAILABLE
    assert "no SQLite database" in one_error_line(missing.stderr)
    assert not (tmp_path / "typo.db").exists()  # a typo does not create a store
    assert invoke("agents").exit_code == EXIT_USAGE  # no --url, no $SESSIONS_DB_URL


def test_help_documents_exit_codes() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "Exit codes:" in result.stdout
    for command in ("list", "show", "export", "import", "copy", "prune", "stats", "verify"):
        assert command in result.stdout
