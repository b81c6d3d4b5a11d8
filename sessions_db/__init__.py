"""sessions_db: durable conversation sessions for AI agents.

Message history, checkpoints, restore and branching on PostgreSQL, SQLite or a
JSONL directory, behind one small typed API::

    import sessions_db as sdb

    with sdb.connect("sqlite:///sessions.db") as mgr:
        sess = mgr.create("assistant", user_id="user-123")
        sess.append_message(sdb.Message.new("user", {"content": "Hello"}))
        print(sess.get_messages())
"""

from .backend import BranchQuery, MessageHit, NewCheckpoint, StorageBackend
from .connect import connect
from .context import current_session, session_from_context, use_session
from .crypto import Keyring
from .errors import (
    CheckpointNotFoundError,
    ChecksumMismatchError,
    ConfigurationError,
    DuplicateEntryError,
    EncryptionError,
    EntryNotFoundError,
    InvalidArgumentError,
    InvalidIDError,
    PayloadError,
    SchemaError,
    SessionNotFoundError,
    SessionNotInContextError,
    SessionsDBError,
    StorageClosedError,
    StorageUnavailableError,
)
from .manager import Manager, Session
from .memory import MemoryHit, SessionMemory
from .sql.backend import SQLBackend
from .types import Checkpoint, EntryType, Message, SessionEntry, SessionMetadata

__version__ = "0.1.0"

__all__ = [
    "BranchQuery",
    "Checkpoint",
    "CheckpointNotFoundError",
    "ChecksumMismatchError",
    "ConfigurationError",
    "DuplicateEntryError",
    "EncryptionError",
    "EntryNotFoundError",
    "EntryType",
    "InvalidArgumentError",
    "InvalidIDError",
    "Keyring",
    "Manager",
    "MemoryHit",
    "Message",
    "MessageHit",
    "NewCheckpoint",
    "PayloadError",
    "SQLBackend",
    "SchemaError",
    "Session",
    "SessionEntry",
    "SessionMemory",
    "SessionMetadata",
    "SessionNotFoundError",
    "SessionNotInContextError",
    "SessionsDBError",
    "StorageBackend",
    "StorageClosedError",
    "StorageUnavailableError",
    "__version__",
    "connect",
    "current_session",
    "session_from_context",
    "use_session",
]
