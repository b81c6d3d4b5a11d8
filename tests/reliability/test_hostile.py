"""Hostile input: every call either works and reads back identical, or raises a
documented error and stores nothing."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sessions_db as sdb

from .support import COUNTS, clear, profile, snapshot

TRICKS = [
    "",
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


def _attempt(mgr: sdb.Manager, call: Callable[[], Any]) -> Any:
    """Run ``call``: on error it must be documented and the store unchanged."""
    before = snapshot(mgr)
    COUNTS["hostile: inputs tried"] += 1
    try:
        return call()
    except sdb.SessionsDBError:
        COUNTS["hostile: refused with a documented error"] += 1
        assert snapshot(mgr) == before
        return None


@given(agent=HOSTILE, user=HOSTILE | st.none(), meta=PAYLOADS)
def test_create_and_read_back(mgr: sdb.Manager, agent: str, user: str | None, meta: Any) -> None:
    session = _attempt(mgr, lambda: mgr.create(agent, user_id=user, metadata=meta))
    if session is not None:
        got = mgr.get(session.id, user_id=user)
        assert got.agent_name == agent
        assert got.user_id == (user or None)
        assert _same(got.metadata, meta)
        assert session.id in [m.id for m in mgr.list(agent, user_id=user)]
        mgr.delete(session.id)


@given(value=HOSTILE, other=HOSTILE | st.none(), limit=st.integers(-2, 3) | st.none())
def test_lookups_never_leak_or_write(
    mgr: sdb.Manager, value: str, other: str | None, limit: int | None
) -> None:
    victim = mgr.list("victim")[0].id

    def allowed(meta: sdb.SessionMetadata, agent: str, user: str | None) -> bool:
        return meta.agent_name == agent and (not user or meta.user_id == user)

    session = _attempt(mgr, lambda: mgr.get(value))
    assert session is None or session.id == value
    session = _attempt(mgr, lambda: mgr.get(victim, user_id=value))
    assert session is None or value in ("", "alice")
    _attempt(mgr, lambda: mgr.delete(value))
    found = _attempt(mgr, lambda: mgr.list(value, user_id=other, limit=limit)) or []
    assert all(allowed(m, value, other) for m in found)
    found = _attempt(mgr, lambda: mgr.list("victim", user_id=value)) or []
    assert all(allowed(m, "victim", value) for m in found)
    _attempt(mgr, lambda: mgr.get(victim).get_messages(before=value, limit=limit))
    _attempt(mgr, lambda: mgr.get(victim).restore(value))
    # get_or_create may create (that is its job), but never returns another user's session.
    found = _attempt(mgr, lambda: mgr.get_or_create("victim", value))
    if found is not None:
        assert found.user_id == (value or None)
        if value != "alice":
            assert found.id != victim
            mgr.delete(found.id)


@given(role=HOSTILE, message_id=HOSTILE | st.none(), body=PAYLOADS)
def test_messages_read_back_identical(
    mgr: sdb.Manager, role: str, message_id: str | None, body: Any
) -> None:
    session = mgr.list("victim")[0]
    victim = mgr.get(session.id)

    def append() -> sdb.Message:
        message = sdb.Message.new(role, body, id=message_id)
        victim.append_message(message)
        return message

    message = _attempt(mgr, append)
    if message is not None:
        got = victim.get_messages(limit=1)[0]
        assert (got.id, got.type, got.timestamp) == (message.id, role, message.timestamp)
        assert _same(got.payload, body), (got.payload, body)
        # A checkpoint over hostile content verifies and restores.
        victim.restore(victim.checkpoint().id)


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
