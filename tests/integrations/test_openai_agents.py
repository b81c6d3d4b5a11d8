"""The OpenAI Agents SDK session (sessions_db.integrations.openai_agents) with the real SDK.

The SDK's ``Runner`` runs against a local stub model with tracing off and every
outbound socket refused, on PostgreSQL, SQLite and the file store; the protocol
semantics the SDK's own session tests check are checked here on our session;
and what it writes is read back through the sync API, plain SQL and the
``sessions-db`` command.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from agents import (
    Agent,
    ModelResponse,
    ModelSettings,
    RunConfig,
    Runner,
    SQLiteSession,
    TResponseInputItem,
    Usage,
    function_tool,
    set_tracing_disabled,
)
from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import TResponseOutputItem, TResponseStreamEvent
from agents.memory import Session, SessionSettings
from agents.models.interface import Model, ModelTracing
from agents.tool import Tool
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam
from openai.types.responses.response_reasoning_item import Summary
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

import sessions_db as sdb
from sessions_db import aio
from sessions_db.integrations.openai_agents import (
    DEFAULT_AGENT_NAME,
    SessionsDBSession,
    item_type,
)
from sessions_db.sql.engine import normalize_url

from ..conftest import PG_URL, make_store

ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")

# The SDK exports traces over the network unless told not to.
set_tracing_disabled(True)
CONFIG = RunConfig(tracing_disabled=True)


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every outbound connection made from Python (the SQL drivers connect in C)."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("network access attempted")

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# -- the stub model -------------------------------------------------------------------------


class StubModel(Model):
    """A deterministic local model that records the input of every call.

    Asked about the weather, it reasons and calls ``get_weather``; given the
    tool's output it answers with it; anything else it echoes.
    """

    def __init__(self) -> None:
        self.inputs: list[list[dict[str, Any]]] = []

    def _answer(self, input: str | list[TResponseInputItem]) -> list[TResponseOutputItem]:
        items: list[dict[str, Any]] = (
            [{"role": "user", "content": input}]
            if isinstance(input, str)
            else [cast(dict[str, Any], item) for item in input]
        )
        self.inputs.append(json.loads(json.dumps(items, default=str)))
        n = len(self.inputs)
        last = items[-1]
        if last.get("type") == "function_call_output":
            reply = f"It is {last['output']}."
        elif "weather" in str(last.get("content", "")).lower():
            return [
                ResponseReasoningItem(
                    id=f"rs_{n}",
                    type="reasoning",
                    summary=[Summary(type="summary_text", text="Need the weather tool.")],
                ),
                ResponseFunctionToolCall(
                    id=f"fc_{n}",
                    call_id=f"call_{n}",
                    type="function_call",
                    name="get_weather",
                    arguments=json.dumps({"city": "Paris"}),
                    status="completed",
                ),
            ]
        else:
            reply = f"echo: {last.get('content')}"
        return [
            ResponseOutputMessage(
                id=f"msg_{n}",
                type="message",
                role="assistant",
                status="completed",
                content=[ResponseOutputText(type="output_text", text=reply, annotations=[])],
            )
        ]

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        return ModelResponse(
            output=self._answer(input),
            usage=Usage(requests=1, input_tokens=10, output_tokens=5, total_tokens=15),
            response_id=None,
        )

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        response = Response(
            id=f"resp_{len(self.inputs) + 1}",
            created_at=0,
            model="stub",
            object="response",
            output=self._answer(input),
            tool_choice="auto",
            tools=[],
            parallel_tool_calls=False,
            status="completed",
        )
        yield ResponseCompletedEvent(
            type="response.completed", response=response, sequence_number=0
        )


@function_tool
def get_weather(city: str) -> str:
    """Return the weather for a city."""
    return f"sunny in {city}"


def new_agent(model: StubModel) -> Agent[Any]:
    return Agent(name="demo", instructions="Be brief.", model=model, tools=[get_weather])


async def turn(
    agent: Agent[Any],
    prompt: str,
    session: Session,
    mode: str,
    config: RunConfig = CONFIG,
) -> str:
    """Run one turn with ``Runner.run`` or ``Runner.run_streamed``; return the final output."""
    if mode == "run":
        result = await Runner.run(agent, prompt, session=session, run_config=config)
        return str(result.final_output)
    streamed = Runner.run_streamed(agent, prompt, session=session, run_config=config)
    async for _event in streamed.stream_events():
        pass
    return str(streamed.final_output)


# -- item samples: one per member of the SDK's input item union -----------------------------

#: (expected Message.type, item), one per kind of item the SDK stores.
SAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("user", {"role": "user", "content": "Hi"}),
    ("system", {"role": "system", "content": "Be brief."}),
    ("developer", {"role": "developer", "content": "Use tools."}),
    ("assistant", {"role": "assistant", "content": "Hello!"}),
    (
        "user",
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is in this picture?"},
                {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"},
                {"type": "input_image", "file_id": "file-abc123", "detail": "low"},
                {"type": "input_file", "file_id": "file-pdf1", "filename": "report.pdf"},
            ],
        },
    ),
    (
        "assistant",
        {
            "id": "msg_123",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {"type": "output_text", "text": "It is sunny.", "annotations": [], "logprobs": []},
                {"type": "refusal", "refusal": "I can't help with that."},
            ],
        },
    ),
    (
        "function_call",
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
            "status": "completed",
        },
    ),
    (
        "function_call_output",
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny in Paris"},
    ),
    (
        "function_call_output",
        {
            "type": "function_call_output",
            "call_id": "call_2",
            "output": [
                {"type": "input_text", "text": "chart:"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
            ],
        },
    ),
    (
        "reasoning",
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "Need the weather tool."}],
            "encrypted_content": "gAAAAB...",
        },
    ),
    ("compaction", {"type": "compaction", "id": "cmp_1", "encrypted_content": "gAAAAB..."}),
    (
        "computer_call",
        {
            "type": "computer_call",
            "id": "cu_1",
            "call_id": "call_c1",
            "action": {"type": "click", "button": "left", "x": 100, "y": 200},
            "pending_safety_checks": [],
            "status": "completed",
        },
    ),
    (
        "computer_call_output",
        {
            "type": "computer_call_output",
            "call_id": "call_c1",
            "output": {
                "type": "computer_screenshot",
                "image_url": "data:image/png;base64,iVBORw0KGgo=",
            },
        },
    ),
    (
        "file_search_call",
        {
            "type": "file_search_call",
            "id": "fs_1",
            "queries": ["refund policy"],
            "status": "completed",
            "results": [{"file_id": "file-1", "filename": "policy.md", "score": 0.87, "text": "."}],
        },
    ),
    (
        "web_search_call",
        {
            "type": "web_search_call",
            "id": "ws_1",
            "status": "completed",
            "action": {"type": "search", "query": "weather Paris"},
        },
    ),
    (
        "image_generation_call",
        {"type": "image_generation_call", "id": "ig_1", "status": "completed", "result": "iVBO="},
    ),
    (
        "code_interpreter_call",
        {
            "type": "code_interpreter_call",
            "id": "ci_1",
            "code": "print(1+1)",
            "container_id": "cntr_1",
            "outputs": [{"type": "logs", "logs": "2\n"}],
            "status": "completed",
        },
    ),
    (
        "local_shell_call",
        {
            "type": "local_shell_call",
            "id": "lsh_1",
            "call_id": "call_s1",
            "status": "completed",
            "action": {"type": "exec", "command": ["ls", "-la"], "env": {}},
        },
    ),
    (
        "local_shell_call_output",
        {"type": "local_shell_call_output", "id": "call_s1", "output": "total 0\n"},
    ),
    (
        "shell_call",
        {
            "type": "shell_call",
            "call_id": "call_sh1",
            "action": {"commands": ["echo hi"], "timeout_ms": 1000},
        },
    ),
    (
        "shell_call_output",
        {
            "type": "shell_call_output",
            "call_id": "call_sh1",
            "output": [
                {"stdout": "hi\n", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}}
            ],
        },
    ),
    (
        "apply_patch_call",
        {
            "type": "apply_patch_call",
            "call_id": "call_p1",
            "status": "completed",
            "operation": {"type": "update_file", "path": "README.md", "diff": "@@\n-a\n+b\n"},
        },
    ),
    (
        "apply_patch_call_output",
        {
            "type": "apply_patch_call_output",
            "call_id": "call_p1",
            "status": "completed",
            "output": "ok",
        },
    ),
    (
        "custom_tool_call",
        {"type": "custom_tool_call", "call_id": "call_x1", "name": "sql", "input": "SELECT 1"},
    ),
    (
        "custom_tool_call_output",
        {"type": "custom_tool_call_output", "call_id": "call_x1", "output": "1"},
    ),
    (
        "tool_search_call",
        {"type": "tool_search_call", "call_id": "call_t1", "arguments": {"query": "calendar"}},
    ),
    ("tool_search_output", {"type": "tool_search_output", "call_id": "call_t1", "tools": []}),
    (
        "additional_tools",
        {
            "type": "additional_tools",
            "role": "developer",
            "tools": [{"type": "function", "name": "f", "parameters": {}}],
        },
    ),
    (
        "configuration_update",
        {"type": "configuration_update", "reasoning": {"effort": "low"}},
    ),
    (
        "mcp_list_tools",
        {
            "type": "mcp_list_tools",
            "id": "mcpl_1",
            "server_label": "docs",
            "tools": [{"name": "search", "input_schema": {"type": "object"}}],
        },
    ),
    (
        "mcp_approval_request",
        {
            "type": "mcp_approval_request",
            "id": "mcpr_1",
            "server_label": "docs",
            "name": "search",
            "arguments": "{}",
        },
    ),
    (
        "mcp_approval_response",
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True},
    ),
    (
        "mcp_call",
        {
            "type": "mcp_call",
            "id": "mcp_1",
            "server_label": "docs",
            "name": "search",
            "arguments": '{"q": "x"}',
            "output": "result",
            "status": "completed",
        },
    ),
    ("compaction_trigger", {"type": "compaction_trigger"}),
    ("item_reference", {"type": "item_reference", "id": "msg_abc"}),
    ("item_reference", {"id": "msg_abc"}),
    ("program", {"type": "program", "id": "p1", "call_id": "c", "code": "x", "fingerprint": "f"}),
    ("program_output", {"type": "program_output", "call_id": "c", "output": "1"}),
    (
        "function_call",
        {
            "type": "function_call",
            "call_id": "call_9",
            "name": "t",
            "arguments": "{}",
            "_agents_tool_title": "T",
            "_agents_tool_description": "desc",
            "provider_data": {"model": "litellm/x", "score": 1.5, "n": None},
        },
    ),
]


def items(*texts: str) -> list[TResponseInputItem]:
    return [cast(TResponseInputItem, {"role": "user", "content": t}) for t in texts]


def contents(found: list[TResponseInputItem]) -> list[Any]:
    return [cast(dict[str, Any], item).get("content") for item in found]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``sessions-db`` command."""
    command = Path(sys.executable).with_name("sessions-db")
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("SESSIONS_DB_URL", None)
    return subprocess.run(
        [str(command), *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


# -- the Runner ----------------------------------------------------------------------------


@pytest.mark.parametrize(("first", "second"), [("run", "streamed"), ("streamed", "run")])
def test_runner_two_turns_second_input_holds_the_first(
    store_url: str, first: str, second: str
) -> None:
    async def conversation(session: Session) -> tuple[StubModel, list[str]]:
        model = StubModel()
        agent = new_agent(model)
        answers = [
            await turn(agent, "What's the weather in Paris?", session, first),
            await turn(agent, "Thanks!", session, second),
        ]
        return model, answers

    async def main() -> None:
        async with SessionsDBSession.from_url("user:42/chat#1", url=store_url) as ours:
            model, answers = await conversation(ours)
            stored = await ours.get_items()
        # The SDK's own SQLiteSession, on the same conversation, is the reference.
        reference = SQLiteSession("reference")
        ref_model, ref_answers = await conversation(reference)
        expected = await reference.get_items()
        reference.close()

        assert answers == ref_answers == ["It is sunny in Paris.", "echo: Thanks!"]
        assert stored == expected
        assert [item_type(cast(dict[str, Any], i)) for i in stored] == [
            "user",
            "reasoning",
            "function_call",
            "function_call_output",
            "assistant",
            "user",
            "assistant",
        ]
        assert model.inputs == ref_model.inputs
        second_input = model.inputs[-1]
        assert second_input[0] == {"role": "user", "content": "What's the weather in Paris?"}
        assert [i.get("type") for i in second_input[1:5]] == [
            "reasoning",
            "function_call",
            "function_call_output",
            "message",
        ]
        assert second_input[3]["output"] == "sunny in Paris"
        assert second_input[-1] == {"role": "user", "content": "Thanks!"}
        assert len(second_input) == 6

    run(main())

    # An ordinary sessions_db session: the sync API reads it.
    with sdb.connect(store_url) as mgr:
        (meta,) = mgr.list(DEFAULT_AGENT_NAME)
        assert meta.key == "user:42/chat#1"
        assert meta.message_count == 7
        session = mgr.get_by_key(DEFAULT_AGENT_NAME, "user:42/chat#1")
        messages = session.get_messages()
        assert [m.type for m in messages][:5] == [
            "user",
            "reasoning",
            "function_call",
            "function_call_output",
            "assistant",
        ]
        assert messages[3].payload["call_id"] == messages[2].payload["call_id"]


def test_cli_shows_the_conversation_tree(store_url: str) -> None:
    async def main() -> str:
        async with SessionsDBSession.from_url("user:42/chat#1", url=store_url) as session:
            agent = new_agent(StubModel())
            await turn(agent, "What's the weather in Paris?", session, "run")
            await session.pop_item()  # the assistant's answer: a branch ends before it
            await turn(agent, "And tomorrow?", session, "streamed")
            return (await session.sessions_db_session()).id

    session_id = run(main())
    shown = cli("show", session_id, "--tree", "--url", store_url)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert f"session {session_id}" in out
    assert "agent openai-agents" in out
    for role in ("user", "reasoning", "function_call", "assistant"):
        assert role in out
    assert "What's the weather in Paris?" in out
    assert "And tomorrow?" in out
    assert "branch 2/2 (current)" in out
    assert "◀ current leaf" in out

    as_json = cli("show", session_id, "--tree", "--json", "--url", store_url)
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    messages = [e for e in doc["entries"] if e["type"] == "message"]
    current = [e["data"] for e in messages if e["on_current_branch"]]
    assert [d["role"] for d in current] == [
        "user",
        "reasoning",
        "function_call",
        "function_call_output",
        "user",
        "assistant",
    ]
    assert current[-2]["payload"] == {"role": "user", "content": "And tomorrow?"}
    popped = [e["data"] for e in messages if not e["on_current_branch"]]
    assert [d["payload"]["content"][0]["text"] for d in popped] == ["It is sunny in Paris."]


@pytest.mark.parametrize("mode", ["run", "streamed"])
def test_runner_honours_session_settings_and_run_config(store_url: str, mode: str) -> None:
    def texts(model_input: list[dict[str, Any]]) -> list[str]:
        out = []
        for item in model_input:
            content = item["content"]
            out.append(content if isinstance(content, str) else content[0]["text"])
        return out

    async def main() -> None:
        manager = await aio.connect(store_url)
        model = StubModel()
        agent = new_agent(model)
        try:
            # A session limit of 100 is overridden per run by RunConfig's.
            session = SessionsDBSession(
                "limits", manager=manager, session_settings=SessionSettings(limit=100)
            )
            for i in (1, 2, 3):
                await turn(agent, f"Message {i}", session, mode)
            assert len(await session.get_items()) == 6
            assert len(model.inputs[-1]) == 5  # the whole history, then the new message
            limited = RunConfig(tracing_disabled=True, session_settings=SessionSettings(limit=2))
            await turn(agent, "Message 4", session, mode, limited)
            assert texts(model.inputs[-1]) == ["Message 3", "echo: Message 3", "Message 4"]

            # The session's own limit, when the run sets none.
            session.session_settings = SessionSettings(limit=3)
            await turn(agent, "Message 5", session, mode)
            assert texts(model.inputs[-1]) == [
                "echo: Message 3",
                "Message 4",
                "echo: Message 4",
                "Message 5",
            ]
            # A dict in RunConfig; limit 0: no history at all.
            zero = RunConfig(tracing_disabled=True, session_settings={"limit": 0})
            await turn(agent, "Message 6", session, mode, zero)
            assert texts(model.inputs[-1]) == ["Message 6"]
            # Everything was stored all the same.
            assert len(await session.get_items(limit=None)) == 3
            assert len(await session.get_items(limit=-1)) == 12
        finally:
            await manager.close()

    run(main())


def test_run_sync_turns_share_the_threads_loop(store_url: str) -> None:
    """``Runner.run_sync`` reuses the thread's default loop: a store opened by the first turn
    serves the next."""
    model = StubModel()
    agent = new_agent(model)
    session = SessionsDBSession.from_url("sync-turns", url=store_url)
    policy = asyncio.get_event_loop_policy()
    try:
        first = Runner.run_sync(
            agent, "What's the weather in Paris?", session=session, run_config=CONFIG
        )
        second = Runner.run_sync(agent, "Thanks!", session=session, run_config=CONFIG)
        assert first.final_output == "It is sunny in Paris."
        assert second.final_output == "echo: Thanks!"
        assert len(model.inputs[-1]) == 6
        loop = policy.get_event_loop()
        assert len(loop.run_until_complete(session.get_items())) == 7
        loop.run_until_complete(session.close())
    finally:
        policy.get_event_loop().close()
        policy.set_event_loop(None)


def test_runner_keeps_sessions_apart(store_url: str) -> None:
    async def main() -> None:
        model = StubModel()
        agent = new_agent(model)
        async with (
            SessionsDBSession.from_url("cats", url=store_url) as cats,
            SessionsDBSession.from_url("dogs", url=store_url) as dogs,
        ):
            await turn(agent, "I like cats.", cats, "run")
            await turn(agent, "I like dogs.", dogs, "streamed")
            await turn(agent, "What do I like?", cats, "run")
            assert model.inputs[-1][0]["content"] == "I like cats."
            assert len(model.inputs[-1]) == 3
            assert contents(await dogs.get_items())[0] == "I like dogs."
            assert len(await dogs.get_items()) == 2

    run(main())


# -- the protocol, as the SDK's own session tests check it ---------------------------------


def test_is_the_sdk_session_protocol(tmp_path: Path) -> None:
    session: Session = SessionsDBSession("typed", url=f"sqlite:///{tmp_path / 'unused.db'}")
    assert isinstance(session, Session)
    assert session.session_id == "typed"
    assert session.session_settings == SessionSettings()
    assert session.session_settings is not None
    assert session.session_settings.limit is None
    assert not (tmp_path / "unused.db").exists()  # construction does no I/O


def test_add_get_order_and_clear(store_url: str) -> None:
    async def main() -> None:
        async with SessionsDBSession.from_url("s1", url=store_url) as session:
            assert await session.get_items() == []
            await session.add_items(items("Hello"))
            await session.add_items(items("Hi there!", "How are you?"))
            await session.add_items([])  # nothing
            assert contents(await session.get_items()) == ["Hello", "Hi there!", "How are you?"]
            await session.clear_session()
            assert await session.get_items() == []
            assert await session.pop_item() is None
            await session.add_items(items("again"))
            assert contents(await session.get_items()) == ["again"]

    run(main())


def test_limit_returns_the_newest_oldest_first(store_url: str) -> None:
    async def main() -> None:
        async with SessionsDBSession.from_url("s1", url=store_url) as session:
            await session.add_items(items(*(f"m{i}" for i in range(6))))
            assert contents(await session.get_items(limit=2)) == ["m4", "m5"]
            assert contents(await session.get_items(limit=4)) == ["m2", "m3", "m4", "m5"]
            assert contents(await session.get_items(limit=10)) == [f"m{i}" for i in range(6)]
            assert await session.get_items(limit=0) == []
            assert contents(await session.get_items(limit=-1)) == [f"m{i}" for i in range(6)]
            assert contents(await session.get_items(limit=None)) == [f"m{i}" for i in range(6)]

    run(main())


def test_session_settings_limit_and_explicit_override(store_url: str) -> None:
    async def main() -> None:
        async with SessionsDBSession.from_url(
            "s1", url=store_url, session_settings={"limit": 3}
        ) as session:
            assert session.session_settings == SessionSettings(limit=3)
            await session.add_items(items(*(f"Message {i}" for i in range(10))))
            assert contents(await session.get_items()) == [f"Message {i}" for i in (7, 8, 9)]
            assert contents(await session.get_items(limit=2)) == ["Message 8", "Message 9"]
            assert len(await session.get_items(limit=5)) == 5
            session.session_settings = SessionSettings(limit=0)
            assert await session.get_items() == []
            session.session_settings = None  # the protocol allows it: no default limit
            assert len(await session.get_items()) == 10

    run(main())
    with pytest.raises(TypeError, match="Unknown session settings"):
        SessionsDBSession("s1", url=store_url, session_settings={"limt": 3})


def test_pop_is_lifo_and_none_when_empty(store_url: str) -> None:
    async def main() -> None:
        async with SessionsDBSession.from_url("s1", url=store_url) as session:
            assert await session.pop_item() is None  # never written
            await session.add_items(items("Hello", "Hi there!", "How are you?"))
            popped = [await session.pop_item() for _ in range(3)]
            assert contents(cast(list[TResponseInputItem], popped)) == [
                "How are you?",
                "Hi there!",
                "Hello",
            ]
            assert await session.pop_item() is None
            assert await session.get_items() == []
            await session.add_items(items("after"))
            assert contents(await session.get_items()) == ["after"]

    run(main())


def test_pop_and_clear_touch_only_their_session(store_url: str) -> None:
    async def main() -> None:
        async with (
            SessionsDBSession.from_url("one", url=store_url) as one,
            SessionsDBSession.from_url("two", url=store_url) as two,
        ):
            await one.add_items(items("1a", "1b"))
            await two.add_items(items("2a", "2b"))
            assert contents([cast(TResponseInputItem, await one.pop_item())]) == ["1b"]
            assert contents(await two.get_items()) == ["2a", "2b"]
            await two.clear_session()
            assert contents(await one.get_items()) == ["1a"]

    run(main())


def test_many_sessions_in_one_store(store_url: str) -> None:
    async def main() -> None:
        manager = await aio.connect(store_url)
        try:
            sessions = [SessionsDBSession(f"conv-{i}", manager=manager) for i in range(10)]
            for i, session in enumerate(sessions):
                await session.add_items(items(*(f"{i}.{j}" for j in range(i + 1))))
            # The same ID under another agent name is another session.
            other = SessionsDBSession("conv-3", manager=manager, agent_name="other-agent")
            await other.add_items(items("elsewhere"))
            for i, session in enumerate(sessions):
                assert contents(await session.get_items()) == [f"{i}.{j}" for j in range(i + 1)]
            assert contents(await other.get_items()) == ["elsewhere"]
            assert len(await manager.list(DEFAULT_AGENT_NAME)) == 10
            assert sorted(await manager.list_agents()) == ["openai-agents", "other-agent"]
            # A shared manager stays open when its sessions close.
            for session in sessions:
                await session.close()
            assert not manager.closed
            assert contents(await other.get_items()) == ["elsewhere"]
        finally:
            await manager.close()

    run(main())


def test_concurrent_add_items_are_exact(store_url: str) -> None:
    async def main() -> None:
        manager = await aio.connect(store_url)
        try:
            # 50 tasks on one instance, the first of them creating the session.
            shared = SessionsDBSession("crowd", manager=manager)
            await asyncio.gather(*(shared.add_items(items(f"t{i}")) for i in range(50)))
            assert sorted(contents(await shared.get_items())) == sorted(f"t{i}" for i in range(50))
            # 25 instances racing to create one session: one session, every batch whole
            # and in order.
            racers = [SessionsDBSession("race", manager=manager) for _ in range(25)]
            await asyncio.gather(
                *(r.add_items(items(*(f"{i}:{j}" for j in range(4)))) for i, r in enumerate(racers))
            )
            stored = contents(await racers[0].get_items())
            assert len(stored) == 100
            for start in range(0, 100, 4):
                batch = stored[start : start + 4]
                owner = batch[0].split(":")[0]
                assert batch == [f"{owner}:{j}" for j in range(4)]
            assert {s.split(":")[0] for s in stored} == {str(i) for i in range(25)}
            keys = sorted(str(m.key) for m in await manager.list(DEFAULT_AGENT_NAME))
            assert keys == ["crowd", "race"]
            race = await manager.get_by_key(DEFAULT_AGENT_NAME, "race")
            assert (await race.info()).message_count == 100
        finally:
            await manager.close()

    run(main())


def test_concurrent_pops_return_distinct_items(store_url: str) -> None:
    async def main() -> None:
        manager = await aio.connect(store_url)
        try:
            first = SessionsDBSession("pops", manager=manager)
            second = SessionsDBSession("pops", manager=manager)
            await first.add_items(items(*(f"p{i}" for i in range(20))))
            results = await asyncio.gather(
                *(first.pop_item() for _ in range(15)), *(second.pop_item() for _ in range(15))
            )
            popped = [r for r in results if r is not None]
            assert len(popped) == 20
            assert sorted(contents(popped)) == sorted(f"p{i}" for i in range(20))
            assert results.count(None) == 10
            assert await first.get_items() == []
        finally:
            await manager.close()

    run(main())


ODD_IDS = [
    "user:42/chat#1",
    "ユーザー・会話・" * 25,  # 200 characters, none of them ASCII
    "'; DROP TABLE sessions_db_sessions; --",
    'quote " and \\ backslash',
    "../../etc/passwd",
    "emoji 🎉 and Ünïcödé",
    " spaced ",
    "x" * 1024,
]


def test_odd_session_ids_map_to_keys(store_url: str, store_kind: str) -> None:
    assert len(ODD_IDS[1]) == 200
    assert not any(c.isascii() for c in ODD_IDS[1])

    async def main() -> None:
        manager = await aio.connect(store_url)
        try:
            for n, sid in enumerate(ODD_IDS):
                session = SessionsDBSession(sid, manager=manager, user_id="u1")
                await session.add_items(items(f"item {n}", "日本語 🎉 Привет"))
            for n, sid in enumerate(ODD_IDS):
                again = SessionsDBSession(sid, manager=manager, user_id="u1")
                assert contents(await again.get_items()) == [f"item {n}", "日本語 🎉 Привет"]
                found = await manager.get_by_key(DEFAULT_AGENT_NAME, sid)
                assert found.key == sid
                assert found.user_id == "u1"
        finally:
            await manager.close()

    run(main())
    with pytest.raises(sdb.InvalidIDError):
        SessionsDBSession("", url=store_url)
    with pytest.raises(sdb.InvalidIDError):
        SessionsDBSession("x" * 1025, url=store_url)
    with pytest.raises(sdb.InvalidIDError):
        SessionsDBSession("nul\x00", url=store_url)
    if store_kind != "file":
        # Queryable in plain SQL: the agent name and the key.
        engine = create_engine(normalize_url(store_url))
        try:
            with engine.connect() as conn:
                keys = conn.execute(
                    text("SELECT key FROM sessions_db_sessions WHERE agent_name = :a"),
                    {"a": DEFAULT_AGENT_NAME},
                ).scalars()
                assert sorted(keys) == sorted(ODD_IDS)
        finally:
            engine.dispose()


def test_every_item_type_round_trips_exactly(store_url: str) -> None:
    samples = [cast(TResponseInputItem, item) for _, item in SAMPLES]

    async def main() -> None:
        async with SessionsDBSession.from_url("items", url=store_url) as session:
            await session.add_items(samples)
            assert await session.get_items() == samples
            assert await session.get_items(limit=3) == samples[-3:]
            handle = await session.sessions_db_session()
            stored = await handle.get_messages()
            assert [m.type for m in stored] == [kind for kind, _ in SAMPLES]
            assert [m.payload for m in stored] == [item for _, item in SAMPLES]
            popped = [await session.pop_item() for _ in SAMPLES]
            assert popped == samples[::-1]

    run(main())
    assert [item_type(item) for _, item in SAMPLES] == [kind for kind, _ in SAMPLES]


def test_item_type_fallbacks() -> None:
    assert item_type({"role": "user", "type": "message", "content": "x"}) == "user"
    assert item_type({"type": "x" * 65}) == "item"
    assert item_type({"role": "bad\nrole", "content": "x"}) == "item"
    assert item_type({"content": "x"}) == "item"
    assert item_type({"id": "msg_1", "content": "x"}) == "item"
    assert item_type({"role": "assistant", "type": "additional_tools"}) == "additional_tools"


def test_items_are_queryable_in_sql(sql_url: str, sql_kind: str) -> None:
    async def main() -> None:
        async with SessionsDBSession.from_url("user:42/chat#1", url=sql_url) as session:
            await session.add_items([cast(TResponseInputItem, item) for _, item in SAMPLES])

    run(main())
    payload = "e.payload" if sql_kind == "postgres" else "json(e.payload)"
    call_id = "e.payload->>'call_id'"
    if sql_kind == "sqlite":
        call_id = "json_extract(e.payload, '$.call_id')"
    engine = create_engine(normalize_url(sql_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    f"SELECT e.role, {call_id}, {payload} FROM sessions_db_entries e "
                    "JOIN sessions_db_sessions s ON s.id = e.session_id "
                    "WHERE s.agent_name = 'openai-agents' AND s.key = 'user:42/chat#1' "
                    "AND e.role = 'function_call' ORDER BY e.seq"
                )
            ).all()
    finally:
        engine.dispose()
    assert [(r[0], r[1]) for r in rows] == [
        ("function_call", "call_1"),
        ("function_call", "call_9"),
    ]
    stored = [r[2] if isinstance(r[2], dict) else json.loads(r[2]) for r in rows]
    assert stored == [item for kind, item in SAMPLES if kind == "function_call"]


def test_add_items_is_all_or_nothing(store_url: str) -> None:
    async def main() -> None:
        async with SessionsDBSession.from_url("s1", url=store_url) as session:
            await session.add_items(items("kept"))
            bad = [*items("a", "b"), cast(TResponseInputItem, {"role": "user", "content": "\x00"})]
            with pytest.raises(sdb.PayloadError):
                await session.add_items(bad)
            not_json = cast(TResponseInputItem, {"type": "x", "value": float("nan")})
            with pytest.raises(sdb.PayloadError):
                await session.add_items([*items("c"), not_json])
            assert contents(await session.get_items()) == ["kept"]

    run(main())


@pytest.mark.postgres
def test_postgres_add_items_is_one_round_trip(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = make_store("postgres", request, tmp_path)

    async def main() -> None:
        # One pooled connection, so that every statement goes through the traced one.
        engine = create_async_engine(normalize_url(url, asyncio=True), pool_size=1, max_overflow=0)
        manager = aio.AsyncManager(aio.AsyncSQLBackend(engine))
        trace = tempfile.NamedTemporaryFile(delete=False)  # noqa: SIM115
        try:
            session = SessionsDBSession("trips", manager=manager)
            # psycopg prepares a statement on its fifth use: warm up past that.
            for i in range(6):
                await session.add_items(items(f"warm {i}"))
                await session.get_items(limit=3)
                await session.get_items()
            async with engine.connect() as conn:
                pgconn: Any = (await conn.get_raw_connection()).driver_connection.pgconn  # type: ignore[union-attr]

            async def round_trips(operation: Awaitable[Any]) -> int:
                before = Path(trace.name).read_text()
                pgconn.trace(trace.fileno())
                try:
                    await operation
                finally:
                    pgconn.untrace()
                return Path(trace.name).read_text()[len(before) :].count("\tReadyForQuery")

            assert await round_trips(session.add_items(items(*(f"b{i}" for i in range(50))))) == 1
            assert await round_trips(session.add_items(items("one"))) == 1
            assert await round_trips(session.get_items(limit=3)) == 1
            assert await round_trips(session.get_items()) == 1
            assert len(await session.get_items()) == 57
        finally:
            trace.close()
            os.unlink(trace.name)
            await manager.close()
            await engine.dispose()

    run(main())


def test_reads_create_nothing(store_url: str) -> None:
    async def main() -> None:
        manager = await aio.connect(store_url)
        try:
            session = SessionsDBSession("ghost", manager=manager)
            assert await session.get_items() == []
            assert await session.get_items(limit=5) == []
            assert await session.pop_item() is None
            await session.clear_session()
            await session.add_items([])
            assert await manager.list(DEFAULT_AGENT_NAME) == []
            await session.add_items(items("now"))
            (meta,) = await manager.list(DEFAULT_AGENT_NAME)
            assert meta.key == "ghost"
        finally:
            await manager.close()

    run(main())


def test_user_ownership(store_url: str) -> None:
    async def main() -> None:
        manager = await aio.connect(store_url)
        try:
            alice = SessionsDBSession("shared-id", manager=manager, user_id="alice")
            await alice.add_items(items("alice's"))
            bob = SessionsDBSession("shared-id", manager=manager, user_id="bob")
            with pytest.raises(sdb.SessionNotFoundError):
                await bob.get_items()
            with pytest.raises(sdb.SessionNotFoundError):
                await bob.add_items(items("bob's"))
            with pytest.raises(sdb.SessionNotFoundError):
                await bob.pop_item()
            anyone = SessionsDBSession("shared-id", manager=manager)  # no owner check
            assert contents(await anyone.get_items()) == ["alice's"]
            assert (await alice.sessions_db_session()).user_id == "alice"
        finally:
            await manager.close()

    run(main())


def test_deleted_session_starts_again(store_url: str) -> None:
    async def main() -> None:
        manager = await aio.connect(store_url)
        try:
            session = SessionsDBSession("retention", manager=manager)
            await session.add_items(items("old"))
            old_id = (await session.sessions_db_session()).id
            await manager.delete(old_id)  # as prune() and erase_user() do
            assert await session.get_items() == []
            assert await session.pop_item() is None
            await session.add_items(items("new"))
            assert contents(await session.get_items()) == ["new"]
            assert (await session.sessions_db_session()).id != old_id
        finally:
            await manager.close()

    run(main())


def test_checkpoint_and_restore_underneath(store_url: str) -> None:
    async def main() -> None:
        async with SessionsDBSession.from_url("s1", url=store_url) as session:
            await session.add_items(items("one", "two"))
            handle = await session.sessions_db_session()
            checkpoint = await handle.checkpoint(metadata={"label": "before"})
            await session.add_items(items("three"))
            await session.clear_session()
            await handle.restore(checkpoint.id)
            assert contents(await session.get_items()) == ["one", "two"]
            forked = await handle.fork()
            await session.add_items(items("after restore"))
            assert [m.payload["content"] for m in await forked.get_messages()] == ["one", "two"]

    run(main())


def test_ownership_of_the_store(store_url: str) -> None:
    async def main() -> None:
        owned = SessionsDBSession.from_url("s1", url=store_url)
        await owned.add_items(items("x"))
        opened = await owned.get_manager()
        await owned.close()
        await owned.close()  # idempotent
        assert owned.closed
        assert opened.closed
        for call in (owned.get_items(), owned.add_items([]), owned.pop_item()):
            with pytest.raises(sdb.StorageClosedError):
                await call

        manager = await aio.connect(store_url)
        shared = SessionsDBSession("s1", manager=manager)
        assert contents(await shared.get_items()) == ["x"]
        assert await shared.get_manager() is manager
        await shared.close()
        assert not manager.closed
        assert len(await manager.list(DEFAULT_AGENT_NAME)) == 1
        await manager.close()

    run(main())
    with pytest.raises(ValueError, match="not both"):
        SessionsDBSession("s1", url=store_url, manager=cast(aio.AsyncManager, object()))
    with sdb.connect(store_url) as sync_manager, pytest.raises(TypeError, match="AsyncManager"):
        SessionsDBSession("s1", manager=cast(aio.AsyncManager, sync_manager))


def test_store_from_the_configuration(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONS_DB_URL", store_url)

    async def main() -> None:
        async with SessionsDBSession("configured", user_id="u7") as session:
            await session.add_items(items("from the environment"))

    session = SessionsDBSession("configured")  # no I/O until first use
    run(main())
    with sdb.connect(store_url) as mgr:
        found = mgr.get_by_key(DEFAULT_AGENT_NAME, "configured", user_id="u7")
        assert [m.payload for m in found.get_messages()] == [
            {"role": "user", "content": "from the environment"}
        ]
    assert not session.closed


def test_owned_store_is_bound_to_its_event_loop(tmp_path: Path) -> None:
    session = SessionsDBSession.from_url("s1", url=f"sqlite:///{tmp_path / 'loop.db'}")
    run(session.add_items(items("first loop")))
    with pytest.raises(RuntimeError, match="another event loop"):
        run(session.get_items())


def test_importing_sessions_db_does_not_import_the_sdk() -> None:
    code = (
        "import sys, sessions_db, sessions_db.aio, sessions_db.integrations, sessions_db.cli\n"
        "assert 'agents' not in sys.modules, 'agents imported'\n"
        "assert 'openai' not in sys.modules, 'openai imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr


def test_peer_benchmark_runs_small(pg_server: Any, tmp_path: Path) -> None:
    """The comparison with the SDK's SQLAlchemySession completes; no time is asserted."""
    out = tmp_path / "peers.json"
    env = {**os.environ, "SESSIONS_DB_BENCH_PG": PG_URL}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.peers_openai", "--small", "--quiet", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert sorted(result["backends"]) == ["postgres", "sqlite"]
    for backend in result["backends"].values():
        assert [row["scenario"] for row in backend["rows"]] == [
            "add_items_1",
            "add_items_3",
            "get_items_50_of_1k_2s",
            "get_items_1k",
            "get_items_50_of_1k",
        ]
        for row in backend["rows"]:
            assert row["ours"]["median"] > 0
            assert row["sqlalchemy_session"]["median"] > 0


def test_readme_switch_runs_as_written(store_url: str) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## OpenAI Agents SDK") :]
    start = section.index("```python\n") + len("```python\n")
    code = section[start : section.index("\n```", start)]
    assert code.count("\nsession = ") == 1
    code = code.replace('"postgresql://app@db/app"', repr(store_url))
    compiled = compile(code, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    model = StubModel()
    scope: dict[str, Any] = {"Runner": Runner, "agent": new_agent(model)}

    async def main() -> None:
        await cast(Awaitable[None], eval(compiled, scope))
        session = scope["session"]
        assert isinstance(session, SessionsDBSession)
        assert scope["result"].final_output == "It is sunny in Paris."
        assert len(await session.get_items()) == 5
        await session.close()

    run(main())
