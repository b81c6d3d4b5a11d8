"""The runtime: agent protocols, call_with_session, checkpoints with agent state."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import sessions_db as sdb
from sessions_db.testing.contract import msg


def text(message: sdb.Message) -> str:
    content = message.payload["content"]
    assert isinstance(content, str)
    return content


class Echo:
    """A plain agent; records the session bound in the context while it runs."""

    def __init__(self) -> None:
        self.bound: list[str | None] = []

    def execute(self, message: sdb.Message) -> sdb.Message:
        current = sdb.session_from_context()
        self.bound.append(None if current is None else current.id)
        return sdb.Message.new("assistant", {"content": f"echo: {text(message)}"})


class Counter:
    """A session-aware, checkpointable agent with a counter as its state."""

    def __init__(self) -> None:
        self.count = 0
        self.histories: list[list[str]] = []

    def execute_with_session(self, message: sdb.Message, session: sdb.Session) -> sdb.Message:
        assert sdb.current_session() is session
        self.histories.append([text(m) for m in session.get_messages()])
        self.count += 1
        return sdb.Message.new("assistant", {"content": f"#{self.count}: {text(message)}"})

    def create_checkpoint(self) -> dict[str, Any]:
        return {"count": self.count}

    def restore_from_checkpoint(self, state: dict[str, Any]) -> None:
        self.count = state["count"]


class Failing:
    """An agent that raises."""

    error = RuntimeError("the model is down")

    def execute(self, message: sdb.Message) -> sdb.Message:
        raise self.error


class Memory:
    """A MemoryReader."""

    def read(self, id: str) -> Any:
        return None

    def search(self, query: str, limit: int) -> Sequence[Any]:
        return []

    def list(self, *args: Any, **kwargs: Any) -> Sequence[Any]:
        return []


class Remembering(Echo):
    """A memory-aware agent."""

    memory: sdb.MemoryReader | None = None

    def set_memory(self, reader: sdb.MemoryReader) -> None:
        self.memory = reader


@pytest.fixture
def mgr(store_url: str) -> Iterator[sdb.Manager]:
    with sdb.connect(store_url) as manager:
        yield manager


@pytest.fixture
def rt(mgr: sdb.Manager) -> sdb.Runtime:
    runtime = sdb.Runtime(mgr)
    runtime.register("echo", Echo())
    runtime.register("counter", Counter())
    runtime.register("failing", Failing())
    return runtime


def state_of(session: sdb.Session) -> tuple[Any, ...]:
    """Everything stored about a session."""
    return (session.info(), session.get_entries(), session.list_checkpoints())


def test_protocols() -> None:
    echo, counter, remembering = Echo(), Counter(), Remembering()
    assert isinstance(echo, sdb.Agent)
    assert not sdb.is_session_aware(echo)
    assert not sdb.is_checkpointable(echo)
    assert not sdb.is_memory_aware(echo)
    assert sdb.is_session_aware(counter)
    assert sdb.is_checkpointable(counter)
    assert isinstance(counter, sdb.SessionAwareAgent)
    assert isinstance(counter, sdb.CheckpointableAgent)
    assert sdb.is_memory_aware(remembering)
    assert isinstance(remembering, sdb.MemoryAwareAgent)
    assert isinstance(Memory(), sdb.MemoryReader)
    assert not isinstance(object(), sdb.MemoryReader)


def test_call_with_session_records_input_and_answer(rt: sdb.Runtime, mgr: sdb.Manager) -> None:
    assert rt.session_manager is mgr
    sess = mgr.get_or_create("echo", "user-1")
    out = rt.call_with_session("echo", msg("hello"), sess.id)
    assert text(out) == "echo: hello"
    stored = sess.get_messages()
    assert [(m.type, text(m)) for m in stored] == [("user", "hello"), ("assistant", "echo: hello")]
    assert stored[1] == out
    echo = rt.agent("echo")
    assert isinstance(echo, Echo)
    assert echo.bound == [sess.id]  # bound while it ran
    assert sdb.session_from_context() is None  # and not after


def test_session_aware_agent_sees_the_history_ending_with_the_input(
    rt: sdb.Runtime, mgr: sdb.Manager
) -> None:
    sess = mgr.create("counter")
    rt.call_with_session("counter", msg("one"), sess.id)
    rt.call_with_session("counter", msg("two"), sess.id)
    counter = rt.agent("counter")
    assert isinstance(counter, Counter)
    assert counter.histories == [["one"], ["one", "#1: one", "two"]]
    assert [text(m) for m in sess.get_messages()] == ["one", "#1: one", "two", "#2: two"]


def test_a_raising_agent_stores_nothing(rt: sdb.Runtime, mgr: sdb.Manager) -> None:
    sess = mgr.create("failing")
    rt.call_with_session("echo", msg("before"), sess.id)
    before = state_of(sess)
    with pytest.raises(RuntimeError) as raised:
        rt.call_with_session("failing", msg("lost"), sess.id)
    assert raised.value is Failing.error  # propagated unchanged
    assert state_of(sess) == before
    assert sdb.session_from_context() is None


class _Bad:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def execute(self, message: sdb.Message) -> Any:
        return self.answer


def test_a_bad_answer_stores_nothing(rt: sdb.Runtime, mgr: sdb.Manager) -> None:
    sess = mgr.create("echo")
    rt.call_with_session("echo", msg("before"), sess.id)
    before = state_of(sess)
    rt.register("text", _Bad("not a message"))
    with pytest.raises(sdb.InvalidArgumentError, match="not a Message"):
        rt.call_with_session("text", msg("x"), sess.id)
    spoiled = sdb.Message.new("assistant", {"content": "ok"})
    spoiled.payload["x"] = float("nan")  # unstorable: the pair is refused as a whole
    rt.register("nan", _Bad(spoiled))
    with pytest.raises(sdb.PayloadError):
        rt.call_with_session("nan", msg("x"), sess.id)
    echo_input = msg("same id")
    rt.register("parrot", _Bad(echo_input))  # answers with the input itself
    with pytest.raises(sdb.DuplicateEntryError):
        rt.call_with_session("parrot", echo_input, sess.id)
    with pytest.raises(sdb.PayloadError):
        rt.call_with_session("echo", "not a message", sess.id)  # type: ignore[arg-type]
    assert state_of(sess) == before


def test_async_agents_are_refused(rt: sdb.Runtime, mgr: sdb.Manager) -> None:
    class Async:
        async def execute(self, message: sdb.Message) -> sdb.Message:
            return message  # pragma: no cover - never awaited

    rt.register("async", Async())
    sess = mgr.create("async")
    with pytest.raises(sdb.InvalidArgumentError, match="async"):
        rt.call_with_session("async", msg("x"), sess.id)
    assert sess.get_entries() == []


def test_unknown_session_agent_and_bad_registrations(rt: sdb.Runtime, mgr: sdb.Manager) -> None:
    with pytest.raises(sdb.SessionNotFoundError):
        rt.call_with_session("echo", msg("x"), "00000000-0000-4000-8000-000000000000")
    with pytest.raises(sdb.InvalidIDError):
        rt.call_with_session("echo", msg("x"), "not-an-id")
    sess = mgr.create("echo")
    with pytest.raises(sdb.InvalidArgumentError, match="no agent"):
        rt.call_with_session("nobody", msg("x"), sess.id)
    with pytest.raises(sdb.InvalidArgumentError, match="already registered"):
        rt.register("echo", Echo())
    with pytest.raises(sdb.InvalidArgumentError, match="not an agent"):
        rt.register("thing", object())
    with pytest.raises(sdb.InvalidIDError):
        rt.register("../escape", Echo())
    assert rt.agents == ["counter", "echo", "failing"]
    assert sess.get_entries() == []


def test_agent_with_sessions_disabled_runs_statelessly(mgr: sdb.Manager) -> None:
    config = {"agents": [{"name": "quiet", "session": {"enabled": False}}, {"name": "loud"}]}
    rt = sdb.Runtime(mgr, config=config)
    quiet, loud = Counter(), Counter()
    rt.register("quiet", quiet)
    rt.register("loud", loud)
    assert not rt.keeps_sessions("quiet")
    assert rt.keeps_sessions("loud")
    sess = mgr.create("loud")
    rt.call_with_session("loud", msg("kept"), sess.id)
    before = state_of(sess)
    out = rt.call_with_session("quiet", msg("not kept"), sess.id)
    assert text(out) == "#1: not kept"
    assert quiet.histories == [[]]  # it sees no history either
    assert state_of(sess) == before
    # Nothing is loaded: an ID the store does not know is fine.
    rt.call_with_session("quiet", msg("x"), "00000000-0000-4000-8000-000000000000")
    # Sessions off altogether: every agent is stateless.
    off = sdb.Runtime(mgr, config={"session": {"enabled": False}})
    off.register("loud", Echo())
    off.call_with_session("loud", msg("x"), sess.id)
    assert state_of(sess) == before


def test_checkpoint_and_restore_with_agent_state(rt: sdb.Runtime, mgr: sdb.Manager) -> None:
    counter = rt.agent("counter")
    assert isinstance(counter, Counter)
    sess = mgr.create("counter")
    rt.call_with_session("counter", msg("one"), sess.id)
    rt.call_with_session("counter", msg("two"), sess.id)
    checkpoint = rt.checkpoint(sess.id, "counter", metadata={"label": "after two"})
    assert checkpoint.metadata == {
        "label": "after two",
        "agent_name": "counter",
        "agent_state": {"count": 2},
    }
    assert sess.list_checkpoints() == [checkpoint]
    rt.call_with_session("counter", msg("three"), sess.id)
    assert counter.count == 3
    restored = rt.restore(sess.id, checkpoint.id, "counter")
    assert restored == checkpoint
    assert counter.count == 2
    assert [text(m) for m in sess.get_messages()] == ["one", "#1: one", "two", "#2: two"]
    out = rt.call_with_session("counter", msg("three again"), sess.id)
    assert text(out) == "#3: three again"


def test_checkpoint_and_restore_errors(rt: sdb.Runtime, mgr: sdb.Manager) -> None:
    sess = mgr.create("counter")
    rt.call_with_session("counter", msg("one"), sess.id)
    with pytest.raises(sdb.InvalidArgumentError, match="not checkpointable"):
        rt.checkpoint(sess.id, "echo")
    plain = sess.checkpoint()
    rt.register("other", Counter())
    theirs = rt.checkpoint(sess.id, "other")
    rt.call_with_session("counter", msg("two"), sess.id)
    before = state_of(sess)
    counter = rt.agent("counter")
    assert isinstance(counter, Counter)
    with pytest.raises(sdb.InvalidArgumentError, match="no state"):
        rt.restore(sess.id, plain.id, "counter")  # taken without the runtime
    with pytest.raises(sdb.InvalidArgumentError, match="no state"):
        rt.restore(sess.id, theirs.id, "counter")  # another agent's state
    with pytest.raises(sdb.CheckpointNotFoundError):
        rt.restore(sess.id, "00000000-0000-4000-8000-000000000000", "counter")
    with pytest.raises(sdb.InvalidIDError):
        rt.restore(sess.id, "nope", "counter")
    elsewhere = mgr.create("counter")
    with pytest.raises(sdb.CheckpointNotFoundError):
        rt.restore(elsewhere.id, theirs.id, "other")
    assert state_of(sess) == before
    assert counter.count == 2

    class Unstorable(Counter):
        def create_checkpoint(self) -> dict[str, Any]:
            return {"when": object()}

    rt.register("unstorable", Unstorable())
    with pytest.raises(sdb.PayloadError):
        rt.checkpoint(sess.id, "unstorable")
    assert state_of(sess) == before


def test_memory_reader_is_given_to_memory_aware_agents(mgr: sdb.Manager) -> None:
    memory = Memory()
    rt = sdb.Runtime(mgr, memory=memory)
    agent = Remembering()
    rt.register("remembering", agent)
    assert agent.memory is memory
    sdb.Runtime(mgr).register("remembering", other := Remembering())
    assert other.memory is None


def test_concurrent_calls_keep_each_pair_together(rt: sdb.Runtime, mgr: sdb.Manager) -> None:
    sess = mgr.create("echo")
    workers, calls = 4, 5

    def work(w: int) -> None:
        for i in range(calls):
            rt.call_with_session("echo", msg(f"{w}-{i}"), sess.id)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = [text(m) for m in sess.get_messages()]
    assert len(stored) == 2 * workers * calls
    for question, answer in zip(stored[::2], stored[1::2], strict=True):
        assert answer == f"echo: {question}"


def test_runtime_calls_take_automatic_checkpoints(store_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    with sdb.connect(store_url) as plain:
        mgr = sdb.Manager(plain.backend, clock=lambda: now[0], auto_checkpoint=timedelta(minutes=1))
        rt = sdb.Runtime(mgr)
        rt.register("echo", Echo())
        sess = mgr.create("echo")
        rt.call_with_session("echo", msg("a"), sess.id)
        assert sess.list_checkpoints() == []
        now[0] += timedelta(minutes=1)
        rt.call_with_session("echo", msg("b"), sess.id)
        [auto] = sess.list_checkpoints()
        assert auto.metadata == {"auto": True}
        assert sess.get_entries()[-1].id == auto.entry_id  # after the pair, never between
