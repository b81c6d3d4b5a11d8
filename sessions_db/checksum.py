"""Checkpoint checksums: a SHA-256 over the content of a branch.

The checksum covers every entry from the root to the checkpoint's entry (ID,
parent, type, timestamp and data) in a canonical serialization, so any change
to the stored history of that branch, not only to its IDs, is detected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from .payload import canonical
from .types import SessionEntry

ALGORITHM = "sha256"


def entry_text(entry: SessionEntry) -> str:
    """Return the canonical text of one entry, as it enters the checksum."""
    return canonical(
        {
            "id": entry.id,
            "parent_id": entry.parent_id,
            "type": entry.type.value,
            "timestamp": entry.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "data": entry.data,
        }
    )


def branch_checksum(branch: Iterable[SessionEntry]) -> str:
    """Return the checksum of ``branch``, given root first, as ``"sha256:<hex>"``."""
    digest = hashlib.sha256()
    for entry in branch:
        digest.update(entry_text(entry).encode("utf-8"))
        digest.update(b"\n")
    return f"{ALGORITHM}:{digest.hexdigest()}"
