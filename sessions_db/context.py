"""Passing the current session through the context (``contextvars``).

Threads and asyncio tasks each see their own binding: a task started inside
``use_session`` inherits it, and changes inside the task do not leak out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from .errors import SessionNotInContextError

S = TypeVar("S")

_current: ContextVar[Any] = ContextVar("sessions_db_current_session", default=None)


@contextmanager
def use_session(session: S) -> Iterator[S]:
    """Bind ``session`` as the current session for the ``with`` block (nests; restores on exit)."""
    token = _current.set(session)
    try:
        yield session
    finally:
        _current.reset(token)


def session_from_context() -> Any:
    """Return the session bound to the current context, or ``None``."""
    return _current.get()


def current_session() -> Any:
    """Return the session bound to the current context; ``SessionNotInContextError`` if none."""
    session = _current.get()
    if session is None:
        raise SessionNotInContextError("no session is bound to the current context")
    return session
