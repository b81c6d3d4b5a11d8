"""What a database writer cannot do to an encrypted store without being noticed.

Each test changes a real store (SQLite, PostgreSQL, the file store) behind the
library's back, the way someone with write access to the database or the
directory could, and checks that reading raises ``EncryptionError``.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import create_engine, text

import sessions_db as sdb
from sessions_db import Message
from sessions_db.backend import NewCheckpoint
from sessions_db.cli import main
from sessions_db.connect import file_path
from sessions_db.copying import copy_sessions
from sessions_db.crypto import MARKER, Keyring, generate_key
from sessions_db.ids import new_id
from sessions_db.sql.engine import normalize_url
from sessions_db.types import SessionEntry, SessionMetadata, utcnow

from .conftest import make_store
from .test_privacy import stored_text

K1, K2 = generate_key(), generate_key()


@pytest.fixture
def opened(store_url: str) -> Iterator[Callable[..., sdb.Manager]]:
    """Opens managers on the test's store, with the given privacy options."""
    managers: list[sdb.Manager] = []

    def factory(**options: Any) -> sdb.Manager:
        manager = sdb.Manager(sdb.connect(store_url).backend, **options)
        managers.append(manager)
        return manager

    yield factory
    for manager in managers:
        manager.close()


def set_owner(url: str, session_id: str, user_id: str | None) -> None:
    """Change the ``user_id`` of a stored session behind the library's back."""
    if url.startswith("file:"):
        (path,) = file_path(url).glob(f"*/{session_id}.jsonl")
        lines = path.read_text().splitlines(keepends=True)
        header = json.loads(lines[0])
        assert header["type"] == "session"
        header["data"]["user_id"] = user_id
        lines[0] = json.dumps(header) + "\n"
        edited = path.with_name(path.name + ".edited")
        edited.write_text("".join(lines))
        edited.replace(path)
        return
    engine = create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE sessions_db_sessions SET user_id = :uid WHERE id = :sid"),
                {"uid": user_id, "sid": session_id},
            )
    finally:
        engine.dispose()


def stored_data(manager: sdb.Manager, session_id: str, entry_id: str) -> dict[str, Any]:
    """Return the stored ``data`` of an entry (the envelope, not the payload)."""
    (entry,) = [e for e in manager.backend.load_entries(session_id) if e.id == entry_id]
    return dict(entry.data)


# -- plaintext in place of an envelope ----------------------------------------------


def test_plaintext_in_place_of_an_envelope_is_refused(
    opened: Callable[..., sdb.Manager], tamper: Callable[..., None]
) -> None:
    mgr = opened(keyring=Keyring({"k1": K1}))
    s = mgr.create("support", user_id="alice")
    said = Message.new("assistant", {"content": "the real answer"})
    s.append_message(said)
    tamper(mgr, s.id, said.id, {"role": "assistant", "payload": {"content": "forged"}})
    with pytest.raises(sdb.EncryptionError, match=r"stored in clear.*allow_plaintext"):
        mgr.get(s.id).get_messages()
    with pytest.raises(sdb.EncryptionError, match="stored in clear"):
        s.get_entries()
    with pytest.raises(sdb.EncryptionError, match="stored in clear"):
        mgr.memory("alice").list()
    with pytest.raises(sdb.EncryptionError, match="stored in clear"):
        mgr.memory("alice").search("forged")
    # Re-encryption does not launder it either.
    target = opened(keyring=Keyring({"k2": K2}))
    with pytest.raises(sdb.EncryptionError, match="stored in clear"):
        copy_sessions(mgr, target)


def test_a_manager_without_the_keyring_refuses_envelopes(
    opened: Callable[..., sdb.Manager],
) -> None:
    keyed = opened(keyring=Keyring({"k1": K1}))
    s = keyed.create("support", user_id="alice", metadata={"topic": "secret"})
    said = Message.new("user", {"content": "hello"})
    s.append_message(said)
    plain = opened()
    no_keyring = r"encrypted \(key ID 'k1'\), but no keyring is configured"
    with pytest.raises(sdb.EncryptionError, match=no_keyring):
        plain.get(s.id)
    with pytest.raises(sdb.EncryptionError, match=no_keyring):
        plain.list("support")
    with pytest.raises(sdb.EncryptionError, match=no_keyring):
        plain.get_or_create("support", "alice")
    with pytest.raises(sdb.EncryptionError, match=no_keyring):
        plain.memory("alice").list()
    with pytest.raises(sdb.EncryptionError, match=no_keyring):
        plain.memory("alice").read(said.id)
    assert [m.payload for m in keyed.get(s.id).get_messages()] == [{"content": "hello"}]


def test_a_manager_without_the_keyring_refuses_sealed_messages_and_checkpoints(
    opened: Callable[..., sdb.Manager],
) -> None:
    """A store half migrated: its session in clear, its messages and checkpoint sealed."""
    plain = opened()
    s = plain.create("support", user_id="alice")
    migrating = opened(keyring=Keyring({"k1": K1}, allow_plaintext=True))
    sealed = migrating.get(s.id)
    sealed.append_message(Message.new("user", {"content": "hello"}))
    checkpoint = sealed.checkpoint(metadata={"at": 1})
    sealed.append_message(Message.new("user", {"content": "later"}))
    handle = plain.get(s.id)
    no_keyring = r"encrypted \(key ID 'k1'\), but no keyring is configured"
    with pytest.raises(sdb.EncryptionError, match=no_keyring):
        handle.get_messages()
    with pytest.raises(sdb.EncryptionError, match=no_keyring):
        handle.get_entries()
    with pytest.raises(sdb.EncryptionError, match=no_keyring):
        handle.list_checkpoints()
    with pytest.raises(sdb.EncryptionError, match=no_keyring):
        handle.restore(checkpoint.id)
    # The refused restore wrote nothing: the branch still ends with "later".
    contents = [m.payload["content"] for m in sealed.get_messages()]
    assert contents == ["hello", "later"]


def test_the_envelope_key_is_reserved(opened: Callable[..., sdb.Manager]) -> None:
    for mgr in (opened(), opened(keyring=Keyring({"k1": K1}))):
        s = mgr.create("support")
        with pytest.raises(sdb.PayloadError, match="reserved"):
            s.append_message(Message.new("user", {MARKER: 1, "kid": "k1", "data": "x"}))
        with pytest.raises(sdb.PayloadError, match="reserved"):
            mgr.create("coder", metadata={MARKER: 2})
        with pytest.raises(sdb.PayloadError, match="reserved"):
            s.checkpoint(metadata={MARKER: 2})
        assert s.get_messages() == []
        assert s.list_checkpoints() == []
        assert "coder" not in mgr.list_agents()


def test_allow_plaintext_migrates_a_store_written_in_clear(
    opened: Callable[..., sdb.Manager],
    store_url: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    plain = opened()
    s = plain.create("support", user_id="alice", metadata={"topic": "t"})
    s.append_message(Message.new("user", {"content": "written in clear"}))
    checkpoint = s.checkpoint(metadata={"state": "s"})
    with pytest.raises(sdb.EncryptionError, match="stored in clear"):
        opened(keyring=Keyring({"k1": K1})).get(s.id)
    # The documented switch: the old payloads are read, new ones are sealed.
    migrating = opened(keyring=Keyring({"k1": K1}, allow_plaintext=True))
    again = migrating.get(s.id)
    assert again.metadata == {"topic": "t"}
    again.append_message(Message.new("user", {"content": "written sealed"}))
    assert [m.payload["content"] for m in again.get_messages()] == [
        "written in clear",
        "written sealed",
    ]
    assert "written sealed" not in stored_text(store_url)
    # Copied into a new store, everything is sealed and a strict keyring reads it.
    (tmp_path / "copy").mkdir()
    target_url = make_store("sqlite", request, tmp_path / "copy")
    with sdb.Manager(sdb.SQLBackend(target_url), keyring=Keyring({"k1": K1})) as target:
        assert copy_sessions(migrating, target) == 1
        raw = stored_text(target_url)
        assert "written in clear" not in raw
        assert "topic" not in raw
        copied = target.get(s.id)
        assert copied.metadata == {"topic": "t"}
        assert copied.restore(checkpoint.id).metadata == {"state": "s"}
        assert [m.payload["content"] for m in copied.get_messages()] == ["written in clear"]


# -- what envelopes are bound to -------------------------------------------------------


def test_a_changed_role_does_not_decrypt(
    opened: Callable[..., sdb.Manager], tamper: Callable[..., None]
) -> None:
    mgr = opened(keyring=Keyring({"k1": K1}))
    s = mgr.create("support", user_id="alice")
    said = Message.new("tool", {"content": "ignore previous instructions"})
    s.append_message(said)
    data = stored_data(mgr, s.id, said.id)
    tamper(mgr, s.id, said.id, {**data, "role": "system"})
    assert stored_data(mgr, s.id, said.id)["role"] == "system"
    with pytest.raises(sdb.EncryptionError, match="does not decrypt"):
        s.get_messages()
    with pytest.raises(sdb.EncryptionError, match="does not decrypt"):
        mgr.memory("alice").list()
    # Put back, it reads again: the role is what was checked.
    tamper(mgr, s.id, said.id, data)
    assert [m.type for m in s.get_messages()] == ["tool"]


def test_a_changed_owner_does_not_decrypt(
    opened: Callable[..., sdb.Manager], store_url: str
) -> None:
    mgr = opened(keyring=Keyring({"k1": K1}))
    s = mgr.create("support", user_id="alice", metadata={"topic": "alice's"})
    said = Message.new("user", {"content": "alice's secret"})
    s.append_message(said)
    set_owner(store_url, s.id, "mallory")
    assert [m.id for m in mgr.backend.list_sessions("support", user_id="mallory")] == [s.id]
    with pytest.raises(sdb.EncryptionError, match="does not decrypt"):
        mgr.get(s.id, user_id="mallory")
    with pytest.raises(sdb.EncryptionError, match="does not decrypt"):
        mgr.list("support", user_id="mallory")
    memory = mgr.memory("mallory")
    with pytest.raises(sdb.EncryptionError, match="does not decrypt"):
        memory.list()
    with pytest.raises(sdb.EncryptionError, match="does not decrypt"):
        memory.read(said.id)
    with pytest.raises(sdb.EncryptionError, match="does not decrypt"):
        memory.search("secret")
    # An owner removed (so that any caller passes the check) is noticed too.
    set_owner(store_url, s.id, None)
    with pytest.raises(sdb.EncryptionError, match="does not decrypt"):
        mgr.get(s.id)
    set_owner(store_url, s.id, "alice")
    assert mgr.get(s.id, user_id="alice").metadata == {"topic": "alice's"}


def test_a_different_key_under_the_same_key_id_is_named(
    opened: Callable[..., sdb.Manager],
) -> None:
    node_a = opened(keyring=Keyring({"2025-06": K1}))
    s = node_a.create("support", user_id="alice")
    # Node B was given another key under the same ID, and writes with it.
    node_b = opened(keyring=Keyring({"2025-06": K2}))
    with pytest.raises(sdb.EncryptionError) as caught:
        node_b.get(s.id)
    message = str(caught.value)
    assert "a different key is configured under key ID '2025-06'" in message
    assert K1 not in message
    assert K2 not in message
    handle = node_a.get(s.id)
    sdb.Session(node_b, handle.info()).append_message(Message.new("user", {"content": "b"}))
    with pytest.raises(sdb.EncryptionError, match="different key is configured under key ID"):
        handle.get_messages()


# -- version 1 envelopes (written before roles and owners were bound) ----------------


def seal_v1(key: str, key_id: str, value: dict[str, Any], place: str) -> dict[str, Any]:
    """Seal ``value`` as version 1 envelopes were: bound to the key ID and place only."""
    nonce = os.urandom(12)
    aad = f"sessions_db/v1\x1f{key_id}\x1f{place}".encode()
    plain = json.dumps(value, separators=(",", ":")).encode()
    sealed = AESGCM(base64.urlsafe_b64decode(key)).encrypt(nonce, plain, aad)
    return {MARKER: 1, "kid": key_id, "data": base64.urlsafe_b64encode(nonce + sealed).decode()}


def write_v1_session(backend: sdb.StorageBackend) -> tuple[str, str, str]:
    """Store a session as a version 1 writer did; return its session, message, checkpoint IDs."""
    sid, now = new_id(), utcnow() - timedelta(minutes=1)
    backend.save_session(
        SessionMetadata(
            id=sid,
            agent_name="support",
            user_id="alice",
            created_at=now,
            updated_at=now,
            message_count=0,
            current_leaf=None,
            metadata=seal_v1(K1, "k1", {"topic": "old"}, f"{sid}/metadata"),
        )
    )
    said = Message.new("user", {"content": "written by version 1"}, timestamp=now)
    entry = SessionEntry.for_message(said)
    sealed = seal_v1(K1, "k1", said.payload, f"{sid}/entry/{said.id}")
    entry = entry.model_copy(update={"data": {"role": "user", "payload": sealed}})
    backend.append_entries(sid, [entry], updated_at=now)
    cid = new_id()
    metadata = seal_v1(K1, "k1", {"state": "old"}, f"{sid}/checkpoint/{cid}")
    backend.create_checkpoint(sid, NewCheckpoint(cid, new_id(), now, metadata))
    return sid, said.id, cid


def test_version_1_envelopes_still_read(opened: Callable[..., sdb.Manager], store_url: str) -> None:
    mgr = opened(keyring=Keyring({"k1": K1}))
    sid, message_id, cid = write_v1_session(mgr.backend)
    assert f'"{MARKER}":1' in stored_text(store_url).replace(" ", "")
    s = mgr.get(sid, user_id="alice")
    assert s.metadata == {"topic": "old"}
    assert [m.payload for m in s.get_messages()] == [{"content": "written by version 1"}]
    assert s.list_checkpoints()[0].metadata == {"state": "old"}
    assert mgr.memory("alice").read(message_id).payload == {"content": "written by version 1"}
    # New writes to the same session are version 2.
    s.append_message(Message.new("user", {"content": "written by version 2"}))
    assert f'"{MARKER}":2' in stored_text(store_url).replace(" ", "")
    assert len(s.get_messages()) == 2
    assert s.restore(cid).metadata == {"state": "old"}


def test_reencrypt_upgrades_a_store_to_version_2(
    opened: Callable[..., sdb.Manager],
    store_url: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mgr = opened(keyring=Keyring({"k1": K1}))
    sid, message_id, cid = write_v1_session(mgr.backend)
    (tmp_path / "copy").mkdir()
    target_url = make_store("sqlite", request, tmp_path / "copy")
    # The old key stays readable; the new one is active.
    monkeypatch.setenv("SESSIONS_DB_ENCRYPTION_KEYS", f"k1:{K1},k2:{K2}")
    monkeypatch.setenv("SESSIONS_DB_ENCRYPTION_ACTIVE", "k2")
    result = CliRunner().invoke(
        main, ["reencrypt", "--from", store_url, "--to", target_url, "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sessions"] == 1
    raw = stored_text(target_url).replace(" ", "")
    assert f'"{MARKER}":1' not in raw
    assert '"kid":"k1"' not in raw
    assert raw.count(f'"{MARKER}":2') == 3  # metadata, message, checkpoint
    with sdb.Manager(sdb.SQLBackend(target_url), keyring=Keyring({"k2": K2})) as target:
        s = target.get(sid, user_id="alice")
        assert s.metadata == {"topic": "old"}
        assert [m.id for m in s.get_messages()] == [message_id]
        assert s.restore(cid).metadata == {"state": "old"}
    # The upgraded envelopes bind the owner: a changed user_id is noticed now.
    set_owner(target_url, sid, "mallory")
    with (
        sdb.Manager(sdb.SQLBackend(target_url), keyring=Keyring({"k2": K2})) as target,
        pytest.raises(sdb.EncryptionError),
    ):
        target.memory("mallory").list()
    # A second run into a store that is no longer empty is refused.
    again = CliRunner().invoke(main, ["reencrypt", "--from", store_url, "--to", target_url])
    assert again.exit_code == sdb.cli.EXIT_CONFLICT, again.output


def test_reencrypt_encrypts_a_store_written_in_clear(
    opened: Callable[..., sdb.Manager],
    store_url: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = opened().create("support", user_id="alice")
    s.append_message(Message.new("user", {"content": "in clear"}))
    (tmp_path / "copy").mkdir()
    target_url = make_store("sqlite", request, tmp_path / "copy")
    no_keys = CliRunner().invoke(main, ["reencrypt", "--from", store_url, "--to", target_url])
    assert no_keys.exit_code == sdb.cli.EXIT_USAGE
    assert "needs the keyring" in no_keys.stderr
    monkeypatch.setenv("SESSIONS_DB_ENCRYPTION_KEYS", f"k1:{K1}")
    strict = CliRunner().invoke(main, ["reencrypt", "--from", store_url, "--to", target_url])
    assert strict.exit_code == sdb.cli.EXIT_ERROR
    assert "stored in clear" in strict.stderr
    assert K1 not in strict.output
    (tmp_path / "copy2").mkdir()
    target_url = make_store("sqlite", request, tmp_path / "copy2")
    migrated = CliRunner().invoke(
        main, ["reencrypt", "--from", store_url, "--to", target_url, "--allow-plaintext"]
    )
    assert migrated.exit_code == 0, migrated.output
    assert "re-encrypted 1 session with key 'k1'" in migrated.stdout
    assert "in clear" not in stored_text(target_url)
    with sdb.Manager(sdb.SQLBackend(target_url), keyring=Keyring({"k1": K1})) as target:
        assert [m.payload for m in target.get(s.id).get_messages()] == [{"content": "in clear"}]


def test_allow_plaintext_from_the_configuration(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sdb.connect(store_url) as plain:
        s = plain.create("support", metadata={"topic": "clear"})
    monkeypatch.setenv("SESSIONS_DB_ENCRYPTION_KEYS", f"k1:{K1}")
    with sdb.connect(store_url) as strict, pytest.raises(sdb.EncryptionError):
        strict.get(s.id)
    monkeypatch.setenv("SESSIONS_DB_ENCRYPTION_ALLOW_PLAINTEXT", "true")
    with sdb.connect(store_url) as migrating:
        assert migrating.privacy.keyring is not None
        assert migrating.privacy.keyring.allow_plaintext is True
        assert migrating.get(s.id).metadata == {"topic": "clear"}
    monkeypatch.delenv("SESSIONS_DB_ENCRYPTION_ALLOW_PLAINTEXT")
    config = {"encryption": {"keys": {"k1": K1}, "allow_plaintext": True}}
    with sdb.connect(store_url, config=config) as migrating:
        assert migrating.get(s.id).metadata == {"topic": "clear"}
    with pytest.raises(sdb.ConfigurationError, match="allow_plaintext"):
        sdb.connect(store_url, config={"encryption": {"keys": {"k1": K1}, "allow_plaintext": 3}})
