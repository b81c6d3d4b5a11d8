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
from .config import Config, load_config
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
from .logging_backend import LoggingBackend
from .manager import Manager, Session
from .null import NullBackend
from .runtime import (
    Agent,
    CheckpointableAgent,
    MemoryAwareAgent,
    MemoryReader,
    Runtime,
    SessionAwareAgent,
    is_checkpointable,
    is_memory_aware,
    is_session_aware,
)
from .sql.backend import SQLBackend
from .types import Checkpoint, EntryType, Message, SessionEntry, SessionMetadata

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "BranchQuery",
    "Checkpoint",
    "CheckpointNotFoundError",
    "CheckpointableAgent",
    "ChecksumMismatchError",
    "Config",
    "ConfigurationError",
    "DuplicateEntryError",
    "EntryNotFoundError",
    "EntryType",
    "InvalidArgumentError",
    "InvalidIDError",
    "LoggingBackend",
    "Manager",
    "MemoryAwareAgent",
    "MemoryReader",
    "Message",
    "NewCheckpoint",
    "NullBackend",
    "PayloadError",
    "Runtime",
    "SQLBackend",
    "SchemaError",
    "Session",
    "SessionAwareAgent",
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
    "is_checkpointable",
    "is_memory_aware",
    "is_session_aware",
    "load_config",
    "session_from_context",
    "use_session",
]
