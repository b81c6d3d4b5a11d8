"""Changing stored entries behind the library's back, per store kind.

Each function edits one entry the way a stray script or a disk fault could. A
new store kind adds its variant here (for the file store: rewriting a line of
the session's ``.jsonl``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import text

import sessions_db as sdb


def _sql(mgr: sdb.Manager) -> sdb.SQLBackend:
    backend = mgr.backend
    if not isinstance(backend, sdb.SQLBackend):
        pytest.fail(f"no tampering helper for {type(backend).__name__} yet: add one here")
    return backend


def _execute(mgr: sdb.Manager, sql: str, **params: Any) -> None:
    backend = _sql(mgr)
    with backend.engine.begin() as conn:
        conn.execute(text(sql), params)


def set_payload(mgr: sdb.Manager, sid: str, entry_id: str, value: dict[str, Any]) -> None:
    """Replace an entry's payload (or checkpoint/metadata data)."""
    cast = "CAST(:p AS JSONB)" if _sql(mgr).dialect == "postgresql" else ":p"
    _execute(
        mgr,
        f"UPDATE sessions_db_entries SET payload = {cast} WHERE session_id = :s AND id = :i",
        p=json.dumps(value),
        s=sid,
        i=entry_id,
    )


def set_role(mgr: sdb.Manager, sid: str, entry_id: str, role: str) -> None:
    """Change a message's role."""
    _execute(
        mgr,
        "UPDATE sessions_db_entries SET role = :r WHERE session_id = :s AND id = :i",
        r=role,
        s=sid,
        i=entry_id,
    )


def set_timestamp(mgr: sdb.Manager, sid: str, entry_id: str, when: datetime) -> None:
    """Change an entry's timestamp."""
    _execute(
        mgr,
        "UPDATE sessions_db_entries SET created_at = :t WHERE session_id = :s AND id = :i",
        t=when if _sql(mgr).dialect == "postgresql" else when.strftime("%Y-%m-%d %H:%M:%S.%f"),
        s=sid,
        i=entry_id,
    )


def set_parent(mgr: sdb.Manager, sid: str, entry_id: str, parent_id: str | None) -> None:
    """Link an entry to another parent."""
    _execute(
        mgr,
        "UPDATE sessions_db_entries SET parent_id = :p WHERE session_id = :s AND id = :i",
        p=parent_id,
        s=sid,
        i=entry_id,
    )


def remove(mgr: sdb.Manager, sid: str, entry_id: str) -> None:
    """Delete an entry, splicing its children onto its parent so the chain still links."""
    backend = _sql(mgr)
    with backend.engine.begin() as conn:
        parent = conn.execute(
            text("SELECT parent_id FROM sessions_db_entries WHERE session_id = :s AND id = :i"),
            {"s": sid, "i": entry_id},
        ).scalar_one()
        conn.execute(
            text(
                "UPDATE sessions_db_entries SET parent_id = :p "
                "WHERE session_id = :s AND parent_id = :i"
            ),
            {"p": parent, "s": sid, "i": entry_id},
        )
        conn.execute(
            text("DELETE FROM sessions_db_entries WHERE session_id = :s AND id = :i"),
            {"s": sid, "i": entry_id},
        )
