"""LangGraph graphs the tests run, offline: a fake chat model, a tool node and an interrupt."""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, interrupt


@tool
def get_weather(city: str) -> str:
    """Return the weather for a city."""
    return f"It is sunny in {city}."


def agent(state: MessagesState) -> dict[str, Any]:
    """Ask for the weather tool, or answer with what it returned (a fake chat model)."""
    last = state["messages"][-1]
    if isinstance(last, ToolMessage):
        reply = AIMessage(content=f"Answer: {last.content}")
    else:
        city = str(last.content).split()[-1].strip("?")
        reply = AIMessage(
            content="",
            tool_calls=[{"name": "get_weather", "args": {"city": city}, "id": f"call-{city}"}],
        )
    model = FakeMessagesListChatModel(responses=[reply])
    return {"messages": [model.invoke(state["messages"])]}


def approve(state: MessagesState) -> Command[Literal["tools", "agent"]]:
    """Ask a human whether the tool may run (an interrupt)."""
    last = state["messages"][-1]
    assert isinstance(last, AIMessage)
    call = last.tool_calls[0]
    answer = interrupt({"question": "run this tool?", "tool_call": call})
    if answer == "yes":
        return Command(goto="tools")
    return Command(
        goto="agent",
        update={"messages": [ToolMessage(content="denied", tool_call_id=call["id"])]},
    )


def route(state: MessagesState) -> str:
    """Go to the approval when the model asked for a tool."""
    last = state["messages"][-1]
    return "approve" if isinstance(last, AIMessage) and last.tool_calls else END


def weather_graph(checkpointer: BaseCheckpointSaver[Any]) -> Any:
    """Return agent -> approve (interrupt) -> tools -> agent, compiled with ``checkpointer``."""
    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("approve", approve)
    graph.add_node("tools", ToolNode([get_weather]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["approve", END])
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=checkpointer)


def reply(state: MessagesState) -> dict[str, Any]:
    """Answer the last message."""
    return {"messages": [AIMessage(f"re: {state['messages'][-1].content}")]}


def echo_graph(checkpointer: BaseCheckpointSaver[Any]) -> Any:
    """Return a graph of one node that answers each message, compiled with ``checkpointer``."""
    graph = StateGraph(MessagesState)
    graph.add_node("reply", reply)
    graph.add_edge(START, "reply")
    return graph.compile(checkpointer=checkpointer)


def run_stage(url: str, stage: str) -> dict[str, Any]:
    """Run one stage of the weather conversation on thread ``fresh`` (for a fresh process)."""
    from sessions_db.integrations.langgraph import SessionsDBSaver

    with SessionsDBSaver(url) as saver:
        graph = weather_graph(saver)
        config = {"configurable": {"thread_id": "fresh"}}
        if stage == "ask":
            out = graph.invoke({"messages": [HumanMessage("weather in Oslo")]}, config)
            return {
                "interrupted": "__interrupt__" in out,
                "next": list(graph.get_state(config).next),
            }
        out = graph.invoke(Command(resume="yes"), config)
        return {"messages": [m.content for m in out["messages"]]}


if __name__ == "__main__":
    print(json.dumps(run_stage(sys.argv[1], sys.argv[2])))
