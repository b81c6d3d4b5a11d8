"""Stores with something to inspect: branches, checkpoints, restores, and hostile text."""

from __future__ import annotations

from dataclasses import dataclass

import sessions_db as sdb

#: Strings that would be markup, attributes or script URLs if they were not escaped.
SCRIPT = "<script>window.__pwned = 1; alert(1)</script>"
ATTRIBUTE = '"onerror=alert(1) x="'
IMAGE = '<img src=x onerror="window.__pwned=2">'
URL = "javascript:alert(1)"
#: A message role (any printable text up to 64 characters).
ROLE = '"><svg onload=alert(1)>'
HOSTILE = [SCRIPT, ATTRIBUTE, IMAGE, URL, ROLE]

#: A user ID that is all of them at once (user IDs may hold any printable text).
HOSTILE_USER = f"{SCRIPT}{ATTRIBUTE}{URL}"


@dataclass(frozen=True)
class Seeded:
    """What :func:`seed` stored."""

    session_id: str
    user_id: str
    checkpoint_ids: list[str]
    hostile_id: str
    other_id: str
    messages: int


def seed(manager: sdb.Manager, *, turns: int = 60) -> Seeded:
    """Store a session with two checkpoints, restores and branches, and a hostile one."""
    message = sdb.Message.new
    weather = manager.create("support", user_id="alice", metadata={"channel": "web"})
    weather.append_message(message("user", {"content": "What's the weather in Lyon today?"}))
    weather.append_message(message("assistant", {"content": "Let me check the forecast."}))
    first = weather.checkpoint(metadata={"label": "before tool call"})
    weather.append_message(message("tool", {"content": "rain, 12°C"}))
    weather.append_message(message("assistant", {"content": "Rain all day, 12°C."}))
    weather.restore(first.id)
    weather.append_messages(
        message("user" if n % 2 == 0 else "assistant", {"content": f"turn {n} about umbrellas"})
        for n in range(turns)
    )
    second = weather.checkpoint(metadata={"label": "after the turns"})
    weather.append_message(message("assistant", {"content": "Sunny, 24°C: no umbrella needed."}))
    weather.restore(second.id)
    weather.append_message(
        message("assistant", {"content": "Sunny all week.", "detail": {"days": list(range(200))}})
    )
    hostile = manager.create(
        "support",
        user_id=HOSTILE_USER,
        metadata={text: text for text in HOSTILE},
    )
    hostile.append_messages(
        message("user", {"content": text, "href": URL, "nested": {text: [text]}})
        for text in HOSTILE
    )
    hostile.checkpoint(metadata={"label": SCRIPT, "note": ATTRIBUTE})
    hostile.append_message(message(ROLE, {"content": IMAGE}))
    other = manager.create("coder", user_id="alice")
    other.append_message(message("user", {"content": "Write a haiku about umbrellas"}))
    return Seeded(
        session_id=weather.id,
        user_id="alice",
        checkpoint_ids=[first.id, second.id],
        hostile_id=hostile.id,
        other_id=other.id,
        messages=weather.info().message_count,
    )
