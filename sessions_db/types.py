"""The public data types: messages, entries, checkpoints and session metadata.

All are frozen pydantic v2 models. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from . import ids, payload
from .errors import PayloadError, SessionsDBError

MAX_ROLE = 64


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: object, what: str = "timestamp") -> datetime:
    """Return ``value`` as an aware UTC datetime; naive datetimes are refused."""
    if not isinstance(value, datetime):
        raise PayloadError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise PayloadError(f"{what} must be timezone-aware (got a naive datetime)")
    return value.astimezone(UTC)


class EntryType(StrEnum):
    """What an entry of the session tree records."""

    MESSAGE = "message"
    CHECKPOINT = "checkpoint"
    METADATA = "metadata"


_set = object.__setattr__


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=False)

    @classmethod
    def _trusted(cls, values: dict[str, Any]) -> Self:
        """Return an instance holding ``values`` (every field, already valid) as they are.

        What ``model_construct`` does for these models (no defaults, no private
        attributes, no extra fields), without its per-field loop: the rows a
        backend reads back are built this way, one per message of a history.
        """
        obj = cls.__new__(cls)
        _set(obj, "__dict__", values)
        _set(obj, "__pydantic_fields_set__", set(values))
        _set(obj, "__pydantic_extra__", None)
        _set(obj, "__pydantic_private__", None)
        return obj

    @model_validator(mode="wrap")
    @classmethod
    def _own_errors(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # Our validators raise SessionsDBError subclasses, which pydantic lets
        # through; its own errors (missing or extra fields) become PayloadError,
        # so callers never see a bare ValidationError.
        try:
            return handler(data)
        except ValidationError as exc:
            raise PayloadError(f"invalid {cls.__name__}: {exc}") from None


class Message(_Frozen):
    """One message of a conversation.

    ``type`` is the role (``"user"``, ``"assistant"``, ``"system"``, ``"tool"``, ...),
    ``payload`` its JSON content. Build one with :meth:`Message.new`.
    """

    type: str
    payload: dict[str, Any]
    id: str
    timestamp: datetime

    @field_validator("type", mode="plain")
    @classmethod
    def _role(cls, value: object) -> str:
        return message_role(value)

    @field_validator("payload", mode="plain")
    @classmethod
    def _payload(cls, value: object) -> dict[str, Any]:
        return payload.check(value)

    @field_validator("id", mode="plain")
    @classmethod
    def _id(cls, value: object) -> str:
        return ids.entry_id(value)

    @field_validator("timestamp", mode="plain")
    @classmethod
    def _timestamp(cls, value: object) -> datetime:
        return as_utc(value)

    @classmethod
    def new(
        cls,
        type: str,
        payload: dict[str, Any],
        *,
        id: str | None = None,
        timestamp: datetime | None = None,
    ) -> Self:
        """Return a new message with a fresh ID and the current time."""
        return cls(
            type=type,
            payload=payload,
            id=ids.new_id() if id is None else id,
            timestamp=utcnow() if timestamp is None else timestamp,
        )


def message_role(value: object) -> str:
    """Return ``value`` if it is a valid message type (role), else raise PayloadError."""
    if not isinstance(value, str) or not value or len(value) > MAX_ROLE:
        raise PayloadError(f"message type must be a non-empty string of at most {MAX_ROLE} chars")
    if not value.isprintable():
        raise PayloadError("message type contains control characters")
    return value


class SessionEntry(_Frozen):
    """One node of a session's entry tree.

    Entries are linked to their parent; the path from the root to the session's
    current leaf is the current branch. ``data`` holds ``{"role", "payload"}`` for
    messages, ``{"checkpoint_id"}`` for checkpoints and ``{"event", ...}`` for
    metadata entries (a restore records ``{"event": "restore", "checkpoint_id"}``).
    """

    id: str
    parent_id: str | None
    timestamp: datetime
    type: EntryType
    data: dict[str, Any]

    def to_message(self) -> Message:
        """Return the message this entry records (only for ``EntryType.MESSAGE``)."""
        if self.type is not EntryType.MESSAGE:
            raise SessionsDBError(f"entry {self.id} is a {self.type.value} entry, not a message")
        data = self.data
        return Message._trusted(
            {
                "type": data["role"],
                "payload": data["payload"],
                "id": self.id,
                "timestamp": self.timestamp,
            }
        )

    @classmethod
    def for_message(cls, message: Message) -> SessionEntry:
        """Return the (unlinked) entry that records ``message``."""
        return cls._trusted(
            {
                "id": message.id,
                "parent_id": None,
                "timestamp": message.timestamp,
                "type": EntryType.MESSAGE,
                "data": {"role": message.type, "payload": message.payload},
            }
        )


class SessionMetadata(_Frozen):
    """What is known about a session without reading its history."""

    id: str
    agent_name: str
    user_id: str | None
    created_at: datetime
    updated_at: datetime
    message_count: int
    current_leaf: str | None
    metadata: dict[str, Any]
    #: The external key a framework names the session with (``None``: none).
    key: str | None = None
    #: The session this one was forked from, and the entry of it the fork was taken at.
    forked_from: str | None = None
    forked_at: str | None = None


class Checkpoint(_Frozen):
    """A restorable point of a session: an entry and the checksum of its branch."""

    id: str
    session_id: str
    timestamp: datetime
    entry_id: str
    checksum: str
    metadata: dict[str, Any]


__all__ = [
    "Checkpoint",
    "EntryType",
    "Message",
    "SessionEntry",
    "SessionMetadata",
    "as_utc",
    "message_role",
    "utcnow",
]


@dataclass(frozen=True, slots=True)
class MessageHit:
    """A stored message entry of a user, found by a search or a listing.

    ``entry`` is the entry as stored; ``score`` is the relevance of a search hit
    (larger is better; 0 in listings).
    """

    session_id: str
    entry: SessionEntry
    score: float = 0.0
