"""What the sync and asyncio managers and sessions share besides the rules.

A manager's settings (backend, clock, redaction and encryption, automatic
checkpoints) and a session's identity. Each operation of either API calls its
rule of :mod:`sessions_db.rules` in one unit of work; the two APIs differ only
in how they run it: in the calling thread, or awaited (in a worker thread, or
through ``run_sync`` on a host's async SQL engine or connection).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Generic, Protocol, TypeVar

from .errors import InvalidArgumentError
from .privacy import Privacy
from .rules import Clock
from .storage import Work
from .types import SessionMetadata

B = TypeVar("B")
T = TypeVar("T")


class Runner(Protocol):
    """What does work in units of work for a reader (a manager): its privacy and ``run``."""

    @property
    def privacy(self) -> Privacy:
        """The redaction and encryption applied to payloads."""
        ...

    def run(self, work: Work[T], *, write: bool = True) -> T:
        """Do ``work`` in one unit of work and commit it."""
        ...


class AsyncRunner(Protocol):
    """:class:`Runner`, awaited (an asyncio manager)."""

    @property
    def privacy(self) -> Privacy:
        """The redaction and encryption applied to payloads."""
        ...

    async def run(self, work: Work[T], *, write: bool = True) -> T:
        """Do ``work`` in one unit of work and commit it."""
        ...


class ManagerFields(Generic[B]):
    """A manager's backend, clock, payload privacy, automatic checkpoints and closed flag."""

    def __init__(
        self,
        backend: B,
        *,
        clock: Clock,
        privacy: Privacy,
        auto_checkpoint: timedelta | None = None,
    ) -> None:
        if auto_checkpoint is not None and auto_checkpoint <= timedelta(0):
            raise InvalidArgumentError("auto_checkpoint must be a positive interval or None")
        self._backend = backend
        self._clock = clock
        self._privacy = privacy
        self._auto_checkpoint = auto_checkpoint
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
    def privacy(self) -> Privacy:
        """The redaction and encryption applied to payloads."""
        return self._privacy

    @property
    def auto_checkpoint(self) -> timedelta | None:
        """The automatic checkpoint interval, or ``None`` when they are off."""
        return self._auto_checkpoint

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed


class SessionFields:
    """A session's identity: the properties fixed when it was created."""

    def __init__(self, manager: ManagerFields[Any], meta: SessionMetadata) -> None:
        self._settings = manager
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
        """The metadata as it was when this object was made (:meth:`info` reads it fresh)."""
        return self._meta.metadata

    @property
    def key(self) -> str | None:
        """The external key the session was created with, if any."""
        return self._meta.key
