"""``fork``, ``rewind``, ``pop`` and ``clear``, list filters and paging, lookups by key.

Each command runs as a real process on every store kind, and what it did is
read back through the Python API; the JSON documents, errors and exit codes
are checked in-process as well.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import sessions_db as sdb
from sessions_db.cli import EXIT_CONFLICT, EXIT_NOT_FOUND, EXIT_USAGE

from .test_cli import UNKNOWN, as_json, invoke, one_error_line, run


@dataclass(frozen=True)
class Talk:
    """A session of four messages with a checkpoint after the second."""

    url: str
    id: str
    messages: list[sdb.Message]
    checkpoint: sdb.Checkpoint


def talk(url: str, agent: str = "support", user: str | None = "alice") -> Talk:
    """Store a session: two messages, a checkpoint, two more messages."""
    messages = [
        sdb.Message.new(role, {"content": content})
        for role, content in [
            ("user", "Weather in Lyon?"),
            ("assistant", "Let me check."),
            ("tool", "rain, 12C"),
            ("assistant", "Rain all day."),
        ]
    ]
    with sdb.connect(url) as mgr:
        session = mgr.create(agent, user_id=user, metadata={"channel": "web"})
        session.append_messages(messages[:2])
        checkpoint = session.checkpoint(metadata={"label": "before the tool"})
        session.append_messages(messages[2:])
        return Talk(url, session.id, messages, checkpoint)


def message_ids(url: str, session_id: str) -> list[str]:
    """The IDs of the messages on the session's current branch, through the API."""
    with sdb.connect(url) as mgr:
        return [m.id for m in mgr.get(session_id).get_messages()]


def info(url: str, session_id: str) -> sdb.SessionMetadata:
    """The session's metadata, read fresh through the API."""
    with sdb.connect(url) as mgr:
        return mgr.get(session_id).info()


def entries(url: str, session_id: str) -> list[sdb.SessionEntry]:
    """Every entry of the session, through the API."""
    with sdb.connect(url) as mgr:
        return mgr.get(session_id).get_entries()


def events(url: str, session_id: str) -> list[dict[str, object]]:
    """The data of the session's event entries, in append order."""
    return [e.data for e in entries(url, session_id) if e.type is sdb.EntryType.METADATA]


def session_count(url: str) -> int:
    """How many sessions the store holds, over every agent."""
    with sdb.connect(url) as mgr:
        return sum(len(mgr.list(agent)) for agent in mgr.list_agents())


# -- fork ---------------------------------------------------------------------------


def test_fork_prints_the_new_session_and_copies_the_branch(store_url: str) -> None:
    source = talk(store_url)
    before = entries(store_url, source.id)
    done = run("fork", source.id, url=store_url)
    assert done.returncode == 0, done.stderr
    new_id = done.stdout.strip()
    assert done.stdout == new_id + "\n"  # the ID alone, for $(sessions-db fork ...)
    assert new_id != source.id
    assert message_ids(store_url, new_id) == [m.id for m in source.messages]
    fork = info(store_url, new_id)
    assert (fork.forked_from, fork.forked_at) == (source.id, source.messages[-1].id)
    assert (fork.agent_name, fork.user_id) == ("support", "alice")
    assert fork.metadata == {"channel": "web"}
    assert entries(store_url, source.id) == before  # the source is untouched

    at = run("fork", source.id, "--at", source.messages[1].id, url=store_url)
    assert at.returncode == 0, at.stderr
    assert message_ids(store_url, at.stdout.strip()) == [m.id for m in source.messages[:2]]


def test_fork_at_a_checkpoint_as_json(store_url: str) -> None:
    source = talk(store_url)
    args = ("fork", source.id, "--checkpoint", source.checkpoint.id, "--agent", "triage")
    document = as_json(invoke(*args, "--user", "bob", "--json", url=store_url))
    made = document["session"]
    stored = info(store_url, made["id"])
    assert made["agent_name"] == stored.agent_name == "triage"
    assert made["user_id"] == stored.user_id == "bob"
    assert made["forked_from"] == stored.forked_from == source.id
    assert made["forked_at"] == stored.forked_at == source.checkpoint.entry_id
    assert made["message_count"] == stored.message_count == 2
    assert made["current_leaf"] == stored.current_leaf == source.checkpoint.entry_id
    assert made["metadata"] == {"channel": "web"}
    assert made["key"] is None
    assert message_ids(store_url, made["id"]) == [m.id for m in source.messages[:2]]
    with sdb.connect(store_url) as mgr:
        assert mgr.get(made["id"]).list_checkpoints() == []  # not carried over


def test_fork_errors_create_nothing(store_url: str) -> None:
    source = talk(store_url)
    other = talk(store_url, user="carol")
    unknown = run("fork", UNKNOWN, url=store_url)
    assert unknown.returncode == EXIT_NOT_FOUND
    assert UNKNOWN in one_error_line(unknown.stderr)
    assert unknown.stdout == ""
    missing = invoke("fork", source.id, "--at", "no-such-entry", url=store_url)
    assert missing.exit_code == EXIT_NOT_FOUND
    assert "no-such-entry" in one_error_line(missing.stderr)
    foreign = invoke("fork", source.id, "--checkpoint", other.checkpoint.id, url=store_url)
    assert foreign.exit_code == EXIT_NOT_FOUND
    one_error_line(foreign.stderr)
    both = invoke(
        "fork", source.id, "--at", source.messages[0].id, "--checkpoint", source.checkpoint.id,
        url=store_url,
    )  # fmt: skip
    assert both.exit_code == EXIT_USAGE
    assert "not both" in one_error_line(both.stderr)
    for bad in (("--at", "../x"), ("--checkpoint", "not-a-uuid")):
        malformed = invoke("fork", source.id, *bad, url=store_url)
        assert malformed.exit_code == EXIT_USAGE
        assert "malformed" in one_error_line(malformed.stderr)
    assert session_count(store_url) == 2


# -- rewind -------------------------------------------------------------------------


def test_rewind_moves_the_branch_back(store_url: str) -> None:
    source = talk(store_url)
    kept = source.messages[1]
    done = run("rewind", source.id, "--to", kept.id, url=store_url)
    assert done.returncode == 0, done.stderr
    assert f"rewound session {source.id} to entry {kept.id}: 2 messages" in done.stdout
    assert f"left behind ends at entry {source.messages[-1].id}" in done.stdout
    assert message_ids(store_url, source.id) == [m.id for m in source.messages[:2]]
    assert events(store_url, source.id) == [{"event": "rewind", "to": kept.id}]

    document = as_json(
        invoke("rewind", source.id, "--to", source.messages[0].id, "--json", url=store_url)
    )
    stored = info(store_url, source.id)
    assert document["to"] == source.messages[0].id
    assert document["previous_leaf"] != stored.current_leaf
    assert document["session"]["current_leaf"] == stored.current_leaf
    assert document["session"]["message_count"] == stored.message_count == 1


def test_rewind_refuses_an_entry_off_the_branch(store_url: str) -> None:
    source = talk(store_url)
    with sdb.connect(store_url) as mgr:
        mgr.get(source.id).restore(source.checkpoint.id)
    before = entries(store_url, source.id)
    off_branch = source.messages[3].id
    refused = run("rewind", source.id, "--to", off_branch, url=store_url)
    assert refused.returncode == EXIT_NOT_FOUND
    assert "not on the current branch" in one_error_line(refused.stderr)
    assert refused.stdout == ""
    assert invoke("rewind", UNKNOWN, "--to", off_branch, url=store_url).exit_code == (
        EXIT_NOT_FOUND
    )
    assert invoke("rewind", source.id, "--to", "../x", url=store_url).exit_code == EXIT_USAGE
    assert invoke("rewind", source.id, url=store_url).exit_code == EXIT_USAGE  # no --to
    assert entries(store_url, source.id) == before


# -- pop ------------------------------------------------------------------------------


def test_pop_prints_the_newest_message(store_url: str) -> None:
    source = talk(store_url)
    newest = source.messages[-1]
    done = run("pop", source.id, url=store_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"popped assistant message {newest.id}:",
        "Rain all day.",
        "3 messages left on the current branch",
    ]
    assert message_ids(store_url, source.id) == [m.id for m in source.messages[:3]]
    assert events(store_url, source.id) == [{"event": "pop", "message_id": newest.id}]

    document = as_json(invoke("pop", source.id, "--json", url=store_url))
    tool = source.messages[2]
    assert document["popped"] == {
        "id": tool.id,
        "role": "tool",
        "timestamp": tool.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "payload": {"content": "rain, 12C"},
    }
    assert document["session"]["message_count"] == 2
    assert message_ids(store_url, source.id) == [m.id for m in source.messages[:2]]


def test_pop_of_an_empty_branch_says_so(store_url: str) -> None:
    with sdb.connect(store_url) as mgr:
        session = mgr.create("support")
        only = sdb.Message.new("user", {"content": "hi"})
        session.append_message(only)
        session_id = session.id
    assert as_json(invoke("pop", session_id, "--json", url=store_url))["popped"]["id"] == only.id
    none = run("pop", session_id, url=store_url)
    assert none.returncode == 0, none.stderr
    assert none.stdout == f"session {session_id} has no message to pop\n"
    document = as_json(invoke("pop", session_id, "--json", url=store_url))
    assert document["popped"] is None
    assert document["session"]["message_count"] == 0
    assert [e["event"] for e in events(store_url, session_id)] == ["pop"]  # no-ops not recorded
    unknown = run("pop", UNKNOWN, url=store_url)
    assert unknown.returncode == EXIT_NOT_FOUND
    one_error_line(unknown.stderr)


# -- clear ----------------------------------------------------------------------------


def test_clear_empties_the_branch_and_keeps_the_past(store_url: str) -> None:
    source = talk(store_url)
    before = entries(store_url, source.id)
    done = run("clear", source.id, url=store_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"cleared session {source.id}: the current branch is empty",
        f"the branch left behind ends at entry {source.messages[-1].id}",
    ]
    assert message_ids(store_url, source.id) == []
    assert info(store_url, source.id).message_count == 0
    after = entries(store_url, source.id)
    assert after[: len(before)] == before  # nothing deleted
    assert [e.data for e in after[len(before) :]] == [{"event": "clear"}]

    again = as_json(invoke("clear", source.id, "--json", url=store_url))
    assert again["previous_leaf"] == after[-1].id
    assert again["session"]["message_count"] == 0
    with sdb.connect(store_url) as mgr:
        mgr.get(source.id).restore(source.checkpoint.id)  # the past is still there
    assert message_ids(store_url, source.id) == [m.id for m in source.messages[:2]]
    unknown = invoke("clear", UNKNOWN, url=store_url)
    assert unknown.exit_code == EXIT_NOT_FOUND
    one_error_line(unknown.stderr)
    assert invoke("clear", "nope", url=store_url).exit_code == EXIT_USAGE


# -- list: filters and keyset paging ------------------------------------------------

DAY = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def listed(*args: str, url: str) -> list[str]:
    """The IDs ``list --json`` prints."""
    result = invoke("list", *args, "--json", url=url)
    assert result.exit_code == 0, result.stderr
    return [s["id"] for s in as_json(result)["sessions"]]


def stopped(moment: datetime) -> Callable[[], datetime]:
    """A clock that always says ``moment``."""
    return lambda: moment


def seed_days(url: str) -> list[str]:
    """Five sessions of agent support, updated on days 0..4, newest first in the result."""
    made = []
    with sdb.connect(url) as mgr:
        for day in range(5):
            clocked = sdb.Manager(mgr.backend, clock=stopped(DAY + timedelta(days=day)))
            metadata = {"team": "blue" if day % 2 else "red", "n": day, "flag": day == 4}
            made.append(clocked.create("support", metadata=metadata, key=f"k{day}").id)
        mgr.create("coder", metadata={"team": "red"})
    return made[::-1]


def test_list_filters_by_time_and_metadata(store_url: str) -> None:
    newest_first = seed_days(store_url)
    result = run(
        "list", "support", "--updated-after", "2026-03-02", "--updated-before",
        "2026-03-04T12:00:00+02:00", "--metadata", "team=blue", "--json", url=store_url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = as_json(result)
    # Days 1 and 3 are blue; 2026-03-04 12:00 +02:00 is 10:00 UTC, after day 3's 09:00.
    assert [s["id"] for s in document["sessions"]] == [newest_first[1], newest_first[3]]
    assert document["updated_after"] == "2026-03-02T00:00:00.000000Z"
    assert document["updated_before"] == "2026-03-04T10:00:00.000000Z"
    assert document["metadata"] == {"team": "blue"}
    assert [s["key"] for s in document["sessions"]] == ["k3", "k1"]
    assert {s["forked_from"] for s in document["sessions"]} == {None}

    assert listed("support", "--metadata", "n=2", url=store_url) == [newest_first[2]]
    assert listed("support", "--metadata", 'n="2"', url=store_url) == []  # a string
    assert listed("support", "--metadata", "flag=true", url=store_url) == [newest_first[0]]
    assert listed("support", "--metadata", "team=red", "--metadata", "n=4", url=store_url) == [
        newest_first[0]
    ]
    assert listed("support", "--updated-before", "2026-03-01T09:00:00Z", url=store_url) == []
    assert listed("support", "--updated-after", "1d", url=store_url) == []  # none this recent
    assert len(listed("support", "--updated-after", "20000d", url=store_url)) == 5
    assert invoke("list", "support", "--metadata", "team=x", url=store_url).stdout == (
        "no sessions of agent support match the filters\n"
    )


def test_list_pages_after_a_session(store_url: str) -> None:
    newest_first = seed_days(store_url)
    first = as_json(invoke("list", "support", "--limit", "2", "--json", url=store_url))
    assert [s["id"] for s in first["sessions"]] == newest_first[:2]
    assert first["next_after"] == newest_first[1]
    seen = [s["id"] for s in first["sessions"]]
    after = first["next_after"]
    for _ in range(len(newest_first)):  # bounded: a listing that does not advance fails
        if after is None:
            break
        page = as_json(
            invoke("list", "support", "--limit", "2", "--after", after, "--json", url=store_url)
        )
        assert page["after"] == after
        seen += [s["id"] for s in page["sessions"]]
        after = page["next_after"]
    assert after is None
    assert seen == newest_first

    human = run("list", "support", "--limit", "2", "--after", newest_first[1], url=store_url)
    assert human.returncode == 0, human.stderr
    assert [sid for sid in newest_first if sid in human.stdout] == newest_first[2:4]
    assert f"next page: --after {newest_first[3]}" in human.stdout
    # A session updated since it was listed moved to the front: the listing
    # continues after it as it is now.
    with sdb.connect(store_url) as mgr:
        mgr.get(newest_first[3]).append_message(sdb.Message.new("user", {"content": "later"}))
    rest = listed("support", "--after", newest_first[3], url=store_url)
    assert rest == [*newest_first[:3], newest_first[4]]


def test_list_rejects_bad_filters(store_url: str) -> None:
    seed_days(store_url)
    for args in (
        ("--metadata", "team"),
        ("--metadata", "=x"),
        ("--metadata", "team=red", "--metadata", "team=blue"),
        ("--updated-after", "yesterday"),
        ("--updated-before", "2026-13-01"),
        ("--after", "not-a-session"),
    ):
        result = invoke("list", "support", *args, url=store_url)
        assert result.exit_code == EXIT_USAGE, args
        one_error_line(result.stderr)
    bad = run("list", "support", "--metadata", "team", url=store_url)
    assert bad.returncode == EXIT_USAGE
    assert "KEY=VALUE" in one_error_line(bad.stderr)
    unknown = invoke("list", "support", "--after", UNKNOWN, url=store_url)
    assert unknown.exit_code == EXIT_NOT_FOUND
    assert UNKNOWN in one_error_line(unknown.stderr)
    with sdb.connect(store_url) as mgr:
        coder = mgr.list("coder")[0].id
    wrong_agent = invoke("list", "support", "--after", coder, url=store_url)
    assert wrong_agent.exit_code == EXIT_USAGE
    assert "agent coder" in one_error_line(wrong_agent.stderr)


def test_metadata_values_that_are_not_json_are_strings(store_url: str) -> None:
    with sdb.connect(store_url) as mgr:
        words = mgr.create("support", metadata={"v": "NaN", "w": "", "x": "a=b"}).id
        mgr.create("support", metadata={"v": 1})
    assert listed("support", "--metadata", "v=NaN", url=store_url) == [words]
    assert listed("support", "--metadata", "w=", "--metadata", "x=a=b", url=store_url) == [words]


# -- lookups by external key ------------------------------------------------------------


def test_show_and_checkpoints_by_key(store_url: str) -> None:
    key = "user:42/chat#1 é\x1b[31m"
    with sdb.connect(store_url) as mgr:
        session = mgr.create("support", key=key)
        session.append_message(sdb.Message.new("user", {"content": "hello by key"}))
        checkpoint = session.checkpoint()
        mgr.create("coder", key=key)  # the same key, another agent
    shown = run("show", "--agent", "support", "--key", key, url=store_url)
    assert shown.returncode == 0, shown.stderr
    assert f"session {session.id}" in shown.stdout
    assert "hello by key" in shown.stdout
    assert "key user:42/chat#1 é\\x1b[31m" in shown.stdout  # escaped, not sent to the terminal
    assert "\x1b[31m" not in shown.stdout
    document = as_json(invoke("show", "--agent", "support", "--key", key, "--json", url=store_url))
    assert document["session"]["id"] == session.id
    assert document["session"]["key"] == key
    cps = as_json(
        invoke("checkpoints", "--agent", "support", "--key", key, "--json", url=store_url)
    )
    assert (cps["session_id"], [c["id"] for c in cps["checkpoints"]]) == (
        session.id,
        [checkpoint.id],
    )

    absent = run("show", "--agent", "support", "--key", "nope", url=store_url)
    assert absent.returncode == EXIT_NOT_FOUND
    one_error_line(absent.stderr)
    for args in (
        ("show", "--key", key),  # no agent
        ("show", "--agent", "support"),  # no key
        ("show",),  # nothing
        ("show", session.id, "--agent", "support", "--key", key),  # both
        ("checkpoints", "--key", key),
    ):
        result = invoke(*args, url=store_url)
        assert result.exit_code == EXIT_USAGE, args
        one_error_line(result.stderr)


# -- show --tree ----------------------------------------------------------------------


def line_with(lines: list[str], text: str) -> int:
    """The index of the only line holding ``text``."""
    found = [i for i, line in enumerate(lines) if text in line]
    assert len(found) == 1, (text, lines)
    return found[0]


def test_tree_marks_forks_rewinds_pops_and_clears(store_url: str, store_kind: str) -> None:
    source = talk(store_url)
    early = source.messages[1].id
    with sdb.connect(store_url) as mgr:
        session = mgr.get(source.id)
        fork = session.fork(at=early)
        elsewhere = session.fork(agent_name="triage")  # another agent
        session.rewind(source.messages[2].id)
        popped = session.pop_message()
        assert popped is not None
        session.clear()
    tree = run("show", source.id, "--tree", url=store_url)
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    sql = store_kind != "file"  # a file store finds forks among the agent's sessions only
    assert (", 2 forks, " if sql else ", 1 fork, ") in lines[1]
    taken = line_with(lines, f"⑂ fork {fork.id} taken here")
    assert early[:8] in lines[taken - 1]  # under the entry it was taken at
    assert (f"fork {elsewhere.id}" in tree.stdout) is sql
    rewind = lines[line_with(lines, f"back to entry {source.messages[2].id}")]
    assert "↺ " in rewind
    assert " rewind " in rewind
    pop = lines[line_with(lines, f"took message {popped.id} off the branch")]
    assert "↶ " in pop
    clear = lines[line_with(lines, "emptied the branch")]
    assert clear.startswith("   ∅ ")
    assert "◀ current leaf" in clear
    # The clear started the tree again: its root is a branch of its own.
    assert lines[lines.index(clear) - 1] == "└─ branch 2/2 (current)"
    assert any(line.startswith("├─ branch 1/2") for line in lines)

    forked = run("show", fork.id, "--tree", url=store_url)
    assert forked.returncode == 0, forked.stderr
    fork_lines = forked.stdout.splitlines()
    assert f"forked from {source.id} at entry {early}" in forked.stdout
    here = line_with(fork_lines, f"⑂ forked from session {source.id} here")
    assert early[:8] in fork_lines[here - 1]

    document = as_json(invoke("show", source.id, "--tree", "--json", url=store_url))
    expected = [{"session_id": fork.id, "forked_at": early}]
    if sql:
        expected.append({"session_id": elsewhere.id, "forked_at": source.messages[-1].id})
    assert document["forks"] == expected
    depth = {e["id"]: e["depth"] for e in document["entries"]}
    assert depth[source.messages[0].id] == 1  # under the first of two roots
    shown_fork = as_json(invoke("show", fork.id, "--json", url=store_url))["session"]
    assert (shown_fork["forked_from"], shown_fork["forked_at"]) == (source.id, early)
    assert as_json(invoke("show", fork.id, "--tree", "--json", url=store_url))["forks"] == []


@pytest.mark.parametrize(
    "command", ["fork", "rewind", "pop", "clear", "list", "show", "checkpoints"]
)
def test_help_of_the_commands(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "--json" in result.stdout
    assert "--url" in result.stdout


# -- export and import ----------------------------------------------------------------


def test_export_and_import_keep_cleared_and_popped_sessions(store_url: str, tmp_path: Path) -> None:
    """A clear, or a pop of the first message, starts the tree again: a second root."""
    with sdb.connect(store_url) as mgr:
        cleared = mgr.create("support")
        cleared.append_messages([sdb.Message.new("user", {"content": c}) for c in ("a", "b")])
        checkpoint = cleared.checkpoint()
        cleared.clear()
        cleared.append_message(sdb.Message.new("user", {"content": "fresh"}))
        popped = mgr.create("support")
        popped.append_message(sdb.Message.new("user", {"content": "gone"}))
        popped.pop_message()
        popped.append_message(sdb.Message.new("user", {"content": "again"}))
        stored = {
            s.id: (mgr.backend.load_session(s.id), mgr.backend.load_entries(s.id))
            for s in (cleared, popped)
        }
    dump = tmp_path / "all.jsonl"
    exported = run("export", "--all", "-o", str(dump), url=store_url)
    assert exported.returncode == 0, exported.stderr
    with sdb.connect(store_url) as mgr:
        for session_id in stored:
            mgr.delete(session_id)
    imported = run("import", str(dump), url=store_url)
    assert imported.returncode == 0, imported.stderr
    with sdb.connect(store_url) as mgr:
        for session_id, (meta, tree) in stored.items():
            assert mgr.backend.load_session(session_id) == meta
            assert mgr.backend.load_entries(session_id) == tree
        assert [m.payload["content"] for m in mgr.get(cleared.id).get_messages()] == ["fresh"]
        assert [m.payload["content"] for m in mgr.get(popped.id).get_messages()] == ["again"]
        mgr.get(cleared.id).restore(checkpoint.id)  # its checksum verifies
        assert [m.payload["content"] for m in mgr.get(cleared.id).get_messages()] == ["a", "b"]


def test_export_and_import_keep_keys_and_lineage(store_url: str, tmp_path: Path) -> None:
    with sdb.connect(store_url) as mgr:
        keyed = mgr.create("support", user_id="ann", key="thread:7/ü")
        keyed.append_messages([sdb.Message.new("user", {"content": c}) for c in ("a", "b")])
        fork = keyed.fork()
        stored = {s.id: mgr.backend.load_session(s.id) for s in (keyed, fork)}
    dump = tmp_path / "keyed.jsonl"
    assert invoke("export", "--all", "-o", str(dump), url=store_url).exit_code == 0
    # Into the same store: the sessions are there (conflict), and nothing changes.
    again = invoke("import", str(dump), url=store_url)
    assert again.exit_code == EXIT_CONFLICT
    with sdb.connect(store_url) as mgr:
        for session_id in stored:
            mgr.delete(session_id)
        squatter = mgr.create("support", key="thread:7/ü")
    # The key is taken by another session now: a conflict, and that session stays.
    taken = invoke("import", str(dump), url=store_url)
    assert taken.exit_code == EXIT_CONFLICT
    with sdb.connect(store_url) as mgr:
        assert mgr.get_by_key("support", "thread:7/ü").id == squatter.id
        with pytest.raises(sdb.SessionNotFoundError):
            mgr.get(keyed.id)  # refused whole; the import goes on session by session
        mgr.delete(squatter.id)
        mgr.delete(fork.id)
    imported = invoke("import", str(dump), url=store_url)
    assert imported.exit_code == 0, imported.stderr
    with sdb.connect(store_url) as mgr:
        for session_id, meta in stored.items():
            assert mgr.backend.load_session(session_id) == meta
        assert mgr.get_by_key("support", "thread:7/ü").id == keyed.id
        assert mgr.get(fork.id).info().forked_from == keyed.id
