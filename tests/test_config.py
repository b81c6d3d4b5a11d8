"""Configuration: the seed's YAML block, the environment, the search order, the errors."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

import sessions_db as sdb
from sessions_db import aio
from sessions_db.config import DEFAULT_BASE_DIR, load_config, parse_duration
from sessions_db.connect import configured_store_url
from sessions_db.crypto import MARKER, generate_key

from .test_privacy import stored_text

KEY1, KEY2 = generate_key(), generate_key()

SEED_DOCUMENT = """
session:
  enabled: true
  store: file
  base_dir: ~/.aixgo/sessions
  checkpoint:
    auto_save: true
    interval: 5m
agents:
  - name: assistant
    role: react
    model: gpt-4-turbo
    prompt: "You are a helpful assistant..."
    session:
      enabled: true
  - name: batch
    role: classifier
    session:
      enabled: false
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
        (" 1.5h ", timedelta(minutes=90)),
        (timedelta(seconds=7), timedelta(seconds=7)),
        (90, timedelta(seconds=90)),
    ],
)
def test_durations(text: Any, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["", "5", "5x", "-5m", "0s", "m5", "5m junk", True, None, [1]])
def test_bad_durations(bad: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each message differs
        parse_duration(bad)


def test_defaults() -> None:
    cfg = load_config(environ={})
    assert cfg.session.enabled is True
    assert cfg.session.store is None
    assert cfg.session.checkpoint.auto_save is False
    assert cfg.session.checkpoint.interval == timedelta(minutes=5)
    assert cfg.session.auto_checkpoint is None
    assert cfg.agents == []


def test_seed_document(tmp_path: Path) -> None:
    path = tmp_path / "aixgo.yaml"
    path.write_text(SEED_DOCUMENT)
    cfg = load_config(path, environ={})
    assert cfg.session.store == "file"
    assert cfg.session.base_dir == "~/.aixgo/sessions"
    assert cfg.session.auto_checkpoint == timedelta(minutes=5)
    assert [a.name for a in cfg.agents] == ["assistant", "batch"]
    assert cfg.agents[0].model_extra == {
        "role": "react",
        "model": "gpt-4-turbo",
        "prompt": "You are a helpful assistant...",
    }
    assert cfg.agent_session_enabled("assistant")
    assert not cfg.agent_session_enabled("batch")
    assert cfg.agent_session_enabled("unlisted")
    # The same document as a dict, and as a string path.
    assert load_config(yaml.safe_load(SEED_DOCUMENT), environ={}) == cfg
    assert load_config(str(path), environ={}) == cfg


def test_block_alone_or_in_a_document() -> None:
    block = {"store": "sqlite", "url": "sqlite:///x.db", "schema": "s"}
    assert load_config(block, environ={}) == load_config({"session": block}, environ={})
    assert load_config(block, environ={}).session.db_schema == "s"


def test_disabled_sessions_disable_every_agent() -> None:
    cfg = load_config({"session": {"enabled": False}, "agents": [{"name": "a"}]}, environ={})
    assert not cfg.agent_session_enabled("a")


def test_environment_variables(tmp_path: Path) -> None:
    env = {
        "SESSIONS_DB_ENABLED": "false",
        "SESSIONS_DB_STORE": "postgres",
        "SESSIONS_DB_URL": "postgresql://u@h/db",
        "SESSIONS_DB_BASE_DIR": str(tmp_path),
        "SESSIONS_DB_SCHEMA": "sessions",
        "SESSIONS_DB_CHECKPOINT_AUTO_SAVE": "yes",
        "SESSIONS_DB_CHECKPOINT_INTERVAL": "30s",
    }
    s = load_config(environ=env).session
    assert s.enabled is False
    assert s.store == "postgres"
    assert s.url == "postgresql://u@h/db"
    assert s.base_dir == str(tmp_path)
    assert s.db_schema == "sessions"
    assert s.auto_checkpoint == timedelta(seconds=30)


def test_seed_variables() -> None:
    env = {"AIXGO_SESSION_DIR": "/srv/aixgo", "POSTGRES_CONNECTION_STRING": "postgresql://a@b/c"}
    s = load_config(environ=env).session
    assert s.base_dir == "/srv/aixgo"
    assert s.url is None  # only for a postgres store: it never switches the store by itself
    s = load_config(environ={**env, "SESSIONS_DB_STORE": "postgres"}).session
    assert s.url == "postgresql://a@b/c"
    s = load_config({"store": "postgres"}, environ=env).session
    assert s.url == "postgresql://a@b/c"
    # The sessions_db variables come before the seed's.
    env = {
        **env,
        "SESSIONS_DB_BASE_DIR": "/srv/own",
        "SESSIONS_DB_URL": "postgresql://own@b/c",
        "SESSIONS_DB_STORE": "postgres",
    }
    s = load_config(environ=env).session
    assert (s.base_dir, s.url) == ("/srv/own", "postgresql://own@b/c")


def test_configuration_comes_before_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("session:\n  store: sqlite\n  checkpoint:\n    auto_save: true\n")
    env = {
        "SESSIONS_DB_CONFIG": str(path),
        "SESSIONS_DB_STORE": "postgres",
        "SESSIONS_DB_CHECKPOINT_INTERVAL": "1h",
        "SESSIONS_DB_URL": "sqlite:///from-env.db",
    }
    s = load_config(environ=env).session
    assert s.store == "sqlite"  # the file wins
    assert s.checkpoint.auto_save is True  # the file
    assert s.checkpoint.interval == timedelta(hours=1)  # the file leaves it out: the environment
    assert s.url == "sqlite:///from-env.db"
    # An explicit configuration replaces the SESSIONS_DB_CONFIG file.
    s = load_config({"store": "postgres", "url": "postgresql://x@y/z"}, environ=env).session
    assert s.store == "postgres"
    assert s.checkpoint.auto_save is False


@pytest.mark.parametrize(
    ("document", "env", "field"),
    [
        ({"session": {"store": "firestore"}}, {}, "session.store"),
        ({"session": {"stor": "file"}}, {}, "session.stor"),
        ({"session": {"enabled": "perhaps"}}, {}, "session.enabled"),
        ({"session": {"checkpoint": {"interval": "soon"}}}, {}, "session.checkpoint.interval"),
        ({"session": {"checkpoint": {"interval": "-1m"}}}, {}, "session.checkpoint.interval"),
        ({"session": {"checkpoint": {"auto_save": "often"}}}, {}, "session.checkpoint.auto_save"),
        ({"agents": [{"session": {"enabled": True}}]}, {}, "agents.0.name"),
        ({"agents": [{"name": "a", "session": {"enabled": "x"}}]}, {}, "agents.0.session.enabled"),
        (
            {},
            {"SESSIONS_DB_CHECKPOINT_INTERVAL": "5 minutes"},
            "session.checkpoint.interval (from $SESSIONS_DB_CHECKPOINT_INTERVAL)",
        ),
        ({}, {"SESSIONS_DB_STORE": "mongo"}, "session.store (from $SESSIONS_DB_STORE)"),
        ({"session": {"redact": "no_such_module:scrub"}}, {}, "session.redact"),
        ({"session": {"redact": "json:no_such_function"}}, {}, "session.redact"),
        ({"session": {"redact": "json.dumps"}}, {}, "session.redact"),  # no ':'
        ({"session": {"redact": "json:__name__"}}, {}, "session.redact"),  # not callable
        ({"session": {"encryption": {"keys": {"k1": "short"}}}}, {}, "session.encryption"),
        ({"session": {"encryption": {"keys": {"k1": "!!!"}}}}, {}, "session.encryption"),
        ({"session": {"encryption": {"keys": {}}}}, {}, "session.encryption"),
        ({"session": {"encryption": {"active": "k1"}}}, {}, "session.encryption.keys"),
        (
            {"session": {"encryption": {"keys": {"k1": KEY1, "k2": KEY2}, "active": "k3"}}},
            {},
            "session.encryption",
        ),
        (
            {},
            {"SESSIONS_DB_ENCRYPTION_KEYS": "k1=" + KEY1},
            "session.encryption.keys (from $SESSIONS_DB_ENCRYPTION_KEYS)",
        ),
        ({}, {"SESSIONS_DB_REDACT": "json"}, "session.redact (from $SESSIONS_DB_REDACT)"),
    ],
)
def test_errors_name_the_field(document: dict[str, Any], env: dict[str, str], field: str) -> None:
    with pytest.raises(sdb.ConfigurationError) as raised:
        load_config(document, environ=env)
    assert f"{field}:" in str(raised.value)
    assert KEY1 not in str(raised.value)  # keys never appear in errors
    assert not isinstance(raised.value, ValidationError)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_unreadable_documents(tmp_path: Path) -> None:
    with pytest.raises(sdb.ConfigurationError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("session: [unclosed\n")
    with pytest.raises(sdb.ConfigurationError, match="not valid YAML"):
        load_config(bad, environ={})
    bad.write_text("- a list\n")
    with pytest.raises(sdb.ConfigurationError, match="mapping"):
        load_config(bad, environ={})
    with pytest.raises(sdb.ConfigurationError, match="session: expected a mapping"):
        load_config({"session": "on"}, environ={})
    with pytest.raises(sdb.ConfigurationError, match="cannot read"):
        load_config(environ={"SESSIONS_DB_CONFIG": str(tmp_path / "absent.yaml")})
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty, environ={}) == load_config(environ={})


def test_store_url_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))

    def resolve(block: dict[str, Any]) -> str:
        return configured_store_url(load_config(block, environ={}).session)

    assert resolve({"store": "file", "base_dir": str(tmp_path / "s")}) == (tmp_path / "s").as_uri()
    assert resolve({"store": "file"}) == Path(DEFAULT_BASE_DIR).expanduser().as_uri()
    assert resolve({"url": "sqlite:///a.db"}) == "sqlite:///a.db"
    assert resolve({"store": "sqlite", "url": "sqlite:///a.db"}) == "sqlite:///a.db"
    assert resolve({"store": "sqlite"}).startswith("sqlite:///")
    with pytest.raises(sdb.ConfigurationError, match=r"session\.url"):
        resolve({"store": "postgres", "url": "sqlite:///a.db"})
    with pytest.raises(sdb.ConfigurationError, match=r"session\.url"):
        resolve({"store": "postgres"})


def _kind(mgr: sdb.Manager) -> str:
    backend = mgr.backend
    if isinstance(backend, sdb.FileBackend):
        return "file"
    assert isinstance(backend, sdb.SQLBackend)
    return "sqlite" if backend.dialect == "sqlite" else "postgres"


def test_connect_with_configuration(store_url: str, store_kind: str, tmp_path: Path) -> None:
    document = {
        "session": {"store": store_kind, "url": store_url, "checkpoint": {"auto_save": True}},
    }
    with sdb.connect(config=document) as mgr:
        assert _kind(mgr) == store_kind
        assert mgr.auto_checkpoint == timedelta(minutes=5)
        sid = mgr.create("assistant").id
    path = tmp_path / "sessions_db.yaml"
    path.write_text(yaml.safe_dump(document))
    with sdb.connect(config=path) as mgr:
        assert mgr.get(sid).agent_name == "assistant"


def test_connect_without_arguments_searches_in_order(
    store_url: str, store_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The environment alone.
    monkeypatch.setenv("SESSIONS_DB_URL", store_url)
    monkeypatch.setenv("SESSIONS_DB_CHECKPOINT_AUTO_SAVE", "true")
    monkeypatch.setenv("SESSIONS_DB_CHECKPOINT_INTERVAL", "30s")
    with sdb.connect() as mgr:
        assert _kind(mgr) == store_kind
        assert mgr.auto_checkpoint == timedelta(seconds=30)
        sid = mgr.create("assistant").id
    # The SESSIONS_DB_CONFIG file comes first; the environment fills in the rest.
    path = tmp_path / "c.yaml"
    path.write_text("session:\n  checkpoint:\n    interval: 2h\n")
    monkeypatch.setenv("SESSIONS_DB_CONFIG", str(path))
    with sdb.connect() as mgr:
        assert mgr.auto_checkpoint == timedelta(hours=2)
        assert mgr.get(sid).id == sid


def test_url_argument_wins(store_url: str, store_kind: str) -> None:
    config = {"store": "postgres", "url": "postgresql://nobody@127.0.0.1:1/none"}
    with sdb.connect(store_url, config=config) as mgr:
        assert _kind(mgr) == store_kind
        mgr.create("assistant")


def test_connect_defaults_to_the_embedded_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with sdb.connect() as mgr:
        assert mgr.auto_checkpoint is None
        mgr.create("assistant")
    assert (tmp_path / ".sessions_db").is_dir()


def test_connect_reports_bad_configuration() -> None:
    with pytest.raises(sdb.ConfigurationError, match=r"session\.checkpoint\.interval"):
        sdb.connect(config={"checkpoint": {"interval": "often"}})


def scrub(payload: dict[str, Any]) -> dict[str, Any]:
    """The redact hook the configuration below names (tests.test_config:scrub)."""
    return {**payload, "content": payload["content"].replace("4111-1111", "[card]")}


@pytest.mark.parametrize("api", ["sync", "async"])
def test_configured_privacy_is_applied(
    store_url: str, store_kind: str, tmp_path: Path, api: str
) -> None:
    path = tmp_path / "sessions_db.yaml"
    path.write_text(
        f"""
session:
  store: {store_kind}
  url: {store_url}
  redact: tests.test_config:scrub
  encryption:
    keys:
      old: {KEY1}
      new: {KEY2}
    active: new
"""
    )
    said = {"content": "pay with 4111-1111, zanzibar-mongoose"}
    kept = {"content": "pay with [card], zanzibar-mongoose"}
    if api == "sync":
        with sdb.connect(config=path) as mgr:
            assert mgr.privacy.keyring is not None
            assert mgr.privacy.keyring.active == "new"
            sess = mgr.create("assistant", metadata={"topic": "zanzibar-mongoose"})
            sess.append_message(sdb.Message.new("user", said))
            assert [m.payload for m in sess.get_messages()] == [kept]
            assert mgr.get(sess.id).metadata == {"topic": "zanzibar-mongoose"}
    else:

        async def main() -> None:
            async with await aio.connect(config=path) as mgr:
                sess = await mgr.create("assistant", metadata={"topic": "zanzibar-mongoose"})
                await sess.append_message(sdb.Message.new("user", said))
                assert [m.payload for m in await sess.get_messages()] == [kept]
                assert (await mgr.get(sess.id)).metadata == {"topic": "zanzibar-mongoose"}

        asyncio.run(main())
    raw = stored_text(store_url)
    assert "zanzibar" not in raw  # ciphertext only
    assert "4111" not in raw
    assert MARKER in raw
    # Without the keys, reading the store raises instead of giving back envelopes.
    with (
        sdb.connect(store_url) as plain,
        pytest.raises(sdb.EncryptionError, match=r"'new'.*no keyring is configured"),
    ):
        plain.list("assistant")


def test_encryption_from_the_environment() -> None:
    env = {
        "SESSIONS_DB_ENCRYPTION_KEYS": f"old:{KEY1}, new:{KEY2}",
        "SESSIONS_DB_ENCRYPTION_ACTIVE": "new",
        "SESSIONS_DB_REDACT": "tests.test_config:scrub",
    }
    session = load_config(None, environ=env).session
    options = session.manager_options()
    assert options["redact"] is scrub
    assert options["keyring"].key_ids == ["old", "new"]
    assert options["keyring"].active == "new"
    assert KEY1 not in repr(session)
    # Field by field, the configuration given wins: the keys from the environment,
    # the active key from the file, say.
    given = load_config({"encryption": {"active": "old"}}, environ=env).session
    assert given.encryption is not None
    assert given.encryption.keyring().active == "old"
    with pytest.raises(sdb.ConfigurationError, match=r"session\.encryption:.*'new'"):
        load_config({"encryption": {"keys": {"mine": KEY1}}}, environ=env)


def test_pooled_from_the_environment() -> None:
    assert load_config(None, environ={}).session.pooled is False
    assert load_config(None, environ={"SESSIONS_DB_POOLED": "true"}).session.pooled is True
    assert (
        load_config({"pooled": False}, environ={"SESSIONS_DB_POOLED": "1"}).session.pooled is False
    )
    with pytest.raises(sdb.ConfigurationError, match="SESSIONS_DB_POOLED"):
        load_config(None, environ={"SESSIONS_DB_POOLED": "maybe"})
