"""What happens to payloads on their way into storage and back: redaction and encryption.

A :class:`Privacy` is held by the manager and applied by the shared rules
(:mod:`sessions_db.rules`), so every backend, sync or async, gets the same
treatment:

* ``redact``: a function ``payload -> payload`` run on every message payload
  before it is stored (strip e-mail addresses, card numbers, ...). What is stored,
  and so what every later read returns, is its result; the raw payload never
  reaches the backend. Its result is checked like any payload. When it raises,
  nothing is stored and :class:`~sessions_db.PayloadError` names only the type of
  its exception: the exception's text, which may quote the payload, is left out
  (and not chained).
* ``keyring``: a :class:`~sessions_db.crypto.Keyring`; message payloads and the
  metadata of sessions and checkpoints are then stored encrypted (see
  :mod:`sessions_db.crypto`) and decrypted on read, and a payload read in clear
  raises :class:`~sessions_db.EncryptionError`. Without a keyring, reading an
  encrypted payload raises ``EncryptionError`` as well.

Message envelopes are bound to the owner of their session, so the methods that
seal or open a message take ``owner``: the user ID of the session it belongs to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import payload
from .crypto import (
    MARKER,
    Context,
    Keyring,
    checkpoint_context,
    is_envelope,
    message_context,
    metadata_context,
)
from .errors import EncryptionError, PayloadError, SessionsDBError
from .types import Checkpoint, EntryType, Message, SessionEntry, SessionMetadata

Redactor = Callable[[dict[str, Any]], dict[str, Any]]


def _unsealed(value: dict[str, Any], what: str) -> dict[str, Any]:
    """Return ``value``, refused if it holds the reserved envelope key."""
    if MARKER in value:
        raise PayloadError(f"{what}: the top-level key {MARKER!r} is reserved")
    return value


class Privacy:
    """The redaction hook and the keyring a manager applies to payloads (both optional)."""

    def __init__(self, redact: Redactor | None = None, keyring: Keyring | None = None) -> None:
        if redact is not None and not callable(redact):
            raise TypeError("redact must be a callable taking and returning a payload dict")
        self._redact = redact
        self._keyring = keyring

    @property
    def keyring(self) -> Keyring | None:
        """The keyring payloads are encrypted with, if any."""
        return self._keyring

    @property
    def encrypted(self) -> bool:
        """Whether payloads are stored encrypted."""
        return self._keyring is not None

    # -- redaction ---------------------------------------------------------------

    def redact(self, value: dict[str, Any]) -> dict[str, Any]:
        """Return the payload as it is to be stored (``redact``'s result, checked)."""
        if self._redact is None:
            return value
        try:
            result = self._redact(value)
        except SessionsDBError:
            raise
        except Exception as exc:
            # The hook's message may quote the payload it was scrubbing.
            raise PayloadError(
                f"the redact hook failed with {type(exc).__name__}; nothing was stored"
            ) from None
        return payload.check(result, "redacted payload")

    def redact_entry(self, entry: SessionEntry) -> SessionEntry:
        """Return a message entry with its payload redacted."""
        if self._redact is None:
            return entry
        data = entry.data
        return entry.model_copy(
            update={"data": {"role": data["role"], "payload": self.redact(data["payload"])}}
        )

    # -- encryption --------------------------------------------------------------

    def _seal(
        self, value: dict[str, Any], context: Callable[[], Context], what: str
    ) -> dict[str, Any]:
        _unsealed(value, what)
        return value if self._keyring is None else self._keyring.seal(value, context())

    def _clear(self, value: dict[str, Any]) -> bool:
        """Whether ``value`` is read as it is stored: no keyring, and not an envelope."""
        return self._keyring is None and MARKER not in value

    def _open(self, value: dict[str, Any], context: Context) -> dict[str, Any]:
        if self._keyring is not None:
            return self._keyring.open(value, context)
        if is_envelope(value):
            kid = value.get("kid")
            raise EncryptionError(
                f"{context.place}: encrypted (key ID {kid!r}), but no keyring is configured: "
                "give the manager the keyring (session.encryption or SESSIONS_DB_ENCRYPTION_KEYS)"
                if isinstance(kid, str) and len(kid) <= 64
                else f"{context.place}: encrypted, but no keyring is configured"
            )
        return value

    def seal_entry(
        self, session_id: str, entry: SessionEntry, *, owner: str | None
    ) -> SessionEntry:
        """Return the entry as stored: a message's payload encrypted (bound to role and owner)."""
        if entry.type is not EntryType.MESSAGE:
            return entry
        data = entry.data
        sealed = self._seal(
            data["payload"],
            lambda: message_context(session_id, entry.id, role=data["role"], owner=owner),
            f"message {entry.id}",
        )
        if sealed is data["payload"]:
            return entry
        return entry.model_copy(update={"data": {"role": data["role"], "payload": sealed}})

    def open_entry(
        self, session_id: str, entry: SessionEntry, *, owner: str | None
    ) -> SessionEntry:
        """Return a stored entry with its message payload decrypted."""
        if entry.type is not EntryType.MESSAGE or self._clear(entry.data["payload"]):
            return entry
        data = entry.data
        context = message_context(session_id, entry.id, role=data["role"], owner=owner)
        opened = self._open(data["payload"], context)
        if opened is data["payload"]:
            return entry
        return entry.model_copy(update={"data": {"role": data["role"], "payload": opened}})

    def open_messages(
        self, session_id: str, messages: list[Message], *, owner: str | None
    ) -> list[Message]:
        """Return stored messages with their payloads decrypted (the list itself if none is)."""
        if self._keyring is None and not any(MARKER in m.payload for m in messages):
            return messages
        return [self.open_message(session_id, m, owner=owner) for m in messages]

    def open_message(self, session_id: str, message: Message, *, owner: str | None) -> Message:
        """Return a stored message with its payload decrypted."""
        if self._clear(message.payload):
            return message
        context = message_context(session_id, message.id, role=message.type, owner=owner)
        opened = self._open(message.payload, context)
        if opened is message.payload:
            return message
        return message.model_copy(update={"payload": opened})

    def seal_meta(self, meta: SessionMetadata) -> SessionMetadata:
        """Return session metadata as stored (its ``metadata`` encrypted)."""
        sealed = self._seal(
            meta.metadata,
            lambda: metadata_context(meta.id, agent_name=meta.agent_name, owner=meta.user_id),
            "metadata",
        )
        return meta if sealed is meta.metadata else meta.model_copy(update={"metadata": sealed})

    def open_meta(self, meta: SessionMetadata) -> SessionMetadata:
        """Return stored session metadata with its ``metadata`` decrypted."""
        if self._clear(meta.metadata):
            return meta
        context = metadata_context(meta.id, agent_name=meta.agent_name, owner=meta.user_id)
        opened = self._open(meta.metadata, context)
        return meta if opened is meta.metadata else meta.model_copy(update={"metadata": opened})

    def seal_checkpoint_metadata(
        self, session_id: str, checkpoint_id: str, value: dict[str, Any], *, entry_id: str
    ) -> dict[str, Any]:
        """Return a checkpoint's metadata as stored (bound to the entry it marks)."""
        return self._seal(
            value,
            lambda: checkpoint_context(session_id, checkpoint_id, entry_id=entry_id),
            "checkpoint metadata",
        )

    def seal_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        """Return the checkpoint as stored (its metadata encrypted)."""
        sealed = self.seal_checkpoint_metadata(
            checkpoint.session_id, checkpoint.id, checkpoint.metadata, entry_id=checkpoint.entry_id
        )
        if sealed is checkpoint.metadata:
            return checkpoint
        return checkpoint.model_copy(update={"metadata": sealed})

    def open_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        """Return a stored checkpoint with its metadata decrypted."""
        if self._clear(checkpoint.metadata):
            return checkpoint
        context = checkpoint_context(
            checkpoint.session_id, checkpoint.id, entry_id=checkpoint.entry_id
        )
        opened = self._open(checkpoint.metadata, context)
        if opened is checkpoint.metadata:
            return checkpoint
        return checkpoint.model_copy(update={"metadata": opened})


#: No redaction, no encryption.
PLAIN = Privacy()
