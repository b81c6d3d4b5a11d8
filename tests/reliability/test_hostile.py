"""Hostile input: every call is predicted to work (and then reads back identical) or
to be refused with one named error (and then stores nothing), and does exactly that."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sessions_db as sdb

from .support import COUNTS, clear, profile, snapshot

TRICKS = [
    "",
    " ",
    "\t\n",
    "\u3000",  # ideographic space
    ".",
    "..",
    "../x",
    "../../etc/passwd",
    "/etc/passwd",
    "a/b",
    "a\\b",
    "C:\\x",
    "x\x00y",
    "\x00",
    "line\nbreak",
    "tab\t",
    "\x1b[31m",
    "'; DROP TABLE sessions_db_sessions; --",
    '" OR 1=1 --',
    "a'b",
    "%",
    "_",
    "*",
    "\u202eevil",
    "\ufeffbom",
    "\u200b",
    "\uff41\uff4c\uff49\uff43\uff45",  # fullwidth "alice"
    "e\u0301",
    "\ud800",
    "nul\x00",
    "con",
    "aux.txt",
    "-rf",
    ".hidden",
    "~",
    "$HOME",
    "00000000-0000-4000-8000-000000000000",
    "00000000-0000-4000-8000-00000000000G",
    "A" * 127,
    "A" * 128,
    "A" * 129,
    "u" * 255,
    "u" * 256,
    "z" * 10_000,
]
HOSTILE = st.one_of(st.sampled_from(TRICKS), st.text(max_size=300))

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**300), max_value=2**300),
    st.floats(),
    st.sampled_from([1e308, -1e308, 5e-324, 1e16, 2.0**64, -0.0, 1e-7]),
    st.text(),
    st.sampled_from(TRICKS),
)
KEYS = st.one_of(st.text(max_size=20), st.sampled_from(["", "$ref", "__proto__", "a.b", "\x00"]))
PAYLOADS = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
).map(lambda v: v if isinstance(v, dict) else {"v": v})


# The documented rules for what callers pass in, stated here independently of the
# code: each hostile case below predicts from them whether a call is accepted or
# refused, and with which error.
AGENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
ENTRY_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_USER_ID = 255
MAX_ROLE = 64
MAX_DEPTH = 256

Errors = frozenset[type[sdb.SessionsDBError]]
NONE: Errors = frozenset()
INVALID_ID: Errors = frozenset({sdb.InvalidIDError})
BAD_PAYLOAD: Errors = frozenset({sdb.PayloadError})


def agent_errors(value: str) -> Errors:
    """An agent name names a directory: a safe token of 1-128 characters."""
    return NONE if AGENT_NAME.fullmatch(value) else INVALID_ID


def _blank(value: str) -> bool:
    """An empty user ID: "" or whitespace only."""
    return not value.strip()


def user_errors(value: str | None) -> Errors:
    """A user ID that filters or checks ownership (``get``, ``list``, memory): None (no
    check); "" or blank is never "no check" but refused; else at most 255 printable
    characters."""
    if value is None:
        return NONE
    if _blank(value):
        return INVALID_ID
    return NONE if len(value) <= MAX_USER_ID and value.isprintable() else INVALID_ID


def owner_errors(value: str | None) -> Errors:
    """The user of a new session: None, "" or blank mean no user; else a user ID."""
    return NONE if value is None or _blank(value) else user_errors(value)


def owner(value: str | None) -> str | None:
    """The user a new session created for ``value`` belongs to."""
    return None if value is None or _blank(value) else value


def entry_errors(value: str | None) -> Errors:
    """A message ID: None (a fresh one), else a safe token of 1-128 characters."""
    return NONE if value is None or ENTRY_ID.fullmatch(value) else INVALID_ID


def uuid_errors(value: str, absent: type[sdb.SessionsDBError]) -> Errors:
    """A session or checkpoint ID: a canonical UUID, else ``absent`` (none exists here)."""
    return frozenset({absent}) if UUID.fullmatch(value) else INVALID_ID


def limit_errors(limit: int | None) -> Errors:
    """A limit: None or a non-negative integer."""
    return frozenset({sdb.InvalidArgumentError}) if limit is not None and limit < 0 else NONE


def role_errors(value: str) -> Errors:
    """A role: 1-64 printable characters."""
    return NONE if 0 < len(value) <= MAX_ROLE and value.isprintable() else BAD_PAYLOAD


def _storable_text(value: str) -> bool:
    return "\x00" not in value and not any("\ud800" <= c <= "\udfff" for c in value)


def payload_errors(value: Any, depth: int = 0) -> Errors:
    """A payload: JSON that reads back equal (finite numbers, no NUL, no lone surrogates,
    string keys, at most 256 nested objects and arrays)."""
    if isinstance(value, str):
        return NONE if _storable_text(value) else BAD_PAYLOAD
    if isinstance(value, float):
        return NONE if math.isfinite(value) else BAD_PAYLOAD
    if value is None or isinstance(value, bool | int):
        return NONE
    if isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            return BAD_PAYLOAD
        if isinstance(value, dict) and not all(
            isinstance(k, str) and _storable_text(k) for k in value
        ):
            return BAD_PAYLOAD
        items = value.values() if isinstance(value, dict) else value
        return BAD_PAYLOAD if any(payload_errors(v, depth + 1) for v in items) else NONE
    return BAD_PAYLOAD


@pytest.fixture
def mgr(open_manager: Callable[[], sdb.Manager]) -> Iterator[sdb.Manager]:
    with open_manager() as manager:
        clear(manager)
        manager.create("victim", user_id="alice").append_message(
            sdb.Message.new("user", {"content": "keep me"})
        )
        yield manager


def _same(a: Any, b: Any) -> bool:
    """Equality that also requires floats to be floats and ints ints."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return False
    return type(a) is type(b) and a == b


def _expect(mgr: sdb.Manager, call: Callable[[], Any], refused: Errors) -> Any:
    """Run ``call``, which must be refused with one of ``refused`` or, if that is empty, work.

    A refusal must be exactly one of the predicted errors (not a subclass, not
    another documented one) and leave the store unchanged.
    """
    COUNTS["hostile: inputs tried"] += 1
    if not refused:
        return call()
    before = snapshot(mgr)
    with pytest.raises(sdb.SessionsDBError) as raised:
        call()
    assert type(raised.value) in refused, (raised.value, refused)
    assert snapshot(mgr) == before
    COUNTS["hostile: refused with the predicted error"] += 1
    return None


@given(agent=HOSTILE, user=HOSTILE | st.none(), meta=PAYLOADS)
def test_create_and_read_back(mgr: sdb.Manager, agent: str, user: str | None, meta: Any) -> None:
    refused = agent_errors(agent) | owner_errors(user) | payload_errors(meta)
    session = _expect(mgr, lambda: mgr.create(agent, user_id=user, metadata=meta), refused)
    if refused:
        return
    got = mgr.get(session.id, user_id=owner(user))
    assert got.agent_name == agent
    assert got.user_id == owner(user)
    assert _same(got.metadata, meta)
    assert session.id in [m.id for m in mgr.list(agent, user_id=owner(user))]
    mgr.delete(session.id)


@given(value=HOSTILE, other=HOSTILE | st.none(), limit=st.integers(-2, 3) | st.none())
def test_lookups_never_leak_or_write(
    mgr: sdb.Manager, value: str, other: str | None, limit: int | None
) -> None:
    victim = mgr.list("victim")[0].id
    alice = (None, "alice")  # the filters that let the victim through (none, or its owner)
    not_found = frozenset({sdb.SessionNotFoundError})

    _expect(mgr, lambda: mgr.get(value), uuid_errors(value, sdb.SessionNotFoundError))
    refused = user_errors(value) or (NONE if value in alice else not_found)
    session = _expect(mgr, lambda: mgr.get(victim, user_id=value), refused)
    assert refused or session.id == victim
    _expect(mgr, lambda: mgr.delete(value), uuid_errors(value, sdb.SessionNotFoundError))

    refused = agent_errors(value) | user_errors(other) | limit_errors(limit)
    found = _expect(mgr, lambda: mgr.list(value, user_id=other, limit=limit), refused)
    if not refused:
        visible = value == "victim" and other in alice and limit != 0
        assert [m.id for m in found] == ([victim] if visible else [])
    found = _expect(mgr, lambda: mgr.list("victim", user_id=value), user_errors(value))
    if found is not None:
        assert [m.id for m in found] == ([victim] if value == "alice" else [])
    memory = _expect(mgr, lambda: mgr.memory(value), user_errors(value))
    if memory is not None:
        assert [h.session_id for h in memory.list()] == ([victim] if value == "alice" else [])

    refused = (entry_errors(value) | limit_errors(limit)) or frozenset({sdb.EntryNotFoundError})
    _expect(mgr, lambda: mgr.get(victim).get_messages(before=value, limit=limit), refused)
    refused = uuid_errors(value, sdb.CheckpointNotFoundError)
    _expect(mgr, lambda: mgr.get(victim).restore(value), refused)

    # get_or_create may create (that is its job), but never returns another user's session.
    found = _expect(mgr, lambda: mgr.get_or_create("victim", value), owner_errors(value))
    if found is not None:
        assert found.user_id == owner(value)
        if value == "alice":
            assert found.id == victim
        else:
            assert found.id != victim
            mgr.delete(found.id)


#: Empty user IDs: "" and blank ones.
EMPTY_USERS = ["", " ", "\t\n", "\u3000"]


@pytest.mark.parametrize("empty", EMPTY_USERS)
def test_an_empty_user_id_never_turns_an_owner_check_off(mgr: sdb.Manager, empty: str) -> None:
    """The contract (API.md): a user ID that filters or checks ownership is never empty,
    "" or blank raises InvalidIDError; where a session is created, it means no user."""
    victim = mgr.list("victim")[0].id
    _expect(mgr, lambda: mgr.get(victim, user_id=empty), INVALID_ID)
    _expect(mgr, lambda: mgr.list("victim", user_id=empty), INVALID_ID)
    _expect(mgr, lambda: mgr.memory(empty), INVALID_ID)
    _expect(mgr, lambda: mgr.memory(empty, agent_name="victim"), INVALID_ID)
    created = mgr.create("victim", user_id=empty)
    assert created.user_id is None
    again = mgr.get_or_create("victim", empty)  # no user: always a new session
    assert again.user_id is None
    assert again.id not in {victim, created.id}
    assert {m.id for m in mgr.list("victim", user_id=None)} == {victim, created.id, again.id}
    assert mgr.get(created.id).user_id is None


@given(role=HOSTILE, message_id=HOSTILE | st.none(), body=PAYLOADS)
def test_messages_read_back_identical(
    mgr: sdb.Manager, role: str, message_id: str | None, body: Any
) -> None:
    session = mgr.list("victim")[0]
    victim = mgr.get(session.id)
    refused = role_errors(role) | entry_errors(message_id) | payload_errors(body)
    if not refused and message_id in {e.id for e in victim.get_entries()}:
        refused = frozenset({sdb.DuplicateEntryError})

    def append() -> sdb.Message:
        message = sdb.Message.new(role, body, id=message_id)
        victim.append_message(message)
        return message

    message = _expect(mgr, append, refused)
    if refused:
        return
    got = victim.get_messages(limit=1)[0]
    assert (got.id, got.type, got.timestamp) == (message.id, role, message.timestamp)
    assert _same(got.payload, body), (got.payload, body)
    # A checkpoint over hostile content verifies and restores.
    victim.restore(victim.checkpoint().id)


def _nested(levels: int) -> dict[str, Any]:
    """A payload of ``levels`` nested objects and arrays (the payload itself included)."""
    value: Any = "leaf"
    for _ in range(levels - 1):
        value = [value]
    return {"x": value}


UNICODE = [
    "\U0001f642 emoji",
    "\u05e9\u05dc\u05d5\u05dd right-to-left",
    "e\u0301 combining",
    "\uff41\uff4c\uff49\uff43\uff45",
    "\u4f1a\u8a71 CJK",
    "\U00010348 astral",
    "\u200b\ufeff\u202e format characters",
]

#: Valid edge cases, each of which must be accepted and read back identical.
ACCEPTED = [
    pytest.param("a" * 128, "u" * MAX_USER_ID, "r" * MAX_ROLE, "A" * 128, {}, id="longest"),
    pytest.param("_a.b-c", "\U0001f642 alice", "tool:call", "a:b.c-d_e", {"": ""}, id="tokens"),
    pytest.param(
        "bot",
        UNICODE[3],
        "\u0430\u0441\u0441\u0438\u0441\u0442\u0435\u043d\u0442",
        None,
        {u: u for u in UNICODE},
        id="unicode",
    ),
    pytest.param("bot", "e\u0301", "user", None, _nested(MAX_DEPTH), id="deepest"),
    pytest.param(
        "bot",
        None,
        "user",
        None,
        {
            "big": 2**300,
            "neg": -(2**300),
            "tiny": 5e-324,
            "huge": 1e308,
            "f": 2.0**64,
            "text": "\u00fc\u2713" * 100_000,
            "list": list(range(50_000)),
        },
        id="big",
    ),
]


@pytest.mark.parametrize(("agent", "user", "role", "message_id", "body"), ACCEPTED)
def test_valid_edge_cases_are_accepted(
    mgr: sdb.Manager,
    open_manager: Callable[[], sdb.Manager],
    agent: str,
    user: str | None,
    role: str,
    message_id: str | None,
    body: dict[str, Any],
) -> None:
    session = mgr.create(agent, user_id=user, metadata=body)
    message = sdb.Message.new(role, body, id=message_id)
    session.append_message(message)
    checkpoint = session.checkpoint(metadata=body)
    with open_manager() as fresh:  # read back through a new manager, from the store
        got = fresh.get(session.id, user_id=user)
        assert (got.agent_name, got.user_id) == (agent, user)
        assert _same(got.metadata, body)
        (read,) = got.get_messages()
        assert (read.id, read.type, read.timestamp) == (message.id, role, message.timestamp)
        assert _same(read.payload, body)
        assert [m.id for m in fresh.list(agent, user_id=user)] == [session.id]
        (cp,) = got.list_checkpoints()
        assert cp.id == checkpoint.id
        assert _same(cp.metadata, body)
        got.restore(checkpoint.id)
    COUNTS["hostile: inputs tried"] += 1


#: Just past each limit: refused with the documented error, nothing stored.
REFUSED = [
    pytest.param("a" * 129, None, "user", None, {}, sdb.InvalidIDError, id="agent-129"),
    pytest.param("bot", "u" * 256, "user", None, {}, sdb.InvalidIDError, id="user-256"),
    pytest.param("bot", None, "r" * 65, None, {}, sdb.PayloadError, id="role-65"),
    pytest.param("bot", None, "user", "A" * 129, {}, sdb.InvalidIDError, id="id-129"),
    pytest.param("bot", None, "user", None, _nested(MAX_DEPTH + 1), sdb.PayloadError, id="deep"),
]


@pytest.mark.parametrize(("agent", "user", "role", "message_id", "body", "error"), REFUSED)
def test_just_past_the_limits_is_refused(
    mgr: sdb.Manager,
    agent: str,
    user: str | None,
    role: str,
    message_id: str | None,
    body: dict[str, Any],
    error: type[sdb.SessionsDBError],
) -> None:
    victim = mgr.get(mgr.list("victim")[0].id)
    before = snapshot(mgr)
    if agent != "bot" or user is not None:
        with pytest.raises(error):
            mgr.create(agent, user_id=user)
    else:
        with pytest.raises(error):
            victim.append_message(sdb.Message.new(role, body, id=message_id))
    assert snapshot(mgr) == before
    COUNTS["hostile: inputs tried"] += 1


@pytest.mark.parametrize("size_mb", [1, 8])
def test_multi_megabyte_payload(mgr: sdb.Manager, size_mb: int) -> None:
    session = mgr.create("big")
    text = "ü✓" * (size_mb * 1024 * 1024 // 5)
    message = sdb.Message.new("user", {"content": text, "list": list(range(10_000))})
    session.append_message(message)
    assert mgr.get(session.id).get_messages()[0].payload == message.payload
    session.restore(session.checkpoint().id)
    COUNTS["hostile: inputs tried"] += 1


def test_unstorable_payloads_store_nothing(mgr: sdb.Manager) -> None:
    deep: Any = "leaf"
    for _ in range(10_000):
        deep = [deep]
    victim = mgr.get(mgr.list("victim")[0].id)
    bad: list[Any] = [
        {"x": float("nan")},
        {"x": float("inf")},
        {"x": "\ud800"},
        {"x\x00": 1},
        {"x": deep},
        {1: "int key"},
        {"x": {1, 2}},
        {"x": b"bytes"},
    ]
    for body in bad:
        before = snapshot(mgr)

        def append(body: Any = body) -> None:
            message = sdb.Message.new("user", {"ok": 1})
            message.payload.clear()
            message.payload.update(body)  # a payload changed after it was checked
            victim.append_message(message)

        with pytest.raises(sdb.PayloadError):
            append()
        with pytest.raises(sdb.PayloadError):
            sdb.Message.new("user", body)
        assert snapshot(mgr) == before
        COUNTS["hostile: inputs tried"] += 2


def _settings() -> Any:
    return profile(max_examples=profile().max_examples * 2)


test_create_and_read_back = _settings()(test_create_and_read_back)
test_lookups_never_leak_or_write = _settings()(test_lookups_never_leak_or_write)
test_messages_read_back_identical = _settings()(test_messages_read_back_identical)
