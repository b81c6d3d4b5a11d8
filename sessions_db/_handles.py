"""What the sync and asyncio managers and sessions share besides the rules."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from .rules import Clock
from .types import SessionMetadata

B = TypeVar("B")


class ManagerFields(Generic[B]):
    """A manager's backend, clock and closed flag."""

    def __init__(self, backend: B, *, clock: Clock) -> None:
        self._backend = backend
        self._clock = clock
        self._closed = False

    @property
    def backend(self) -> B:
        """The backend this manager stores into."""
        return self._backend

    @property
    def clock(self) -> Clock:
        """The function that gives the current time (UTC) for timestamps."""
        return self._clock

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed


class SessionFields:
    """A session's identity: the properties fixed when it was created."""

    def __init__(self, meta: SessionMetadata) -> None:
        self._meta = meta
        self._closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._meta.id} agent={self._meta.agent_name!r}>"

    @property
    def id(self) -> str:
        """The session ID (a UUID)."""
        return self._meta.id

    @property
    def agent_name(self) -> str:
        """The agent this session belongs to."""
        return self._meta.agent_name

    @property
    def user_id(self) -> str | None:
        """The user this session belongs to, if any."""
        return self._meta.user_id

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata given when the session was created."""
        return self._meta.metadata
