"""Moving sessions: ``export``, ``import`` and ``copy``."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import click
from rich.table import Table

from .. import migrations
from ..errors import ChecksumMismatchError, SchemaError, SessionsDBError
from ..manager import Manager
from ..privacy import Privacy
from ..urls import redact_url
from ._app import main
from ._archive import (
    SessionDump,
    encode,
    end_record,
    header_record,
    read_session,
    select_sessions,
    session_records,
    write_session,
)
from ._common import (
    EXIT_MISMATCH,
    EXIT_USAGE,
    CLIError,
    check_one_of,
    console,
    each,
    emit_json,
    json_option,
    open_store,
    url_option,
)
from ._reading import MAX_LINE_BYTES, MAX_SESSION_BYTES, Limits, read_archive, size_option
from ._render import plural
from ._stored import checksum_problems, stored_form


@dataclass
class Tally:
    """Sessions, entries and checkpoints counted for one agent."""

    sessions: int = 0
    entries: int = 0
    checkpoints: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return the counts as JSON."""
        return {"sessions": self.sessions, "entries": self.entries, "checkpoints": self.checkpoints}


@dataclass
class Report:
    """What an import or a copy did, per agent, and the checkpoints that failed to verify."""

    source: dict[str, Tally] = field(default_factory=dict)
    target: dict[str, Tally] = field(default_factory=dict)
    mismatches: list[dict[str, str]] = field(default_factory=list)

    def total(self, side: dict[str, Tally]) -> Tally:
        """Return the sum over agents."""
        return Tally(
            sum(t.sessions for t in side.values()),
            sum(t.entries for t in side.values()),
            sum(t.checkpoints for t in side.values()),
        )

    def counts_match(self) -> bool:
        """Whether the target holds what the source had, for every agent."""
        return self.source == self.target


@contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    """Yield where the export goes: stdout, or a file replaced only when complete."""
    if path is None or path == "-":
        yield sys.stdout
        return
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or Path())
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@main.command()
@click.option("--session", "session_id", default=None, help="Export this session.")
@click.option("--agent", default=None, help="Export every session of this agent.")
@click.option("--all", "everything", is_flag=True, help="Export every session of the store.")
@click.option(
    "-o", "--output", metavar="FILE", default=None, help="Write to FILE (default: stdout)."
)
@url_option
@json_option
def export(
    session_id: str | None,
    agent: str | None,
    everything: bool,
    output: str | None,
    url: str,
    as_json: bool,
) -> None:
    """Export sessions as JSON Lines that `import` reads back identically.

    Every branch of every session is kept (entries with their original IDs, parents
    and timestamps), with the checkpoints and their checksums.
    """
    check_one_of({"--session": session_id, "--agent": agent, "--all": everything}, "export")
    if as_json and output in (None, "-"):
        raise CLIError("export --json prints a summary: give the export file with -o", EXIT_USAGE)
    if output not in (None, "-") and not Path(output).parent.is_dir():
        raise CLIError(f"cannot write {output}: no such directory", EXIT_USAGE)
    tally: dict[str, Tally] = {}
    with open_store(url) as manager:
        chosen = select_sessions(manager, session_id=session_id, agent=agent)
        with _output(output) as out:
            out.write(encode(header_record()))
            for meta in each(chosen, "exporting", enabled=output not in (None, "-")):
                dump = read_session(manager.backend, meta.id)
                for record in session_records(dump):
                    out.write(encode(record))
                counts = tally.setdefault(meta.agent_name, Tally())
                counts.sessions += 1
                counts.entries += len(dump.entries)
                counts.checkpoints += len(dump.checkpoints)
            total = Report(source=tally).total(tally)
            out.write(encode(end_record(total.sessions, total.entries, total.checkpoints)))
    if output in (None, "-"):
        return
    if as_json:
        emit_json(
            {
                "output": output,
                "agents": {name: t.as_dict() for name, t in sorted(tally.items())},
                "total": total.as_dict(),
            }
        )
    else:
        console().print(
            f"exported {plural(total.sessions, 'session')} ({total.entries} entries, "
            f"{plural(total.checkpoints, 'checkpoint')}) to {output}"
        )


@main.command("import")
@click.argument("file", metavar="FILE")
@url_option
@click.option("--migrate", is_flag=True, help="Migrate a PostgreSQL schema first.")
@click.option(
    "--max-line-bytes",
    metavar="SIZE",
    type=str,
    callback=size_option,
    default=str(MAX_LINE_BYTES),
    show_default=f"{MAX_LINE_BYTES // 1024**2}M",
    help="The longest line (one record, so one entry) read; a longer one is refused.",
)
@click.option(
    "--max-session-bytes",
    metavar="SIZE",
    type=str,
    callback=size_option,
    default=str(MAX_SESSION_BYTES),
    show_default=f"{MAX_SESSION_BYTES // 1024**2}M",
    help="The most bytes of records one session may take (it is held in memory).",
)
@json_option
def import_(
    file: str,
    url: str,
    migrate: bool,
    max_line_bytes: int,
    max_session_bytes: int,
    as_json: bool,
) -> None:
    """Import an export FILE ('-' for stdin): the same sessions, trees and checkpoints.

    Every record is checked as the API checks what it stores (roles, IDs,
    timestamps, payloads), and every checkpoint's checksum against the history
    in the file (exit 6 if one does not match; checksums detect corruption, not a
    forgery whose checksums were recomputed). A file is checked completely
    before anything is written (not stdin: there a session that fails is not
    written, the ones before it are). The store's privacy applies: payloads are
    redacted and encrypted as the configuration says, and encrypted payloads of
    the file are decrypted with the configured keys. A line longer than
    --max-line-bytes or a session of more than --max-session-bytes is refused
    (exit 2, naming the line). A session that already exists in the store is a
    conflict (exit 7).
    """
    report = Report()
    limits = Limits(max_line_bytes, max_session_bytes)
    with _input(file) as source, _target(url, migrate, "import") as manager:
        if source.seekable():
            for dump in read_archive(source, file, limits):
                _check(dump, manager.privacy, file)
            source.seek(0)
        for dump in read_archive(source, file, limits):
            _write(manager, dump, report)
    _finish(report, "imported", as_json, {"file": file})


@contextmanager
def _target(url: str, migrate: bool, command: str) -> Iterator[Manager]:
    """Open the store written to; an unmigrated one is named, with the ways to migrate it."""
    with ExitStack() as stack:
        try:
            manager = stack.enter_context(open_store(url, create=True, migrate=migrate))
        except SchemaError as error:
            if migrate:
                raise
            raise SchemaError(_not_migrated(url, command)) from error
        yield manager


def _not_migrated(url: str, command: str) -> str:
    try:
        at = migrations.current(url)
    except SessionsDBError:
        at = None
    state = "is not migrated" if at is None else f"is at revision {at}"
    shown = redact_url(url)
    return (
        f"the target store {shown} {state} (this version needs {migrations.head()}): "
        f"run `sessions-db migrate --url {shown}` first, or add --migrate to this {command}"
    )


@contextmanager
def _input(file: str) -> Iterator[IO[bytes]]:
    if file == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = open(file, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise CLIError(f"cannot read {file}: {exc.strerror}", EXIT_USAGE) from None
    with handle:
        yield handle


def _check(dump: SessionDump, privacy: Privacy, where: str) -> None:
    """Refuse a session of an export before anything is written.

    ``ChecksumMismatchError`` if a checkpoint does not match the history in the
    file; ``EncryptionError`` if an encrypted payload does not decrypt.
    """
    for checkpoint_id, problem in checksum_problems(dump):
        raise ChecksumMismatchError(
            f"{where}: checkpoint {checkpoint_id} of session {dump.meta.id} does not match "
            f"its history ({problem}); nothing was imported"
        )
    stored_form(dump, privacy)


def _write(
    target: Manager, dump: SessionDump, report: Report, source: Manager | None = None
) -> None:
    """Write one session (read from an export, or from ``source``) and count it.

    A session whose checkpoints do not match its history is not written, and
    one whose checkpoints do not verify once stored is removed again: both are
    reported as mismatches.
    """
    agent = dump.meta.agent_name
    counts = report.source.setdefault(agent, Tally())
    counts.sessions += 1
    counts.entries += len(dump.entries)
    counts.checkpoints += len(dump.checkpoints)
    problems = checksum_problems(dump)
    stored = report.target.setdefault(agent, Tally())
    if not problems:
        privacy = None if source is None else source.privacy
        written = write_session(target.backend, stored_form(dump, target.privacy, privacy))
        problems = written.mismatches
        if written.stored:
            stored.sessions += 1
            stored.entries += written.entries
            stored.checkpoints += written.checkpoints
    report.mismatches.extend(
        {"session_id": dump.meta.id, "checkpoint_id": cid, "problem": problem}
        for cid, problem in problems
    )


def _finish(report: Report, verb: str, as_json: bool, extra: dict[str, Any]) -> None:
    """Print the per-agent counts; exit 6 if they differ or a checkpoint does not verify."""
    ok = report.counts_match() and not report.mismatches
    agents = sorted(set(report.source) | set(report.target))
    if as_json:
        emit_json(
            {
                **extra,
                "agents": {
                    name: {
                        "source": report.source.get(name, Tally()).as_dict(),
                        "target": report.target.get(name, Tally()).as_dict(),
                    }
                    for name in agents
                },
                "total": report.total(report.target).as_dict(),
                "counts_match": report.counts_match(),
                "checksum_mismatches": report.mismatches,
                "ok": ok,
            }
        )
    else:
        out = console()
        table = Table(
            title=f"{verb.capitalize()} per agent (source → target)",
            title_justify="left",
        )
        table.add_column("agent", no_wrap=True)
        for column in ("sessions", "entries", "checkpoints"):
            table.add_column(column, justify="right")
        table.add_column("match")
        for name in agents:
            src = report.source.get(name, Tally())
            dst = report.target.get(name, Tally())
            table.add_row(
                name,
                *(
                    f"{getattr(src, c)} → {getattr(dst, c)}"
                    for c in ("sessions", "entries", "checkpoints")
                ),
                "yes" if src == dst else "NO",
            )
        out.print(table)
        total = report.total(report.target)
        out.print(
            f"{verb} {plural(total.sessions, 'session')} ({total.entries} entries, "
            f"{plural(total.checkpoints, 'checkpoint')})"
        )
        for problem in report.mismatches:
            out.print(
                f"checkpoint {problem['checkpoint_id']} of session {problem['session_id']} "
                f"does not verify: {problem['problem']}"
            )
    if report.mismatches:
        raise CLIError(
            f"{len(report.mismatches)} checkpoint(s) do not verify, their sessions were not "
            "written: " + ", ".join(p["checkpoint_id"] for p in report.mismatches),
            EXIT_MISMATCH,
        )
    if not report.counts_match():
        raise CLIError(f"{verb} counts differ between source and target", EXIT_MISMATCH)


@main.command()
@click.option("--from", "source_url", required=True, help="The store to copy from.")
@click.option("--to", "target_url", required=True, help="The store to copy into.")
@click.option("--agent", default=None, help="Copy only this agent's sessions.")
@click.option("--migrate", is_flag=True, help="Migrate the target PostgreSQL schema first.")
@json_option
def copy(source_url: str, target_url: str, agent: str | None, migrate: bool, as_json: bool) -> None:
    """Copy every session (or one agent's) from one store to another, e.g. SQLite to PostgreSQL.

    Each session is read back from the target and compared; at the end the
    sessions, entries and checkpoints per agent must match (exit 6 if not).
    Payloads are redacted and encrypted as the configuration says, like every
    write (encrypted ones are decrypted with the configured keys first).
    """
    if source_url == target_url:
        raise CLIError("--from and --to name the same store", EXIT_USAGE)
    report = Report()
    with (
        open_store(source_url) as source,
        _target(target_url, migrate, "copy") as target,
    ):
        chosen = select_sessions(source, agent=agent)
        copied: dict[str, set[str]] = {}
        for meta in each(chosen, "copying", enabled=not as_json):
            _write(target, read_session(source.backend, meta.id), report, source)
            copied.setdefault(meta.agent_name, set()).add(meta.id)
        # Count the sessions again from the target's own listing.
        for name, wanted in copied.items():
            listed = {m.id for m in select_sessions(target, agent=name)}
            report.target[name].sessions = len(listed & wanted)
    _finish(
        report, "copied", as_json, {"from": redact_url(source_url), "to": redact_url(target_url)}
    )
