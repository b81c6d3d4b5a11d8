"""Configuration: the seed's YAML ``session:`` block, its ``agents:`` list, and the environment.

A configuration document looks like the seed's::

    session:
      enabled: true            # false: a manager that keeps nothing (stateless agents)
      store: sqlite            # file | sqlite | postgres
      base_dir: ~/.sessions_db/sessions   # the file store's directory
      url: sqlite:///sessions.db          # the SQL store's URL
      schema: sessions_db      # PostgreSQL schema of the tables (optional)
      statement_timeout: 60s   # PostgreSQL: longest statement (0: no limit)
      lock_timeout: 10s        # PostgreSQL: longest wait for a lock (0: no limit)
      pooled: false            # PostgreSQL: true behind PgBouncer in transaction mode
      read_url: postgresql://app@replica/app   # PostgreSQL: a streaming replica of url, for reads
      replica_max_lag: 1s      # how far behind the primary a replica read may be (0: not at all)
      checkpoint:
        auto_save: true        # take checkpoints automatically
        interval: 5m           # 30s, 5m, 1h, 1d, or combined: 1h30m
      redact: myapp.pii:scrub  # a function payload -> payload, run before storage
      encryption:              # payloads encrypted at rest (sessions_db.crypto)
        keys: {"2025-06": "<base64 key>"}   # key ID -> key (generate_key())
        active: "2025-06"      # the key new writes use (optional with one key)
        allow_plaintext: false # true only to read a store written before encryption
    agents:
      - name: assistant
        session:
          enabled: false       # this agent runs statelessly in the Runtime

Where the values come from (:func:`load_config`), for each field, the first that
sets it wins:

1. the configuration given (``connect(config=...)``: a YAML file or a dict), or,
   when none is given, the YAML file named by ``SESSIONS_DB_CONFIG``;
2. the environment: ``SESSIONS_DB_ENABLED``, ``SESSIONS_DB_STORE``,
   ``SESSIONS_DB_URL``, ``SESSIONS_DB_BASE_DIR``, ``SESSIONS_DB_SCHEMA``,
   ``SESSIONS_DB_STATEMENT_TIMEOUT``, ``SESSIONS_DB_LOCK_TIMEOUT``,
   ``SESSIONS_DB_POOLED``, ``SESSIONS_DB_READ_URL``, ``SESSIONS_DB_REPLICA_MAX_LAG``,
   ``SESSIONS_DB_CHECKPOINT_AUTO_SAVE``,
   ``SESSIONS_DB_CHECKPOINT_INTERVAL``,
   ``SESSIONS_DB_REDACT``, ``SESSIONS_DB_ENCRYPTION_KEYS`` (``kid1:key1,kid2:key2``),
   ``SESSIONS_DB_ENCRYPTION_ACTIVE``, ``SESSIONS_DB_ENCRYPTION_ALLOW_PLAINTEXT``,
   and the seed's ``AIXGO_SESSION_DIR`` (the
   file store's directory, after ``SESSIONS_DB_BASE_DIR``) and
   ``POSTGRES_CONNECTION_STRING`` (the URL, after ``SESSIONS_DB_URL``, used only
   when the store is ``postgres``);
3. the defaults.

Every invalid value raises :class:`~sessions_db.ConfigurationError` naming the
field (``session.checkpoint.interval: ...``); no message, nor the repr of a
configuration, shows an encryption key or a URL's password.

The configuration and the environment are trusted input: ``session.redact`` (or
``SESSIONS_DB_REDACT``) names code that is imported as soon as the configuration
loads, for every command, read-only ones included.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .crypto import Keyring
from .errors import ConfigurationError
from .ids import schema_name
from .urls import redact_url

#: The file store's directory when none is configured.
DEFAULT_BASE_DIR = "~/.sessions_db/sessions"

StoreKind = Literal["file", "sqlite", "postgres"]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> timedelta:
    """Return the duration ``value`` names: ``"30s"``, ``"5m"``, ``"1h30m"``, ``"2d"``.

    A :class:`~datetime.timedelta` or a number of seconds is taken as is. The
    duration must be positive. ``ValueError`` otherwise.
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if not text or _PART.sub("", text):
            raise ValueError(f"{value!r} is not a duration like 30s, 5m, 1h or 1h30m")
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
        result = timedelta(seconds=seconds)
    else:
        raise ValueError(f"{value!r} is not a duration like 30s, 5m, 1h or 1h30m")
    if result <= timedelta(0):
        raise ValueError(f"{value!r}: the duration must be positive")
    return result


def parse_timeout(value: object) -> float | None:
    """Return a timeout in seconds: a duration (``"30s"``, ``"500ms"``, ``"2"``: seconds), or 0.

    ``0`` (or ``"off"``) means no limit; ``None`` stays ``None`` (the default).
    ``ValueError`` otherwise.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "off":
            return 0.0
        if re.fullmatch(r"\d+(?:\.\d+)?", text):  # a bare number (an environment variable)
            value = float(text)
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0.0
    return parse_duration(value).total_seconds()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CheckpointConfig(_Model):
    """The ``session.checkpoint`` block: automatic checkpoints."""

    auto_save: bool = False
    interval: timedelta = timedelta(minutes=5)

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, value: object) -> timedelta:
        return parse_duration(value)


def import_callable(path: str) -> Callable[..., Any]:
    """Return the callable a ``"package.module:function"`` path names; ``ValueError`` if none."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{path!r} is not an import path like 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
        for name in attribute.split("."):
            target = getattr(target, name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {path!r}: {exc}") from None
    if not callable(target):
        raise ValueError(f"{path!r} is not callable")
    return target  # type: ignore[no-any-return]


def _key_pairs(value: object) -> object:
    """Read ``SESSIONS_DB_ENCRYPTION_KEYS`` text (``kid1:key1,kid2:key2``) as a mapping."""
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) and isinstance(v, str | SecretStr) for k, v in value.items()):
            # Said without the entry: a key might be where its ID should be.
            raise ValueError("must map key IDs (text) to base64 keys (text)")
        return value
    if not isinstance(value, str):
        return value
    keys: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        key_id, sep, key = item.partition(":")
        if not sep or not key_id.strip() or not key.strip():
            raise ValueError("expected key_id:base64_key pairs separated by commas")
        keys[key_id.strip()] = key.strip()
    return keys


class EncryptionConfig(_Model):
    """The ``session.encryption`` block: the keyring payloads are encrypted with."""

    keys: dict[str, SecretStr]
    active: str | None = None
    allow_plaintext: bool = False

    @field_validator("keys", mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        return _key_pairs(value)

    @model_validator(mode="after")
    def _valid_keyring(self) -> EncryptionConfig:
        try:
            self.keyring()
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
        return self

    def keyring(self) -> Keyring:
        """Return the :class:`~sessions_db.crypto.Keyring` this block describes."""
        keys = {key_id: key.get_secret_value() for key_id, key in self.keys.items()}
        config = {"keys": keys, "active": self.active, "allow_plaintext": self.allow_plaintext}
        return Keyring.from_config(config)


class SessionConfig(_Model):
    """The ``session:`` block."""

    enabled: bool = True
    store: StoreKind | None = None
    base_dir: str | None = None
    url: str | None = None
    db_schema: str | None = Field(default=None, alias="schema")
    #: PostgreSQL statement and lock timeouts, seconds (``None``: the library's defaults).
    statement_timeout: float | None = None
    lock_timeout: float | None = None
    #: PostgreSQL behind a pooler in transaction mode (PgBouncer): no prepared statements.
    pooled: bool = False
    #: A streaming replica of ``url`` that reads go to (see :mod:`sessions_db.sql.replica`).
    read_url: str | None = None
    #: Seconds a replica read may be behind the primary (``None``: the library's default).
    replica_max_lag: float | None = None
    checkpoint: CheckpointConfig = CheckpointConfig()
    redact: str | None = None
    encryption: EncryptionConfig | None = None

    @field_validator("db_schema")
    @classmethod
    def _schema(cls, value: str | None) -> str | None:
        try:
            return schema_name(value)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("statement_timeout", "lock_timeout", "replica_max_lag", mode="before")
    @classmethod
    def _timeout(cls, value: object) -> float | None:
        return parse_timeout(value)

    @field_validator("redact")
    @classmethod
    def _redact(cls, value: str | None) -> str | None:
        if value is not None:
            import_callable(value)
        return value

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            hidden = name in ("url", "read_url") and value is not None
            yield name, redact_url(value) if hidden else value

    @property
    def auto_checkpoint(self) -> timedelta | None:
        """The automatic checkpoint interval, or ``None`` when ``auto_save`` is off."""
        return self.checkpoint.interval if self.checkpoint.auto_save else None

    def manager_options(self) -> dict[str, Any]:
        """Return the options of a manager this block configures.

        ``redact`` (the imported function), ``keyring`` and ``auto_checkpoint``, as
        :class:`~sessions_db.Manager` and the asyncio manager take them.
        """
        return {
            "redact": None if self.redact is None else import_callable(self.redact),
            "keyring": None if self.encryption is None else self.encryption.keyring(),
            "auto_checkpoint": self.auto_checkpoint,
        }


class AgentSessionConfig(_Model):
    """An agent's ``session:`` block."""

    enabled: bool = True


class AgentConfig(BaseModel):
    """One entry of the ``agents:`` list (other keys, like ``role`` or ``model``, are kept)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    session: AgentSessionConfig = AgentSessionConfig()


class Config(_Model):
    """A whole configuration document: ``session:`` and ``agents:``."""

    session: SessionConfig = SessionConfig()
    agents: list[AgentConfig] = []

    def agent_session_enabled(self, agent_name: str) -> bool:
        """Whether ``agent_name`` keeps sessions (``False`` if sessions are off altogether)."""
        if not self.session.enabled:
            return False
        for agent in self.agents:
            if agent.name == agent_name:
                return agent.session.enabled
        return True


ConfigSource = Config | SessionConfig | Mapping[str, Any] | str | os.PathLike[str]

_ENV_FIELDS: list[tuple[str, tuple[str, ...]]] = [
    ("SESSIONS_DB_ENABLED", ("enabled",)),
    ("SESSIONS_DB_STORE", ("store",)),
    ("SESSIONS_DB_URL", ("url",)),
    ("SESSIONS_DB_BASE_DIR", ("base_dir",)),
    ("AIXGO_SESSION_DIR", ("base_dir",)),
    ("SESSIONS_DB_SCHEMA", ("schema",)),
    ("SESSIONS_DB_STATEMENT_TIMEOUT", ("statement_timeout",)),
    ("SESSIONS_DB_LOCK_TIMEOUT", ("lock_timeout",)),
    ("SESSIONS_DB_POOLED", ("pooled",)),
    ("SESSIONS_DB_READ_URL", ("read_url",)),
    ("SESSIONS_DB_REPLICA_MAX_LAG", ("replica_max_lag",)),
    ("SESSIONS_DB_CHECKPOINT_AUTO_SAVE", ("checkpoint", "auto_save")),
    ("SESSIONS_DB_CHECKPOINT_INTERVAL", ("checkpoint", "interval")),
    ("SESSIONS_DB_REDACT", ("redact",)),
    ("SESSIONS_DB_ENCRYPTION_KEYS", ("encryption", "keys")),
    ("SESSIONS_DB_ENCRYPTION_ACTIVE", ("encryption", "active")),
    ("SESSIONS_DB_ENCRYPTION_ALLOW_PLAINTEXT", ("encryption", "allow_plaintext")),
]


def _is_set(block: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(block, Mapping) or key not in block:
            return False
        block = block[key]
    return True


def _env_block(
    environ: Mapping[str, str], given: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Return the fields of the ``session:`` block that the environment sets and ``given`` lacks.

    Also returns, for each of them, the name of the variable that set it.
    """
    block: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, path in _ENV_FIELDS:
        value = environ.get(name)
        if value is None or value == "" or _is_set(given, path):
            continue
        target = block
        for key in path[:-1]:
            target = target.setdefault(key, {})
        if path[-1] not in target:
            target[path[-1]] = value
            origin[".".join(path)] = name
    return block, origin


def _merge(base: dict[str, Any], fallback: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with the fields it lacks taken from ``fallback`` (recursively)."""
    merged = dict(base)
    for key, value in fallback.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(merged[key], Mapping) and isinstance(value, Mapping):
            merged[key] = _merge(dict(merged[key]), value)
    return merged


def _read_yaml(path: str | os.PathLike[str]) -> Any:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read configuration file {os.fspath(path)!r}: {exc}"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{os.fspath(path)!r} is not valid YAML: {exc}") from None


def _document(source: ConfigSource) -> dict[str, Any]:
    """Return ``source`` as a plain document with a ``session`` key."""
    if isinstance(source, Config):
        return source.model_dump(by_alias=True, exclude_unset=True)
    if isinstance(source, SessionConfig):
        return {"session": source.model_dump(by_alias=True, exclude_unset=True)}
    data = _read_yaml(source) if isinstance(source, str | os.PathLike) else source
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"a configuration must be a mapping, got {type(data).__name__}")
    if "session" in data or "agents" in data:
        return dict(data)
    return {"session": dict(data)}  # the session block on its own


def _field_name(loc: tuple[int | str, ...], origin: Mapping[str, str]) -> str:
    name = ".".join(str(part) for part in loc)
    if loc and loc[0] == "session":
        variable = origin.get(".".join(str(part) for part in loc[1:]))
        if variable:
            return f"{name} (from ${variable})"
    return name


def load_config(
    config: ConfigSource | None = None, *, environ: Mapping[str, str] | None = None
) -> Config:
    """Return the configuration, from ``config``, the environment and the defaults.

    ``config`` is a YAML file's path, a dict (the whole document, with a
    ``session:`` key, or the ``session`` block alone) or a :class:`Config`. When
    it is ``None``, the YAML file named by ``SESSIONS_DB_CONFIG`` is read, if the
    variable is set. Fields the configuration leaves out come from the
    environment (see the module's documentation), then from the defaults.
    ``ConfigurationError`` names the field of any invalid value.
    """
    env = os.environ if environ is None else environ
    if config is None and env.get("SESSIONS_DB_CONFIG"):
        config = env["SESSIONS_DB_CONFIG"]
    document = {} if config is None else _document(config)
    session = document.get("session") or {}
    if not isinstance(session, Mapping):
        raise ConfigurationError(f"session: expected a mapping, got {type(session).__name__}")
    from_env, origin = _env_block(env, session)
    merged = _merge(dict(session), from_env)
    # The seed's POSTGRES_CONNECTION_STRING names the PostgreSQL store's URL.
    if "url" not in merged and merged.get("store") == "postgres":
        pg = env.get("POSTGRES_CONNECTION_STRING")
        if pg:
            merged["url"] = pg
            origin["url"] = "POSTGRES_CONNECTION_STRING"
    try:
        return Config.model_validate({**document, "session": merged})
    except ValidationError as exc:
        problems = "; ".join(
            f"{_field_name(err['loc'], origin)}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None


__all__ = [
    "DEFAULT_BASE_DIR",
    "AgentConfig",
    "AgentSessionConfig",
    "CheckpointConfig",
    "Config",
    "ConfigSource",
    "EncryptionConfig",
    "SessionConfig",
    "StoreKind",
    "import_callable",
    "load_config",
    "parse_duration",
    "parse_timeout",
]
