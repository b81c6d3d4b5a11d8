"""Durable writes: appends that are on disk when they return, and atomic file replacement."""

from __future__ import annotations

import contextlib
import os
import secrets

from ..errors import StorageUnavailableError
from .paths import FILE_MODE, TEMP_PREFIX, TEMP_SUFFIX, open_file

_sync = getattr(os, "fdatasync", os.fsync)


def append(fd: int, data: bytes, committed: int) -> None:
    """Write ``data`` at the end of ``fd`` (opened ``O_APPEND``) in one write, then fsync.

    ``committed`` is the size the file must keep if the write fails: a short or
    failed write is cut off again, so a batch is stored whole or not at all.
    """
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"short write ({written} of {len(data)} bytes)")
        _sync(fd)
    except OSError as exc:
        try:
            os.ftruncate(fd, committed)
            _sync(fd)
        except OSError:
            pass  # the reader ignores an unfinished batch anyway
        raise StorageUnavailableError(f"could not append to the session file: {exc}") from exc


def overwrite(fd: int, data: bytes, at: int, size: int) -> None:
    """Write ``data`` at byte ``at`` of ``fd`` (a file of ``size`` bytes), without fsync.

    Only for files that can be rebuilt (the index): after a crash they may hold
    the old bytes, the new ones, or a mix their reader detects. If the write
    fails, the old bytes from ``at`` on are written back and the file is cut to
    ``size`` again (best effort).
    """
    old = os.pread(fd, size - at, at)
    try:
        view = memoryview(data)
        pos = at
        while view:
            n = os.pwrite(fd, view, pos)
            view, pos = view[n:], pos + n
    except OSError:
        with contextlib.suppress(OSError):
            os.pwrite(fd, old, at)
            os.ftruncate(fd, size)
        raise


def temp_name(name: str) -> str:
    """Return a fresh temporary name for rewriting ``name`` (in the same directory)."""
    return f"{TEMP_PREFIX}{name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"


def is_temp(name: str) -> bool:
    """Whether ``name`` is a temporary file left by an interrupted rewrite."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def replace(dir_fd: int, name: str, data: bytes) -> None:
    """Replace ``name`` in ``dir_fd`` with ``data`` atomically.

    The data goes to a temporary file in the same directory, which is fsynced,
    renamed over ``name``, and then the directory is fsynced: after a crash at
    any instant the file holds the old or the new content, never a mix.
    """
    tmp = temp_name(name)
    fd = open_file(tmp, dir_fd, os.O_WRONLY, create=True)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


def create_new(dir_fd: int, name: str, data: bytes) -> None:
    """Create ``name`` in ``dir_fd`` holding ``data``; ``FileExistsError`` if it exists.

    Atomic and exclusive: the data goes to a temporary file, which is fsynced and
    then hard-linked under ``name`` (a link never replaces an existing file), so
    ``name`` appears whole or not at all and never takes another file's place.
    """
    tmp = temp_name(name)
    fd = open_file(tmp, dir_fd, os.O_WRONLY, create=True)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
    os.fsync(dir_fd)


def create(dir_fd: int, name: str, data: bytes) -> int | None:
    """Create ``name`` with ``data`` durably; ``None`` if it already exists.

    Returns the open descriptor (``O_RDWR | O_APPEND``), the caller closes it.
    """
    try:
        fd = open_file(name, dir_fd, os.O_RDWR | os.O_APPEND, create=True)
    except FileExistsError:
        return None
    try:
        append(fd, data, 0)
        os.fsync(dir_fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)
        raise
    return fd


__all__ = [
    "FILE_MODE",
    "append",
    "create",
    "create_new",
    "is_temp",
    "overwrite",
    "replace",
    "temp_name",
]
