"""What an agent sees inside call_with_session: the seed's order (the history ends with the input),
and what is stored when it answers, writes itself, or fails; sync and asyncio, every store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import sessions_db as sdb
from sessions_db import aio
from sessions_db.testing.contract import msg

from .test_runtime import text


class Viewer:
    """A session-aware agent that records everything its session handle shows."""

    def __init__(self, *, write: bool = False, fail: bool = False) -> None:
        self.write = write
        self.fail = fail
        self.views: list[dict[str, Any]] = []

    def execute_with_session(self, message: sdb.Message, session: sdb.Session) -> sdb.Message:
        assert sdb.current_session() is session
        info = session.info()
        entries = session.get_entries()
        self.views.append(
            {
                "history": session.get_messages(),
                "newest": session.get_messages(limit=1),
                "none": session.get_messages(limit=0),
                "before_input": session.get_messages(before=message.id),
                "count": info.message_count,
                "leaf": info.current_leaf,
                "last_entry": (entries[-1].id, entries[-1].parent_id),
                "elsewhere": session.manager.get(session.id).get_messages(),
            }
        )
        if self.write:
            session.append_message(msg(f"note on {text(message)}", "tool"))
        if self.fail:
            raise RuntimeError("the model is down")
        return sdb.Message.new("assistant", {"content": f"re: {text(message)}"})


class AsyncViewer(Viewer):
    """Viewer, async, on an AsyncSession."""

    async def execute_with_session(  # type: ignore[override]
        self, message: sdb.Message, session: aio.AsyncSession
    ) -> sdb.Message:
        assert sdb.current_session() is session
        info = await session.info()
        entries = await session.get_entries()
        await asyncio.sleep(0)
        self.views.append(
            {
                "history": await session.get_messages(),
                "newest": await session.get_messages(limit=1),
                "none": await session.get_messages(limit=0),
                "before_input": await session.get_messages(before=message.id),
                "count": info.message_count,
                "leaf": info.current_leaf,
                "last_entry": (entries[-1].id, entries[-1].parent_id),
                "elsewhere": await (await session.manager.get(session.id)).get_messages(),
            }
        )
        if self.write:
            await session.append_message(msg(f"note on {text(message)}", "tool"))
        if self.fail:
            raise RuntimeError("the model is down")
        return sdb.Message.new("assistant", {"content": f"re: {text(message)}"})


class Plain:
    """A plain agent that reads the session from the context, as the seed's Execute does."""

    def __init__(self) -> None:
        self.histories: list[list[str]] = []

    def execute(self, message: sdb.Message) -> sdb.Message:
        session = sdb.current_session()
        assert isinstance(session, sdb.Session)
        self.histories.append([text(m) for m in session.get_messages()])
        return sdb.Message.new("assistant", {"content": "ok"})


def check_view(view: dict[str, Any], before: list[sdb.Message], message: sdb.Message) -> None:
    """The agent's view: the stored history, then the input, as if it were stored."""
    assert view["history"] == [*before, message]
    assert view["newest"] == [message]
    assert view["none"] == []
    assert view["before_input"] == before
    assert view["count"] == len(before) + 1
    assert view["leaf"] == message.id
    assert view["elsewhere"] == before  # another handle: nothing is stored yet


@pytest.fixture
def mgr(store_url: str) -> Iterator[sdb.Manager]:
    with sdb.connect(store_url) as manager:
        yield manager


def test_the_agent_sees_the_input_at_the_end_of_its_history(mgr: sdb.Manager) -> None:
    rt = sdb.Runtime(mgr)
    viewer, plain = Viewer(), Plain()
    rt.register("viewer", viewer)
    rt.register("plain", plain)
    sess = mgr.create("viewer")
    first, second = msg("one"), msg("two")
    rt.call_with_session("viewer", first, sess.id)
    stored = sess.get_messages()
    leaf = sess.info().current_leaf
    rt.call_with_session("viewer", second, sess.id)
    check_view(viewer.views[0], [], first)
    check_view(viewer.views[1], stored, second)
    assert viewer.views[0]["last_entry"] == (first.id, None)
    assert viewer.views[1]["last_entry"] == (second.id, leaf)
    assert [text(m) for m in sess.get_messages()] == ["one", "re: one", "two", "re: two"]
    assert sess.info().message_count == 4
    rt.call_with_session("plain", msg("three"), sess.id)
    assert plain.histories == [["one", "re: one", "two", "re: two", "three"]]


def test_async_agent_sees_the_input_at_the_end_of_its_history(store_url: str) -> None:
    async def main() -> None:
        async with await aio.connect(store_url) as amgr:
            rt = aio.Runtime(amgr)
            viewer = AsyncViewer()
            rt.register("viewer", viewer)
            sess = await amgr.create("viewer")
            first, second = msg("one"), msg("two")
            await rt.call_with_session("viewer", first, sess.id)
            stored = await sess.get_messages()
            await rt.call_with_session("viewer", second, sess.id)
            check_view(viewer.views[0], [], first)
            check_view(viewer.views[1], stored, second)
            got = [text(m) for m in await sess.get_messages()]
            assert got == ["one", "re: one", "two", "re: two"]

    asyncio.run(main())


def test_a_raising_agent_leaves_history_and_count_as_before(mgr: sdb.Manager) -> None:
    rt = sdb.Runtime(mgr)
    rt.register("viewer", Viewer())
    failing = Viewer(fail=True)
    rt.register("failing", failing)
    sess = mgr.create("viewer")
    rt.call_with_session("viewer", msg("kept"), sess.id)
    before = (sess.info(), sess.get_entries(), sess.get_messages())
    lost = msg("lost")
    with pytest.raises(RuntimeError, match="model is down"):
        rt.call_with_session("failing", lost, sess.id)
    check_view(failing.views[0], before[2], lost)  # it did see the input
    assert (sess.info(), sess.get_entries(), sess.get_messages()) == before
    assert sess.info().message_count == 2
    # the next call starts from the stored history, without the failed input
    rt.call_with_session("viewer", msg("again"), sess.id)
    assert [text(m) for m in sess.get_messages()] == ["kept", "re: kept", "again", "re: again"]


def test_a_raising_async_agent_leaves_history_and_count_as_before(store_url: str) -> None:
    async def main() -> None:
        async with await aio.connect(store_url) as amgr:
            rt = aio.Runtime(amgr)
            failing = AsyncViewer(fail=True)
            rt.register("viewer", AsyncViewer())
            rt.register("failing", failing)
            sess = await amgr.create("viewer")
            await rt.call_with_session("viewer", msg("kept"), sess.id)
            before = (await sess.info(), await sess.get_entries())
            lost = msg("lost")
            with pytest.raises(RuntimeError, match="model is down"):
                await rt.call_with_session("failing", lost, sess.id)
            check_view(failing.views[0], await sess.get_messages(), lost)
            assert (await sess.info(), await sess.get_entries()) == before
            assert (await sess.info()).message_count == 2

    asyncio.run(main())


def test_the_agents_own_writes_store_the_input_first(mgr: sdb.Manager) -> None:
    rt = sdb.Runtime(mgr)
    rt.register("writer", Viewer(write=True))
    rt.register("failing-writer", Viewer(write=True, fail=True))
    sess = mgr.create("writer")
    rt.call_with_session("writer", msg("q1"), sess.id)
    assert [(m.type, text(m)) for m in sess.get_messages()] == [
        ("user", "q1"),
        ("tool", "note on q1"),
        ("assistant", "re: q1"),
    ]
    # what the agent wrote itself stays, with the input it answers before it
    with pytest.raises(RuntimeError):
        rt.call_with_session("failing-writer", msg("q2"), sess.id)
    assert [text(m) for m in sess.get_messages()][3:] == ["q2", "note on q2"]
    assert sess.info().message_count == 5


def test_an_async_agents_own_writes_store_the_input_first(store_url: str) -> None:
    async def main() -> None:
        async with await aio.connect(store_url) as amgr:
            rt = aio.Runtime(amgr)
            rt.register("writer", AsyncViewer(write=True))
            sess = await amgr.create("writer")
            await rt.call_with_session("writer", msg("q1"), sess.id)
            got = [text(m) for m in await sess.get_messages()]
            assert got == ["q1", "note on q1", "re: q1"]

    asyncio.run(main())


def test_a_checkpoint_by_the_agent_includes_the_input(mgr: sdb.Manager) -> None:
    class Checkpointing:
        def execute_with_session(self, message: sdb.Message, session: sdb.Session) -> sdb.Message:
            self.checkpoint = session.checkpoint()
            return sdb.Message.new("assistant", {"content": "done"})

    rt = sdb.Runtime(mgr)
    agent = Checkpointing()
    rt.register("cp", agent)
    sess = mgr.create("cp")
    rt.call_with_session("cp", msg("q"), sess.id)
    assert [text(m) for m in sess.get_messages()] == ["q", "done"]
    sess.restore(agent.checkpoint.id)  # its checksum covers the stored input
    assert [text(m) for m in sess.get_messages()] == ["q"]


def test_the_view_is_redacted_as_the_store_will_be(store_url: str) -> None:
    def redact(payload: dict[str, Any]) -> dict[str, Any]:
        return {k: ("***" if k == "secret" else v) for k, v in payload.items()}

    with sdb.connect(store_url) as plain:
        mgr = sdb.Manager(plain.backend, redact=redact)
        rt = sdb.Runtime(mgr)
        viewer = Viewer()
        rt.register("viewer", viewer)
        sess = mgr.create("viewer")
        rt.call_with_session(
            "viewer", sdb.Message.new("user", {"content": "x", "secret": "1"}), sess.id
        )
        (shown,) = viewer.views[0]["history"]
        assert shown.payload == {"content": "x", "secret": "***"}
        assert sess.get_messages()[0] == shown


def test_an_unstorable_input_is_refused_before_the_agent_runs(mgr: sdb.Manager) -> None:
    rt = sdb.Runtime(mgr)
    viewer = Viewer()
    rt.register("viewer", viewer)
    sess = mgr.create("viewer")
    bad = msg("x")
    bad.payload["n"] = float("nan")
    with pytest.raises(sdb.PayloadError):
        rt.call_with_session("viewer", bad, sess.id)
    assert viewer.views == []
    assert sess.get_entries() == []
