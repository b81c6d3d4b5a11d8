"""``repair``: rebuild the indexes from the session files and clean up after crashes."""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidIDError, SessionsDBError
from . import durable, index, lists, paths
from .jsonl import SessionLog
from .locking import locked
from .paths import CHECKPOINTS, INDEX, opened


@dataclass
class RepairReport:
    """What :meth:`FileBackend.repair` found and fixed."""

    base: str
    agents: list[str] = field(default_factory=list)
    sessions: int = 0
    #: Agents whose sessions.json was missing, damaged or out of date, and was rewritten.
    indexes_rebuilt: list[str] = field(default_factory=list)
    #: Agents whose sessions.json could not be read at all.
    damaged_indexes: list[str] = field(default_factory=list)
    #: Sessions whose file ended with a torn or unfinished write, now cut off.
    torn_tails: list[str] = field(default_factory=list)
    #: Session files with an unreadable line before committed data (left untouched).
    damaged_sessions: list[str] = field(default_factory=list)
    #: Temporary files of interrupted rewrites, removed.
    temp_files_removed: list[str] = field(default_factory=list)
    #: Checkpoint files whose session no longer exists, removed.
    orphan_checkpoints_removed: list[str] = field(default_factory=list)
    #: Symlinks or other foreign entries where the store expects its own (left untouched).
    refused: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Whether nothing needed fixing and nothing is left damaged."""
        return not (
            self.indexes_rebuilt
            or self.torn_tails
            or self.damaged_sessions
            or self.temp_files_removed
            or self.orphan_checkpoints_removed
            or self.refused
        )

    def lines(self) -> list[str]:
        """Return the report as lines of text."""
        agents, sessions = len(self.agents), self.sessions
        out = [
            f"{self.base}: {agents} agent{'' if agents == 1 else 's'}, "
            f"{sessions} session{'' if sessions == 1 else 's'}"
        ]
        for label, items in [
            ("index rebuilt", self.indexes_rebuilt),
            ("index was damaged", self.damaged_indexes),
            ("torn write cut off", self.torn_tails),
            ("DAMAGED session file (fix or remove the line)", self.damaged_sessions),
            ("temporary file removed", self.temp_files_removed),
            ("orphan checkpoint removed", self.orphan_checkpoints_removed),
            ("refused (symlink or foreign entry)", self.refused),
        ]:
            out += [f"  {label}: {item}" for item in items]
        if self.clean:
            out.append("  nothing to repair")
        return out


def _remove_temp_files(dir_fd: int, where: str, report: RepairReport) -> None:
    removed = False
    with os.scandir(dir_fd) as it:
        for entry in it:
            if durable.is_temp(entry.name) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.name, dir_fd=dir_fd)
                report.temp_files_removed.append(f"{where}/{entry.name}")
                removed = True
    if removed:
        os.fsync(dir_fd)


def _repair_session(
    session_id: str, agent: str, agent_fd: int, report: RepairReport
) -> SessionLog | None:
    name = paths.session_file(session_id)
    try:
        fd = paths.open_file(name, agent_fd, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        return None
    with opened(fd), locked(fd):
        log = SessionLog(session_id)  # every line parsed: damage anywhere is found
        log.ino = os.fstat(fd).st_ino
        try:
            log.feed(os.pread(fd, os.fstat(fd).st_size, 0))
        except SessionsDBError as exc:
            report.damaged_sessions.append(f"{agent}/{name}: {exc}")
            return None
        if log.pending:
            os.ftruncate(fd, log.offset)
            os.fsync(fd)
            log.seen = log.offset
            report.torn_tails.append(f"{agent}/{name}")
    return log if log.created_at is not None else None


def _repair_checkpoints(agent: str, agent_fd: int, report: RepairReport) -> None:
    try:
        cfd = paths.open_dir(CHECKPOINTS, agent_fd)
    except FileNotFoundError:
        return
    except InvalidIDError:
        report.refused.append(f"{agent}/{CHECKPOINTS}")
        return
    with opened(cfd):
        _remove_temp_files(cfd, f"{agent}/{CHECKPOINTS}", report)
        with os.scandir(cfd) as it:
            names = [e.name for e in it if e.name.endswith(paths.CHECKPOINT_SUFFIX)]
        for name in names:
            try:
                with opened(paths.open_file(name, cfd, os.O_RDONLY)) as fd:
                    session_id = json.loads(os.pread(fd, os.fstat(fd).st_size, 0))["session_id"]
                orphan = paths.lstat(paths.session_file(session_id), agent_fd) is None
            except InvalidIDError:
                report.refused.append(f"{agent}/{CHECKPOINTS}/{name}")
                continue
            except (ValueError, KeyError, TypeError, FileNotFoundError):
                continue
            if orphan:
                os.unlink(name, dir_fd=cfd)
                report.orphan_checkpoints_removed.append(f"{agent}/{CHECKPOINTS}/{name}")


def repair_store(base_fd: int, base: Path) -> RepairReport:
    """Repair every agent directory under ``base_fd`` (see ``FileBackend.repair``)."""
    report = RepairReport(str(base))
    with os.scandir(base_fd) as it:
        for entry in it:
            if entry.is_symlink():
                report.refused.append(entry.name)
    for agent in paths.agent_dirs(base_fd):
        with opened(paths.open_dir(agent, base_fd)) as agent_fd, locked(agent_fd):
            report.agents.append(agent)
            _remove_temp_files(agent_fd, agent, report)
            lists.make(agent_fd)  # before the sessions are read: see lists.rebuild
            old: dict[str, SessionLog] | None
            try:
                with opened(paths.open_file(INDEX, agent_fd, os.O_RDONLY)) as fd:
                    old = index.decode(os.pread(fd, os.fstat(fd).st_size, 0), agent)
            except FileNotFoundError:
                old = None
            except index.DamagedIndexError:
                old = None
                report.damaged_indexes.append(agent)
            except InvalidIDError:
                report.refused.append(f"{agent}/{INDEX}")
                continue
            summaries = []
            with os.scandir(agent_fd) as it:
                for item in it:
                    if paths.session_id_of(item.name) and item.is_symlink():
                        report.refused.append(f"{agent}/{item.name}")
            for session_id in paths.session_files(agent_fd):
                summary = _repair_session(session_id, agent, agent_fd, report)
                if summary is None and old is not None:
                    summary = old.get(session_id)  # damaged: keep what the index knew
                if summary is not None:
                    summaries.append(summary)
            report.sessions += len(summaries)
            current = {s.session_id: (s.offset, s.ino) for s in summaries}
            recorded = None if old is None else {k: (s.offset, s.ino) for k, s in old.items()}
            if recorded != current:
                index.write(agent_fd, agent, summaries)
                report.indexes_rebuilt.append(agent)
            _repair_lists(agent_fd, agent, summaries, report)
            _repair_checkpoints(agent, agent_fd, report)
    return report


def _repair_lists(
    agent_fd: int, agent: str, summaries: list[SessionLog], report: RepairReport
) -> None:
    """Rewrite the agent's journals (``lists/``) from the session files, whatever they held."""
    with opened(paths.open_dir(lists.DIR, agent_fd)) as lists_fd:
        _remove_temp_files(lists_fd, f"{agent}/{lists.DIR}", report)
    lists.rebuild(agent_fd, summaries, functools.partial(lists.read_state, agent_fd))
