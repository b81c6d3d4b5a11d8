"""What the sync and asyncio managers and sessions share besides the rules.

Both APIs build the work of each operation here: a rule of
:mod:`sessions_db.rules` with the manager's settings (clock, redaction and
encryption) bound to it, to be done in one unit of work. The two APIs differ
only in how they run it: in the calling thread, or awaited (through
``run_sync`` on SQL, in a worker thread on the other stores).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

from . import rules
from .errors import InvalidArgumentError
from .privacy import Privacy
from .rules import Clock
from .storage import Work
from .types import Checkpoint, Message, SessionEntry, SessionMetadata

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

    def _create_work(
        self,
        agent_name: str,
        user_id: str | None,
        metadata: dict[str, Any] | None,
        key: str | None = None,
    ) -> Work[SessionMetadata]:
        return partial(
            rules.create,
            agent_name=agent_name,
            user_id=user_id,
            metadata=metadata,
            clock=self._clock,
            privacy=self._privacy,
            key=key,
        )

    def _get_by_key_work(
        self, agent_name: str, key: str, user_id: str | None
    ) -> Work[SessionMetadata]:
        return partial(
            rules.get_by_key,
            agent_name=agent_name,
            key=key,
            user_id=user_id,
            privacy=self._privacy,
        )

    def _get_work(self, session_id: str, user_id: str | None) -> Work[SessionMetadata]:
        return partial(rules.get, session_id=session_id, user_id=user_id, privacy=self._privacy)

    def _get_or_create_work(
        self, agent_name: str, user_id: str | None, key: str | None = None
    ) -> Work[SessionMetadata]:
        return partial(
            rules.get_or_create,
            agent_name=agent_name,
            user_id=user_id,
            clock=self._clock,
            privacy=self._privacy,
            key=key,
        )

    def _list_work(
        self,
        agent_name: str,
        user_id: str | None,
        limit: int | None,
        offset: int,
        *,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        metadata: dict[str, Any] | None = None,
        after: SessionMetadata | None = None,
    ) -> Work[list[SessionMetadata]]:
        return partial(
            rules.list_sessions,
            agent_name=agent_name,
            user_id=user_id,
            limit=limit,
            offset=offset,
            privacy=self._privacy,
            updated_after=updated_after,
            updated_before=updated_before,
            metadata=metadata,
            after=after,
        )

    def _prune_work(
        self, older_than: timedelta | datetime, agent_name: str | None, dry_run: bool
    ) -> Work[list[str]]:
        return partial(
            rules.prune,
            older_than=older_than,
            agent_name=agent_name,
            dry_run=dry_run,
            clock=self._clock,
        )

    def _prune_plan(
        self, older_than: timedelta | datetime, batch_size: int
    ) -> tuple[datetime, int]:
        """Return the cutoff of a batched prune, fixed once for all its batches, and its size."""
        return rules.prune_cutoff(older_than, self._clock), rules.prune_batch_size(batch_size)

    @staticmethod
    def _prune_batch_work(
        cutoff: datetime, agent_name: str | None, batch_size: int
    ) -> Work[list[str]]:
        return partial(
            rules.prune_batch, cutoff=cutoff, agent_name=agent_name, batch_size=batch_size
        )


class SessionFields:
    """A session's identity (the properties fixed when it was created) and its plans."""

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

    def _append_work(self, messages: Iterable[Message]) -> Work[None]:
        m = self._settings
        return partial(
            rules.append_messages,
            session_id=self.id,
            messages=list(messages),
            clock=m.clock,
            privacy=m.privacy,
            auto_checkpoint=m.auto_checkpoint,
            owner=self.user_id,
        )

    def _get_messages_work(
        self,
        limit: int | None,
        before: str | None,
        max_tokens: int | None = None,
        token_counter: rules.TokenCounter | None = None,
    ) -> Work[list[Message]]:
        return partial(
            rules.get_messages,
            session_id=self.id,
            limit=limit,
            before=before,
            privacy=self._settings.privacy,
            owner=self.user_id,
            max_tokens=max_tokens,
            token_counter=token_counter,
        )

    def _fork_work(
        self,
        at: str | None,
        checkpoint_id: str | None,
        agent_name: str | None,
        user_id: str | None,
        metadata: dict[str, Any] | None,
    ) -> Work[SessionMetadata]:
        m = self._settings
        return partial(
            rules.fork,
            session_id=self.id,
            owner=self.user_id,
            at=at,
            checkpoint_id=checkpoint_id,
            agent_name=agent_name,
            user_id=user_id,
            metadata=metadata,
            clock=m.clock,
            privacy=m.privacy,
        )

    def _rewind_work(self, to: str) -> Work[None]:
        return partial(rules.rewind, session_id=self.id, to=to, clock=self._settings.clock)

    def _pop_work(self) -> Work[Message | None]:
        m = self._settings
        return partial(
            rules.pop_message,
            session_id=self.id,
            clock=m.clock,
            privacy=m.privacy,
            owner=self.user_id,
        )

    def _clear_work(self) -> Work[None]:
        return partial(rules.clear, session_id=self.id, clock=self._settings.clock)

    def _update_metadata_work(self, patch: dict[str, Any], replace: bool) -> Work[SessionMetadata]:
        return partial(
            rules.update_metadata,
            session_id=self.id,
            patch=patch,
            replace=replace,
            privacy=self._settings.privacy,
        )

    def _checkpoint_work(self, metadata: dict[str, Any] | None) -> Work[Checkpoint]:
        m = self._settings
        return partial(
            rules.checkpoint,
            session_id=self.id,
            metadata=metadata,
            clock=m.clock,
            privacy=m.privacy,
        )

    def _restore_work(self, checkpoint_id: str) -> Work[Checkpoint]:
        m = self._settings
        return partial(
            rules.restore,
            session_id=self.id,
            checkpoint_id=checkpoint_id,
            clock=m.clock,
            privacy=m.privacy,
        )

    def _list_checkpoints_work(self) -> Work[list[Checkpoint]]:
        return partial(rules.list_checkpoints, session_id=self.id, privacy=self._settings.privacy)

    def _info_work(self) -> Work[SessionMetadata]:
        return partial(rules.load_session, session_id=self.id, privacy=self._settings.privacy)

    def _entries_work(self) -> Work[list[SessionEntry]]:
        return partial(
            rules.load_entries,
            session_id=self.id,
            privacy=self._settings.privacy,
            owner=self.user_id,
        )
