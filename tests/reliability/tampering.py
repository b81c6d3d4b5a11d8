"""Changing stored entries behind the library's back, per store kind.

Each function edits one entry the way a stray script or a disk fault could. A
new store kind adds its variant here (for the file store: rewriting a line of
the session's ``.jsonl``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, text

from sessions_db.sql.engine import normalize_url

from .support import store_kind


@contextmanager
def _sql(url: str) -> Iterator[Connection]:
    """A transaction on the store at ``url``, outside the library."""
    if store_kind(url) not in ("sqlite", "postgres"):
        pytest.fail(f"no tampering helper for {url} yet: add one here")
    engine = create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def _pg(url: str) -> bool:
    return store_kind(url) == "postgres"


def _execute(url: str, sql: str, **params: Any) -> None:
    with _sql(url) as conn:
        conn.execute(text(sql), params)


def set_payload(url: str, sid: str, entry_id: str, value: dict[str, Any]) -> None:
    """Replace an entry's payload (or checkpoint/metadata data)."""
    cast = "CAST(:p AS JSONB)" if _pg(url) else ":p"
    _execute(
        url,
        f"UPDATE sessions_db_entries SET payload = {cast} WHERE session_id = :s AND id = :i",
        p=json.dumps(value),
        s=sid,
        i=entry_id,
    )


def set_role(url: str, sid: str, entry_id: str, role: str) -> None:
    """Change a message's role."""
    _execute(
        url,
        "UPDATE sessions_db_entries SET role = :r WHERE session_id = :s AND id = :i",
        r=role,
        s=sid,
        i=entry_id,
    )


def set_timestamp(url: str, sid: str, entry_id: str, when: datetime) -> None:
    """Change an entry's timestamp."""
    _execute(
        url,
        "UPDATE sessions_db_entries SET created_at = :t WHERE session_id = :s AND id = :i",
        t=when if _pg(url) else when.strftime("%Y-%m-%d %H:%M:%S.%f"),
        s=sid,
        i=entry_id,
    )


def set_parent(url: str, sid: str, entry_id: str, parent_id: str | None) -> None:
    """Link an entry to another parent."""
    _execute(
        url,
        "UPDATE sessions_db_entries SET parent_id = :p WHERE session_id = :s AND id = :i",
        p=parent_id,
        s=sid,
        i=entry_id,
    )


def remove(url: str, sid: str, entry_id: str) -> None:
    """Delete an entry, splicing its children onto its parent so the chain still links."""
    with _sql(url) as conn:
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
