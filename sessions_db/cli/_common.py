"""What every command shares: exit codes, error reporting, store opening, output."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .. import ids
from ..connect import connect
from ..errors import (
    CheckpointNotFoundError,
    ChecksumMismatchError,
    ConfigurationError,
    DuplicateEntryError,
    DuplicateKeyError,
    EntryNotFoundError,
    InvalidArgumentError,
    InvalidIDError,
    SchemaError,
    SessionNotFoundError,
    SessionsDBError,
    StorageTimeoutError,
    StorageUnavailableError,
)
from ..manager import Manager, Session
from ..urls import shown

#: Exit codes scripts can rely on.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4
EXIT_SCHEMA = 5
EXIT_MISMATCH = 6
EXIT_CONFLICT = 7

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  1  any other error
  2  usage: bad option, store URL, ID, time, duration or import file
  3  not found: unknown session, key, checkpoint or entry
  4  store unreachable: database down, missing SQLite file or directory
  5  schema not migrated (run `sessions-db migrate`)
  6  check failed: a checksum (verify, import, copy) or the counts of a copy
  7  conflict: a session being imported or copied already exists
"""

T = TypeVar("T")


class CLIError(Exception):
    """An error the command line reports as one line with its own exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def exit_code(error: SessionsDBError) -> int:
    """Return the exit code that reports ``error``."""
    if isinstance(error, SessionNotFoundError | CheckpointNotFoundError | EntryNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(error, StorageUnavailableError | StorageTimeoutError):
        return EXIT_UNAVAILABLE
    if isinstance(error, SchemaError):
        return EXIT_SCHEMA
    if isinstance(error, ChecksumMismatchError):
        return EXIT_MISMATCH
    if isinstance(error, DuplicateEntryError | DuplicateKeyError):
        return EXIT_CONFLICT
    if isinstance(error, ConfigurationError | InvalidIDError | InvalidArgumentError):
        return EXIT_USAGE
    return EXIT_ERROR


# C0 controls (newline and tab apart), DEL, C1 controls (CSI among them), the
# Unicode line separators and the bidirectional marks that reorder what a
# terminal shows.
_OTHERS = r"\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(rf"[\x00-\x08\x0b-\x1f{_OTHERS}]")
_CONTROL_OR_SPACE = re.compile(rf"[\x00-\x1f{_OTHERS}]")
_JSON_UNSAFE = re.compile(f"[{_OTHERS}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(text: str, *, lines: bool = False) -> str:
    r"""Return stored text safe to print: control characters shown as escapes (``\x1b``).

    What a store holds is data, never terminal commands: escape sequences, bells,
    carriage returns and bidirectional overrides are written out visibly instead
    of being sent to the terminal. With ``lines``, newlines and tabs are kept.
    """
    return (_CONTROL if lines else _CONTROL_OR_SPACE).sub(_escape, text)


def one_line(text: str) -> str:
    """Return ``text`` with its line breaks and runs of spaces collapsed."""
    return " ".join(text.split())


def fail(message: str, code: int) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {plain(one_line(message))}", err=True)
    sys.exit(code)


class Group(click.Group):
    """A group that reports every error as one line on stderr with a meaningful exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except SessionsDBError as error:
            fail(str(error), exit_code(error))
        except CLIError as error:
            fail(str(error), error.code)
        except BrokenPipeError:
            # The reader went away (``| head``): not an error of ours.
            sys.stderr.close()
            os._exit(EXIT_OK)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as error:
            if os.environ.get("SESSIONS_DB_TRACEBACK"):
                raise
            fail(f"unexpected {type(error).__name__}: {error}", EXIT_ERROR)
        return None  # pragma: no cover - fail() exits


url_option = click.option(
    "--url",
    envvar="SESSIONS_DB_URL",
    required=True,
    help="Store URL (postgresql://..., sqlite:///path, file:///dir); default $SESSIONS_DB_URL.",
)

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document (stable keys) instead."
)


def scheme(url: str) -> str:
    """Return the lowercased scheme of a store URL (``""`` when there is none)."""
    head, sep, _ = url.partition(":")
    return head.lower() if sep else ""


def store_path(url: str) -> Path | None:
    """Return the file or directory a SQLite or file store URL names (``None`` otherwise)."""
    kind = scheme(url)
    if kind.startswith("sqlite"):
        try:
            database = make_url(url).database
        except (ArgumentError, ValueError):  # not chained: its text shows the URL
            raise ConfigurationError(f"not a database URL: {shown(url)}") from None
        return Path(database) if database and database != ":memory:" else None
    if kind == "file":
        rest = url[len("file:") :]
        if rest.startswith("//"):
            rest = rest[2:]
            host, slash, path = rest.partition("/")
            if host not in ("", "localhost"):
                raise ConfigurationError(f"a file store URL names a local directory: {shown(url)}")
            rest = slash + path
        return Path(rest).expanduser() if rest else None
    return None


#: The first bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"


def check_sqlite_file(url: str) -> None:
    """Raise :class:`ConfigurationError` if ``url`` names an existing file that is not SQLite.

    An empty file is a new database; anything else must start with SQLite's
    header, so that a wrong path (``sqlite:////etc/passwd``) is reported as such.
    """
    if not scheme(url).startswith("sqlite"):
        return
    path = store_path(url)
    if path is None or not path.is_file():
        return
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError:
        return  # opening it reports the problem
    if head and head != SQLITE_HEADER:
        raise ConfigurationError(
            f"{path} is not a sessions_db SQLite file: it is not an SQLite database at all"
        )


@contextmanager
def open_store(url: str, *, create: bool = False, migrate: bool = False) -> Iterator[Manager]:
    """Open the store ``url`` names; close it afterwards.

    Unless ``create``, a SQLite file or file-store directory must already exist,
    so that a mistyped path is reported instead of silently becoming a new store.
    """
    path = store_path(url)
    if path is not None and not create and not path.exists():
        what = "SQLite database" if scheme(url).startswith("sqlite") else "store directory"
        raise StorageUnavailableError(f"no {what} at {path}")
    check_sqlite_file(url)
    manager = connect(url, migrate=True if migrate else None)
    try:
        yield manager
    finally:
        manager.close()


def emit_json(document: Any) -> None:
    r"""Print ``document`` as one JSON document on stdout.

    JSON escapes the C0 controls itself; the other characters a terminal acts on
    (DEL, C1, bidirectional marks) are written as ``\uXXXX`` too, which reads
    back as the same string.
    """
    text = json.dumps(document, ensure_ascii=False, indent=2, sort_keys=False)
    click.echo(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def console() -> Console:
    """Return the console for human output on stdout.

    When stdout is not a terminal (a pipe, a file) the tables are laid out wide
    instead of at 80 columns, so that IDs and content are not cut.
    """
    # Never markup or emoji codes: strings the store holds ("[/bold]", ":x:") print as they are.
    if sys.stdout.isatty():
        return Console(highlight=False, markup=False, emoji=False)
    width = int(os.environ.get("COLUMNS", "0") or 0) or 200
    return Console(highlight=False, markup=False, emoji=False, width=width)


def progress(enabled: bool = True) -> Progress:
    """Return a progress bar on stderr, shown only on a terminal."""
    err = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not (enabled and err.is_terminal),
    )


def iso(value: datetime | None) -> str | None:
    """Return ``value`` as ISO 8601 UTC text with microseconds and ``Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def when(value: datetime) -> str:
    """Return ``value`` for people: UTC, to the second."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


_DURATION = re.compile(r"(\d+)\s*(w|d|h|m|s)", re.IGNORECASE)
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str) -> timedelta:
    """Parse ``30d``, ``12h``, ``90m``, ``1w``, ``45s`` or a sum such as ``1d12h``."""
    compact = text.strip().lower()
    if not compact or _DURATION.sub("", compact).strip():
        raise CLIError(
            f"invalid duration {text!r}: use a number and a unit, e.g. 30d, 12h, 90m", EXIT_USAGE
        )
    total = timedelta()
    for number, unit in _DURATION.findall(compact):
        total += timedelta(**{_UNITS[unit]: int(number)})
    return total


def parse_time(text: str) -> datetime:
    """Parse a time: ISO 8601 (``2026-03-01``, ``2026-03-01T09:00:00Z``) or a duration ago.

    A time without an offset is UTC; a duration (``30d``, ``12h``, ``1d12h``)
    means that long before now.
    """
    compact = text.strip()
    if compact and not _DURATION.sub("", compact.lower()).strip():
        return datetime.now(UTC) - parse_duration(compact)
    try:
        value = datetime.fromisoformat(compact)
    except ValueError:
        raise CLIError(
            f"invalid time {text!r}: use ISO 8601 (2026-03-01, 2026-03-01T09:00:00Z) "
            "or a duration ago (30d, 12h)",
            EXIT_USAGE,
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def parse_metadata(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Parse ``key=value`` pairs into a metadata filter.

    A value that parses as JSON (``3``, ``true``, ``null``, ``"x"``, ``[1]``,
    ``{"a": 1}``) is that JSON value; any other value is the string as given
    (``team=support``). A pair without ``=``, with an empty key, or a key given
    twice is a usage error.
    """
    wanted: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CLIError(f"invalid --metadata {pair!r}: use KEY=VALUE", EXIT_USAGE)
        if key in wanted:
            raise CLIError(f"invalid --metadata: key {key!r} is given twice", EXIT_USAGE)
        try:
            # NaN and Infinity are not JSON: such a value is a string.
            wanted[key] = json.loads(raw, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            wanted[key] = raw
    return wanted


def summarize(value: dict[str, Any], limit: int = 60) -> str:
    """Return a short one-line rendering of a JSON object."""
    if not value:
        return ""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def each(items: list[T], description: str, enabled: bool) -> Iterator[T]:
    """Yield ``items`` while a progress bar (on a terminal) counts them."""
    with progress(enabled and len(items) > 1) as bar:
        task = bar.add_task(description, total=len(items))
        for item in items:
            yield item
            bar.advance(task)


def key_lookup_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--agent`` and ``--key``: name a session by its agent and external key."""
    command = click.option(
        "--key",
        default=None,
        help="Instead of SESSION: the session's external key (with --agent).",
    )(command)
    return click.option(
        "--agent", "key_agent", default=None, help="The agent of the session named by --key."
    )(command)


def check_lookup(session_id: str | None, agent: str | None, key: str | None) -> None:
    """Check that a session is named once: by its ID, or by ``--agent`` and ``--key``."""
    if key is None and agent is not None:
        raise CLIError("--agent names the agent of --key: give --key too", EXIT_USAGE)
    if key is not None and agent is None:
        raise CLIError("--key needs --agent: keys are unique per agent", EXIT_USAGE)
    if (session_id is None) == (key is None):
        raise CLIError("give SESSION, or --agent and --key (not both)", EXIT_USAGE)
    if session_id is not None:
        ids.session_id(session_id)


def lookup(manager: Manager, session_id: str | None, agent: str | None, key: str | None) -> Session:
    """Return the session named by its ID, or by its agent and external key."""
    if session_id is not None or agent is None or key is None:
        return manager.get(str(session_id))
    return manager.get_by_key(agent, key)


def check_one_of(options: dict[str, object], what: str) -> str:
    """Return the name of the one option given among ``options``; usage error otherwise."""
    given = [name for name, value in options.items() if value]
    if len(given) != 1:
        names = ", ".join(options)
        raise CLIError(f"{what}: give exactly one of {names}", EXIT_USAGE)
    return given[0]
