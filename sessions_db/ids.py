"""Generation and validation of IDs and names.

IDs reach file paths (the file store) and SQL parameters, so every ID that comes
from a caller is checked here, at the boundary, against a strict pattern.
"""

from __future__ import annotations

import re
import uuid

from .errors import ConfigurationError, InvalidIDError

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# A token that is safe as a file name on every platform: it cannot be "." or
# "..", contain a separator, or start with a dot.
_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MAX_USER_ID = 255
#: The longest external key of a session, in characters.
MAX_KEY = 1024
# A PostgreSQL schema name that needs no quoting to be read the same way back,
# within the server's 63-byte limit; ``pg_`` names are the server's own.
_SCHEMA = re.compile(r"(?![pP][gG]_)[A-Za-z_][A-Za-z0-9_]{0,62}")


def new_id() -> str:
    """Return a new random ID (uuid4, canonical text form)."""
    return str(uuid.uuid4())


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _uuid(value: object, what: str) -> str:
    if isinstance(value, str) and _UUID.fullmatch(value):
        return value
    raise InvalidIDError(f"malformed {what} ID {_describe(value)}: expected a UUID")


def session_id(value: object) -> str:
    """Return ``value`` if it is a session ID (a canonical lowercase UUID)."""
    return _uuid(value, "session")


def checkpoint_id(value: object) -> str:
    """Return ``value`` if it is a checkpoint ID (a canonical lowercase UUID)."""
    return _uuid(value, "checkpoint")


def entry_id(value: object) -> str:
    """Return ``value`` if it is an entry or message ID (a safe token, at most 128 chars)."""
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        return value
    raise InvalidIDError(
        f"malformed entry ID {_describe(value)}: expected 1-128 characters of "
        "letters, digits and _ . : - (not starting with . : or -)"
    )


def agent_name(value: object) -> str:
    """Return ``value`` if it is a valid agent name (it names a directory in the file store)."""
    if isinstance(value, str) and _NAME.fullmatch(value):
        return value
    raise InvalidIDError(
        f"invalid agent name {_describe(value)}: expected 1-128 characters of "
        "letters, digits and _ . - (not starting with . or -)"
    )


def user_id(value: object) -> str | None:
    """Return ``value`` if it is a user ID, or ``None`` for ``None`` (no user, no owner check).

    A user ID that is given names a user: ``""`` or a blank string raises
    ``InvalidIDError``, never silently becomes ``None``, so that a user ID that
    filters or checks ownership cannot turn the check off. For the user of a new
    session, where empty means "no user", see :func:`owner`.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidIDError(f"user ID must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidIDError("user ID is empty or blank; pass None for no user")
    if len(value) > MAX_USER_ID:
        raise InvalidIDError(f"user ID is longer than {MAX_USER_ID} characters")
    if not value.isprintable():
        raise InvalidIDError(f"user ID {_describe(value)} contains control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidIDError("user ID contains a lone surrogate") from None
    return value


def session_key(value: object) -> str:
    """Return ``value`` if it is an external key of a session.

    A key is any non-empty string a framework names a session with (an SDK
    session ID, ``"user:42/chat#1"``, non-ASCII text), at most :data:`MAX_KEY`
    characters, without NUL or a lone surrogate (so that it is stored as given).
    """
    if not isinstance(value, str):
        raise InvalidIDError(f"session key must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidIDError("session key is empty")
    if len(value) > MAX_KEY:
        raise InvalidIDError(f"session key is longer than {MAX_KEY} characters")
    if "\x00" in value:
        raise InvalidIDError("session key contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidIDError("session key contains a lone surrogate") from None
    return value


def owner(value: object) -> str | None:
    """Return the user of a new session: ``None`` (no user) for ``None``, ``""`` or blank.

    Only where a session is created (``create``, ``get_or_create``): there an
    empty user ID means a session that belongs to nobody. Anything else is
    checked by :func:`user_id`.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return user_id(value)


def schema_name(value: object) -> str | None:
    """Return ``value`` if it is a usable PostgreSQL schema name (``None``: no schema).

    A schema name is a plain identifier: 1-63 letters, digits and underscores,
    not starting with a digit or ``pg_``. Anything else raises
    :class:`~sessions_db.ConfigurationError` before it reaches SQL.
    """
    if value is None:
        return None
    if isinstance(value, str) and _SCHEMA.fullmatch(value):
        return value
    raise ConfigurationError(
        f"invalid schema name {_describe(value)}: expected 1-63 letters, digits and "
        "underscores, not starting with a digit or pg_"
    )
