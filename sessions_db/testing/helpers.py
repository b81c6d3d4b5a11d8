"""Small helpers the contract suites share."""

from __future__ import annotations

from typing import Any

import sessions_db as sdb
from sessions_db import Message


def msg(text: str, role: str = "user") -> Message:
    """Return a message whose payload is ``{"content": text}``."""
    return Message.new(role, {"content": text})


def contents(session: sdb.Session, **kwargs: Any) -> list[str]:
    """Return the ``content`` of each message ``get_messages(**kwargs)`` returns."""
    return [m.payload["content"] for m in session.get_messages(**kwargs)]
