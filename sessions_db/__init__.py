"""sessions_db: durable conversation sessions for AI agents.

Message history, checkpoints, restore and branching on PostgreSQL, SQLite or a
JSONL directory, behind one small typed API::

    import sessions_db as sdb

    with sdb.connect("sqlite:///sessions.db") as mgr:
        sess = mgr.create("assistant", user_id="user-123")
        sess.append_message(sdb.Message.new("user", {"content": "Hello"}))
        print(sess.get_messages())
"""

from typing import TYPE_CHECKING, Any

from .backend import BranchQuery, MessageHit, NewCheckpoint, StorageBackend
from .config import Config, load_config
from .connect import connect
from .context import current_session, session_from_context, use_session
from .crypto import Keyring
from .errors import (
    CheckpointNotFoundError,
    ChecksumMismatchError,
    ConfigurationError,
    DuplicateEntryError,
    DuplicateKeyError,
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
    StorageError,
    StorageTimeoutError,
    StorageUnavailableError,
    UnsupportedOperationError,
)
from .logging_backend import LoggingBackend
from .manager import Manager, Session
from .memory import MemoryHit, SessionMemory
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
from .simple import SimpleBackend, SimpleStorage
from .sql.backend import SQLBackend
from .types import Checkpoint, EntryType, Message, SessionEntry, SessionMetadata

__version__ = "0.1.0"

if TYPE_CHECKING:
    from . import aio as aio
    from .file import FileBackend as FileBackend
else:

    def __getattr__(name: str) -> Any:
        # ``sdb.aio`` is imported on first use: the sync API does not pay for
        # asyncio. So is the file store, which needs POSIX (``fcntl``): the SQL
        # stores work on every platform.
        import importlib  # noqa: PLC0415

        if name == "aio":
            return importlib.import_module(".aio", __name__)
        if name == "FileBackend":
            return importlib.import_module(".file", __name__).FileBackend
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "DuplicateKeyError",
    "EncryptionError",
    "EntryNotFoundError",
    "EntryType",
    "FileBackend",
    "InvalidArgumentError",
    "InvalidIDError",
    "Keyring",
    "LoggingBackend",
    "Manager",
    "MemoryAwareAgent",
    "MemoryHit",
    "MemoryReader",
    "Message",
    "MessageHit",
    "NewCheckpoint",
    "NullBackend",
    "PayloadError",
    "Runtime",
    "SQLBackend",
    "SchemaError",
    "Session",
    "SessionAwareAgent",
    "SessionEntry",
    "SessionMemory",
    "SessionMetadata",
    "SessionNotFoundError",
    "SessionNotInContextError",
    "SessionsDBError",
    "SimpleBackend",
    "SimpleStorage",
    "StorageBackend",
    "StorageClosedError",
    "StorageError",
    "StorageTimeoutError",
    "StorageUnavailableError",
    "UnsupportedOperationError",
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
