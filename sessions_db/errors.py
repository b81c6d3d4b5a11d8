"""The exceptions raised by sessions_db.

Every error a caller can expect is a subclass of :class:`SessionsDBError`, so
``except sdb.SessionsDBError`` is enough to handle them all. A call that raises
leaves what was stored before it intact.
"""

from __future__ import annotations


class SessionsDBError(Exception):
    """Base class of every error raised by sessions_db."""


class SessionNotFoundError(SessionsDBError):
    """The session does not exist (or belongs to another user)."""


class CheckpointNotFoundError(SessionsDBError):
    """The checkpoint does not exist, or belongs to another session."""


class EntryNotFoundError(SessionsDBError):
    """An entry (for example the ``before`` cursor message) is not in the session."""


class StorageClosedError(SessionsDBError):
    """The manager, backend or session was closed."""


class SessionNotInContextError(SessionsDBError):
    """No session is bound to the current context."""


class InvalidIDError(SessionsDBError):
    """An ID, agent name or user ID is malformed or could address a path."""


class PayloadError(SessionsDBError):
    """A payload cannot be stored so that it reads back identical."""


class ChecksumMismatchError(SessionsDBError):
    """The stored history no longer matches a checkpoint's checksum."""


class DuplicateEntryError(SessionsDBError):
    """An entry (message) with this ID is already stored in the session.

    A retried append whose first attempt was stored raises this; the message is
    then in the session exactly once.
    """


class DuplicateKeyError(SessionsDBError):
    """Another session of the agent already has this external key."""


class SchemaError(SessionsDBError):
    """The database schema is missing or not at the version this library needs."""


class StorageUnavailableError(SessionsDBError):
    """The storage cannot be reached (database down, no connection in time, disk error)."""


class StorageTimeoutError(SessionsDBError):
    """A statement ran past the statement timeout, or waited past the lock timeout.

    On PostgreSQL, for example, when another connection holds a lock on the
    session for longer than ``lock_timeout``. The call's transaction was rolled
    back: nothing of it is stored, and a later call may succeed.
    """


class StorageError(SessionsDBError):
    """The database failed a statement for another reason than being unreachable.

    A server limit, a refused privilege, a constraint or trigger of the host's, a
    deadlock, an internal error: the driver's error is the ``__cause__``. Nothing
    of the call is stored.
    """


class ConfigurationError(SessionsDBError):
    """The configuration (URL, YAML block, environment variable) is invalid."""


class InvalidArgumentError(SessionsDBError, ValueError):
    """An argument other than an ID is out of range (a negative limit, a non-message)."""


class EncryptionError(SessionsDBError):
    """A payload cannot be encrypted or decrypted: unknown key ID, wrong key, altered ciphertext."""


class UnsupportedOperationError(SessionsDBError, NotImplementedError):
    """The backend cannot do this operation (a :class:`~sessions_db.SimpleBackend` listing agents).

    Nothing was changed. The message names what the backend would need.
    """


__all__ = [
    "CheckpointNotFoundError",
    "ChecksumMismatchError",
    "ConfigurationError",
    "DuplicateEntryError",
    "EncryptionError",
    "EntryNotFoundError",
    "InvalidArgumentError",
    "InvalidIDError",
    "PayloadError",
    "SchemaError",
    "SessionNotFoundError",
    "SessionNotInContextError",
    "SessionsDBError",
    "StorageClosedError",
    "StorageError",
    "StorageTimeoutError",
    "StorageUnavailableError",
    "UnsupportedOperationError",
]
