"""What the sync and asyncio managers and sessions share besides the rules.

Both APIs build the plans of :mod:`sessions_db.rules` here, with the manager's
settings (clock, redaction and encryption), so that the two differ only in how
they run a plan: :func:`~sessions_db._plan.drive` or ``adrive``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from . import rules
from ._plan import Plan
from .errors import InvalidArgumentError
from .privacy import Privacy
from .rules import Call, Clock
from .types import Checkpoint, Message, SessionEntry, SessionMetadata

B = TypeVar("B")


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

    def _create_plan(
        self, agent_name: str, user_id: str | None, metadata: dict[str, Any] | None
    ) -> Plan[Call, SessionMetadata]:
        return rules.create(agent_name, user_id, metadata, self._clock, self._privacy)

    def _get_plan(self, session_id: str, user_id: str | None) -> Plan[Call, SessionMetadata]:
        return rules.get(session_id, user_id, self._privacy)

    def _get_or_create_plan(
        self, agent_name: str, user_id: str | None
    ) -> Plan[Call, SessionMetadata]:
        return rules.get_or_create(agent_name, user_id, self._clock, self._privacy)

    def _list_plan(
        self, agent_name: str, user_id: str | None, limit: int | None, offset: int
    ) -> Plan[Call, list[SessionMetadata]]:
        return rules.list_sessions(agent_name, user_id, limit, offset, self._privacy)

    def _prune_plan(
        self, older_than: timedelta | datetime, agent_name: str | None, dry_run: bool
    ) -> Plan[Call, list[str]]:
        return rules.prune(older_than, agent_name, dry_run, self._clock)


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
        """The metadata given when the session was created."""
        return self._meta.metadata

    def _append_plan(self, messages: Iterable[Message]) -> Plan[Call, None]:
        m = self._settings
        return rules.append_messages(
            self.id, messages, m.clock, m.privacy, m.auto_checkpoint, owner=self.user_id
        )

    def _get_messages_plan(
        self, limit: int | None, before: str | None
    ) -> Plan[Call, list[Message]]:
        return rules.get_messages(
            self.id, limit, before, self._settings.privacy, owner=self.user_id
        )

    def _checkpoint_plan(self, metadata: dict[str, Any] | None) -> Plan[Call, Checkpoint]:
        m = self._settings
        return rules.checkpoint(self.id, metadata, m.clock, m.privacy)

    def _restore_plan(self, checkpoint_id: str) -> Plan[Call, Checkpoint]:
        m = self._settings
        return rules.restore(self.id, checkpoint_id, m.clock, m.privacy)

    def _list_checkpoints_plan(self) -> Plan[Call, list[Checkpoint]]:
        return rules.list_checkpoints(self.id, self._settings.privacy)

    def _info_plan(self) -> Plan[Call, SessionMetadata]:
        return rules.load_session(self.id, self._settings.privacy)

    def _entries_plan(self) -> Plan[Call, list[SessionEntry]]:
        return rules.load_entries(self.id, self._settings.privacy, owner=self.user_id)
