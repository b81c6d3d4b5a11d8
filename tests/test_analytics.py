"""Every recipe of docs/analytics.md, run as written through the real psql on seeded data."""

from __future__ import annotations

import csv
import glob
import io
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url

import sessions_db as sdb

pytestmark = pytest.mark.postgres

DOC = Path(__file__).resolve().parent.parent / "docs" / "analytics.md"
RECIPE = re.compile(r"<!-- recipe: (\w+) -->\s*```sql\n(.*?)```", re.DOTALL)
RECIPES = dict(RECIPE.findall(DOC.read_text()))
DAY1 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)


def _m(role: str, content: str, at: datetime, **extra: Any) -> sdb.Message:
    return sdb.Message.new(role, {"content": content, **extra}, timestamp=at)


@pytest.fixture
def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    from .conftest import make_store

    url = make_store("postgres", request, tmp_path)
    with sdb.connect(url) as mgr:
        alice1 = mgr.create("support", user_id="alice")
        alice1.append_messages([_m("user", "hi", DAY1), _m("assistant", "hello", DAY1)])
        checkpoint = alice1.checkpoint()
        alice1.append_message(_m("assistant", "wrong answer", DAY1))
        alice1.restore(checkpoint.id)
        alice1.append_message(
            _m("assistant", "right answer", DAY2, tool_calls=[{"function": {"name": "search"}}])
        )
        alice2 = mgr.create("support", user_id="alice")
        alice2.append_message(_m("user", "again", DAY2))
        bob = mgr.create("sales", user_id="bob")
        bob.append_messages(
            [
                _m("user", "price?", DAY2),
                _m(
                    "assistant",
                    "checking",
                    DAY2,
                    tool_calls=[
                        {"function": {"name": "search"}},
                        {"function": {"name": "quote"}},
                    ],
                ),
            ]
        )
        mgr.create("sales")  # anonymous, empty
    return {"url": url, "alice1": alice1.id, "alice2": alice2.id, "bob": bob.id}


def _psql() -> str:
    found = shutil.which("psql") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"), reverse=True)), None
    )
    assert found, "psql is needed to test the recipes as users run them"
    return found


def _run(seeded: dict[str, Any], name: str, **variables: str) -> list[tuple[str, ...]]:
    """Run recipe ``name`` through psql, as the doc tells users to, and return its rows."""
    url = make_url(seeded["url"]).set(drivername="postgresql")
    args = [_psql(), "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1"]
    for key, value in variables.items():
        args += ["-v", f"{key}={value}"]
    args += ["-d", url.render_as_string(hide_password=False), "-f", "-"]
    done = subprocess.run(
        args, input=RECIPES[name], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    header, *rows = csv.reader(io.StringIO(done.stdout))
    assert header
    return [tuple(row) for row in rows]


def test_every_recipe_is_tested() -> None:
    assert set(RECIPES) == {
        "messages_per_agent_per_day",
        "messages_per_role",
        "sessions_per_user",
        "branches_and_restores",
        "current_branch",
        "last_message_per_session",
        "tool_calls_by_name",
        "forks",
        "forks_per_source",
        "pops_per_session",
        "popped_messages",
        "clears_per_day",
        "rewinds",
    }


def test_messages_per_agent_per_day(seeded: dict[str, Any]) -> None:
    assert _run(seeded, "messages_per_agent_per_day") == [
        ("support", "2026-03-01", "3"),
        ("sales", "2026-03-02", "2"),
        ("support", "2026-03-02", "2"),
    ]


def test_messages_per_role(seeded: dict[str, Any]) -> None:
    assert _run(seeded, "messages_per_role") == [("assistant", "4"), ("user", "3")]


def test_sessions_per_user(seeded: dict[str, Any]) -> None:
    assert _run(seeded, "sessions_per_user") == [
        ("support", "alice", "2", "4"),
        ("sales", "bob", "1", "2"),
    ]


def test_branches_and_restores(seeded: dict[str, Any]) -> None:
    rows = {row[0]: row[1:] for row in _run(seeded, "branches_and_restores")}
    assert rows[seeded["alice1"]] == ("1", "2", "1")
    assert rows[seeded["alice2"]] == ("0", "1", "0")
    assert rows[seeded["bob"]] == ("0", "1", "0")
    assert len(rows) == 4


def test_current_branch(seeded: dict[str, Any]) -> None:
    rows = _run(seeded, "current_branch", session_id=seeded["alice1"])
    assert [(role, content) for role, content, _ in rows] == [
        ("user", "hi"),
        ("assistant", "hello"),
        ("assistant", "right answer"),
    ]
    with sdb.connect(seeded["url"]) as mgr:
        api = mgr.get(seeded["alice1"]).get_messages()
    assert [m.payload["content"] for m in api] == [content for _, content, _ in rows]


def test_last_message_per_session(seeded: dict[str, Any]) -> None:
    rows = _run(seeded, "last_message_per_session")
    last = {session: content for session, _, content, _ in rows}
    assert last == {
        seeded["alice1"]: "right answer",
        seeded["alice2"]: "again",
        seeded["bob"]: "checking",
    }


def test_tool_calls_by_name(seeded: dict[str, Any]) -> None:
    assert _run(seeded, "tool_calls_by_name") == [("search", "2"), ("quote", "1")]


# -- forks, pops, clears and rewinds ------------------------------------------------


@pytest.fixture
def operated(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Sessions forked, popped, rewound and cleared on two days, through the API."""
    from .conftest import make_store

    url = make_store("postgres", request, tmp_path)
    with sdb.connect(url) as mgr:
        day1 = sdb.Manager(mgr.backend, clock=lambda: DAY1)
        day2 = sdb.Manager(mgr.backend, clock=lambda: DAY2)
        said = [
            _m("user", "hi", DAY1),
            _m("assistant", "hello", DAY1),
            _m("user", "book it", DAY1),
            _m("assistant", "booked", DAY1),
        ]
        source = day1.create("support", user_id="alice")
        source.append_messages(said)
        early = source.fork(at=said[1].id)  # day 1, two messages
        late = day2.get(source.id).fork(agent_name="triage")  # day 2, all four
        other = day1.create("sales", user_id="bob")
        asked = [_m("user", "a", DAY1), _m("assistant", "b", DAY1), _m("user", "c", DAY1)]
        other.append_messages(asked)
        copy = other.fork()  # day 1, three messages

        source_day2 = day2.get(source.id)
        source_day2.pop_message()  # "booked"
        source_day2.pop_message()  # "book it"
        day2.get(early.id).pop_message()  # "hello": the fork's copy, with the same ID

        other.rewind(asked[0].id)  # day 1: two messages off the branch
        late_day2 = day2.get(late.id)
        late_day2.rewind(said[2].id)  # day 2: one message off

        other.clear()  # day 1
        late_day2.clear()  # day 2, twice
        late_day2.clear()
        source_day2.clear()
    return {
        "url": url,
        "said": [m.id for m in said],
        "asked": [m.id for m in asked],
        "source": source.id,
        "early": early.id,
        "late": late.id,
        "other": other.id,
        "copy": copy.id,
    }


def test_forks(operated: dict[str, Any]) -> None:
    rows = _run(operated, "forks")
    said, asked = operated["said"], operated["asked"]
    assert {row[0]: row[1:5] for row in rows} == {
        operated["early"]: ("support", operated["source"], said[1], "2"),
        operated["late"]: ("triage", operated["source"], said[3], "4"),
        operated["copy"]: ("sales", operated["other"], asked[2], "3"),
    }
    assert rows[-1][0] == operated["late"]  # the newest fork last
    with sdb.connect(operated["url"]) as mgr:
        api = mgr.get(operated["late"]).info()
    assert (api.forked_from, api.forked_at) == (operated["source"], said[3])


def test_forks_per_source(operated: dict[str, Any]) -> None:
    rows = _run(operated, "forks_per_source")
    assert [row[:2] for row in rows] == [(operated["source"], "2"), (operated["other"], "1")]
    first, last = rows[0][2:]
    assert first < last  # day 1, then day 2


def test_pops_per_session(operated: dict[str, Any]) -> None:
    said = operated["said"]
    assert _run(operated, "pops_per_session") == [
        (operated["source"], "2", "{" + f"{said[3]},{said[2]}" + "}"),
        (operated["early"], "1", "{" + said[1] + "}"),
    ]
    with sdb.connect(operated["url"]) as mgr:
        recorded = [
            e.data["message_id"]
            for e in mgr.get(operated["source"]).get_entries()
            if e.data.get("event") == "pop"
        ]
    assert recorded == [said[3], said[2]]


def test_popped_messages(operated: dict[str, Any]) -> None:
    rows = _run(operated, "popped_messages")
    said = operated["said"]
    assert sorted(
        (session, mid, role, content) for session, _, mid, role, content in rows
    ) == sorted(
        [
            (operated["source"], said[3], "assistant", "booked"),
            (operated["source"], said[2], "user", "book it"),
            (operated["early"], said[1], "assistant", "hello"),
        ]
    )


def test_clears_per_day(operated: dict[str, Any]) -> None:
    assert _run(operated, "clears_per_day") == [("2026-03-01", "1", "1"), ("2026-03-02", "3", "2")]
    with sdb.connect(operated["url"]) as mgr:
        assert mgr.get(operated["late"]).get_messages() == []


def test_rewinds(operated: dict[str, Any]) -> None:
    rows = _run(operated, "rewinds")
    assert [(session, to, dropped) for session, _, to, dropped in rows] == [
        (operated["other"], operated["asked"][0], "2"),
        (operated["late"], operated["said"][2], "1"),
    ]
