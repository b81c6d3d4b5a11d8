"""SessionsDBSaver under real LangGraph graphs, on every store (no network, no mocks)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import Command

import sessions_db as sdb
import sessions_db.aio
from sessions_db.crypto import Keyring, generate_key
from sessions_db.integrations.langgraph import (
    CHECKPOINT_EVENT,
    RESET_EVENT,
    WRITES_EVENT,
    CheckpointConflictError,
    SessionsDBSaver,
    thread_key,
)

from .graphs import echo_graph, weather_graph

REPO = Path(__file__).resolve().parents[2]


def config(thread: str, **extra: Any) -> RunnableConfig:
    return {"configurable": {"thread_id": thread, **extra}}


def contents(messages: list[Any]) -> list[str]:
    return [m.content if m.content else f"tool_calls:{m.tool_calls[0]['name']}" for m in messages]


def events(session: sdb.Session) -> list[str | None]:
    return [e.data.get("event") for e in session.get_entries() if e.type is sdb.EntryType.METADATA]


def message_entries(session: sdb.Session) -> list[sdb.SessionEntry]:
    return [e for e in session.get_entries() if e.type is sdb.EntryType.MESSAGE]


# -- a conversation with a tool, an interrupt, history, update_state, time travel -----------------


def test_a_conversation_with_an_interrupt(store_url: str) -> None:
    with SessionsDBSaver(store_url) as saver:
        graph = weather_graph(saver)
        cfg = config("t1")
        out = graph.invoke({"messages": [HumanMessage("weather in Paris")]}, cfg)
        assert out["__interrupt__"][0].value["question"] == "run this tool?"
        state = graph.get_state(cfg)
        assert state.next == ("approve",)

        out = graph.invoke(Command(resume="yes"), cfg)  # resume after the interrupt
        assert contents(out["messages"]) == [
            "weather in Paris",
            "tool_calls:get_weather",
            "It is sunny in Paris.",
            "Answer: It is sunny in Paris.",
        ]
        assert graph.get_state(cfg).next == ()

        history = list(graph.get_state_history(cfg))
        assert [s.metadata["step"] for s in history] == list(range(4, -2, -1))
        assert [len(s.values.get("messages", [])) for s in history] == [4, 3, 2, 2, 1, 0]
        for newer, older in itertools.pairwise(history):
            assert newer.parent_config is not None
            assert (
                newer.parent_config["configurable"]["checkpoint_id"]
                == (older.config["configurable"]["checkpoint_id"])
            )
        assert history[-1].parent_config is None

        updated = graph.update_state(cfg, {"messages": [AIMessage("a note")]}, as_node="agent")
        latest = graph.get_state(cfg)
        assert (
            latest.config["configurable"]["checkpoint_id"]
            == (updated["configurable"]["checkpoint_id"])
        )
        assert latest.values["messages"][-1].content == "a note"
        assert latest.metadata["source"] == "update"

        # Time travel: back to the interrupt, answer "no" this time: a new branch.
        asked = next(s for s in reversed(history) if s.next == ("approve",))
        out = graph.invoke(None, asked.config)
        assert "__interrupt__" in out
        out = graph.invoke(Command(resume="no"), cfg)
        assert contents(out["messages"]) == [
            "weather in Paris",
            "tool_calls:get_weather",
            "denied",
            "Answer: denied",
        ]
        # The first branch is still there, unchanged.
        old = graph.get_state(history[0].config)
        assert contents(old.values["messages"])[-1] == "Answer: It is sunny in Paris."

        every = list(saver.list(cfg))
        ids = [t.checkpoint["id"] for t in every]
        assert ids == sorted(ids, reverse=True)
        latest_id = graph.get_state(cfg).config["configurable"]["checkpoint_id"]
        assert latest_id == max(ids)  # LangGraph's rule, whatever the tree looks like
        parents = [
            t.parent_config["configurable"]["checkpoint_id"] for t in every if t.parent_config
        ]
        assert parents.count(asked.config["configurable"]["checkpoint_id"]) == 2

        # Each message once in the store, and the session reads as the conversation.
        session = saver.manager.get_by_key("langgraph", "t1")  # type: ignore[union-attr]
        stored = message_entries(session)
        assert len(stored) == 4 + 1 + 2  # first branch, the note, the second branch
        assert [m.payload["content"] for m in session.get_messages()] == [
            "weather in Paris",
            "",
            "denied",
            "Answer: denied",
        ]
        assert [m.type for m in session.get_messages()] == [
            "user",
            "assistant",
            "tool",
            "assistant",
        ]
        assert events(session).count(CHECKPOINT_EVENT) == len(every)
        assert WRITES_EVENT in events(session)


def test_async_conversation(store_url: str) -> None:
    async def main() -> None:
        async with SessionsDBSaver(store_url) as saver:
            graph = weather_graph(saver)
            cfg = config("a1")
            out = await graph.ainvoke({"messages": [HumanMessage("weather in Rome")]}, cfg)
            assert "__interrupt__" in out
            out = await graph.ainvoke(Command(resume="yes"), cfg)
            assert out["messages"][-1].content == "Answer: It is sunny in Rome."
            history = [s async for s in graph.aget_state_history(cfg)]
            assert len(history) == 6
            # The sync API of the same saver sees the same thread.
            assert saver.get_tuple(cfg) == await saver.aget_tuple(cfg)

    asyncio.run(main())


def test_a_fresh_process_resumes_the_thread(store_url: str) -> None:
    def stage(name: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "tests.integrations.graphs", store_url, name],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    assert stage("ask") == {"interrupted": True, "next": ["approve"]}
    assert stage("resume")["messages"] == [
        "weather in Oslo",
        "",
        "It is sunny in Oslo.",
        "Answer: It is sunny in Oslo.",
    ]


# -- messages stored once -------------------------------------------------------------------------


def test_messages_are_stored_once(store_url: str) -> None:
    steps = 25
    with SessionsDBSaver(store_url) as saver:
        graph = echo_graph(saver)
        cfg = config("once")
        for i in range(steps):
            graph.invoke({"messages": [HumanMessage(f"message number {i}")]}, cfg)
        final = graph.get_state(cfg).values["messages"]
        assert len(final) == 2 * steps
        session = saver.manager.get_by_key("langgraph", "once")  # type: ignore[union-attr]
        stored = message_entries(session)
        assert len(stored) == 2 * steps  # N messages, not N^2
        assert [m.payload["content"] for m in session.get_messages()] == [m.content for m in final]
        assert [m.payload["id"] for m in session.get_messages()] == [m.id for m in final]
        # No checkpoint or write entry holds a message: they refer to the branch.
        others = [e for e in session.get_entries() if e.type is not sdb.EntryType.MESSAGE]
        text = json.dumps([e.data for e in others])
        assert "message number" not in text
        # A reader of another process rebuilds the same list from the branch.
        with SessionsDBSaver(store_url) as other:
            tup = other.get_tuple(cfg)
            assert tup is not None
            assert tup.checkpoint["channel_values"]["messages"] == final


def test_a_rewritten_list_is_stored_whole_on_a_new_root(store_url: str) -> None:
    with SessionsDBSaver(store_url) as saver:
        graph = echo_graph(saver)
        cfg = config("rewrite")
        graph.invoke({"messages": [HumanMessage("one")]}, cfg)
        graph.invoke({"messages": [HumanMessage("two")]}, cfg)
        first = graph.get_state(cfg).values["messages"][0]
        graph.update_state(cfg, {"messages": [RemoveMessage(id=first.id)]})
        after = [m.content for m in graph.get_state(cfg).values["messages"]]
        assert after == ["re: one", "two", "re: two"]
        graph.invoke({"messages": [HumanMessage("three")]}, cfg)
        final = [m.content for m in graph.get_state(cfg).values["messages"]]
        assert final == ["re: one", "two", "re: two", "three", "re: three"]
        session = saver.manager.get_by_key("langgraph", "rewrite")  # type: ignore[union-attr]
        assert events(session).count(RESET_EVENT) == 1
        assert [m.payload["content"] for m in session.get_messages()] == final
        assert len(message_entries(session)) == 4 + 3 + 2  # before, the rewritten list, after
        # The checkpoints before the rewrite still read as they were.
        history = list(graph.get_state_history(cfg))
        assert [m.content for m in history[-3].values["messages"]] == ["one", "re: one"]


# -- two writers ----------------------------------------------------------------------------------


def _slow_graph(saver: Any, started: threading.Event, release: threading.Event) -> Any:
    def reply(state: MessagesState) -> dict[str, Any]:
        text = state["messages"][-1].content
        if text == "first":
            started.set()
            assert release.wait(30)
        return {"messages": [AIMessage(f"re: {text}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    return builder.compile(checkpointer=saver)


def _race_from_one_parent(saver: Any) -> tuple[BaseException | None, list[str]]:
    """Run "first" (held in its node) and "second" on one thread from the same checkpoint."""
    started, release = threading.Event(), threading.Event()
    graph = _slow_graph(saver, started, release)
    cfg = config("race")
    graph.invoke({"messages": [HumanMessage("hello")]}, cfg)
    outcome: list[BaseException | None] = []

    def first() -> None:
        try:  # durability="sync": its checkpoint is stored before its node runs
            graph.invoke({"messages": [HumanMessage("first")]}, cfg, durability="sync")
            outcome.append(None)
        except Exception as exc:
            outcome.append(exc)

    runner = threading.Thread(target=first)
    runner.start()
    assert started.wait(30)
    graph.invoke({"messages": [HumanMessage("second")]}, cfg, durability="sync")
    release.set()
    runner.join(30)
    return outcome[0], [m.content for m in graph.get_state(cfg).values["messages"]]


def test_two_writers_from_one_parent_one_gets_a_clear_error(store_url: str) -> None:
    with SessionsDBSaver(store_url) as saver:
        error, final = _race_from_one_parent(saver)
    assert isinstance(error, CheckpointConflictError)
    assert "another run stored it meanwhile" in str(error)
    # The run that returned lost nothing; the one that raised stored no reply.
    assert final[-2:] == ["second", "re: second"]
    assert "re: first" not in final


def test_langgraphs_own_saver_loses_the_other_write_silently() -> None:
    error, final = _race_from_one_parent(InMemorySaver())
    assert error is None  # no one is told ...
    assert "re: second" not in final  # ... that the second run's reply is gone


def test_many_writers_on_one_thread_lose_nothing_silently(store_url: str) -> None:
    runs = 12
    with SessionsDBSaver(store_url) as saver:
        graph = echo_graph(saver)
        cfg = config("crowd")
        returned: list[str] = []
        refused: list[str] = []
        other: list[BaseException] = []

        def worker(name: str) -> None:
            for i in range(runs):
                text = f"{name}{i}"
                try:
                    graph.invoke({"messages": [HumanMessage(text)]}, cfg)
                    returned.append(text)
                except CheckpointConflictError:
                    refused.append(text)
                except Exception as exc:
                    other.append(exc)

        threads = [threading.Thread(target=worker, args=(name,)) for name in "AB"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert other == []
        assert len(returned) + len(refused) == 2 * runs
        final = [m.content for m in graph.get_state(cfg).values["messages"]]
        # Every run that returned has its message and its reply in the thread.
        for text in returned:
            assert text in final
            assert f"re: {text}" in final
        # Nothing in the thread was not sent, and nothing is there twice.
        sent = {f"{n}{i}" for n in "AB" for i in range(runs)}
        assert {t for t in final if not t.startswith("re: ")} <= sent
        assert len(final) == len(set(final))
        session = saver.manager.get_by_key("langgraph", "crowd")  # type: ignore[union-attr]
        assert [m.payload["content"] for m in session.get_messages()] == final


# -- serializers and encryption -------------------------------------------------------------------


class AesGcm:
    """A LangGraph cipher: AES-GCM with a random nonce."""

    def __init__(self) -> None:
        self.aead = AESGCM(AESGCM.generate_key(bit_length=128))

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(12)
        return "aesgcm", nonce + self.aead.encrypt(nonce, plaintext, None)

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        assert ciphername == "aesgcm"
        return self.aead.decrypt(ciphertext[:12], ciphertext[12:], None)


def _raw_text(saver: SessionsDBSaver, thread: str) -> str:
    manager = saver.manager
    assert manager is not None
    meta = manager.run(lambda uow: uow.load_session_by_key("langgraph", thread), write=False)
    entries = manager.run(lambda uow: uow.load_entries(meta.id), write=False)
    return json.dumps([e.data for e in entries])


def test_an_encrypting_serializer_keeps_everything_encrypted(store_url: str) -> None:
    serde = EncryptedSerializer(AesGcm())
    with SessionsDBSaver(store_url, serde=serde) as saver:
        graph = weather_graph(saver)
        cfg = config("secret")
        graph.invoke({"messages": [HumanMessage("weather in Lisbon")]}, cfg)
        out = graph.invoke(Command(resume="yes"), cfg)
        assert out["messages"][-1].content == "Answer: It is sunny in Lisbon."
        raw = _raw_text(saver, "secret")
        assert "Lisbon" not in raw
        assert "+aesgcm" in raw
        session = saver.manager.get_by_key("langgraph", "secret")  # type: ignore[union-attr]
        assert session.get_messages() == []  # messages go through the serializer only
        with SessionsDBSaver(store_url, serde=serde) as other:
            state = weather_graph(other).get_state(cfg)
            assert state.values["messages"][-1].content == "Answer: It is sunny in Lisbon."


def test_a_keyring_stores_messages_once_and_encrypted(tmp_path: Path) -> None:
    keyring = Keyring({"k1": generate_key()})
    url = f"sqlite:///{tmp_path / 'sealed.db'}"
    manager = sdb.Manager(sdb.connect(url).backend, keyring=keyring)
    saver = SessionsDBSaver(manager=manager)
    graph = echo_graph(saver)
    cfg = config("sealed")
    for text in ("my card is 4111", "and my pin is 1234"):
        graph.invoke({"messages": [HumanMessage(text)]}, cfg)
    raw = _raw_text(saver, "sealed")
    assert "4111" not in raw
    assert "1234" not in raw
    session = manager.get_by_key("langgraph", "sealed")
    assert [m.payload["content"] for m in session.get_messages()] == [
        "my card is 4111",
        "re: my card is 4111",
        "and my pin is 1234",
        "re: and my pin is 1234",
    ]
    with SessionsDBSaver(manager=manager) as again:  # a new saver: no cache
        tup = again.get_tuple(cfg)
        assert tup is not None
        assert [m.content for m in tup.checkpoint["channel_values"]["messages"]][-1] == (
            "re: and my pin is 1234"
        )
    plain = sdb.connect(url)
    with pytest.raises(sdb.EncryptionError):
        SessionsDBSaver(manager=plain).get_tuple(cfg)
    manager.close()


# -- managers, keys, users ------------------------------------------------------------------------


def test_with_a_sync_manager_both_apis_work(sql_url: str) -> None:
    manager = sdb.connect(sql_url)
    saver = SessionsDBSaver(manager=manager)
    graph = echo_graph(saver)
    graph.invoke({"messages": [HumanMessage("sync")]}, config("m1"))
    out = asyncio.run(graph.ainvoke({"messages": [HumanMessage("async")]}, config("m1")))
    assert [m.content for m in out["messages"]] == ["sync", "re: sync", "async", "re: async"]
    saver.close()  # a given manager stays open
    assert len(manager.get_by_key("langgraph", "m1").get_messages()) == 4
    manager.close()


def test_with_an_async_manager_the_sync_api_says_what_to_do(sql_url: str) -> None:
    async def main() -> None:
        manager = await sdb.aio.connect(sql_url)
        saver = SessionsDBSaver(manager=manager)
        graph = echo_graph(saver)
        out = await graph.ainvoke({"messages": [HumanMessage("hi")]}, config("m2"))
        assert [m.content for m in out["messages"]] == ["hi", "re: hi"]
        with pytest.raises(sdb.UnsupportedOperationError, match="async API"):
            saver.get_tuple(config("m2"))
        await manager.close()

    asyncio.run(main())


def test_threads_and_namespaces_are_sessions_with_keys(store_url: str) -> None:
    def inner(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage("from the subgraph")]}

    sub = StateGraph(MessagesState)
    sub.add_node("inner", inner)
    sub.add_edge(START, "inner")
    with SessionsDBSaver(store_url) as saver:
        outer = StateGraph(MessagesState)
        outer.add_node("sub", sub.compile(checkpointer=True))
        outer.add_edge(START, "sub")
        graph = outer.compile(checkpointer=saver)
        graph.invoke({"messages": [HumanMessage("hi")]}, config("[odd]", user_id="user-7"))
        manager = saver.manager
        assert manager is not None
        sessions = manager.list("langgraph", metadata={"thread_id": "[odd]"})
        namespaces = sorted(m.metadata["checkpoint_ns"] for m in sessions)
        assert namespaces == ["", "sub"]
        for meta in sessions:
            assert meta.key == thread_key("[odd]", meta.metadata["checkpoint_ns"])
            assert meta.user_id == "user-7"
        assert thread_key("[odd]") == '["[odd]",""]'
        assert thread_key("plain") == "plain"
        listed = list(saver.list(config("[odd]")))
        assert {t.config["configurable"]["checkpoint_ns"] for t in listed} == {"", "sub"}
        # The user's threads go with the user.
        assert manager.erase_user("user-7") == 2
        assert saver.get_tuple(config("[odd]")) is None


def test_writes_that_come_before_their_checkpoint_are_stored_after_it(store_url: str) -> None:
    with SessionsDBSaver(store_url) as saver:
        checkpoint = empty_checkpoint()
        cfg = config("early", checkpoint_ns="")
        at = config("early", checkpoint_ns="", checkpoint_id=checkpoint["id"])
        saver.put_writes(at, [("ch", "first"), ("other", 2)], "task-1")  # before its put
        assert saver.get_tuple(at) is None
        saver.put(cfg, checkpoint, {"source": "input", "step": -1}, {})
        tup = saver.get_tuple(at)
        assert tup is not None
        assert tup.pending_writes == [("task-1", "ch", "first"), ("task-1", "other", 2)]
        saver.put_writes(at, [("ch", "again")], "task-1")  # first write of a key wins
        saver.put_writes(at, [("__error__", "boom")], "task-2")
        saver.put_writes(at, [("__error__", "boom 2")], "task-2")  # special channels replace
        tup = saver.get_tuple(at)
        assert tup is not None
        assert tup.pending_writes == [
            ("task-1", "ch", "first"),
            ("task-1", "other", 2),
            ("task-2", "__error__", "boom 2"),
        ]


def test_copy_prune_and_delete_for_runs_on_a_conversation(store_url: str) -> None:
    with SessionsDBSaver(store_url) as saver:
        graph = echo_graph(saver)
        for i in range(3):
            graph.invoke({"messages": [HumanMessage(f"m{i}")]}, config("src", run_id=f"run-{i}"))
        before = [m.content for m in graph.get_state(config("src")).values["messages"]]
        saver.copy_thread("src", "dst")
        graph.invoke({"messages": [HumanMessage("only in dst")]}, config("dst"))
        assert [m.content for m in graph.get_state(config("src")).values["messages"]] == before
        copied = [m.content for m in graph.get_state(config("dst")).values["messages"]]
        assert copied == [*before, "only in dst", "re: only in dst"]
        manager = saver.manager
        assert manager is not None
        assert manager.get_by_key("langgraph", "dst").info().forked_from == (
            manager.get_by_key("langgraph", "src").id
        )
        with pytest.raises(sdb.DuplicateKeyError):
            saver.copy_thread("src", "dst")

        saver.prune(["src"], strategy="keep_latest")
        kept = list(saver.list(config("src")))
        assert len(kept) == 1
        assert [m.content for m in kept[0].checkpoint["channel_values"]["messages"]] == before
        graph.invoke({"messages": [HumanMessage("after prune")]}, config("src"))
        assert [m.content for m in graph.get_state(config("src")).values["messages"]][-2:] == [
            "after prune",
            "re: after prune",
        ]
        session = manager.get_by_key("langgraph", "src")
        assert len(message_entries(session)) == len(before) + 2

        runs = {t.metadata.get("run_id") for t in saver.list(config("dst"))}
        assert "run-1" in runs
        saver.delete_for_runs(["run-1"])
        left = list(saver.list(config("dst")))
        assert "run-1" not in {t.metadata.get("run_id") for t in left}
        assert [m.content for m in graph.get_state(config("dst")).values["messages"]] == copied
        ids = {t.checkpoint["id"] for t in left}
        for tup in left:  # every parent is a kept checkpoint
            if tup.parent_config is not None:
                assert tup.parent_config["configurable"]["checkpoint_id"] in ids

        with pytest.raises(TypeError):
            saver.prune("src")
        with pytest.raises(ValueError, match="strategy"):
            saver.prune(["src"], strategy="keep_some")
        saver.prune(["src", "dst"], strategy="delete")
        assert saver.get_tuple(config("src")) is None
        assert manager.list("langgraph") == []


def test_importing_sessions_db_imports_no_framework() -> None:
    code = (
        "import sys, sessions_db, sessions_db.aio, sessions_db.integrations\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('langgraph', 'langchain_core')]\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert done.stdout.strip() == "[]"


def test_checkpoint_ids_that_are_not_tokens(store_url: str) -> None:
    with SessionsDBSaver(store_url) as saver:
        cfg = config("odd-ids", checkpoint_ns="")
        first = empty_checkpoint()
        first["id"] = "a checkpoint/ID with spaces"
        first["channel_values"] = {"x": "one"}
        first["channel_versions"] = {"x": 1}
        stored = saver.put(cfg, first, {"source": "input", "step": -1}, {"x": 1})
        assert stored["configurable"]["checkpoint_id"] == first["id"]
        saver.put_writes(stored, [("x", "two")], "task")
        second = empty_checkpoint()
        second["id"] = "a checkpoint/ID with spaces, later"
        second["channel_values"] = {"x": "one"}
        second["channel_versions"] = {"x": 1}
        saver.put(stored, second, {"source": "loop", "step": 0}, {})
        latest = saver.get_tuple(cfg)
        assert latest is not None
        assert latest.checkpoint["id"] == second["id"]
        assert latest.checkpoint["channel_values"] == {"x": "one"}
        assert latest.parent_config == stored
        older = saver.get_tuple(stored)
        assert older is not None
        assert older.pending_writes == [("task", "x", "two")]
        assert [t.checkpoint["id"] for t in saver.list(cfg)] == [second["id"], first["id"]]


def test_the_readme_switch_runs_as_written(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## LangGraph") :]
    block = section[section.index("```diff") + len("```diff") : section.index("```\n\n")]
    after = [line[1:] for line in block.strip("\n").splitlines() if not line.startswith("-")]
    assert any("SessionsDBSaver" in line for line in after)
    from langgraph.graph import MessagesState as State

    builder = StateGraph(State)
    builder.add_node("reply", lambda state: {"messages": [AIMessage("hi")]})
    builder.add_edge(START, "reply")
    after.append('    out = graph.invoke({"messages": [("user", "hello")]}, config("readme"))')
    scope: dict[str, Any] = {
        "DB_URI": f"sqlite:///{tmp_path / 'readme.db'}",
        "builder": builder,
        "config": config,
    }
    exec(compile("\n".join(after), "README.md", "exec"), scope)
    assert [m.content for m in scope["out"]["messages"]] == ["hello", "hi"]


def test_the_benchmark_runs(tmp_path: Path) -> None:
    """The LangGraph benchmark runs and reports every figure (its times are not asserted)."""
    out = tmp_path / "langgraph.json"
    command = ["-m", "benchmarks.langgraph", "--small", "--stores", "sqlite,file"]
    done = subprocess.run(
        [sys.executable, *command, "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"sqlite", "file"}
    assert set(results["sqlite"]) == {"SessionsDBSaver", "SqliteSaver"}
    for savers in results.values():
        for figures in savers.values():
            assert set(figures["timings"]) >= {
                "step_10",
                "step_1k",
                "get_state_1k",
                "get_state_1k_cold",
            }
            assert figures["bytes"]["value_bytes_per_message"] > 0
    assert "step at 100 / step at 10" in done.stdout


def test_two_async_writers_from_one_parent_one_gets_a_clear_error(store_url: str) -> None:
    async def main() -> tuple[BaseException | None, list[str]]:
        started, release = asyncio.Event(), asyncio.Event()

        async def reply(state: MessagesState) -> dict[str, Any]:
            text = state["messages"][-1].content
            if text == "first":
                started.set()
                await asyncio.wait_for(release.wait(), 30)
            return {"messages": [AIMessage(f"re: {text}")]}

        builder = StateGraph(MessagesState)
        builder.add_node("reply", reply)
        builder.add_edge(START, "reply")
        async with SessionsDBSaver(store_url) as saver:
            graph = builder.compile(checkpointer=saver)
            cfg = config("async-race")
            await graph.ainvoke({"messages": [HumanMessage("hello")]}, cfg)
            first = asyncio.create_task(
                graph.ainvoke({"messages": [HumanMessage("first")]}, cfg, durability="sync")
            )
            await asyncio.wait_for(started.wait(), 30)
            await graph.ainvoke({"messages": [HumanMessage("second")]}, cfg, durability="sync")
            release.set()
            error = (await asyncio.gather(first, return_exceptions=True))[0]
            state = await graph.aget_state(cfg)
            return error if isinstance(error, BaseException) else None, [
                m.content for m in state.values["messages"]
            ]

    error, final = asyncio.run(main())
    assert isinstance(error, CheckpointConflictError)
    assert final[-2:] == ["second", "re: second"]
    assert "re: first" not in final
