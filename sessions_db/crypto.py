"""Payload encryption at rest: a keyring of AES-GCM keys, and re-encryption by copying.

With a :class:`Keyring` given to the :class:`~sessions_db.Manager`, every message
payload, every session's metadata and every checkpoint's metadata is stored as
an *envelope*, a JSON object of this form::

    {"$sessions_db.encrypted": 2, "kid": "2025-06", "kfp": "<fingerprint>", "data": "<base64url>"}

``data`` is a 12-byte random nonce followed by the AES-GCM ciphertext (with its
16-byte tag) of the payload's JSON text. ``kfp`` is the key's fingerprint (the
first 8 bytes of an HMAC-SHA256 of a constant under the key): a node configured
with a different key under the same key ID is told so instead of failing to
decrypt. The associated data binds the envelope to what the store keeps beside
it in clear (see :class:`Context`):

* a message payload: its session, its entry ID, its role and its session's owner;
* a session's metadata: its session, its agent and its owner;
* a checkpoint's metadata: its session, its checkpoint ID and the entry it marks.

So an envelope moved to another place, or a role, owner or agent changed behind
the library's back, no longer decrypts. Version 1 envelopes (``"$sessions_db.encrypted":
1``, no ``kfp``) bound only the session and the place; they still decrypt, and
``sessions-db reencrypt`` (or :func:`~sessions_db.copying.copy_sessions`) rewrites a
store as version 2.

Once a keyring is configured, every payload read must be an envelope: a value
in clear raises :class:`~sessions_db.EncryptionError` (a database writer could
otherwise put a forged payload in place of a sealed one), unless the keyring
was made with ``allow_plaintext=True``, the switch for reading a store written
before encryption was turned on (copy it with :func:`~sessions_db.copying.copy_sessions`, then turn
the switch off). A manager without a keyring that reads an envelope raises
``EncryptionError`` too. The key ``"$sessions_db.encrypted"`` is reserved: a payload
or metadata holding it at the top level is refused (``PayloadError``).

Key rotation: give the keyring the new key as ``active`` and keep the old keys
in it. New writes use the active key; entries written with an older key still
decrypt with it. Stored entries are never rewritten in place, so to retire an
old key, copy the store into a new one with :func:`~sessions_db.copying.copy_sessions` (the source
manager holds the old keys, the target only the new one) and switch to the copy.

Checksums are computed over what is stored (the envelopes), so checkpoints and
restores work unchanged; :func:`~sessions_db.copying.copy_sessions` recomputes them for the new
envelopes after verifying the old ones. The database cannot full-text search
envelopes: with a keyring, :class:`~sessions_db.memory.SessionMemory` decrypts
and scans the user's messages instead.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import payload
from .errors import ConfigurationError, EncryptionError

#: The key that marks an encrypted envelope.
MARKER = "$sessions_db.encrypted"
#: The envelope version :meth:`Keyring.seal` writes.
VERSION = 2
_FIELDS = {1: {MARKER, "kid", "data"}, 2: {MARKER, "kid", "kfp", "data"}}
_NONCE = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_FINGERPRINT_INPUT = b"sessions_db key fingerprint"
# Base64 text, standard or URL-safe alphabet, padded.
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")
_URLSAFE = str.maketrans("-_", "+/")


def generate_key() -> str:
    """Return a new random 256-bit key as URL-safe base64 text (for a configuration file)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def _may_be_key(text: str) -> bool:
    """Whether ``text`` could be a key (base64 of 16, 24 or 32 bytes): never echo it."""
    stripped = text.rstrip("=")
    if len(stripped) < 20:
        return False
    try:
        raw = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        return False
    return len(raw) in (16, 24, 32)


def _displayable(key_id: object) -> bool:
    """Whether an error message may show ``key_id``: a valid key ID that cannot be a key."""
    return isinstance(key_id, str) and bool(_KEY_ID.match(key_id)) and not _may_be_key(key_id)


def _shown(key_id: object) -> str:
    """Return ``key_id`` for an error message, unless it may be a key given in its place."""
    if _displayable(key_id):
        return repr(key_id)
    return "(not shown: it is not a valid key ID, and may be a key)"


def _key_bytes(label: str, key: bytes | str) -> bytes:
    if isinstance(key, str):
        # Strict: a lenient decoder would skip stray characters (a ";" between
        # two keys) and could take the text for a key of a valid length.
        if not _BASE64.fullmatch(key):
            raise ConfigurationError(f"encryption key {label} is not base64 text")
        try:
            raw = base64.b64decode(key.translate(_URLSAFE).encode("ascii"), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(f"encryption key {label} is not base64 text") from None
    elif isinstance(key, bytes):
        raw = key
    else:
        raise ConfigurationError(f"encryption key {label} must be bytes or base64 text")
    if len(raw) not in (16, 24, 32):
        raise ConfigurationError(
            f"encryption key {label} must be 16, 24 or 32 bytes (AES), got {len(raw)}"
        )
    return raw


def fingerprint(key: bytes) -> str:
    """Return the fingerprint of a raw key, as envelopes carry it (``kfp``).

    The first 8 bytes of HMAC-SHA256 of a constant under the key: it tells two
    keys apart and reveals nothing usable about either.
    """
    digest = hmac.new(key, _FINGERPRINT_INPUT, hashlib.sha256).digest()[:8]
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def is_envelope(value: object) -> bool:
    """Whether ``value`` is (or claims to be) an encrypted envelope: a dict with the marker key."""
    return isinstance(value, dict) and MARKER in value


@dataclass(frozen=True, slots=True)
class Context:
    """What an envelope is bound to: its place, and what the store keeps in clear beside it.

    ``place`` (``<session>/entry/<entry>``, ``<session>/metadata`` or
    ``<session>/checkpoint/<checkpoint>``) is all that version 1 envelopes bound;
    version 2 binds ``bound`` too: a message's role and owner, a session's agent
    and owner, a checkpoint's entry. Build one with :func:`message_context`,
    :func:`metadata_context` or :func:`checkpoint_context`.
    """

    place: str
    bound: tuple[tuple[str, str | None], ...] = ()

    def aad(self, version: int, key_id: str) -> bytes:
        """Return the associated data of an envelope of ``version`` under ``key_id``."""
        if version == 1:
            return f"sessions_db/v1\x1f{key_id}\x1f{self.place}".encode()
        fields = ["sessions_db", version, key_id, self.place, dict(self.bound)]
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("ascii")


def message_context(session_id: str, entry_id: str, *, role: str, owner: str | None) -> Context:
    """Return what a message payload is bound to: its place, its role, its session's owner."""
    return Context(f"{session_id}/entry/{entry_id}", (("owner", owner), ("role", role)))


def metadata_context(session_id: str, *, agent_name: str, owner: str | None) -> Context:
    """Return what a session's metadata is bound to: the session, its agent and its owner."""
    return Context(f"{session_id}/metadata", (("agent", agent_name), ("owner", owner)))


def checkpoint_context(session_id: str, checkpoint_id: str, *, entry_id: str) -> Context:
    """Return what a checkpoint's metadata is bound to: its place and the entry it marks."""
    return Context(f"{session_id}/checkpoint/{checkpoint_id}", (("entry", entry_id),))


class Keyring:
    """AES-GCM keys by ID, one of them active (used for every new write).

    ``keys`` maps key IDs to keys (16, 24 or 32 raw bytes, or URL-safe base64
    text such as :func:`generate_key` returns). ``active`` may be left out when
    there is one key. Every payload read must be an envelope
    (:class:`~sessions_db.EncryptionError` otherwise), unless ``allow_plaintext``
    is true: the switch for reading a store written before encryption was turned
    on, meant only for migrating it (see the module's documentation). Needs the
    ``cryptography`` package (``pip install 'sessions_db[encryption]'``).
    Error messages never show a key, nor a key ID that may be one.
    """

    def __init__(
        self,
        keys: Mapping[str, bytes | str],
        active: str | None = None,
        *,
        allow_plaintext: bool = False,
    ) -> None:
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
        self._fingerprints: dict[str, str] = {}
        for number, (key_id, key) in enumerate(keys.items(), 1):
            if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
                raise ConfigurationError(
                    f"encryption key ID number {number} {_shown(key_id)}: "
                    "use 1-64 letters, digits or . _ : - (and give keys as key_id:key)"
                )
            raw = _key_bytes(repr(key_id) if _displayable(key_id) else f"number {number}", key)
            self._ciphers[key_id] = AESGCM(raw)
            self._fingerprints[key_id] = fingerprint(raw)
        if active is None:
            if len(self._ciphers) != 1:
                raise ConfigurationError("name the active encryption key: the keyring has several")
            active = next(iter(self._ciphers))
        if active not in self._ciphers:
            raise ConfigurationError(
                f"the active encryption key {_shown(active)} is not in the keyring "
                f"(it holds {self._held()})"
            )
        self._active = active
        self._allow_plaintext = bool(allow_plaintext)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Keyring:
        """Build a keyring from ``{"active": key_id, "keys": {key_id: base64_key}}``.

        An optional ``"allow_plaintext": true`` reads payloads stored in clear.
        """
        keys = config.get("keys")
        if not isinstance(keys, Mapping):
            raise ConfigurationError("encryption.keys must map key IDs to keys")
        active = config.get("active")
        if active is not None and not isinstance(active, str):
            raise ConfigurationError("encryption.active must be a key ID")
        allow = config.get("allow_plaintext", False)
        if not isinstance(allow, bool):
            raise ConfigurationError("encryption.allow_plaintext must be true or false")
        return cls(keys, active, allow_plaintext=allow)

    @property
    def active(self) -> str:
        """The ID of the key new writes use."""
        return self._active

    @property
    def key_ids(self) -> list[str]:
        """The IDs of every key in the keyring."""
        return list(self._ciphers)

    @property
    def allow_plaintext(self) -> bool:
        """Whether payloads stored in clear are read (migration only) instead of refused."""
        return self._allow_plaintext

    def allowing_plaintext(self) -> Keyring:
        """Return a keyring with the same keys that also reads payloads stored in clear."""
        ring = copy.copy(self)
        ring._allow_plaintext = True
        return ring

    def _held(self) -> str:
        return ", ".join(_shown(key_id) for key_id in self._ciphers)

    def seal(self, value: dict[str, Any], context: Context) -> dict[str, Any]:
        """Return the envelope of ``value`` under the active key, bound to ``context``."""
        nonce = os.urandom(_NONCE)
        plain = payload.dumps(value).encode("utf-8")
        aad = context.aad(VERSION, self._active)
        sealed = self._ciphers[self._active].encrypt(nonce, plain, aad)
        return {
            MARKER: VERSION,
            "kid": self._active,
            "kfp": self._fingerprints[self._active],
            "data": base64.urlsafe_b64encode(nonce + sealed).decode("ascii"),
        }

    def open(self, value: dict[str, Any], context: Context) -> dict[str, Any]:
        """Return the payload of an envelope.

        :class:`~sessions_db.EncryptionError` when ``value`` is not an envelope
        (unless ``allow_plaintext``), when its key is not in the keyring, when a
        different key is configured under its key ID, or when it does not
        decrypt (altered, moved, or what it is bound to was changed).
        """
        place = context.place
        if not is_envelope(value):
            if self._allow_plaintext:
                return value
            raise EncryptionError(
                f"{place}: stored in clear, but this store's payloads are encrypted; to read "
                "a store written before encryption was turned on, set allow_plaintext"
            )
        version = value[MARKER]
        if type(version) is not int or set(value) != _FIELDS.get(version):
            shown = repr(version) if isinstance(version, int) else "unknown"
            raise EncryptionError(f"{place}: not a valid envelope (version {shown})")
        from cryptography.exceptions import InvalidTag  # noqa: PLC0415 - optional package

        key_id = value["kid"]
        cipher = self._ciphers.get(key_id) if isinstance(key_id, str) else None
        if cipher is None or not isinstance(key_id, str):
            raise EncryptionError(
                f"{place}: encrypted with key {_shown(key_id)}, which is not in the keyring "
                f"(it holds {self._held()})"
            )
        if version >= 2 and value["kfp"] != self._fingerprints[key_id]:
            raise EncryptionError(
                f"{place}: a different key is configured under key ID {key_id!r} than the "
                "one this payload was encrypted with; every node must hold the same key "
                "under one ID"
            )
        try:
            raw = base64.urlsafe_b64decode(str(value["data"]).encode("ascii"))
            plain = cipher.decrypt(raw[:_NONCE], raw[_NONCE:], context.aad(version, key_id))
        except (InvalidTag, binascii.Error, ValueError, UnicodeEncodeError):
            raise EncryptionError(
                f"{place}: the payload does not decrypt with key {key_id!r} (wrong key, or "
                "the stored data, or its role, owner or place, was altered)"
            ) from None
        result = json.loads(plain)
        if not isinstance(result, dict):  # pragma: no cover - seal only writes objects
            raise EncryptionError(f"{place}: the decrypted payload is not an object")
        return result
