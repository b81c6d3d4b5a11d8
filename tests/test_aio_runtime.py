"""The asyncio runtime (sdb.aio.Runtime) on every store: async and plain agents, failures,
checkpoints with agent state, the context, concurrent tasks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import sessions_db as sdb
from sessions_db import aio
from sessions_db.testing.contract import msg

from .test_runtime import Echo, Failing, text

Body = Callable[[aio.Runtime, aio.AsyncManager], Awaitable[None]]


def run_with(store_url: str, body: Body, **options: Any) -> None:
    """Run ``body(runtime, manager)`` on a new event loop, with the agents of these tests."""

    async def main() -> None:
        async with await aio.connect(store_url) as mgr:
            rt = aio.Runtime(mgr, **options)
            rt.register("echo", Echo())
            rt.register("counter", AsyncCounter())
            rt.register("failing", AsyncFailing())
            await body(rt, mgr)

    asyncio.run(main())


class AsyncCounter:
    """Counter, async: session-aware and checkpointable, every method a coroutine."""

    def __init__(self) -> None:
        self.count = 0
        self.histories: list[list[str]] = []

    async def execute_with_session(
        self, message: sdb.Message, session: aio.AsyncSession
    ) -> sdb.Message:
        assert sdb.current_session() is session
        self.histories.append([text(m) for m in await session.get_messages()])
        await asyncio.sleep(0)  # let other tasks run in the middle of a call
        self.count += 1
        return sdb.Message.new("assistant", {"content": f"#{self.count}: {text(message)}"})

    async def create_checkpoint(self) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"count": self.count}

    async def restore_from_checkpoint(self, state: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        self.count = state["count"]


class AsyncFailing:
    """An async agent that raises after a suspension."""

    async def execute(self, message: sdb.Message) -> sdb.Message:
        await asyncio.sleep(0)
        raise Failing.error


async def state_of(session: aio.AsyncSession) -> tuple[Any, ...]:
    """Everything stored about a session."""
    return (await session.info(), await session.get_entries(), await session.list_checkpoints())


async def contents(session: aio.AsyncSession) -> list[str]:
    return [text(m) for m in await session.get_messages()]


def test_async_agent_records_input_and_answer(store_url: str) -> None:
    async def body(rt: aio.Runtime, mgr: aio.AsyncManager) -> None:
        assert rt.session_manager is mgr
        sess = await mgr.create("counter")
        assert text(await rt.call_with_session("counter", msg("one"), sess.id)) == "#1: one"
        assert text(await rt.call_with_session("counter", msg("two"), sess.id)) == "#2: two"
        assert await contents(sess) == ["one", "#1: one", "two", "#2: two"]
        counter = rt.agent("counter")
        assert isinstance(counter, AsyncCounter)
        assert counter.histories == [["one"], ["one", "#1: one", "two"]]  # ends with the input

    run_with(store_url, body)


class Where(Echo):
    """Echo, recording the thread it runs in."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[threading.Thread] = []

    def execute(self, message: sdb.Message) -> sdb.Message:
        self.threads.append(threading.current_thread())
        return super().execute(message)


@pytest.mark.parametrize("to_thread", [True, False])
def test_plain_agents_run_in_a_thread_or_on_the_loop(store_url: str, to_thread: bool) -> None:
    async def body(rt: aio.Runtime, mgr: aio.AsyncManager) -> None:
        agent = Where()
        rt.register("where", agent)
        sess = await mgr.create("where")
        out = await rt.call_with_session("where", msg("hi"), sess.id)
        assert text(out) == "echo: hi"
        assert agent.bound == [sess.id]  # the session is bound wherever the agent runs
        on_loop = agent.threads == [threading.current_thread()]
        assert on_loop is not to_thread
        assert await contents(sess) == ["hi", "echo: hi"]

    run_with(store_url, body, to_thread=to_thread)


def test_plain_agents_do_not_block_the_loop(store_url: str) -> None:
    class Blocking:
        def __init__(self) -> None:
            self.release = threading.Event()
            self.thread: threading.Thread | None = None

        def execute(self, message: sdb.Message) -> sdb.Message:
            self.thread = threading.current_thread()
            assert sdb.current_session().id == message.payload["session"]
            assert self.release.wait(timeout=60)
            return sdb.Message.new("assistant", {"content": "done"})

    async def body(rt: aio.Runtime, mgr: aio.AsyncManager) -> None:
        agent = Blocking()
        rt.register("blocking", agent)
        sess = await mgr.create("blocking")
        message = sdb.Message.new("user", {"content": "go", "session": sess.id})
        call = asyncio.create_task(rt.call_with_session("blocking", message, sess.id))

        # The loop is free while the agent blocks: this task runs and lets it finish.
        async def agent_started() -> None:
            while agent.thread is None:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(agent_started(), timeout=60)
        assert agent.thread is not threading.main_thread()
        assert await contents(sess) == []
        agent.release.set()
        assert text(await call) == "done"
        assert await contents(sess) == ["go", "done"]

    run_with(store_url, body)


def test_a_raising_agent_leaves_the_session_untouched(store_url: str) -> None:
    async def body(rt: aio.Runtime, mgr: aio.AsyncManager) -> None:
        rt.register("sync-failing", Failing())
        sess = await mgr.create("failing")
        await rt.call_with_session("echo", msg("kept"), sess.id)
        before = await state_of(sess)
        for name in ("failing", "sync-failing"):
            with pytest.raises(RuntimeError) as raised:
                await rt.call_with_session(name, msg("lost"), sess.id)
            assert raised.value is Failing.error
        assert await state_of(sess) == before

    run_with(store_url, body)


def test_checkpoint_and_restore_async_agent_state(store_url: str) -> None:
    async def body(rt: aio.Runtime, mgr: aio.AsyncManager) -> None:
        counter = rt.agent("counter")
        assert isinstance(counter, AsyncCounter)
        sess = await mgr.create("counter")
        await rt.call_with_session("counter", msg("one"), sess.id)
        await rt.call_with_session("counter", msg("two"), sess.id)
        cp = await rt.checkpoint(sess.id, "counter", metadata={"label": "after two"})
        assert cp.metadata == {
            "label": "after two",
            "agent_name": "counter",
            "agent_state": {"count": 2},
        }
        assert await sess.list_checkpoints() == [cp]
        await rt.call_with_session("counter", msg("three"), sess.id)
        assert counter.count == 3
        assert await rt.restore(sess.id, cp.id, "counter") == cp
        assert counter.count == 2
        assert await contents(sess) == ["one", "#1: one", "two", "#2: two"]
        out = await rt.call_with_session("counter", msg("three again"), sess.id)
        assert text(out) == "#3: three again"
        with pytest.raises(sdb.InvalidArgumentError):
            await rt.checkpoint(sess.id, "echo")  # not checkpointable
        with pytest.raises(sdb.CheckpointNotFoundError):
            await rt.restore(sess.id, "00000000-0000-4000-8000-000000000000", "counter")

    run_with(store_url, body)


def test_current_session_inside_an_async_agent(store_url: str) -> None:
    class Looking:
        def __init__(self) -> None:
            self.seen: list[Any] = []

        async def execute(self, message: sdb.Message) -> sdb.Message:
            self.seen.append(sdb.current_session())
            return sdb.Message.new("assistant", {"content": "seen"})

    async def body(rt: aio.Runtime, mgr: aio.AsyncManager) -> None:
        agent = Looking()
        rt.register("looking", agent)
        sess = await mgr.create("looking")
        await rt.call_with_session("looking", msg("x"), sess.id)
        (seen,) = agent.seen
        assert isinstance(seen, aio.AsyncSession)
        assert seen.id == sess.id
        assert sdb.session_from_context() is None  # restored after the call

    run_with(store_url, body)


def test_concurrent_tasks_on_one_session(store_url: str) -> None:
    tasks = 20

    async def body(rt: aio.Runtime, mgr: aio.AsyncManager) -> None:
        sess = await mgr.create("counter")
        await asyncio.gather(
            *(rt.call_with_session("counter", msg(f"q{i}"), sess.id) for i in range(tasks))
        )
        stored = await contents(sess)
        assert len(stored) == 2 * tasks
        assert (await sess.info()).message_count == 2 * tasks
        questions = stored[::2]
        assert sorted(questions) == sorted(f"q{i}" for i in range(tasks))
        for question, answer in zip(questions, stored[1::2], strict=True):
            assert answer.endswith(f": {question}")  # each pair is stored together
        counter = rt.agent("counter")
        assert isinstance(counter, AsyncCounter)
        assert counter.count == tasks

    run_with(store_url, body)


def test_agent_with_sessions_disabled_runs_statelessly(store_url: str) -> None:
    config = {"agents": [{"name": "quiet", "session": {"enabled": False}}]}

    async def body(rt: aio.Runtime, mgr: aio.AsyncManager) -> None:
        quiet = AsyncCounter()
        rt.register("quiet", quiet)
        assert not rt.keeps_sessions("quiet")
        assert rt.keeps_sessions("counter")
        sess = await mgr.create("counter")
        await rt.call_with_session("counter", msg("kept"), sess.id)
        before = await state_of(sess)
        out = await rt.call_with_session("quiet", msg("not kept"), sess.id)
        assert text(out) == "#1: not kept"
        assert quiet.histories == [[]]
        assert await state_of(sess) == before
        await rt.call_with_session("quiet", msg("x"), "00000000-0000-4000-8000-000000000000")
        off = aio.Runtime(mgr, config={"session": {"enabled": False}})
        off.register("counter", AsyncCounter())
        await off.call_with_session("counter", msg("x"), sess.id)
        assert await state_of(sess) == before

    run_with(store_url, body, config=config)


def test_memory_aware_agents_get_the_async_memory(store_url: str) -> None:
    class Remembering(Echo):
        memory: Any = None

        def set_memory(self, reader: Any) -> None:
            self.memory = reader

    async def main() -> None:
        async with await aio.connect(store_url) as mgr:
            memory = mgr.memory("alice")
            assert isinstance(memory, sdb.MemoryReader)
            rt = aio.Runtime(mgr, memory=memory)
            agent = Remembering()
            rt.register("remembering", agent)
            assert agent.memory is memory
            sess = await mgr.create("remembering", user_id="alice")
            await rt.call_with_session("remembering", msg("invoice late"), sess.id)
            hits = await agent.memory.search("invoice")
            assert sorted(text(h.message) for h in hits) == ["echo: invoice late", "invoice late"]

    asyncio.run(main())
