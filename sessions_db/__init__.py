"""sessions_db: durable conversation sessions for AI agents.

Message history, checkpoints, restore and branching on PostgreSQL, SQLite or a
JSONL directory, behind one small typed API::

    import sessions_db as sdb

    with sdb.connect("sqlite:///sessions.db") as mgr:
        sess = mgr.create("assistant", user_id="user-123")
        sess.append_message(sdb.Message.new("user", {"content": "Hello"}))
        print(sess.get_messages())
"""

from .backend import BranchQuery, NewCheckpoint, StorageBackend
from .connect import connect
from .context import current_session, session_from_context, use_session
from .errors import (
    CheckpointNotFoundError,
    ChecksumMismatchError,
    ConfigurationError,
    DuplicateEntryError,
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
from .file import FileBackend
from .manager import Manager, Session
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
    "EntryNotFoundError",
    "EntryType",
    "FileBackend",
    "InvalidArgumentError",
    "InvalidIDError",
    "Manager",
    "Message",
    "NewCheckpoint",
    "PayloadError",
    "SQLBackend",
    "SchemaError",
    "Session",
    "SessionEntry",
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
