"""What happens to payloads on their way into storage and back: redaction and encryption.

A :class:`Privacy` is held by the manager and applied by the shared rules
(:mod:`sessions_db.rules`), so every backend, sync or async, gets the same
treatment:

* ``redact``: a function ``payload -> payload`` run on every message payload
  before it is stored (strip e-mail addresses, card numbers, ...). What is stored,
  and so what every later read returns, is its result; the raw payload never
  reaches the backend. Its result is checked like any payload.
* ``keyring``: a :class:`~sessions_db.crypto.Keyring`; message payloads and the
  metadata of sessions and checkpoints are then stored encrypted (see
  :mod:`sessions_db.crypto`) and decrypted on read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import payload
from .crypto import Keyring, checkpoint_context, message_context, metadata_context
from .errors import PayloadError, SessionsDBError
from .types import Checkpoint, EntryType, Message, SessionEntry, SessionMetadata

Redactor = Callable[[dict[str, Any]], dict[str, Any]]


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
            raise PayloadError(f"the redact hook failed: {exc!r}") from exc
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

    def seal_entry(self, session_id: str, entry: SessionEntry) -> SessionEntry:
        """Return the entry as stored: a message's payload encrypted."""
        if self._keyring is None or entry.type is not EntryType.MESSAGE:
            return entry
        data = entry.data
        sealed = self._keyring.seal(data["payload"], message_context(session_id, entry.id))
        return entry.model_copy(update={"data": {"role": data["role"], "payload": sealed}})

    def open_entry(self, session_id: str, entry: SessionEntry) -> SessionEntry:
        """Return a stored entry with its message payload decrypted."""
        if self._keyring is None or entry.type is not EntryType.MESSAGE:
            return entry
        data = entry.data
        opened = self._keyring.open(data["payload"], message_context(session_id, entry.id))
        if opened is data["payload"]:
            return entry
        return entry.model_copy(update={"data": {"role": data["role"], "payload": opened}})

    def open_message(self, session_id: str, message: Message) -> Message:
        """Return a stored message with its payload decrypted."""
        if self._keyring is None:
            return message
        opened = self._keyring.open(message.payload, message_context(session_id, message.id))
        if opened is message.payload:
            return message
        return message.model_copy(update={"payload": opened})

    def seal_meta(self, meta: SessionMetadata) -> SessionMetadata:
        """Return session metadata as stored (its ``metadata`` encrypted)."""
        if self._keyring is None:
            return meta
        sealed = self._keyring.seal(meta.metadata, metadata_context(meta.id))
        return meta.model_copy(update={"metadata": sealed})

    def open_meta(self, meta: SessionMetadata) -> SessionMetadata:
        """Return stored session metadata with its ``metadata`` decrypted."""
        if self._keyring is None:
            return meta
        opened = self._keyring.open(meta.metadata, metadata_context(meta.id))
        return meta if opened is meta.metadata else meta.model_copy(update={"metadata": opened})

    def seal_checkpoint_metadata(
        self, session_id: str, checkpoint_id: str, value: dict[str, Any]
    ) -> dict[str, Any]:
        """Return a checkpoint's metadata as stored."""
        if self._keyring is None:
            return value
        return self._keyring.seal(value, checkpoint_context(session_id, checkpoint_id))

    def seal_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        """Return the checkpoint as stored (its metadata encrypted)."""
        if self._keyring is None:
            return checkpoint
        sealed = self.seal_checkpoint_metadata(
            checkpoint.session_id, checkpoint.id, checkpoint.metadata
        )
        return checkpoint.model_copy(update={"metadata": sealed})

    def open_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        """Return a stored checkpoint with its metadata decrypted."""
        if self._keyring is None:
            return checkpoint
        opened = self._keyring.open(
            checkpoint.metadata, checkpoint_context(checkpoint.session_id, checkpoint.id)
        )
        if opened is checkpoint.metadata:
            return checkpoint
        return checkpoint.model_copy(update={"metadata": opened})


#: No redaction, no encryption.
PLAIN = Privacy()
