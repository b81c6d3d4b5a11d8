"""OS file locks (``flock``): they serialize threads and processes alike.

A session is locked through its own ``.jsonl`` file and an agent through its
directory, so the store needs no lock files of its own. Each lock is taken on a
descriptor opened for the occasion: ``flock`` locks belong to an open file
description, so two threads of one process exclude each other too.

``flock`` is POSIX only (Linux, macOS, the BSDs): elsewhere this module still
imports, and :func:`require` says why the file store cannot be used.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import ConfigurationError

try:
    import fcntl
except ImportError:  # not a POSIX platform
    _AVAILABLE = False
else:
    _AVAILABLE = True


def require() -> None:
    """Raise ``ConfigurationError`` unless this platform has the locks the file store needs."""
    if not _AVAILABLE:
        raise ConfigurationError(
            "the file store (file://, FileBackend) needs POSIX file locks (fcntl.flock), "
            "which this platform does not have; use a sqlite:// or postgresql:// store"
        )


@contextmanager
def locked(fd: int, *, shared: bool = False) -> Iterator[None]:
    """Hold an OS lock (``flock``) on ``fd`` for the block: across threads and processes."""
    fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def try_lock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` if it is free; return whether it was taken."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def unlock(fd: int) -> None:
    """Release the lock taken with :func:`try_lock`."""
    fcntl.flock(fd, fcntl.LOCK_UN)


def lock(fd: int) -> None:
    """Take the exclusive lock on ``fd``, waiting for it (release with :func:`unlock`)."""
    fcntl.flock(fd, fcntl.LOCK_EX)
