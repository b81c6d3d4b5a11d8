"""Changing stored entries behind the library's back, per store kind.

Each function edits one entry the way a stray script or a disk fault could: an
SQL UPDATE/DELETE on the SQL stores, a rewritten line of the session's
``.jsonl`` on the file store. A new store kind adds its variant here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, text

from sessions_db.connect import file_path
from sessions_db.file.jsonl import ts_text
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


Line = dict[str, Any]


def _is_file(url: str) -> bool:
    return store_kind(url) == "file"


def _edit_lines(url: str, sid: str, edit: Callable[[list[Line]], list[Line]]) -> None:
    """Rewrite the session's .jsonl with ``edit`` applied to its parsed lines."""
    (path,) = file_path(url).glob(f"*/{sid}.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    edited = path.with_name(path.name + ".edited")
    edited.write_text("".join(json.dumps(line) + "\n" for line in edit(lines)))
    edited.replace(path)


def _edit_entry(url: str, sid: str, entry_id: str, change: Callable[[Line], None]) -> None:
    def edit(lines: list[Line]) -> list[Line]:
        for line in lines:
            if line["id"] == entry_id and line["type"] != "session":
                change(line)
        return lines

    _edit_lines(url, sid, edit)


def _pg(url: str) -> bool:
    return store_kind(url) == "postgres"


def _execute(url: str, sql: str, **params: Any) -> None:
    with _sql(url) as conn:
        conn.execute(text(sql), params)


def set_payload(url: str, sid: str, entry_id: str, value: dict[str, Any]) -> None:
    """Replace an entry's payload (or checkpoint/metadata data)."""
    if _is_file(url):

        def change(line: Line) -> None:
            if line["type"] == "message":
                line["data"]["payload"] = value
            else:
                line["data"] = value

        _edit_entry(url, sid, entry_id, change)
        return
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
    if _is_file(url):
        _edit_entry(url, sid, entry_id, lambda line: line["data"].update(role=role))
        return
    _execute(
        url,
        "UPDATE sessions_db_entries SET role = :r WHERE session_id = :s AND id = :i",
        r=role,
        s=sid,
        i=entry_id,
    )


def set_timestamp(url: str, sid: str, entry_id: str, when: datetime) -> None:
    """Change an entry's timestamp."""
    if _is_file(url):
        _edit_entry(url, sid, entry_id, lambda line: line.update(timestamp=ts_text(when)))
        return
    _execute(
        url,
        "UPDATE sessions_db_entries SET created_at = :t WHERE session_id = :s AND id = :i",
        t=when if _pg(url) else when.strftime("%Y-%m-%d %H:%M:%S.%f"),
        s=sid,
        i=entry_id,
    )


def set_parent(url: str, sid: str, entry_id: str, parent_id: str | None) -> None:
    """Link an entry to another parent."""
    if _is_file(url):
        _edit_entry(url, sid, entry_id, lambda line: line.update(parent_id=parent_id))
        return
    _execute(
        url,
        "UPDATE sessions_db_entries SET parent_id = :p WHERE session_id = :s AND id = :i",
        p=parent_id,
        s=sid,
        i=entry_id,
    )


def remove(url: str, sid: str, entry_id: str) -> None:
    """Delete an entry, splicing its children onto its parent so the chain still links."""
    if _is_file(url):

        def splice(lines: list[Line]) -> list[Line]:
            (gone,) = [x for x in lines if x["id"] == entry_id and x["type"] != "session"]
            for line in lines:
                if line["parent_id"] == entry_id and line["type"] != "session":
                    line["parent_id"] = gone["parent_id"]
            return [x for x in lines if x is not gone]

        _edit_lines(url, sid, splice)
        return
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
