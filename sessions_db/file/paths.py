"""The file store's layout, and opening its files without leaving the base directory.

Layout (the seed's)::

    <base>/<agent-name>/sessions.json              the index (a snapshot, see index.py)
    <base>/<agent-name>/lists/*.log, ready         ordered journals for listing (see lists.py)
    <base>/<agent-name>/<session-id>.jsonl         the session's entries, one per line
    <base>/<agent-name>/checkpoints/<id>.json      one checkpoint
    <base>/<agent-name>/users/<user-hash>.<name>   a file an adapter keeps for one user

Adapters (:mod:`sessions_db.integrations`) may keep per-user files of an agent
in its ``users`` directory, named by :func:`user_file`, and change them while
holding that directory's lock: ``erase_user`` removes a user's files there.

Every name is checked with :mod:`sessions_db.ids` before it reaches a path, and
every directory and file is opened relative to an open directory descriptor
with ``O_NOFOLLOW``: a symlink planted anywhere below the base directory makes
the call fail with :class:`~sessions_db.InvalidIDError` instead of being
followed. Directories are created ``0700`` and files ``0600``, whatever the umask.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from .. import ids
from ..errors import InvalidIDError

INDEX = "sessions.json"
CHECKPOINTS = "checkpoints"
USERS = "users"
SESSION_SUFFIX = ".jsonl"
CHECKPOINT_SUFFIX = ".json"
#: Temporary files of atomic rewrites start with this (no ID or agent name can).
TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"

DIR_MODE = 0o700
FILE_MODE = 0o600


def _posix_flag(name: str) -> int:
    # 0 where the flag does not exist: the module still imports there, and the
    # store refuses to open (see locking.require), so no call relies on it.
    return int(getattr(os, name, 0))


_DIR_FLAGS = os.O_RDONLY | _posix_flag("O_DIRECTORY") | _posix_flag("O_NOFOLLOW")
_DIR_FLAGS |= _posix_flag("O_CLOEXEC")
_FILE_FLAGS = _posix_flag("O_NOFOLLOW") | _posix_flag("O_CLOEXEC") | _posix_flag("O_NONBLOCK")


def session_file(session_id: str) -> str:
    """Return the file name of a session's entries (the ID is validated)."""
    return ids.session_id(session_id) + SESSION_SUFFIX


def checkpoint_file(checkpoint_id: str) -> str:
    """Return the file name of a checkpoint (the ID is validated)."""
    return ids.checkpoint_id(checkpoint_id) + CHECKPOINT_SUFFIX


def user_file(user_id: str, name: str) -> str:
    """Return the name of an adapter's file ``name`` for ``user_id`` in an agent's ``users``.

    ``<sha256 of the user ID>.<name>``: any user ID (``""`` too) maps to a safe
    file name, and no file name holds the ID itself. ``name`` is a checked token.
    """
    digest = hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{digest}.{ids.entry_id(name)}"


def is_user_file(name: str, user_id: str) -> bool:
    """Whether ``name`` (in an agent's ``users`` directory) is a file of ``user_id``."""
    digest = hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()
    return name.startswith(digest + ".")


def session_id_of(name: str) -> str | None:
    """Return the session ID a directory entry names, or ``None`` if it is not a session file."""
    if not name.endswith(SESSION_SUFFIX):
        return None
    try:
        return ids.session_id(name[: -len(SESSION_SUFFIX)])
    except InvalidIDError:
        return None


def _refuse(name: str, exc: OSError) -> InvalidIDError:
    return InvalidIDError(
        f"{name!r} in the file store is a symlink or not what it should be "
        f"({os.strerror(exc.errno or 0)}); refusing to follow it"
    )


def open_dir(name: str, parent_fd: int, *, create: bool = False) -> int:
    """Open directory ``name`` below ``parent_fd``, never through a symlink.

    With ``create``, a missing directory is made (``0700``) and its parent
    fsynced, so that the new name survives a crash.
    """
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refuse(name, exc) from None
        raise
    made = False
    try:
        os.mkdir(name, DIR_MODE, dir_fd=parent_fd)
        made = True
    except FileExistsError:
        pass
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refuse(name, exc) from None
        raise
    if made:
        os.fchmod(fd, DIR_MODE)
        os.fsync(parent_fd)
    return fd


def open_file(name: str, dir_fd: int, flags: int, *, create: bool = False) -> int:
    """Open the regular file ``name`` in ``dir_fd`` (``O_NOFOLLOW``; new files ``0600``)."""
    if create:
        flags |= os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(name, flags | _FILE_FLAGS, FILE_MODE, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            raise _refuse(name, exc) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidIDError(f"{name!r} in the file store is not a regular file")
        if create:
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def lstat(name: str, dir_fd: int) -> os.stat_result | None:
    """Return the status of ``name`` in ``dir_fd`` (not following symlinks), ``None`` if absent.

    A symlink or a non-regular file raises :class:`InvalidIDError`.
    """
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidIDError(f"{name!r} in the file store is a symlink or not a regular file")
    return info


@contextmanager
def opened(fd: int) -> Iterator[int]:
    """Close ``fd`` when the block ends."""
    try:
        yield fd
    finally:
        os.close(fd)


def agent_dirs(base_fd: int) -> list[str]:
    """Return the names of the agent directories under the base (real directories only).

    Reads through a descriptor of its own: ``scandir`` of a descriptor shares its
    read position with every other user of it, so two threads listing the one
    base descriptor at once would each see part of the directory, or twice.
    """
    names = []
    with opened(os.open(".", _DIR_FLAGS, dir_fd=base_fd)) as fd, os.scandir(fd) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                try:
                    names.append(ids.agent_name(entry.name))
                except InvalidIDError:
                    continue
    return sorted(names)


def session_files(agent_fd: int) -> list[str]:
    """Return the IDs of the session files in an agent directory (regular files only)."""
    found = []
    with os.scandir(agent_fd) as it:
        for entry in it:
            sid = session_id_of(entry.name)
            if sid is not None and entry.is_file(follow_symlinks=False):
                found.append(sid)
    return found
