"""Payload encryption at rest: a keyring of AES-GCM keys, and re-encryption by copying.

With a :class:`Keyring` given to the :class:`~sessions_db.Manager`, every message
payload, every session's metadata and every checkpoint's metadata is stored as
an *envelope*, a JSON object of this form::

    {"$sessions_db.encrypted": 1, "kid": "2025-06", "data": "<base64url>"}

``data`` is a 12-byte random nonce followed by the AES-GCM ciphertext (with its
16-byte tag) of the payload's JSON text. The associated data binds the envelope
to its key ID, its session and its place (the entry ID, ``metadata``, or the
checkpoint ID), so an envelope moved to another entry or session does not
decrypt. Agent names, user IDs, roles, IDs and timestamps stay in clear: the
store needs them to find sessions.

Key rotation: give the keyring the new key as ``active`` and keep the old keys
in it. New writes use the active key; entries written with an older key still
decrypt with it. Stored entries are never rewritten in place, so to retire an
old key, copy the store into a new one with :func:`copy_sessions` (the source
manager holds the old keys, the target only the new one) and switch to the copy.

Checksums are computed over what is stored (the envelopes), so checkpoints and
restores work unchanged; :func:`copy_sessions` recomputes them for the new
envelopes after verifying the old ones. The database cannot full-text search
envelopes: with a keyring, :class:`~sessions_db.memory.SessionMemory` decrypts
and scans the user's messages instead.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import payload
from .backend import BranchQuery
from .checksum import branch_checksum
from .errors import ChecksumMismatchError, ConfigurationError, EncryptionError
from .types import EntryType, SessionEntry

if TYPE_CHECKING:
    from .manager import Manager

#: The key that marks an encrypted envelope.
MARKER = "$sessions_db.encrypted"
_VERSION = 1
_NONCE = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def generate_key() -> str:
    """Return a new random 256-bit key as URL-safe base64 text (for a configuration file)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def _key_bytes(key_id: str, key: bytes | str) -> bytes:
    if isinstance(key, str):
        try:
            raw = base64.urlsafe_b64decode(key.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise ConfigurationError(f"encryption key {key_id!r} is not base64 text") from None
    elif isinstance(key, bytes):
        raw = key
    else:
        raise ConfigurationError(f"encryption key {key_id!r} must be bytes or base64 text")
    if len(raw) not in (16, 24, 32):
        raise ConfigurationError(
            f"encryption key {key_id!r} must be 16, 24 or 32 bytes (AES), got {len(raw)}"
        )
    return raw


def is_envelope(value: object) -> bool:
    """Whether ``value`` is an encrypted envelope."""
    return isinstance(value, dict) and MARKER in value and len(value) == 3


class Keyring:
    """AES-GCM keys by ID, one of them active (used for every new write).

    ``keys`` maps key IDs to keys (16, 24 or 32 raw bytes, or URL-safe base64
    text such as :func:`generate_key` returns). ``active`` may be left out when
    there is one key. Needs the ``cryptography`` package
    (``pip install 'sessions_db[encryption]'``).
    """

    def __init__(self, keys: Mapping[str, bytes | str], active: str | None = None) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import (  # noqa: PLC0415 - optional
                AESGCM,
            )
        except ImportError:  # pragma: no cover - depends on the installation
            raise ConfigurationError(
                "encryption needs the cryptography package: pip install 'sessions_db[encryption]'"
            ) from None
        if not keys:
            raise ConfigurationError("an encryption keyring needs at least one key")
        self._ciphers: dict[str, Any] = {}
        for key_id, key in keys.items():
            if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
                raise ConfigurationError(
                    f"encryption key ID {key_id!r}: use 1-64 letters, digits or . _ : -"
                )
            self._ciphers[key_id] = AESGCM(_key_bytes(key_id, key))
        if active is None:
            if len(self._ciphers) != 1:
                raise ConfigurationError("name the active encryption key: the keyring has several")
            active = next(iter(self._ciphers))
        if active not in self._ciphers:
            raise ConfigurationError(f"the active encryption key {active!r} is not in the keyring")
        self._active = active

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Keyring:
        """Build a keyring from ``{"active": key_id, "keys": {key_id: base64_key}}``."""
        keys = config.get("keys")
        if not isinstance(keys, Mapping):
            raise ConfigurationError("encryption.keys must map key IDs to keys")
        active = config.get("active")
        if active is not None and not isinstance(active, str):
            raise ConfigurationError("encryption.active must be a key ID")
        return cls(keys, active)

    @property
    def active(self) -> str:
        """The ID of the key new writes use."""
        return self._active

    @property
    def key_ids(self) -> list[str]:
        """The IDs of every key in the keyring."""
        return list(self._ciphers)

    @staticmethod
    def _aad(key_id: str, context: str) -> bytes:
        return f"sessions_db/v{_VERSION}\x1f{key_id}\x1f{context}".encode()

    def seal(self, value: dict[str, Any], context: str) -> dict[str, Any]:
        """Return the envelope of ``value`` under the active key, bound to ``context``."""
        nonce = os.urandom(_NONCE)
        plain = payload.dumps(value).encode("utf-8")
        sealed = self._ciphers[self._active].encrypt(nonce, plain, self._aad(self._active, context))
        return {
            MARKER: _VERSION,
            "kid": self._active,
            "data": base64.urlsafe_b64encode(nonce + sealed).decode("ascii"),
        }

    def open(self, value: dict[str, Any], context: str) -> dict[str, Any]:
        """Return the payload of an envelope; a value that is not one is returned as it is.

        :class:`~sessions_db.EncryptionError` when the key is not in the keyring,
        or the envelope does not decrypt (wrong key, altered, or moved).
        """
        if not is_envelope(value):
            return value
        from cryptography.exceptions import InvalidTag  # noqa: PLC0415 - optional package

        key_id = value.get("kid")
        if value.get(MARKER) != _VERSION:
            raise EncryptionError(f"{context}: unknown envelope version {value.get(MARKER)!r}")
        cipher = self._ciphers.get(key_id) if isinstance(key_id, str) else None
        if cipher is None or not isinstance(key_id, str):
            raise EncryptionError(
                f"{context}: encrypted with key {key_id!r}, which is not in the keyring "
                f"(it holds {', '.join(map(repr, self._ciphers))})"
            )
        try:
            raw = base64.urlsafe_b64decode(str(value.get("data", "")).encode("ascii"))
            plain = cipher.decrypt(raw[:_NONCE], raw[_NONCE:], self._aad(key_id, context))
        except (InvalidTag, binascii.Error, ValueError, UnicodeEncodeError):
            raise EncryptionError(
                f"{context}: the payload does not decrypt with key {key_id!r} "
                "(wrong key, or the stored data was altered)"
            ) from None
        result = json.loads(plain)
        if not isinstance(result, dict):  # pragma: no cover - seal only writes objects
            raise EncryptionError(f"{context}: the decrypted payload is not an object")
        return result


def message_context(session_id: str, entry_id: str) -> str:
    """Return the associated data of a message payload."""
    return f"{session_id}/entry/{entry_id}"


def metadata_context(session_id: str) -> str:
    """Return the associated data of a session's metadata."""
    return f"{session_id}/metadata"


def checkpoint_context(session_id: str, checkpoint_id: str) -> str:
    """Return the associated data of a checkpoint's metadata."""
    return f"{session_id}/checkpoint/{checkpoint_id}"


def copy_sessions(source: Manager, target: Manager) -> int:
    """Copy every session of ``source`` into ``target``; return how many were copied.

    Entries keep their IDs, timestamps and tree (every branch), sessions their
    IDs, users and times, checkpoints their IDs. Payloads are decrypted with the
    source's keyring and stored the way the target stores them: with its active
    key (re-encryption for key rotation), or in clear if it has no keyring, and
    redacted if it has a ``redact`` hook. Each checkpoint's checksum is verified
    on the source (``ChecksumMismatchError`` if the history was altered) and
    recomputed over what the target stored. ``target`` should be an empty store.
    """
    src, dst = source.backend, target.backend
    sp, tp = source.privacy, target.privacy
    copied = 0
    for agent in src.list_agents():
        for meta in src.list_sessions(agent):
            sid = meta.id
            dst.save_session(tp.seal_meta(sp.open_meta(meta)))
            entries = src.load_entries(sid)
            leaf: str | None = None
            run: list[SessionEntry] = []
            fork: str | None = None
            for entry in entries:
                opened = sp.open_entry(sid, entry)
                if opened.type is EntryType.MESSAGE:
                    opened = tp.redact_entry(opened)
                stored = tp.seal_entry(sid, opened)
                if run and entry.parent_id != run[-1].id:
                    dst.append_entries(sid, run, fork_from=fork, updated_at=run[-1].timestamp)
                    leaf, run = run[-1].id, []
                if not run:
                    fork = entry.parent_id if entry.parent_id != leaf else None
                run.append(stored)
            if run:
                dst.append_entries(sid, run, fork_from=fork, updated_at=meta.updated_at)
            for checkpoint in src.list_checkpoints(sid):
                old = branch_checksum(src.load_branch(sid, BranchQuery(leaf=checkpoint.entry_id)))
                if old != checkpoint.checksum:
                    raise ChecksumMismatchError(
                        f"checkpoint {checkpoint.id}: the stored history no longer matches "
                        "its checksum; not copied"
                    )
                new = branch_checksum(dst.load_branch(sid, BranchQuery(leaf=checkpoint.entry_id)))
                opened_cp = sp.open_checkpoint(checkpoint)
                dst.save_checkpoint(
                    tp.seal_checkpoint(opened_cp).model_copy(update={"checksum": new})
                )
            copied += 1
    return copied
