"""An ADK app that runs offline: a scripted model, two tools, and a session service.

The model (:class:`ScriptedLlm`) decides from the request alone, never from a
counter, so that a conversation can go on in another process:

* the last part is a function response: it answers ``Done: <the response as JSON>``;
* the user says ``my favourite colour is <c>``: it calls ``remember(color=<c>)``;
* the user asks ``what ...``: it calls ``recall()``;
* anything else: it greets, naming how many contents it was sent.

``remember`` writes every state scope (``app:``, ``user:``, the session, ``temp:``);
``recall`` reads them back. Run as ``python -m tests.integrations.adk_app URL
MESSAGE...``: it opens a fresh service and Runner on ``URL``, prints the stored
session (events and state) as it found it, sends the messages, and prints what
the model was sent and said, all as one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncGenerator
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.models._capabilities import LlmCapabilities
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.tools.tool_context import ToolContext
from google.genai import types

from sessions_db.integrations.adk import SessionsDBSessionService

for _name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI"):
    os.environ.pop(_name, None)

APP = "colour_app"
USER = "user-1"
SESSION = "chat-1"


def _text(value: str) -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(text=value)]))


def _call(name: str, args: dict[str, Any], call_id: str) -> LlmResponse:
    call = types.FunctionCall(id=call_id, name=name, args=args)
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(function_call=call)]))


class ScriptedLlm(BaseLlm):
    """A model that answers from the request (see the module); it records what it was sent."""

    seen: list[int] = []

    @property
    def capabilities(self) -> LlmCapabilities:
        """No built-in tool or schema support: ADK sends plain requests."""
        return LlmCapabilities(output_schema_and_tools=False)

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        """Yield one response, chosen from the last content of the request."""
        contents = llm_request.contents or []
        self.seen.append(len(contents))
        last = contents[-1].parts[-1] if contents and contents[-1].parts else None
        if last is not None and last.function_response is not None:
            response = last.function_response.response
            yield _text("Done: " + json.dumps(response, sort_keys=True))
            return
        said = (last.text or "") if last is not None else ""
        marker = "my favourite colour is "
        if said.startswith(marker):
            yield _call("remember", {"color": said.removeprefix(marker)}, f"call-{len(contents)}")
        elif said.startswith("what"):
            yield _call("recall", {}, f"call-{len(contents)}")
        else:
            yield _text(f"Hi! I was sent {len(contents)} contents.")


def remember(color: str, tool_context: ToolContext) -> dict[str, Any]:
    """Store the colour in every state scope."""
    state = tool_context.state
    state["app:greeting"] = "hello from the app"
    state["user:favorite_color"] = color
    state["turns"] = state.get("turns", 0) + 1
    state["temp:scratch"] = "never stored"
    return {"status": "ok", "color": color, "temp_seen": state.get("temp:scratch")}


def recall(tool_context: ToolContext) -> dict[str, Any]:
    """Read the state back: what a later turn (or process) finds."""
    state = tool_context.state
    return {
        "color": state.get("user:favorite_color"),
        "greeting": state.get("app:greeting"),
        "turns": state.get("turns"),
        "temp": state.get("temp:scratch"),
    }


def make_runner(service: SessionsDBSessionService) -> tuple[Runner, ScriptedLlm]:
    """Return a Runner of the app on ``service``, and its model."""
    model = ScriptedLlm(model="scripted-stub", seen=[])
    agent = LlmAgent(
        name="assistant", model=model, instruction="Be brief.", tools=[remember, recall]
    )
    return Runner(app_name=APP, agent=agent, session_service=service), model


async def say(runner: Runner, message: str) -> list[str]:
    """Send one user message; return the texts of the model's replies."""
    replies = []
    content = types.Content(role="user", parts=[types.Part(text=message)])
    async for event in runner.run_async(user_id=USER, session_id=SESSION, new_message=content):
        if event.content and event.content.parts:
            replies += [part.text for part in event.content.parts if part.text]
    return replies


async def snapshot(service: SessionsDBSessionService) -> dict[str, Any]:
    """Return the stored session as JSON values: its events, state and the user's state."""
    session = await service.get_session(app_name=APP, user_id=USER, session_id=SESSION)
    assert session is not None
    return {
        "events": [e.model_dump(mode="json", exclude_none=True) for e in session.events],
        "state": session.state,
        "user_state": await service.get_user_state(app_name=APP, user_id=USER),
        "last_update_time": session.last_update_time,
    }


async def resume(url: str, messages: list[str]) -> dict[str, Any]:
    """Open a fresh service and Runner on ``url``, read the session, go on with ``messages``."""
    async with SessionsDBSessionService(url) as service:
        before = await snapshot(service)
        runner, model = make_runner(service)
        replies = [await say(runner, message) for message in messages]
        return {"before": before, "replies": replies, "seen": model.seen}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(resume(sys.argv[1], sys.argv[2:]))))
