"""A user ID that checks ownership is a user: ``""`` or blank is refused, only ``None`` skips.

Every entry point that filters by user or checks an owner, on every store, through
the sync API and the asyncio one (behind the blocking facade, and awaited directly).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import sessions_db as sdb
import sessions_db.aio
from sessions_db.aio.memory import AsyncSessionMemory
from sessions_db.memory import SessionMemory

from .conftest import opener

EMPTY = ["", " ", "   "]


@pytest.fixture
def mgr(store_url: str, api: str) -> Iterator[sdb.Manager]:
    with opener(store_url, api)() as manager:
        yield manager


def alice_and_bob(mgr: sdb.Manager) -> tuple[str, str, str]:
    alice = mgr.create("web", user_id="alice")
    alice.append_message(sdb.Message.new("user", {"content": "alice's secret"}))
    bob = mgr.create("web", user_id="bob")
    nobody = mgr.create("web")
    return alice.id, bob.id, nobody.id


@pytest.mark.parametrize("empty", EMPTY)
def test_get_refuses_an_empty_user_id(mgr: sdb.Manager, empty: str) -> None:
    alice, _, nobody = alice_and_bob(mgr)
    for sid in (alice, nobody):
        with pytest.raises(sdb.InvalidIDError):
            mgr.get(sid, user_id=empty)
    # None, and only None, is "no ownership check".
    assert [m.payload for m in mgr.get(alice, user_id=None).get_messages()] == [
        {"content": "alice's secret"}
    ]
    assert mgr.get(alice, user_id="alice").id == alice


@pytest.mark.parametrize("empty", EMPTY)
def test_list_refuses_an_empty_user_id(mgr: sdb.Manager, empty: str) -> None:
    made = set(alice_and_bob(mgr))
    with pytest.raises(sdb.InvalidIDError):
        mgr.list("web", user_id=empty)
    with pytest.raises(sdb.InvalidIDError):
        mgr.list("web", user_id=empty, limit=1)
    assert {m.id for m in mgr.list("web", user_id=None)} == made


@pytest.mark.parametrize("empty", EMPTY)
def test_memory_refuses_an_empty_user_id(mgr: sdb.Manager, empty: str) -> None:
    alice_and_bob(mgr)
    with pytest.raises(sdb.InvalidIDError):
        mgr.memory(empty)
    with pytest.raises(sdb.InvalidIDError):
        mgr.memory(empty, agent_name="web")
    with pytest.raises(sdb.InvalidIDError):
        SessionMemory(mgr, empty)
    assert [h.message.payload for h in mgr.memory("alice").search("secret")] == [
        {"content": "alice's secret"}
    ]


def test_memory_needs_a_user(mgr: sdb.Manager) -> None:
    with pytest.raises(sdb.InvalidArgumentError):
        mgr.memory(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("empty", [None, *EMPTY])
def test_get_or_create_with_no_user_creates_a_session_of_nobody(
    mgr: sdb.Manager, empty: str | None
) -> None:
    existing = set(alice_and_bob(mgr))
    first = mgr.get_or_create("web", empty)
    second = mgr.get_or_create("web", empty)
    assert (first.user_id, second.user_id) == (None, None)
    assert len({first.id, second.id} | existing) == 5
    assert mgr.get(first.id).user_id is None


@pytest.mark.parametrize("empty", [None, *EMPTY])
def test_create_with_no_user_creates_a_session_of_nobody(
    mgr: sdb.Manager, empty: str | None
) -> None:
    session = mgr.create("web", user_id=empty)
    assert session.user_id is None
    assert mgr.get(session.id).user_id is None
    assert mgr.list("web", user_id="alice") == []


def test_a_user_id_that_is_not_blank_is_kept_as_given(mgr: sdb.Manager) -> None:
    padded = mgr.create("web", user_id=" alice ")
    assert mgr.get(padded.id, user_id=" alice ").user_id == " alice "
    with pytest.raises(sdb.SessionNotFoundError):
        mgr.get(padded.id, user_id="alice")


def test_async_entry_points_refuse_an_empty_user_id(store_url: str) -> None:
    async def go() -> None:
        async with await sdb.aio.connect(store_url) as amgr:
            alice = await amgr.create("web", user_id="alice")
            await alice.append_message(sdb.Message.new("user", {"content": "secret"}))
            for empty in EMPTY:
                with pytest.raises(sdb.InvalidIDError):
                    await amgr.get(alice.id, user_id=empty)
                with pytest.raises(sdb.InvalidIDError):
                    await amgr.list("web", user_id=empty)
                with pytest.raises(sdb.InvalidIDError):
                    amgr.memory(empty)
                with pytest.raises(sdb.InvalidIDError):
                    AsyncSessionMemory(amgr, empty)
                created = await amgr.get_or_create("web", empty)
                assert created.user_id is None
            assert (await amgr.get(alice.id, user_id=None)).id == alice.id
            assert [m.id for m in await amgr.list("web", user_id="alice")] == [alice.id]
            assert len(await amgr.list("web", user_id=None)) == 1 + len(EMPTY)

    asyncio.run(go())
