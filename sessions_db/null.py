"""``NullBackend``: the store of ``session.enabled: false``, which keeps nothing.

A :class:`~sessions_db.Manager` on a ``NullBackend`` has the whole API, and
agents use it as usual, but nothing is kept and nothing touches a disk or a
network: agents run statelessly, as the seed describes.

* ``create`` and ``get_or_create`` return a new session each time; ``get_by_key``
  finds nothing.
* ``get`` returns an empty session for any well-formed ID (its ``agent_name`` is
  empty: nothing is known about it); ``delete`` succeeds; ``list`` is empty.
* Appends are accepted and dropped; ``get_messages`` returns ``[]``.
* ``checkpoint`` returns a checkpoint that is not kept, so ``restore`` raises
  ``CheckpointNotFoundError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .backend import WHOLE_BRANCH, BranchQuery, NewCheckpoint, StorageBackend
from .checksum import branch_checksum
from .errors import CheckpointNotFoundError, SessionNotFoundError, StorageClosedError
from .storage import Cursor
from .types import Checkpoint, EntryType, SessionEntry, SessionMetadata, utcnow


class NullBackend(StorageBackend):
    """A backend that keeps nothing (see the module's documentation)."""

    def __init__(self) -> None:
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise StorageClosedError("the storage backend is closed")

    def save_session(self, meta: SessionMetadata) -> None:
        """Drop the session's metadata."""
        self._check()

    def load_session(self, session_id: str) -> SessionMetadata:
        """Return an empty session with this ID."""
        self._check()
        now = utcnow()
        return SessionMetadata.model_construct(
            id=session_id,
            agent_name="",
            user_id=None,
            created_at=now,
            updated_at=now,
            message_count=0,
            current_leaf=None,
            metadata={},
        )

    def delete_session(self, session_id: str) -> None:
        """Nothing to delete."""
        self._check()

    def list_sessions(
        self,
        agent_name: str,
        *,
        user_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        metadata: dict[str, Any] | None = None,
        after: Cursor | None = None,
    ) -> list[SessionMetadata]:
        """No sessions are kept: ``[]``."""
        self._check()
        return []

    def load_session_by_key(self, agent_name: str, key: str) -> SessionMetadata:
        """No session is kept: ``SessionNotFoundError``."""
        self._check()
        raise SessionNotFoundError("no session has this key: sessions are disabled")

    def list_agents(self) -> list[str]:
        """No sessions are kept: ``[]``."""
        self._check()
        return []

    def prune_sessions(
        self, updated_before: datetime, *, agent_name: str | None = None, dry_run: bool = False
    ) -> list[str]:
        """Nothing to prune: ``[]``."""
        self._check()
        return []

    def append_entries(
        self,
        session_id: str,
        entries: Sequence[SessionEntry],
        *,
        fork_from: str | None = None,
        at_root: bool = False,
        updated_at: datetime,
    ) -> None:
        """Drop the entries."""
        self._check()

    def load_entries(self, session_id: str) -> list[SessionEntry]:
        """No entries are kept: ``[]``."""
        self._check()
        return []

    def load_branch(self, session_id: str, query: BranchQuery = WHOLE_BRANCH) -> list[SessionEntry]:
        """No entries are kept: ``[]``."""
        self._check()
        return []

    def load_entries_by_id(self, session_id: str, entry_ids: Sequence[str]) -> list[SessionEntry]:
        """No entries are kept: ``[]``."""
        self._check()
        return []

    def load_children(self, session_id: str, entry_id: str) -> list[SessionEntry]:
        """No entries are kept: ``[]``."""
        self._check()
        return []

    def create_checkpoint(self, session_id: str, new: NewCheckpoint) -> Checkpoint:
        """Return the checkpoint, without keeping it."""
        self._check()
        entry = SessionEntry.model_construct(
            id=new.entry_id,
            parent_id=None,
            timestamp=new.timestamp,
            type=EntryType.CHECKPOINT,
            data={"checkpoint_id": new.id},
        )
        return Checkpoint.model_construct(
            id=new.id,
            session_id=session_id,
            timestamp=new.timestamp,
            entry_id=new.entry_id,
            checksum=branch_checksum([entry]),
            metadata=new.metadata,
        )

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Drop the checkpoint."""
        self._check()

    def load_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        """No checkpoint is kept: ``CheckpointNotFoundError``."""
        self._check()
        raise CheckpointNotFoundError(
            f"checkpoint {checkpoint_id} not found: sessions are disabled, nothing is kept"
        )

    def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        """No checkpoints are kept: ``[]``."""
        self._check()
        return []

    def close(self) -> None:
        """Mark the backend closed."""
        self._closed = True

    def erase_user(self, user_id: str) -> int:
        """Nothing is kept for anyone: ``0``."""
        self._check()
        return 0
