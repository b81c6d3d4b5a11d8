"""The synchronous API: :class:`Manager` and :class:`Session`."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from . import rules
from ._plan import Plan, drive
from .backend import StorageBackend
from .crypto import Keyring
from .errors import StorageClosedError
from .privacy import PLAIN, Privacy, Redactor
from .rules import Call, Clock
from .types import Checkpoint, Message, SessionEntry, SessionMetadata, utcnow

if TYPE_CHECKING:
    from .memory import SessionMemory

T = TypeVar("T")


class _ClosesOnExit:
    """``with x:`` closes ``x`` on exit."""

    def close(self) -> None:
        """Release what this object holds."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Manager(_ClosesOnExit):
    """Creates, finds, lists and deletes sessions kept by a :class:`StorageBackend`.

    Thread-safe. Closing the manager closes its backend; it is also a context manager.

    ``redact`` (a function ``payload -> payload``) runs on every message payload
    before it is stored; ``keyring`` (a :class:`~sessions_db.crypto.Keyring`)
    stores payloads and metadata encrypted. See :mod:`sessions_db.privacy`.
    """

    def __init__(
        self,
        backend: StorageBackend,
        *,
        clock: Clock = utcnow,
        redact: Redactor | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        self._backend = backend
        self._clock = clock
        self._privacy = PLAIN if redact is None and keyring is None else Privacy(redact, keyring)
        self._closed = False
        self._lock = threading.Lock()

    @property
    def backend(self) -> StorageBackend:
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

    def memory(self, user_id: str, *, agent_name: str | None = None) -> SessionMemory:
        """Return the long-term memory of ``user_id`` (across their sessions; of one agent)."""
        from .memory import SessionMemory  # noqa: PLC0415 - memory builds on this module

        return SessionMemory(self, user_id, agent_name=agent_name)

    def run(self, plan: Plan[Call, T]) -> T:
        """Run a plan of backend calls (see :mod:`sessions_db.rules`)."""
        if self._closed:
            raise StorageClosedError("the session manager is closed")
        backend = self._backend
        return drive(plan, lambda call: call.target(backend)(*call.args, **call.kwargs))

    def create(
        self,
        agent_name: str,
        *,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Session:
        """Create a new session for ``agent_name``."""
        return Session(
            self, self.run(rules.create(agent_name, user_id, metadata, self._clock, self._privacy))
        )

    def get(self, session_id: str, *, user_id: str | None = None) -> Session:
        """Return the session; ``SessionNotFoundError`` if absent or another user's."""
        return Session(self, self.run(rules.get(session_id, user_id, self._privacy)))

    def get_or_create(self, agent_name: str, user_id: str | None) -> Session:
        """Return the user's most recently updated session of the agent, else a new one.

        An empty or ``None`` ``user_id`` always creates a new session.
        """
        return Session(
            self, self.run(rules.get_or_create(agent_name, user_id, self._clock, self._privacy))
        )

    def list(
        self,
        agent_name: str,
        *,
        user_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[SessionMetadata]:
        """Return the agent's sessions, most recently updated first."""
        return self.run(rules.list_sessions(agent_name, user_id, limit, offset, self._privacy))

    def delete(self, session_id: str) -> None:
        """Delete the session, its entries and checkpoints; ``SessionNotFoundError`` if absent."""
        self.run(rules.delete(session_id))

    def list_agents(self) -> builtins.list[str]:
        """Return the names of the agents that have sessions, sorted."""
        return self.run(rules.list_agents())

    def prune(
        self,
        older_than: timedelta | datetime,
        *,
        agent_name: str | None = None,
        dry_run: bool = False,
    ) -> builtins.list[str]:
        """Delete the sessions not updated for ``older_than`` (a duration, or a UTC time).

        Returns the deleted session IDs (with ``dry_run``, those that would be).
        On SQL stores this is one statement, not one per session.
        """
        return self.run(rules.prune(older_than, agent_name, dry_run, self._clock))

    def close(self) -> None:
        """Close the manager and its backend. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._backend.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed


class Session(_ClosesOnExit):
    """One conversation: its messages, checkpoints and branches.

    Get one from :class:`Manager`. Every method reads or writes the store, so
    several ``Session`` objects for one session (in threads or processes) agree.
    """

    def __init__(self, manager: Manager, meta: SessionMetadata) -> None:
        self._manager = manager
        self._meta = meta
        self._closed = False

    def __repr__(self) -> str:
        return f"<Session {self._meta.id} agent={self._meta.agent_name!r}>"

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

    @property
    def manager(self) -> Manager:
        """The manager this session came from."""
        return self._manager

    def _run(self, plan: Plan[Call, T]) -> T:
        if self._closed:
            plan.close()
            raise StorageClosedError(f"session {self.id} is closed; get it again from the manager")
        return self._manager.run(plan)

    def append_message(self, message: Message) -> None:
        """Append ``message`` on the current branch; durable when this returns."""
        self._run(
            rules.append_messages(self.id, [message], self._manager.clock, self._manager.privacy)
        )

    def append_messages(self, messages: Iterable[Message]) -> None:
        """Append ``messages`` in order, all or nothing."""
        self._run(
            rules.append_messages(self.id, messages, self._manager.clock, self._manager.privacy)
        )

    def get_messages(self, *, limit: int | None = None, before: str | None = None) -> list[Message]:
        """Return the current branch's messages, oldest first.

        ``limit`` keeps the newest ``limit``; ``before`` (a message ID) keeps the
        messages older than that message on its branch, for paging back through a
        long session.
        """
        return self._run(rules.get_messages(self.id, limit, before, self._manager.privacy))

    def checkpoint(self, *, metadata: dict[str, Any] | None = None) -> Checkpoint:
        """Take a checkpoint at the current leaf."""
        return self._run(
            rules.checkpoint(self.id, metadata, self._manager.clock, self._manager.privacy)
        )

    def restore(self, checkpoint_id: str) -> Checkpoint:
        """Make the checkpoint's entry the current leaf; later appends start a new branch.

        Nothing is deleted. ``CheckpointNotFoundError`` for an unknown checkpoint or
        one of another session, ``ChecksumMismatchError`` when the stored history no
        longer matches the checkpoint's checksum (then nothing changes).
        """
        return self._run(
            rules.restore(self.id, checkpoint_id, self._manager.clock, self._manager.privacy)
        )

    def list_checkpoints(self) -> list[Checkpoint]:
        """Return the session's checkpoints, oldest first."""
        return self._run(rules.list_checkpoints(self.id, self._manager.privacy))

    def info(self) -> SessionMetadata:
        """Return the session's current metadata (message count, leaf, times)."""
        return self._run(rules.load_session(self.id, self._manager.privacy))

    def get_entries(self) -> list[SessionEntry]:
        """Return every entry of the session's tree, all branches, in append order."""
        return self._run(rules.load_entries(self.id, self._manager.privacy))

    def close(self) -> None:
        """Release cached state. The session can be fetched again with :meth:`Manager.get`."""
        if not self._closed:
            self._closed = True
            if not self._manager.closed:
                self._manager.backend.release(self.id)
