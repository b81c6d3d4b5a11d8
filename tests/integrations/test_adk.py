"""Google ADK's session service on sessions_db, with the real ADK, on every store.

* ADK's ``Runner`` with a scripted model: a conversation with a tool call and state
  in all scopes, resumed by a fresh Runner and service in another process.
* The behaviours ADK's own tests check for its session services, as our tests.
* Many writers on one session: every event lands once, in order, never stale.
* Exact round trips of events, the mapping onto sessions_db, crash recovery on
  the file store, atomicity on SQL, and erasure.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions, EventCompaction
from google.adk.sessions.base_session_service import GetSessionConfig
from google.adk.sessions.session import Session
from google.adk.tools.tool_confirmation import ToolConfirmation
from google.genai import types
from sqlalchemy import create_engine, text

import sessions_db as sdb
from sessions_db import aio
from sessions_db.connect import file_path
from sessions_db.integrations.adk import SessionsDBSessionService, parse_key, session_key
from sessions_db.sql.engine import normalize_url

from . import adk_app

ROOT = Path(__file__).resolve().parents[2]
APP = "my_app"

Body = Callable[[SessionsDBSessionService], Awaitable[None]]


def run(url: str, body: Body) -> None:
    """Run ``body`` with a service on ``url`` (closed afterwards)."""

    async def main() -> None:
        async with SessionsDBSessionService(url) as service:
            await body(service)

    asyncio.run(main())


def event(author: str = "user", **fields: Any) -> Event:
    """An event with an invocation ID; ``delta=`` sets ``actions.state_delta``."""
    delta = fields.pop("delta", None)
    if delta is not None:
        fields["actions"] = EventActions(state_delta=delta)
    fields.setdefault("invocation_id", "inv")
    return Event(author=author, **fields)


# -- ADK's Runner, resumed in another process ------------------------------------------


def test_runner_conversation_resumes_in_a_new_process(store_url: str) -> None:
    async def first_process() -> dict[str, Any]:
        async with SessionsDBSessionService(store_url) as service:
            await service.create_session(
                app_name=adk_app.APP, user_id=adk_app.USER, session_id=adk_app.SESSION
            )
            runner, model = adk_app.make_runner(service)
            hello = await adk_app.say(runner, "hello")
            told = await adk_app.say(runner, "my favourite colour is teal")
            stored = await adk_app.snapshot(service)
            return {"hello": hello, "told": told, "stored": stored, "seen": model.seen}

    first = asyncio.run(first_process())
    assert first["hello"] == ["Hi! I was sent 1 contents."]
    assert first["told"] == ['Done: {"color": "teal", "status": "ok", "temp_seen": "never stored"}']
    stored = first["stored"]
    # user, reply; user, call, response, reply
    assert [e["author"] for e in stored["events"]] == ["user", "assistant"] * 1 + [
        "user",
        "assistant",
        "assistant",
        "assistant",
    ]
    assert stored["state"] == {
        "app:greeting": "hello from the app",
        "user:favorite_color": "teal",
        "turns": 1,
    }
    assert stored["user_state"] == {"favorite_color": "teal"}
    deltas = [e.get("actions", {}).get("state_delta", {}) for e in stored["events"]]
    assert {"app:greeting", "user:favorite_color", "turns"} <= set().union(*deltas)
    assert not any(key.startswith("temp:") for d in deltas for key in d)

    done = subprocess.run(
        [sys.executable, "-m", "tests.integrations.adk_app", store_url, "what is my colour?"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    second = json.loads(done.stdout)
    # The new process sees the very same history and state.
    assert second["before"] == stored
    # Its model was sent the whole history: the 6 stored events and the new question.
    assert second["seen"][0] == len(stored["events"]) + 1
    assert second["replies"] == [
        ['Done: {"color": "teal", "greeting": "hello from the app", "temp": null, "turns": 1}']
    ]

    async def check() -> None:
        async with SessionsDBSessionService(store_url) as service:
            after = await adk_app.snapshot(service)
            assert after["events"][: len(stored["events"])] == stored["events"]
            assert len(after["events"]) == len(stored["events"]) + 4
            assert after["state"] == stored["state"]

    asyncio.run(check())


# -- ADK's session-service behaviours ---------------------------------------------------


def test_get_empty_session(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        assert await svc.get_session(app_name=APP, user_id="u", session_id="123") is None
        assert await svc.get_session(app_name="no such app!", user_id="u", session_id="1") is None

    run(store_url, body)


def test_create_get_session(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        session = await svc.create_session(app_name=APP, user_id="u", state={"key": "value"})
        assert (session.app_name, session.user_id, session.state) == (APP, "u", {"key": "value"})
        assert session.id
        assert session.last_update_time <= time.time()
        got = await svc.get_session(app_name=APP, user_id="u", session_id=session.id)
        assert got == session  # the whole model: exact float time, events, state
        await svc.delete_session(app_name=APP, user_id="u", session_id=session.id)
        assert await svc.get_session(app_name=APP, user_id="u", session_id=session.id) is None
        # Deleting again, or an unknown session, does nothing.
        await svc.delete_session(app_name=APP, user_id="u", session_id=session.id)

    run(store_url, body)


def test_create_and_list_sessions(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        ids = [f"session{i}" for i in range(5)]
        for sid in ids:
            await svc.create_session(
                app_name=APP, user_id="u", session_id=sid, state={"key": "value" + sid}
            )
        listed = (await svc.list_sessions(app_name=APP, user_id="u")).sessions
        assert {s.id for s in listed} == set(ids)
        for s in listed:
            assert s.state == {"key": "value" + s.id}
            assert s.events == []
        assert (await svc.list_sessions(app_name="other_app", user_id="u")).sessions == []
        assert (await svc.list_sessions(app_name=APP, user_id="nobody")).sessions == []

    run(store_url, body)


def test_list_sessions_ordered_by_last_update_time(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        created = {}
        for sid in ("a", "b", "c"):
            created[sid] = await svc.create_session(app_name=APP, user_id="u", session_id=sid)
        later = max(s.last_update_time for s in created.values()) + 1
        await svc.append_event(created["a"], event(timestamp=later))
        listed = (await svc.list_sessions(app_name=APP, user_id="u")).sessions
        assert [s.id for s in listed] == ["b", "c", "a"]
        assert listed[-1].last_update_time == later
        # Ties go by user, then ID.
        tie = listed[-1].last_update_time
        other = await svc.create_session(app_name=APP, user_id="t", session_id="z")
        await svc.append_event(other, event(timestamp=tie))
        listed = (await svc.list_sessions(app_name=APP)).sessions
        assert [(s.user_id, s.id) for s in listed] == [
            ("u", "b"),
            ("u", "c"),
            ("t", "z"),
            ("u", "a"),
        ]

    run(store_url, body)


def test_list_sessions_all_users(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        for user, sid in (("user1", "s1a"), ("user1", "s1b"), ("user2", "s2a")):
            await svc.create_session(
                app_name=APP,
                user_id=user,
                session_id=sid,
                state={"key": "v" + sid, "user:who": user, "app:shared": 1},
            )
        one = {
            s.id: s.state for s in (await svc.list_sessions(app_name=APP, user_id="user1")).sessions
        }
        assert one == {
            "s1a": {"key": "vs1a", "user:who": "user1", "app:shared": 1},
            "s1b": {"key": "vs1b", "user:who": "user1", "app:shared": 1},
        }
        every = (await svc.list_sessions(app_name=APP, user_id=None)).sessions
        assert {s.id: (s.user_id, s.state) for s in every} == {
            "s1a": ("user1", one["s1a"]),
            "s1b": ("user1", one["s1b"]),
            "s2a": ("user2", {"key": "vs2a", "user:who": "user2", "app:shared": 1}),
        }

    run(store_url, body)


def test_list_sessions_strips_events_and_merges_scoped_state(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u", session_id="s")
        delta = {"k": 1, "app:a": 2, "user:b": 3, "temp:t": 4}
        await svc.append_event(s, event(delta=delta))
        (listed,) = (await svc.list_sessions(app_name=APP, user_id="u")).sessions
        assert listed.events == []
        assert listed.state == {"k": 1, "app:a": 2, "user:b": 3}
        assert listed.last_update_time == s.last_update_time

    run(store_url, body)


def test_app_state_is_shared_by_all_users_of_app(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s1 = await svc.create_session(
            app_name=APP, user_id="u1", session_id="s1", state={"app:k1": "v1"}
        )
        await svc.append_event(s1, event(delta={"app:k2": "v2"}))
        s2 = await svc.create_session(app_name=APP, user_id="u2", session_id="s2")
        assert s2.state == {"app:k1": "v1", "app:k2": "v2"}
        again = await svc.get_session(app_name=APP, user_id="u1", session_id="s1")
        assert again is not None
        assert again.state == {"app:k1": "v1", "app:k2": "v2"}
        other = await svc.create_session(app_name="other_app", user_id="u1", session_id="s1")
        assert other.state == {}

    run(store_url, body)


def test_user_state_is_shared_only_by_user_sessions(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s1 = await svc.create_session(
            app_name=APP, user_id="u1", session_id="s1", state={"user:k1": "v1"}
        )
        await svc.append_event(s1, event(delta={"user:k2": "v2"}))
        s1b = await svc.create_session(app_name=APP, user_id="u1", session_id="s1b")
        assert s1b.state == {"user:k1": "v1", "user:k2": "v2"}
        s2 = await svc.create_session(app_name=APP, user_id="u2", session_id="s2")
        assert s2.state == {}

    run(store_url, body)


def test_session_state_is_not_shared(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s1 = await svc.create_session(
            app_name=APP, user_id="u1", session_id="s1", state={"sk1": "v1"}
        )
        await svc.append_event(s1, event(delta={"sk2": "v2"}))
        got = await svc.get_session(app_name=APP, user_id="u1", session_id="s1")
        assert got is not None
        assert got.state == {"sk1": "v1", "sk2": "v2"}
        s1b = await svc.create_session(app_name=APP, user_id="u1", session_id="s1b")
        assert s1b.state == {}

    run(store_url, body)


@pytest.mark.parametrize("prefix", ["", "app:", "user:"])
def test_dict_valued_state_delta_replaces_stored_value(store_url: str, prefix: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        key = prefix + "profile"
        s = await svc.create_session(
            app_name=APP, user_id="u", session_id="s", state={key: {"name": "A", "age": 1}}
        )
        await svc.append_event(s, event(delta={key: {"name": "B"}}))
        assert s.state[key] == {"name": "B"}  # the live object: replaced, not merged
        got = await svc.get_session(app_name=APP, user_id="u", session_id="s")
        assert got is not None
        assert got.state[key] == {"name": "B"}

    run(store_url, body)


@pytest.mark.parametrize("prefix", ["", "app:", "user:"])
def test_none_valued_state_delta_is_stored_not_dropped(store_url: str, prefix: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        key = prefix + "k"
        s = await svc.create_session(app_name=APP, user_id="u", session_id="s", state={key: 1})
        await svc.append_event(s, event(delta={key: None}))
        got = await svc.get_session(app_name=APP, user_id="u", session_id="s")
        assert got is not None
        assert key in got.state
        assert got.state[key] is None
        if prefix == "user:":
            assert await svc.get_user_state(app_name=APP, user_id="u") == {"k": None}

    run(store_url, body)


def test_boolean_state_survives_unrelated_state_delta(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(
            app_name=APP,
            user_id="u",
            session_id="s",
            state={"flag": False, "app:on": True, "n": 0, "f": 1.5},
        )
        await svc.append_event(s, event(delta={"other": 1}))
        got = await svc.get_session(app_name=APP, user_id="u", session_id="s")
        assert got is not None
        assert got.state == {"flag": False, "app:on": True, "n": 0, "f": 1.5, "other": 1}
        assert got.state["flag"] is False
        assert type(got.state["n"]) is int

    run(store_url, body)


def test_temp_state_is_not_persisted_in_state_or_events(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(
            app_name=APP, user_id="u", session_id="s", state={"temp:at_create": 1}
        )
        assert s.state == {}
        ev = event(delta={"temp:k1": "v1", "sk": "v2"})
        await svc.append_event(s, ev)
        assert s.state == {"temp:k1": "v1", "sk": "v2"}  # live, this invocation
        assert ev.actions.state_delta == {"sk": "v2"}  # trimmed from the event itself
        got = await svc.get_session(app_name=APP, user_id="u", session_id="s")
        assert got is not None
        assert got.state == {"sk": "v2"}
        assert got.events[0].actions.state_delta == {"sk": "v2"}

    run(store_url, body)


def test_temp_state_visible_across_sequential_events(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u", session_id="seq")
        first = event("agent1", delta={"temp:output": "from a1"})
        await svc.append_event(s, first)
        assert s.state.get("temp:output") == "from a1"
        assert "temp:output" not in first.actions.state_delta
        await svc.append_event(s, event("agent2", delta={"read": s.state["temp:output"]}))
        got = await svc.get_session(app_name=APP, user_id="u", session_id="seq")
        assert got is not None
        assert got.state == {"read": "from a1"}

    run(store_url, body)


def test_get_session_respects_user_id(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s1 = await svc.create_session(app_name=APP, user_id="u1", session_id="s1")
        await svc.append_event(s1, event())
        await svc.create_session(app_name=APP, user_id="u2", session_id="s1")
        got = await svc.get_session(app_name=APP, user_id="u2", session_id="s1")
        assert got is not None
        assert (got.user_id, got.events) == ("u2", [])
        mine = await svc.get_session(app_name=APP, user_id="u1", session_id="s1")
        assert mine is not None
        assert len(mine.events) == 1

    run(store_url, body)


def test_create_session_with_existing_id_raises_error(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        await svc.create_session(
            app_name=APP, user_id="u", session_id="existing", state={"app:a": 1, "k": 1}
        )
        for given in ("existing", " existing\n"):
            with pytest.raises(AlreadyExistsError, match="Session with id existing already"):
                await svc.create_session(
                    app_name=APP, user_id="u", session_id=given, state={"app:a": 2, "k": 2}
                )
        # Nothing of the refused creation was applied.
        got = await svc.get_session(app_name=APP, user_id="u", session_id="existing")
        assert got is not None
        assert got.state == {"app:a": 1, "k": 1}
        assert len((await svc.list_sessions(app_name=APP)).sessions) == 1

    run(store_url, body)


def test_padded_session_id_reads_and_deletes(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u", session_id="order-42\n")
        assert s.id == "order-42"
        got = await svc.get_session(app_name=APP, user_id="u", session_id=" order-42 ")
        assert got == s
        await svc.delete_session(app_name=APP, user_id="u", session_id="\torder-42")
        assert await svc.get_session(app_name=APP, user_id="u", session_id="order-42") is None

    run(store_url, body)


def test_create_session_with_blank_id_generates_one(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        blank = await svc.create_session(app_name=APP, user_id="u", session_id="   ")
        none = await svc.create_session(app_name=APP, user_id="u")
        assert blank.id.strip()
        assert none.id.strip()
        assert blank.id != none.id
        for s in (blank, none):
            assert await svc.get_session(app_name=APP, user_id="u", session_id=s.id) == s

    run(store_url, body)


def test_append_event_bytes(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u")
        content = types.Content(
            role="user",
            parts=[types.Part.from_bytes(data=b"\x89PNG\x00data", mime_type="image/png")],
        )
        grounding = types.GroundingMetadata(
            search_entry_point=types.SearchEntryPoint(sdk_blob=b"\x00blob\xff")
        )
        await svc.append_event(s, event(content=content, grounding_metadata=grounding))
        assert s.events[0].content == content
        got = await svc.get_session(app_name=APP, user_id="u", session_id=s.id)
        assert got is not None
        assert got.events[0].content == content
        assert got.events[0].grounding_metadata == grounding

    run(store_url, body)


def complete_event(**fields: Any) -> Event:
    """An event with most fields set: parts of every common kind, actions, metadata."""
    values: dict[str, Any] = {
        "invocation_id": "e-123",
        "author": "assistant",
        "branch": "root.sub",
        "content": types.Content(
            role="model",
            parts=[
                types.Part(text="hi", thought_signature=b"\x00\x01\xffsig"),
                types.Part(
                    function_call=types.FunctionCall(
                        id="c1", name="f", args={"a": 1, "n": None, "l": [1.5, "x"]}
                    )
                ),
                types.Part(
                    function_response=types.FunctionResponse(
                        id="c1", name="f", response={"ok": True, "none": None}
                    )
                ),
                types.Part(inline_data=types.Blob(mime_type="image/png", data=b"\x89PNG\x00")),
            ],
        ),
        "actions": EventActions(
            state_delta={"k": None, "app:x": {"nested": [1, 2]}, "user:y": 3},
            artifact_delta={"f.txt": 2},
            transfer_to_agent="other",
            escalate=True,
            skip_summarization=True,
            compaction=EventCompaction(
                start_timestamp=1.0,
                end_timestamp=2.5,
                compacted_content=types.Content(role="model", parts=[types.Part(text="sum")]),
            ),
        ),
        "long_running_tool_ids": {"c2", "c1"},
        "custom_metadata": {"a": None, "b": 1},
        "usage_metadata": types.GenerateContentResponseUsageMetadata(
            prompt_token_count=1, candidates_token_count=1, total_token_count=2
        ),
        "turn_complete": True,
        "partial": False,
        "finish_reason": types.FinishReason.STOP,
        "error_code": "error_code",
        "error_message": "error_message",
        "interrupted": True,
        "citation_metadata": types.CitationMetadata(),
        "input_transcription": types.Transcription(text="in", finished=True),
        "output_transcription": types.Transcription(text="out", finished=True),
        "output": {"x": 1},
        "timestamp": 1796417118.174639,
    }
    values.update(fields)
    return Event(**values)


def test_append_event_complete(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u")
        await svc.append_event(s, complete_event())
        got = await svc.get_session(app_name=APP, user_id="u", session_id=s.id)
        assert got == s

    run(store_url, body)


def test_events_round_trip_exactly(store_url: str) -> None:
    """Every field of every event comes back equal, through a fresh connection too."""
    originals = [
        complete_event(),
        complete_event(author="", invocation_id="", timestamp=0.1 + 0.2),
        complete_event(author="x" * 80, timestamp=1730613600.0),
        event("user", content=types.Content(role="user", parts=[types.Part(text="ünïcødé ✓")])),
        event("tool", delta={"deep": {"a": [{"b": [None, True, 1e-7, 2**62]}]}}),
    ]

    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u", session_id="rt")
        for original in originals:
            await svc.append_event(s, copy.deepcopy(original))

    run(store_url, body)

    async def again(svc: SessionsDBSessionService) -> None:
        got = await svc.get_session(app_name=APP, user_id="u", session_id="rt")
        assert got is not None
        assert got.events == originals
        for stored, original in zip(got.events, originals, strict=True):
            assert stored.model_dump() == original.model_dump()
            assert stored.timestamp.hex() == original.timestamp.hex()

    run(store_url, again)


def test_append_event_with_requested_tool_confirmations(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u")
        confirmation = ToolConfirmation(hint="sure?", confirmed=True, payload={"n": 1})
        actions = EventActions(requested_tool_confirmations={"call-1": confirmation})
        await svc.append_event(s, event(actions=actions))
        got = await svc.get_session(app_name=APP, user_id="u", session_id=s.id)
        assert got is not None
        assert got.events[0].actions.requested_tool_confirmations == {"call-1": confirmation}
        assert got == s

    run(store_url, body)


def test_session_last_update_time_updates_on_event(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u")
        original = s.last_update_time
        later = original + 10
        await svc.append_event(s, event(timestamp=later))
        assert s.last_update_time == later
        got = await svc.get_session(app_name=APP, user_id="u", session_id=s.id)
        assert got is not None
        assert got.last_update_time == later
        assert got.last_update_time > original

    run(store_url, body)


def test_get_session_with_config(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u")
        base = time.time()
        for i in range(5):
            await svc.append_event(s, event(timestamp=base + i))

        async def times(**config: Any) -> list[float]:
            got = await svc.get_session(
                app_name=APP,
                user_id="u",
                session_id=s.id,
                config=GetSessionConfig(**config) if config else None,
            )
            assert got is not None
            return [e.timestamp - base for e in got.events]

        assert await times() == [0, 1, 2, 3, 4]
        assert await times(num_recent_events=0) == []
        assert await times(num_recent_events=3) == [2, 3, 4]
        assert await times(num_recent_events=50) == [0, 1, 2, 3, 4]
        assert await times(after_timestamp=base + 3) == [3, 4]  # inclusive
        assert await times(after_timestamp=base + 2.5) == [3, 4]
        assert await times(after_timestamp=base + 100) == []
        assert await times(after_timestamp=0.0) == [0, 1, 2, 3, 4]
        assert await times(after_timestamp=base + 3, num_recent_events=3) == [3, 4]
        assert await times(after_timestamp=base + 1, num_recent_events=2) == [3, 4]
        assert await times(after_timestamp=base + 1, num_recent_events=0) == []

    run(store_url, body)


def test_after_timestamp_walks_back_past_a_page(store_url: str) -> None:
    """Walking back reads page after page; it stops at the newest event older than the bound."""

    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u")
        for i in range(150):
            await svc.append_event(s, event(timestamp=1000.0 + i))
        got = await svc.get_session(
            app_name=APP,
            user_id="u",
            session_id=s.id,
            config=GetSessionConfig(after_timestamp=1010.0),
        )
        assert got is not None
        assert [e.timestamp for e in got.events] == [1000.0 + i for i in range(10, 150)]
        # Not monotone: the suffix after the newest older event, as ADK's in-memory service.
        await svc.append_event(s, event(timestamp=5.0))
        await svc.append_event(s, event(timestamp=2000.0))
        got = await svc.get_session(
            app_name=APP,
            user_id="u",
            session_id=s.id,
            config=GetSessionConfig(after_timestamp=1010.0),
        )
        assert got is not None
        assert [e.timestamp for e in got.events] == [2000.0]

    run(store_url, body)


def test_get_session_config_rejects_negative_num_recent_events() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        GetSessionConfig(num_recent_events=-1)


def test_partial_events_are_not_persisted(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u")
        partial = event(partial=True, delta={"k": 1, "temp:t": 1})
        assert await svc.append_event(s, partial) is partial
        assert s.events == []
        assert s.state == {}
        got = await svc.get_session(app_name=APP, user_id="u", session_id=s.id)
        assert got is not None
        assert (got.events, got.state) == ([], {})

    run(store_url, body)


def test_get_user_state(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        assert await svc.get_user_state(app_name=APP, user_id="u1") == {}
        s = await svc.create_session(app_name=APP, user_id="u1")
        await svc.append_event(
            s, event("system", delta={"user:profile": {"name": "Alice"}, "session_key": 1})
        )
        assert await svc.get_user_state(app_name=APP, user_id="u1") == {
            "profile": {"name": "Alice"}
        }
        assert await svc.get_user_state(app_name=APP, user_id="u2") == {}
        assert await svc.get_user_state(app_name="other_app", user_id="u1") == {}
        await svc.append_event(s, event("system", delta={"user:counter": 1}))
        await svc.append_event(s, event("system", delta={"user:counter": 2}))
        state = await svc.get_user_state(app_name=APP, user_id="u1")
        assert state == {"profile": {"name": "Alice"}, "counter": 2}
        # A user's state outlives their sessions, as in ADK.
        await svc.delete_session(app_name=APP, user_id="u1", session_id=s.id)
        assert await svc.get_user_state(app_name=APP, user_id="u1") == state

    run(store_url, body)


def test_get_session_keeps_exact_epoch_across_a_repeated_local_hour(store_url: str) -> None:
    """Times in the hour a DST change repeats read back exactly, in order."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:

        async def body(svc: SessionsDBSessionService) -> None:
            s = await svc.create_session(app_name=APP, user_id="u")
            for stamp in (1730613600.0, 1730615400.0):
                await svc.append_event(s, event(timestamp=stamp))
            got = await svc.get_session(app_name=APP, user_id="u", session_id=s.id)
            assert got is not None
            assert [e.timestamp for e in got.events] == [1730613600.0, 1730615400.0]
            assert got.last_update_time == 1730615400.0

        run(store_url, body)
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


def test_append_event_to_deleted_session_raises_session_not_found(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u", session_id="gone")
        await svc.delete_session(app_name=APP, user_id="u", session_id="gone")
        ev = event(delta={"k": 1, "app:a": 1})
        with pytest.raises(SessionNotFoundError, match=r"Session gone not found\."):
            await svc.append_event(s, ev)
        assert isinstance(SessionNotFoundError("x"), ValueError)
        assert s.events == []
        assert await svc.get_session(app_name=APP, user_id="u", session_id="gone") is None
        other = await svc.create_session(app_name=APP, user_id="u2")
        assert other.state == {}  # the app delta was not applied
        # A session of another app or user is not this one.
        wrong = Session(id=other.id, app_name=APP, user_id="u3")
        with pytest.raises(SessionNotFoundError):
            await svc.append_event(wrong, event())

    run(store_url, body)


def test_append_event_with_non_serializable_state_delta(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u")
        await svc.append_event(s, event(delta={"callback": lambda: 1, "plain": 1}))
        got = await svc.get_session(app_name=APP, user_id="u", session_id=s.id)
        assert got is not None
        assert isinstance(got.state["callback"], str)
        assert got.state["plain"] == 1
        assert len(got.events) == 1

    run(store_url, body)


def test_stale_copies_are_accepted_and_all_land(store_url: str) -> None:
    """ADK's database service rejects a writer holding an older copy; here both land."""

    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u")
        for i in range(8):
            latest = await svc.get_session(app_name=APP, user_id="u", session_id=s.id)
            assert latest is not None
            one, two = latest.model_copy(deep=True), latest.model_copy(deep=True)
            base = latest.last_update_time + 10
            results = await asyncio.gather(
                svc.append_event(
                    one,
                    event(
                        invocation_id=f"inv{i}-1", timestamp=base + 1, delta={f"sk{i}-1": f"v{i}-1"}
                    ),
                ),
                svc.append_event(
                    two,
                    event(
                        invocation_id=f"inv{i}-2", timestamp=base + 2, delta={f"sk{i}-2": f"v{i}-2"}
                    ),
                ),
                return_exceptions=True,
            )
            assert not [r for r in results if isinstance(r, BaseException)]
        final = await svc.get_session(app_name=APP, user_id="u", session_id=s.id)
        assert final is not None
        assert len(final.events) == 16
        for i in range(8):
            assert final.state[f"sk{i}-1"] == f"v{i}-1"
            assert final.state[f"sk{i}-2"] == f"v{i}-2"
        # A copy that fell behind by several events still appends.
        stale = await svc.create_session(app_name=APP, user_id="u", session_id="stale")
        fresh = stale.model_copy(deep=True)
        await svc.append_event(fresh, event(invocation_id="a", delta={"a": 1}))
        await svc.append_event(fresh, event(invocation_id="b", delta={"b": 1}))
        await svc.append_event(stale, event(invocation_id="c", delta={"c": 1}))
        assert [e.invocation_id for e in stale.events] == ["c"]  # not refreshed, as in ADK
        got = await svc.get_session(app_name=APP, user_id="u", session_id="stale")
        assert got is not None
        assert [e.invocation_id for e in got.events] == ["a", "b", "c"]
        assert got.state == {"a": 1, "b": 1, "c": 1}

    run(store_url, body)


def test_append_event_is_idempotent_for_same_event_id(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u")
        ev = event(delta={"n": 1, "user:c": 1, "app:c": 1})
        await svc.append_event(s, ev)
        await svc.append_event(s, ev)  # the same object
        await svc.append_event(s, copy.deepcopy(ev))  # an equal copy
        assert len(s.events) == 1
        got = await svc.get_session(app_name=APP, user_id="u", session_id=s.id)
        assert got is not None
        assert got.events == [ev]
        assert got.state == {"n": 1, "user:c": 1, "app:c": 1}

    run(store_url, body)


def test_append_different_events_not_deduplicated(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u")
        first = event(id="fixed-id", invocation_id="one", delta={"k": 1})
        second = event(id="fixed-id", invocation_id="two", delta={"k": 2})
        await svc.append_event(s, first)
        await svc.append_event(s, second)
        got = await svc.get_session(app_name=APP, user_id="u", session_id=s.id)
        assert got is not None
        assert [e.invocation_id for e in got.events] == ["one", "two"]
        assert [e.id for e in got.events] == ["fixed-id", "fixed-id"]
        assert got.state == {"k": 2}

    run(store_url, body)


def test_a_refused_append_leaves_everything_as_it_was(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u", state={"k": 0})
        before = await svc.get_session(app_name=APP, user_id="u", session_id=s.id)
        bad = event(
            content=types.Content(role="user", parts=[types.Part(text="nul \x00")]),
            delta={"k": 1, "app:a": 1, "user:b": 1},
        )
        with pytest.raises(sdb.PayloadError):
            await svc.append_event(s, bad)
        with pytest.raises(sdb.PayloadError):
            await svc.append_event(s, event(delta={"app:a": float("nan")}))
        assert (s.events, s.state) == ([], {"k": 0})
        after = await svc.get_session(app_name=APP, user_id="u", session_id=s.id)
        assert after == before
        assert await svc.get_user_state(app_name=APP, user_id="u") == {}

    run(store_url, body)


# -- many writers -------------------------------------------------------------------------


def test_eight_tasks_append_a_hundred_events_each_to_one_session(store_url: str) -> None:
    writers, each = 8, 100

    async def body(svc: SessionsDBSessionService) -> None:
        await svc.create_session(app_name=APP, user_id="u", session_id="busy")

        loaded: dict[int, int] = {}

        async def write(k: int) -> Session:
            mine = await svc.get_session(app_name=APP, user_id="u", session_id="busy")
            assert mine is not None
            loaded[k] = len(mine.events)  # what other writers had stored by then
            for i in range(each):
                delta: dict[str, Any] = {f"w{k}": i}
                if i % 10 == 9:
                    delta |= {f"app:w{k}": i, f"user:w{k}": i}
                await svc.append_event(
                    mine, event(f"writer{k}", invocation_id=f"{k}:{i}", delta=delta)
                )
            return mine

        results = await asyncio.gather(*(write(k) for k in range(writers)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == []
        final = await svc.get_session(app_name=APP, user_id="u", session_id="busy")
        assert final is not None
        assert len(final.events) == writers * each
        assert len({e.id for e in final.events}) == writers * each
        for k in range(writers):
            mine = [
                int(e.invocation_id.split(":")[1]) for e in final.events if e.author == f"writer{k}"
            ]
            assert mine == list(range(each))  # each writer's events, in its own order
            own = results[k]
            assert isinstance(own, Session)
            # The writer's own Session: what it loaded, then exactly its events (not refreshed).
            assert [e.invocation_id for e in own.events[loaded[k] :]] == [
                f"{k}:{i}" for i in range(each)
            ]
            assert len(own.events) == loaded[k] + each
        expected = {f"w{k}": each - 1 for k in range(writers)}
        expected |= {f"app:w{k}": each - 1 for k in range(writers)}
        expected |= {f"user:w{k}": each - 1 for k in range(writers)}
        assert final.state == expected
        # The one order of the session is what sessions_db holds, message for message.
        manager = svc.manager
        assert isinstance(manager, aio.AsyncManager)
        stored = await manager.get_by_key(APP, session_key("u", "busy"))
        assert [m.id for m in await stored.get_messages()] == [e.id for e in final.events]

    run(store_url, body)


# -- the mapping onto sessions_db --------------------------------------------------------


def test_keys_are_unambiguous() -> None:
    assert session_key("a:b", "c") != session_key("a", "b:c")
    for user, sid in [("a:b", "c"), ("a", "b:c"), ("", "x"), ("ü 1", ":"), ("12", "3:4")]:
        assert parse_key(session_key(user, sid)) == (user, sid)
    for other in [None, "", "adk:", "adk:x:a:b", "adk:5:ab:c", "chat-1", "adk:1:ab", "adk:²:a:b"]:
        assert parse_key(other) is None


def test_sessions_are_sessions_db_sessions(store_url: str, store_kind: str) -> None:
    """Apps are agents, users own their sessions, events are messages typed by author."""

    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="a:b", session_id="c")
        t = await svc.create_session(app_name=APP, user_id="a", session_id="b:c")
        await svc.append_event(s, complete_event(author="assistant"))
        await svc.append_event(t, event("", delta={"x": 1}))
        manager = svc.manager
        assert isinstance(manager, aio.AsyncManager)
        stored = await manager.get_by_key(APP, session_key("a:b", "c"), user_id="a:b")
        assert stored.user_id == "a:b"
        (message,) = await stored.get_messages()
        assert message.type == "assistant"
        assert message.id == s.events[0].id
        assert Event.model_validate(message.payload) == s.events[0]
        other = await manager.get_by_key(APP, session_key("a", "b:c"))
        assert [m.type for m in await other.get_messages()] == ["adk"]
        assert {m.id for m in await manager.list(APP)} == {stored.id, other.id}
        # A session of the agent that ADK did not create is not listed.
        await manager.create(APP, user_id="a:b")
        assert len((await svc.list_sessions(app_name=APP)).sessions) == 2

    run(store_url, body)
    if store_kind != "file":
        engine = create_engine(normalize_url(store_url))
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT role, count(*) FROM sessions_db_entries GROUP BY role ORDER BY 1")
                ).all()
        finally:
            engine.dispose()
        assert [tuple(r) for r in rows] == [("adk", 1), ("assistant", 1)]


def test_unstorable_names(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        with pytest.raises(ValueError, match="cannot store"):
            await svc.create_session(app_name="bad name!", user_id="u")
        with pytest.raises(ValueError, match="cannot store"):
            await svc.create_session(app_name=APP, user_id="u" * 300)
        with pytest.raises(ValueError, match="cannot store"):
            await svc.create_session(app_name=APP, user_id="u", session_id="x" * 1100)
        assert await svc.get_session(app_name=APP, user_id="u\x00", session_id="s") is None
        assert (await svc.list_sessions(app_name="bad name!")).sessions == []
        # An empty or blank user ID is a user of its own (its sessions have no owner).
        empty = await svc.create_session(app_name=APP, user_id="", state={"user:k": 1})
        blank = await svc.create_session(app_name=APP, user_id=" ", state={"user:k": 2})
        assert (await svc.list_sessions(app_name=APP, user_id="")).sessions == [empty]
        assert (await svc.list_sessions(app_name=APP, user_id=" ")).sessions == [blank]
        assert await svc.get_user_state(app_name=APP, user_id="") == {"k": 1}

    run(store_url, body)


def test_erase_user_removes_the_users_adk_sessions_and_state(store_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        for user in ("victim", "other"):
            s = await svc.create_session(
                app_name=APP, user_id=user, state={"user:secret": f"{user}-secret", "app:a": 1}
            )
            await svc.append_event(s, event(delta={"user:more": f"{user}-more"}))
            await svc.create_session(app_name="second_app", user_id=user, state={"user:x": 1})
        manager = svc.manager
        assert isinstance(manager, aio.AsyncManager)
        assert await manager.erase_user("victim") == 2
        for app in (APP, "second_app"):
            assert await svc.get_user_state(app_name=app, user_id="victim") == {}
            assert (await svc.list_sessions(app_name=app, user_id="victim")).sessions == []
            assert await svc.get_user_state(app_name=app, user_id="other") != {}
        assert await svc.get_user_state(app_name=APP, user_id="other") == {
            "secret": "other-secret",
            "more": "other-more",
        }

    run(store_url, body)
    if store_url.startswith("file:"):
        leftovers = [
            p
            for p in file_path(store_url).rglob("*")
            if p.is_file() and b"victim" in p.read_bytes()
        ]
        assert leftovers == []


def test_a_given_manager_is_not_closed(store_url: str) -> None:
    async def main() -> None:
        async with await aio.connect(store_url) as manager:
            async with SessionsDBSessionService(manager=manager) as svc:
                await svc.create_session(app_name=APP, user_id="u", session_id="s")
            assert not manager.closed
            again = SessionsDBSessionService(manager=manager)
            assert await again.get_session(app_name=APP, user_id="u", session_id="s") is not None
        with pytest.raises(ValueError, match="not both"):
            SessionsDBSessionService(store_url, manager=manager)

    asyncio.run(main())


def test_a_sync_manager_works_too(store_url: str) -> None:
    with sdb.connect(store_url) as manager:

        async def main() -> None:
            svc = SessionsDBSessionService(manager=manager)
            s = await svc.create_session(app_name=APP, user_id="u", state={"app:a": 1})
            await svc.append_event(s, event(delta={"user:b": 2}))
            got = await svc.get_session(app_name=APP, user_id="u", session_id=s.id)
            assert got == s

        asyncio.run(main())


def test_stores_it_cannot_use_are_refused(tmp_path: Path) -> None:
    from sessions_db.crypto import Keyring, generate_key

    async def main() -> None:
        plain = await aio.connect(f"sqlite:///{tmp_path / 'enc.db'}")
        encrypted = aio.AsyncManager(plain.backend, keyring=Keyring({"k1": generate_key()}))
        with pytest.raises(sdb.ConfigurationError, match="encrypted"):
            await SessionsDBSessionService(manager=encrypted).list_sessions(app_name=APP)
        await plain.close()
        disabled = await aio.connect(config={"session": {"enabled": False}})
        with pytest.raises(sdb.ConfigurationError, match="SQL store or the file store"):
            await SessionsDBSessionService(manager=disabled).list_sessions(app_name=APP)
        await disabled.close()
        closed = SessionsDBSessionService(f"sqlite:///{tmp_path / 'c.db'}")
        await closed.close()
        with pytest.raises(sdb.StorageClosedError):
            await closed.list_sessions(app_name=APP)

    asyncio.run(main())


def test_importing_sessions_db_imports_no_adk() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, sessions_db, sessions_db.aio, sessions_db.integrations;"
            "import sessions_db.models, sessions_db.migrations;"
            "print(sorted(m for m in sys.modules if m.startswith('google')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"


# -- atomicity and crashes ----------------------------------------------------------------


def test_an_append_whose_state_write_fails_stores_nothing_on_sql(sql_url: str) -> None:
    """The event, the session's state and the app state are one transaction."""
    engine = create_engine(normalize_url(sql_url))
    table = "sessions_db_adk_user_state"

    async def first(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u", session_id="s", state={"k": 0})
        await svc.append_event(s, event(delta={"user:b": 0}))

    run(sql_url, first)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(
                text(
                    "CREATE FUNCTION refuse_state() RETURNS trigger LANGUAGE plpgsql AS $$ "
                    "BEGIN RAISE EXCEPTION 'refused'; END $$"
                )
            )
            conn.execute(
                text(
                    f"CREATE TRIGGER refuse BEFORE UPDATE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_state()"
                )
            )
        else:
            conn.execute(
                text(
                    f"CREATE TRIGGER refuse BEFORE UPDATE ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )

    async def failing(svc: SessionsDBSessionService) -> None:
        s = await svc.get_session(app_name=APP, user_id="u", session_id="s")
        assert s is not None
        before = s.model_copy(deep=True)
        with pytest.raises(sdb.SessionsDBError):
            await svc.append_event(s, event(delta={"k": 1, "app:a": 1, "user:b": 1}))
        assert s == before  # the caller's session is untouched too
        got = await svc.get_session(app_name=APP, user_id="u", session_id="s")
        assert got == before
        assert await svc.get_user_state(app_name=APP, user_id="u") == {"b": 0}
        # Without a user delta, appends go on.
        await svc.append_event(s, event(delta={"k": 2, "app:a": 2}))
        got = await svc.get_session(app_name=APP, user_id="u", session_id="s")
        assert got is not None
        assert got.state == {"k": 2, "app:a": 2, "user:b": 0}

    try:
        run(sql_url, failing)
    finally:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text(f"DROP TRIGGER refuse ON {table}"))
                conn.execute(text("DROP FUNCTION refuse_state()"))
            else:
                conn.execute(text("DROP TRIGGER refuse"))
        engine.dispose()


CRASH = """
import asyncio, os, sys
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from sessions_db.integrations import _adk_state
from sessions_db.file.backend import FileBackend
from sessions_db.integrations.adk import SessionsDBSessionService

where = sys.argv[2]
if where == "before-state-files":
    # The event and the intent are stored; the process dies before the state files.
    _adk_state._Recorder.apply = lambda self, change: os._exit(3)
elif where == "before-session-state":
    # The event is stored; the process dies before the session's metadata line.
    save = FileBackend.save_session
    def dying(self, meta):
        if meta.metadata.get("adk_applied"):
            os._exit(3)
        save(self, meta)
    FileBackend.save_session = dying

async def main():
    svc = SessionsDBSessionService(sys.argv[1])
    s = await svc.get_session(app_name="my_app", user_id="u", session_id="s")
    delta = {"k": 1, "app:a": 1, "user:b": 1}
    dying = Event(author="user", invocation_id="dying", actions=EventActions(state_delta=delta))
    await svc.append_event(s, dying)

asyncio.run(main())
"""


@pytest.mark.parametrize("where", ["before-state-files", "before-session-state"])
def test_file_store_state_is_rebuilt_from_events_after_a_crash(tmp_path: Path, where: str) -> None:
    url = (tmp_path / "store").as_uri()

    async def setup(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(
            app_name=APP, user_id="u", session_id="s", state={"k": 0, "app:a": 0, "user:b": 0}
        )
        await svc.append_event(s, event(invocation_id="before"))

    run(url, setup)
    done = subprocess.run(
        [sys.executable, "-c", CRASH, url, where],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    adk_dir = tmp_path / "store" / APP / "adk"
    assert (adk_dir / "intent.json").exists()

    async def after(svc: SessionsDBSessionService) -> None:
        got = await svc.get_session(app_name=APP, user_id="u", session_id="s")
        assert got is not None
        assert [e.invocation_id for e in got.events] == ["before", "dying"]
        assert got.state == {"k": 1, "app:a": 1, "user:b": 1}
        assert got.last_update_time == got.events[-1].timestamp
        assert not (adk_dir / "intent.json").exists()
        # Appending goes on from there.
        await svc.append_event(got, event(invocation_id="after", delta={"k": 2, "user:b": 2}))
        again = await svc.get_session(app_name=APP, user_id="u", session_id="s")
        assert again is not None
        assert again.state == {"k": 2, "app:a": 1, "user:b": 2}

    run(url, after)


def test_file_store_drops_the_change_of_an_event_that_was_never_stored(tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()

    async def setup(svc: SessionsDBSessionService) -> None:
        await svc.create_session(app_name=APP, user_id="u", session_id="s", state={"app:a": 0})

    run(url, setup)
    dying = CRASH.replace(
        "where = sys.argv[2]",
        "where = sys.argv[2]\nFileBackend.append_entries = lambda self, *a, **k: os._exit(3)",
    )
    done = subprocess.run(
        [sys.executable, "-c", dying, url, "-"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert (tmp_path / "store" / APP / "adk" / "intent.json").exists()

    async def after(svc: SessionsDBSessionService) -> None:
        got = await svc.get_session(app_name=APP, user_id="u", session_id="s")
        assert got is not None
        assert got.events == []
        assert got.state == {"app:a": 0}
        assert await svc.get_user_state(app_name=APP, user_id="u") == {}

    run(url, after)


@pytest.mark.postgres
def test_side_by_side_benchmark_runs_small(tmp_path: Path) -> None:
    """``python -m benchmarks.adk --small`` completes; its counts are exact (never its times)."""
    out = tmp_path / "adk.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.adk", "--small", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert set(result["backends"]) == {"postgres", "sqlite", "file"}
    for kind, figures in result["backends"].items():
        ours = figures["ours"]
        assert set(ours) >= {"append_event", "get_session", "get_session_recent10", "writers"}
        writers = ours["writers"]
        assert writers["stored"] == writers["appends"] == writers["distinct_ids"], kind
        assert writers["errors"] == {}
        assert writers["per_writer_order_kept"]
        assert writers["writers_with_state"] == result["sizes"]["writers"]
        if kind != "file":
            theirs = figures["adk"]
            assert theirs["writers_retry"]["stored"] == theirs["writers_retry"]["appends"]
            assert sum(theirs["writers"]["errors"].values()) > 0  # stale writers, as measured
        assert f"### {kind}" in done.stdout


def test_file_store_rebuilds_lost_or_damaged_state_files_from_the_events(tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()
    app_dir = tmp_path / "store" / APP

    async def setup(svc: SessionsDBSessionService) -> None:
        a = await svc.create_session(
            app_name=APP, user_id="u1", session_id="a", state={"app:x": 0, "user:y": 0, "k": 0}
        )
        b = await svc.create_session(app_name=APP, user_id="u2", session_id="b")
        await svc.append_event(a, event(timestamp=a.last_update_time + 1, delta={"app:x": 1}))
        await svc.append_event(b, event(timestamp=a.last_update_time + 2, delta={"app:x": 2}))
        await svc.append_event(b, event(timestamp=a.last_update_time + 3, delta={"user:z": 3}))

    async def check(svc: SessionsDBSessionService) -> None:
        got = await svc.get_session(app_name=APP, user_id="u1", session_id="a")
        assert got is not None
        assert got.state == {"app:x": 2, "user:y": 0, "k": 0}
        assert await svc.get_user_state(app_name=APP, user_id="u2") == {"z": 3}

    run(url, setup)
    run(url, check)
    # Lost: every state file goes; the service rebuilds them on request.
    (app_dir / "adk" / "app.json").unlink()
    for path in (app_dir / "users").iterdir():
        path.unlink()

    async def lost(svc: SessionsDBSessionService) -> None:
        assert await svc.get_user_state(app_name=APP, user_id="u1") == {}
        await svc.rebuild_state(APP)
        await check(svc)

    run(url, lost)
    # Damaged: a file that does not parse is rebuilt when it is read.
    (app_dir / "adk" / "app.json").write_text('{"state": {"x": ')
    run(url, check)
    assert json.loads((app_dir / "adk" / "app.json").read_text()) == {"state": {"x": 2}}


def test_rebuilding_on_sql_changes_nothing(sql_url: str) -> None:
    async def body(svc: SessionsDBSessionService) -> None:
        s = await svc.create_session(app_name=APP, user_id="u", state={"app:x": 1})
        await svc.rebuild_state(APP)
        assert await svc.get_session(app_name=APP, user_id="u", session_id=s.id) == s

    run(sql_url, body)


def test_a_postgresql_schema_holds_everything(pg_server: Callable[[], str]) -> None:
    """On a store in its own schema, the service's own statements go there too."""
    url = pg_server()

    async def main() -> None:
        backend = aio.AsyncSQLBackend(url, schema="agents_store", migrate=True)
        async with aio.AsyncManager(backend) as manager:
            svc = SessionsDBSessionService(manager=manager)
            s = await svc.create_session(
                app_name=APP, user_id="u", session_id="s", state={"app:a": 1, "user:b": 1}
            )
            await svc.append_event(s, event(delta={"app:a": 2, "user:b": 2, "k": 2}))
            got = await svc.get_session(app_name=APP, user_id="u", session_id="s")
            assert got == s
            assert got.state == {"app:a": 2, "user:b": 2, "k": 2}
            assert await manager.erase_user("u") == 1
            assert await svc.get_user_state(app_name=APP, user_id="u") == {}

    asyncio.run(main())
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT count(*) FROM agents_store.sessions_db_adk_app_state")
            ).scalar()
            assert found == 1
            public = conn.execute(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            ).scalar()
            assert public == 0
    finally:
        engine.dispose()


def test_readme_switch_runs_as_written(tmp_path: Path) -> None:
    """The README's two lines give a working service (on SQLite here)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Google ADK") :]
    start = section.index("```python\n") + len("```python\n")
    code = section[start : section.index("\n```", start)]
    lines = [line for line in code.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 2
    url = f"sqlite:///{tmp_path / 'app.db'}"
    scope: dict[str, Any] = {}
    exec(code.replace("postgresql://app@db/app", url), scope)
    service = scope["session_service"]
    assert isinstance(service, SessionsDBSessionService)

    async def main() -> None:
        async with service:
            s = await service.create_session(app_name=APP, user_id="u", session_id="s")
            assert await service.get_session(app_name=APP, user_id="u", session_id="s") == s

    asyncio.run(main())


def test_automatic_checkpoints_between_events(store_url: str) -> None:
    """A manager's automatic checkpoints land between events; events and state are unchanged."""
    from datetime import timedelta

    async def main() -> None:
        manager = await aio.connect(store_url)
        manager = aio.AsyncManager(manager.backend, auto_checkpoint=timedelta(microseconds=1))
        async with manager:
            svc = SessionsDBSessionService(manager=manager)
            s = await svc.create_session(app_name=APP, user_id="u", state={"k": 0})
            for i in range(3):
                await svc.append_event(s, event(delta={"k": i + 1, "app:n": i}))
            got = await svc.get_session(app_name=APP, user_id="u", session_id=s.id)
            assert got == s
            assert got.state == {"k": 3, "app:n": 2}
            stored = await manager.get_by_key(APP, session_key("u", s.id))
            assert len(await stored.list_checkpoints()) == 3
            (listed,) = (await svc.list_sessions(app_name=APP)).sessions
            assert (listed.state, listed.last_update_time) == (got.state, got.last_update_time)

    asyncio.run(main())
