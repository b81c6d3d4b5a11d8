"""No error message, repr or command output shows a key, a URL's password or a payload."""

from __future__ import annotations

import base64
import os
import traceback
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import make_url

import sessions_db as sdb
from sessions_db import Message
from sessions_db.cli import main
from sessions_db.config import load_config
from sessions_db.crypto import Keyring, generate_key

KEY = generate_key()  # 32 bytes: 44 characters, one "="
KEY16 = base64.urlsafe_b64encode(os.urandom(16)).decode()
KEY24 = base64.urlsafe_b64encode(os.urandom(24)).decode()  # 32 characters, a valid key ID
PASSWORD = "hunter2-Zq9"


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a command in this process; return its exit code and everything it printed."""
    result = CliRunner().invoke(main, list(args), env={"SESSIONS_DB_URL": None, **(env or {})})
    return result.exit_code, result.stdout + result.stderr


# Each: the environment, and the secret it holds in the wrong place.
MALFORMED_ENVIRONMENTS = [
    pytest.param({"SESSIONS_DB_ENCRYPTION_KEYS": f"{KEY}:2025-06"}, KEY, id="key-and-id-swapped"),
    pytest.param({"SESSIONS_DB_ENCRYPTION_KEYS": f"{KEY24}:k1"}, KEY24, id="key24-as-id"),
    pytest.param({"SESSIONS_DB_ENCRYPTION_KEYS": f"{KEY16}:k1"}, KEY16, id="key16-as-id"),
    pytest.param({"SESSIONS_DB_ENCRYPTION_KEYS": KEY}, KEY, id="key-without-id"),
    pytest.param({"SESSIONS_DB_ENCRYPTION_KEYS": f"k1:{KEY};k2:{KEY16}"}, KEY, id="semicolons"),
    pytest.param({"SESSIONS_DB_ENCRYPTION_KEYS": f"k1:{KEY[:-2]}"}, KEY[:-2], id="cut-short"),
    pytest.param(
        {"SESSIONS_DB_ENCRYPTION_KEYS": f"k1:{KEY}", "SESSIONS_DB_ENCRYPTION_ACTIVE": KEY},
        KEY,
        id="key-as-active",
    ),
    pytest.param(
        {"SESSIONS_DB_ENCRYPTION_KEYS": f"k1:{KEY}", "SESSIONS_DB_ENCRYPTION_ACTIVE": KEY24},
        KEY24,
        id="key24-as-active",
    ),
]


@pytest.mark.parametrize(("environ", "secret"), MALFORMED_ENVIRONMENTS)
def test_malformed_key_variables_never_echo_a_key(
    environ: dict[str, str], secret: str, tmp_path: Path
) -> None:
    with pytest.raises(sdb.ConfigurationError) as caught:
        load_config(environ=environ)
    message = str(caught.value)
    assert "session.encryption" in message
    assert secret not in message
    assert secret not in "".join(traceback.format_exception(caught.value))
    (tmp_path / "store").mkdir()
    code, output = cli("list", "support", "--url", (tmp_path / "store").as_uri(), env=environ)
    assert code == sdb.cli.EXIT_USAGE
    assert "session.encryption" in output
    assert secret not in output


def test_malformed_key_mappings_never_echo_a_key() -> None:
    for keys in ({KEY: 2025}, {KEY: None}, {KEY: ["x"]}):
        with pytest.raises(sdb.ConfigurationError) as caught:
            load_config({"encryption": {"keys": keys}}, environ={})
        assert KEY not in str(caught.value)
    for ring in ({KEY: "k1"}, {KEY24: "k1"}, {"k1": KEY, "k2": KEY24[:-4]}):
        with pytest.raises(sdb.ConfigurationError) as caught:
            Keyring(ring)
        assert KEY not in str(caught.value)
        assert KEY24 not in str(caught.value)
    with pytest.raises(sdb.ConfigurationError, match="not in the keyring") as caught:
        Keyring({"k1": KEY}, active=KEY16)
    assert KEY16 not in str(caught.value)


def test_a_configuration_shows_neither_keys_nor_passwords() -> None:
    config = load_config(
        {
            "url": f"postgresql://app:{PASSWORD}@db.example/sessions",
            "encryption": {"keys": {"k1": KEY}},
        },
        environ={},
    )
    for shown in (repr(config), str(config), repr(config.session), str(config.session)):
        assert PASSWORD not in shown
        assert KEY not in shown
        assert "postgresql://app:***@db.example/sessions" in shown
    assert config.session.url == f"postgresql://app:{PASSWORD}@db.example/sessions"


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://user:{PASSWORD}@db.example/x",
        f"postgresql://user:{PASSWORD}@db.example:notaport/x",
        f"file://user:{PASSWORD}@host/dir",
        f"redis://db.example/0?password={PASSWORD}",
    ],
)
def test_url_errors_never_show_the_password(url: str) -> None:
    with pytest.raises(sdb.ConfigurationError) as caught:
        sdb.connect(url)
    assert PASSWORD not in str(caught.value)
    assert "***" in str(caught.value)
    assert PASSWORD not in "".join(traceback.format_exception(caught.value))
    code, output = cli("list", "support", "--url", url)
    assert code == sdb.cli.EXIT_USAGE
    assert PASSWORD not in output


@pytest.mark.postgres
def test_a_refused_login_does_not_show_the_password(pg_database: str) -> None:
    wrong = make_url(pg_database).set(password=PASSWORD).render_as_string(hide_password=False)
    code, output = cli("list", "support", "--url", wrong)
    assert code == sdb.cli.EXIT_UNAVAILABLE, output
    assert PASSWORD not in output


def test_redact_url() -> None:
    from sessions_db.urls import redact_url

    assert redact_url("postgresql://u:p@h/db") == "postgresql://u:***@h/db"
    assert redact_url("postgresql://u:p@ss/w@h/db?x=1") == "postgresql://u:***@h/db?x=1"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact_url("postgresql://h/db?sslmode=require&password=p") == (
        "postgresql://h/db?sslmode=require&password=***"
    )
    assert redact_url("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
    assert redact_url("file:///tmp/dir") == "file:///tmp/dir"


# -- the redact hook ---------------------------------------------------------------------


def test_a_failing_redact_hook_does_not_leak_the_payload(tmp_path: Path) -> None:
    secret = "card 4111-1111-1111-1111"

    def hook(payload: dict[str, Any]) -> dict[str, Any]:
        raise ValueError(f"cannot scrub {payload}")

    with sdb.Manager(
        sdb.SQLBackend(f"sqlite:///{tmp_path / 's.db'}", migrate=True), redact=hook
    ) as mgr:
        s = mgr.create("support")
        with pytest.raises(sdb.PayloadError, match="redact hook failed with ValueError") as caught:
            s.append_message(Message.new("user", {"content": secret}))
        assert secret not in str(caught.value)
        assert secret not in "".join(traceback.format_exception(caught.value))
        assert s.get_messages() == []
