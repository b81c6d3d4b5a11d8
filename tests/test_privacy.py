"""The redact hook and encryption at rest, checked against what the store really holds."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

import sessions_db as sdb
from sessions_db import Message
from sessions_db.backend import StorageBackend
from sessions_db.connect import file_path
from sessions_db.copying import copy_sessions
from sessions_db.crypto import MARKER, Keyring, generate_key
from sessions_db.sql.engine import normalize_url

from .conftest import make_store
from .test_memory import Wrapper

SECRET = "zanzibar-mongoose"
K1, K2 = generate_key(), generate_key()


def stored_text(url: str) -> str:
    """Everything the store holds, as text (payloads and metadata of every row or file)."""
    if url.startswith("file:"):
        base = file_path(url)
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(base.rglob("*")) if p.is_file()
        )
    engine = create_engine(normalize_url(url))
    parts: list[str] = []
    with engine.connect() as conn:
        for query in (
            "SELECT CAST(payload AS TEXT) FROM sessions_db_entries",
            "SELECT CAST(metadata AS TEXT) FROM sessions_db_sessions",
            "SELECT CAST(metadata AS TEXT) FROM sessions_db_checkpoints",
        ):
            parts.extend(str(row[0]) for row in conn.execute(text(query)))
        if url.startswith("sqlite"):
            parts.extend(
                str(row[0])
                for row in conn.execute(text("SELECT body FROM sessions_db_entries_fts"))
            )
    engine.dispose()
    return "\n".join(parts)


@pytest.fixture(params=["sql", "wrapped"])
def open_store(
    request: pytest.FixtureRequest, store_url: str
) -> Iterator[Callable[..., sdb.Manager]]:
    """Opens managers (with privacy options) on the test's store, directly or wrapped."""
    opened: list[sdb.Manager] = []

    def factory(**options: Any) -> sdb.Manager:
        backend: StorageBackend = sdb.connect(store_url).backend
        if request.param == "wrapped":
            backend = Wrapper(backend)
        manager = sdb.Manager(backend, **options)
        opened.append(manager)
        return manager

    yield factory
    for manager in opened:
        manager.close()


def scrub(payload: dict[str, Any]) -> dict[str, Any]:
    content = re.sub(r"\S+@\S+", "[email]", payload.get("content", ""))
    return {**payload, "content": content}


def test_redacted_before_storage(open_store: Callable[..., sdb.Manager], store_url: str) -> None:
    mgr = open_store(redact=scrub)
    s = mgr.create("support", user_id="alice")
    s.append_message(Message.new("user", {"content": f"write to {SECRET}@example.com"}))
    s.append_messages([Message.new("user", {"content": "or bob@example.org", "n": 1})])
    assert [m.payload for m in s.get_messages()] == [
        {"content": "write to [email]"},
        {"content": "or [email]", "n": 1},
    ]
    raw = stored_text(store_url)
    assert SECRET not in raw
    assert "bob@example.org" not in raw
    assert "[email]" in raw
    assert mgr.memory("alice").search(SECRET) == []
    checkpoint = s.checkpoint()
    s.restore(checkpoint.id)


def test_a_failing_or_bad_redactor_stores_nothing(open_store: Callable[..., sdb.Manager]) -> None:
    def broken(payload: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    def bad(payload: dict[str, Any]) -> dict[str, Any]:
        return {"x": object()}

    for redact in (broken, bad):
        mgr = open_store(redact=redact)
        s = mgr.create("support")
        with pytest.raises(sdb.PayloadError):
            s.append_message(Message.new("user", {"content": SECRET}))
        assert s.get_messages() == []


def test_encrypted_at_rest(open_store: Callable[..., sdb.Manager], store_url: str) -> None:
    mgr = open_store(keyring=Keyring({"k1": K1}))
    s = mgr.create("support", user_id="alice", metadata={"topic": SECRET})
    first = Message.new("user", {"content": f"my code is {SECRET}"})
    s.append_message(first)
    checkpoint = s.checkpoint(metadata={"state": SECRET})
    s.append_message(Message.new("assistant", {"content": "noted"}))
    raw = stored_text(store_url)
    assert SECRET not in raw
    assert "noted" not in raw
    assert MARKER in raw
    # Every read decrypts.
    again = mgr.get(s.id)
    assert again.metadata == {"topic": SECRET}
    assert mgr.list("support")[0].metadata == {"topic": SECRET}
    assert [m.payload["content"] for m in again.get_messages()] == [f"my code is {SECRET}", "noted"]
    assert again.list_checkpoints()[0].metadata == {"state": SECRET}
    assert checkpoint.metadata == {"state": SECRET}
    # Checksums are over the stored envelopes: restore verifies and works.
    assert again.restore(checkpoint.id).metadata == {"state": SECRET}
    assert [m.id for m in again.get_messages()] == [first.id]
    entries = again.get_entries()
    assert entries[0].data["payload"] == {"content": f"my code is {SECRET}"}
    # The memory decrypts and scans.
    memory = mgr.memory("alice")
    assert [h.message.id for h in memory.search(SECRET.split("-")[1])] == [first.id]
    assert memory.read(first.id) == first
    assert len(memory.list()) == 2


def test_missing_or_wrong_key(open_store: Callable[..., sdb.Manager]) -> None:
    writer = open_store(keyring=Keyring({"k1": K1}))
    s = writer.create("support", user_id="alice")
    s.append_message(Message.new("user", {"content": SECRET}))
    with pytest.raises(sdb.EncryptionError, match=r"'k1'.*not in the keyring"):
        open_store(keyring=Keyring({"k2": K2})).get(s.id)
    wrong = open_store(keyring=Keyring({"k1": K2}))
    with pytest.raises(sdb.EncryptionError, match="a different key is configured under key ID"):
        wrong.get(s.id)
    with pytest.raises(sdb.EncryptionError):
        wrong.memory("alice").search(SECRET)


def test_envelopes_are_bound_to_their_place(
    open_store: Callable[..., sdb.Manager], tamper: Callable[..., None]
) -> None:
    mgr = open_store(keyring=Keyring({"k1": K1}))
    s = mgr.create("support")
    a, b = Message.new("user", {"content": "a"}), Message.new("user", {"content": "b"})
    s.append_messages([a, b])
    # Copy a's sealed envelope onto b, behind the library's back.
    sealed = {e.id: e for e in mgr.backend.load_entries(s.id)}[a.id].data
    tamper(mgr, s.id, b.id, sealed)
    with pytest.raises(sdb.EncryptionError):
        s.get_messages()


def test_key_rotation_and_reencryption(
    open_store: Callable[..., sdb.Manager],
    store_url: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    old = open_store(keyring=Keyring({"k1": K1}))
    s = old.create("support", user_id="alice", metadata={"m": 1})
    s.append_message(Message.new("user", {"content": "before rotation"}))
    checkpoint = s.checkpoint(metadata={"state": "x"})
    s.append_message(Message.new("user", {"content": "on a branch"}))
    s.restore(checkpoint.id)

    rotated = open_store(keyring=Keyring({"k1": K1, "k2": K2}, active="k2"))
    s2 = rotated.get(s.id)
    s2.append_message(Message.new("user", {"content": "after rotation"}))
    assert [m.payload["content"] for m in s2.get_messages()] == [
        "before rotation",
        "after rotation",
    ]
    raw = stored_text(store_url)
    assert '"kid":"k1"' in raw.replace(" ", "")
    assert '"kid":"k2"' in raw.replace(" ", "")

    # Retiring k1: copy into a new store whose keyring holds only k2.
    (tmp_path / "copy").mkdir()
    target_url = make_store("sqlite", request, tmp_path / "copy")
    with sdb.Manager(sdb.SQLBackend(target_url), keyring=Keyring({"k2": K2})) as target:
        assert copy_sessions(rotated, target) == 1
        raw_copy = stored_text(target_url).replace(" ", "")
        assert '"kid":"k1"' not in raw_copy
        assert "before rotation" not in raw_copy
        copied = target.get(s.id)
        assert copied.metadata == {"m": 1}
        assert [m.payload["content"] for m in copied.get_messages()] == [
            "before rotation",
            "after rotation",
        ]
        assert len(copied.get_entries()) == len(s2.get_entries())
        assert copied.info().message_count == 2
        assert copied.restore(checkpoint.id).metadata == {"state": "x"}
        assert [m.payload["content"] for m in copied.get_messages()] == ["before rotation"]


def test_keyring_configuration() -> None:
    with pytest.raises(sdb.ConfigurationError):
        Keyring({})
    with pytest.raises(sdb.ConfigurationError):
        Keyring({"a": K1, "b": K2})
    with pytest.raises(sdb.ConfigurationError):
        Keyring({"a": "short"})
    with pytest.raises(sdb.ConfigurationError):
        Keyring({"a": K1}, active="b")
    ring = Keyring.from_config({"active": "b", "keys": {"a": K1, "b": K2}})
    assert ring.active == "b"
    assert ring.key_ids == ["a", "b"]
