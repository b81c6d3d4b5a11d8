"""Looking after a store: ``prune``, ``stats``, ``repair`` and ``verify``."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..backend import StorageBackend
from ..connect import default_url
from ..file import FileBackend
from ..manager import Manager
from ..rules import DEFAULT_PRUNE_BATCH, MAX_PRUNE_BATCH
from ..sql.backend import SQLBackend
from ..sql.errors import translate
from ..sql.schema import PREFIX, VERSION_TABLE
from ..types import utcnow
from ._app import main
from ._archive import select_sessions, verify_checkpoints
from ._common import (
    EXIT_ERROR,
    EXIT_MISMATCH,
    CLIError,
    console,
    each,
    emit_json,
    iso,
    json_option,
    open_store,
    parse_duration,
    scheme,
    store_path,
    url_option,
    when,
)
from ._render import plural

#: Above this many sessions, a prune's human output gives the count, not every ID.
LISTED_IDS = 1000


@main.command()
@click.option(
    "--older-than", "older_than", required=True, help="Age of the last update: 30d, 12h, 90m..."
)
@click.option("--agent", default=None, help="Only this agent's sessions.")
@click.option("--dry-run", is_flag=True, help="List what would be deleted, delete nothing.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_PRUNE_BATCH),
    default=DEFAULT_PRUNE_BATCH,
    show_default=True,
    help="Sessions deleted per transaction.",
)
@url_option
@json_option
def prune(
    older_than: str, agent: str | None, dry_run: bool, batch_size: int, url: str, as_json: bool
) -> None:
    """Delete the sessions not updated for a while, with their entries and checkpoints.

    The sessions go in batches, each its own transaction (no long lock, no giant
    transaction); progress goes to stderr. Interrupted (Ctrl-C), the batches
    done stay deleted and the rest is untouched: run the same command again to
    go on.
    """
    cutoff = utcnow() - parse_duration(older_than)
    with open_store(url) as manager:
        if dry_run:
            removed = manager.prune(cutoff, agent_name=agent, dry_run=True)
        else:
            removed = _prune_in_batches(manager, cutoff, agent, batch_size)
    removed.sort()
    if as_json:
        emit_json(
            {
                "dry_run": dry_run,
                "older_than": older_than,
                "cutoff": iso(cutoff),
                "agent": agent,
                "count": len(removed),
                "sessions": removed,
            }
        )
        return
    out = console()
    verb = "would delete" if dry_run else "deleted"
    scope = f" of agent {agent}" if agent else ""
    listed = len(removed) <= LISTED_IDS
    out.print(
        f"{verb} {plural(len(removed), 'session')}{scope} not updated since {when(cutoff)} UTC"
        + ((":" if removed else "") if listed else " (IDs listed with --json)")
    )
    if listed:
        for session_id in removed:
            out.print(f"  {session_id}")


class _Progress:
    """Lines on stderr while a prune runs: after its first batch, then at most once a second."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.shown = 0.0
        self.batches = 0
        self.deleted = 0

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        batches = plural(self.batches, "batch", "batches")
        return (
            f"{plural(self.deleted, 'session')} deleted in {batches} "
            f"({self.deleted / elapsed:,.0f}/s, {elapsed:.1f} s)"
        )

    def update(self, deleted: int) -> None:
        self.batches += 1
        self.deleted += deleted
        now = time.monotonic()
        if self.batches == 1 or now - self.shown >= 1.0:
            self.shown = now
            click.echo(f"pruning: {self.line()}", err=True)


def _prune_in_batches(
    manager: Manager, cutoff: datetime, agent: str | None, batch_size: int
) -> list[str]:
    removed: list[str] = []
    progress = _Progress()
    try:
        for batch in manager.prune_batches(cutoff, agent_name=agent, batch_size=batch_size):
            removed += batch
            progress.update(len(batch))
    except KeyboardInterrupt:
        raise CLIError(
            f"interrupted: {progress.line()}; they stay deleted, the rest is untouched: "
            "run the same command again to go on",
            EXIT_ERROR,
        ) from None
    if progress.batches > 1:
        click.echo(f"pruned: {progress.line()}", err=True)
    return removed


def storage_size(backend: StorageBackend, url: str) -> int | None:
    """Return the bytes the store takes, or ``None`` when it cannot be told.

    PostgreSQL: ``pg_total_relation_size`` of our tables (with indexes and TOAST);
    SQLite: the database file with its WAL; file stores: the directory.
    """
    if isinstance(backend, SQLBackend):
        if backend.dialect == "postgresql":
            names = [f"{PREFIX}sessions", f"{PREFIX}entries", f"{PREFIX}checkpoints", VERSION_TABLE]
            query = text(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relname = ANY(:names) AND n.nspname = COALESCE(:schema, current_schema())"
            ).bindparams(names=names, schema=backend.schema)
            try:
                with backend.engine.connect() as conn:
                    return int(conn.execute(query).scalar_one())
            except SQLAlchemyError as exc:
                raise translate(exc, backend.dialect) from exc
        database = backend.engine.url.database
        if not database or database == ":memory:":
            return None
        files = [Path(database + suffix) for suffix in ("", "-wal", "-shm")]
        return sum(path.stat().st_size for path in files if path.exists())
    path = store_path(url)
    for name in ("root", "base_dir", "path", "directory"):
        value = getattr(backend, name, None)
        if isinstance(value, str | os.PathLike):
            path = Path(value)
            break
    if path is None or not path.exists():
        return None
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def human_size(size: int | None) -> str:
    """Return ``size`` in bytes for people (KiB, MiB...)."""
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


@main.command()
@url_option
@json_option
def stats(url: str, as_json: bool) -> None:
    """Sessions and messages per agent, totals, and the storage size.

    Messages are those on each session's current branch (what get_messages returns).
    """
    rows: list[dict[str, Any]] = []
    with open_store(url) as manager:
        for name in manager.list_agents():
            sessions = select_sessions(manager, agent=name)
            rows.append(
                {
                    "agent": name,
                    "sessions": len(sessions),
                    "messages": sum(meta.message_count for meta in sessions),
                    "last_updated": max(meta.updated_at for meta in sessions) if sessions else None,
                }
            )
        size = storage_size(manager.backend, url)
    totals = {
        "agents": len(rows),
        "sessions": sum(row["sessions"] for row in rows),
        "messages": sum(row["messages"] for row in rows),
    }
    if as_json:
        emit_json(
            {
                "agents": [{**row, "last_updated": iso(row["last_updated"])} for row in rows],
                "total": totals,
                "storage_bytes": size,
            }
        )
        return
    out = console()
    table = Table(
        title="Sessions per agent",
        title_justify="left",
        show_footer=True,
    )
    table.add_column("agent", footer="total", no_wrap=True)
    table.add_column("sessions", footer=str(totals["sessions"]), justify="right")
    table.add_column("messages", footer=str(totals["messages"]), justify="right")
    table.add_column("last updated (UTC)", no_wrap=True)
    for row in rows:
        table.add_row(
            row["agent"],
            str(row["sessions"]),
            str(row["messages"]),
            when(row["last_updated"]) if row["last_updated"] else "-",
        )
    out.print(table)
    out.print(f"storage: {human_size(size)}" + (f" ({size} bytes)" if size is not None else ""))


@main.command()
@click.option(
    "--url",
    envvar="SESSIONS_DB_URL",
    default=None,
    help="Store URL; default $SESSIONS_DB_URL, else the default file store.",
)
@click.option(
    "--dir",
    "directory",
    default=None,
    help="A file store's directory (the same as --url file:///DIR).",
)
@json_option
def repair(url: str | None, directory: str | None, as_json: bool) -> None:
    """Rebuild a file store's indexes from its session files and clean up after crashes.

    Cuts off torn writes, removes temporary files of interrupted rewrites and
    checkpoints of deleted sessions, and reports session files damaged before
    their last write (exit 6 when there are any). SQL stores need no repair.
    """
    if directory is not None:
        url = Path(directory).expanduser().absolute().as_uri()
    with open_store(url or default_url()) as manager:
        backend = manager.backend
        if not isinstance(backend, FileBackend):
            message = f"nothing to repair: a {scheme(url or '')} store keeps no separate index"
            if as_json:
                emit_json({"repaired": False, "needed": False, "message": message})
            else:
                console().print(message)
            return
        report = backend.repair()
    if as_json:
        emit_json({"repaired": True, "needed": not report.clean, "result": _jsonable(report)})
    else:
        for line in report.lines():
            click.echo(line)
    if report.damaged_sessions:
        raise SystemExit(EXIT_MISMATCH)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    dump = getattr(value, "model_dump", None) or getattr(value, "_asdict", None)
    if callable(dump):
        return _jsonable(dump())
    if hasattr(value, "__dataclass_fields__"):
        return {name: _jsonable(getattr(value, name)) for name in value.__dataclass_fields__}
    return str(value)


@main.command()
@click.option("--agent", default=None, help="Only this agent's sessions.")
@url_option
@json_option
def verify(agent: str | None, url: str, as_json: bool) -> None:
    """Recompute every checkpoint checksum and report those that no longer match (exit 6)."""
    problems: list[dict[str, str]] = []
    checked = 0
    with open_store(url) as manager:
        backend = manager.backend
        chosen = select_sessions(manager, agent=agent)
        for meta in each(chosen, "verifying", enabled=not as_json):
            checkpoints = backend.list_checkpoints(meta.id)
            checked += len(checkpoints)
            problems.extend(
                {
                    "agent": meta.agent_name,
                    "session_id": meta.id,
                    "checkpoint_id": cid,
                    "problem": problem,
                }
                for cid, problem in verify_checkpoints(backend, meta.id, checkpoints)
            )
    if as_json:
        emit_json(
            {
                "sessions": len(chosen),
                "checkpoints": checked,
                "ok": not problems,
                "mismatches": problems,
            }
        )
    else:
        out = console()
        if problems:
            table = Table(
                title="Checkpoints that do not verify",
                title_justify="left",
            )
            for column in ("agent", "session", "checkpoint", "problem"):
                table.add_column(column, overflow="fold", no_wrap=column != "problem")
            for p in problems:
                table.add_row(p["agent"], p["session_id"], p["checkpoint_id"], p["problem"])
            out.print(table)
        out.print(
            f"checked {plural(checked, 'checkpoint')} in {plural(len(chosen), 'session')}: "
            + (f"{len(problems)} do not verify" if problems else "all verify")
        )
    if problems:
        raise CLIError(
            f"{len(problems)} checkpoint(s) do not verify: "
            + ", ".join(p["checkpoint_id"] for p in problems),
            EXIT_MISMATCH,
        )
