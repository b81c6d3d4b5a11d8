"""Bounded in-process caches of the file store: session locks and where things live.

A long-running process touches more and more sessions; what the store remembers
about them must not grow with that number. :class:`LruMap` forgets the least
recently used entries (a miss only costs a lookup on disk again).
:class:`LockTable` hands out one lock per session and forgets only locks that no
thread holds or waits for, so two threads never lock a session through two
different lock objects.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

#: How many sessions' locks and locations a store remembers by default.
DEFAULT_SIZE = 4096


class LruMap:
    """A thread-safe ``str -> str`` map holding at most ``size`` entries (LRU eviction)."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._data: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        """Return the value of ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: str, value: str) -> None:
        """Set ``key``, forgetting the least recently used entries beyond the bound."""
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def pop(self, key: str) -> None:
        """Forget ``key`` if present."""
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class _Slot:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.users = 0  # threads holding or waiting for the lock


class LockTable:
    """One reentrant lock per key; at most ``size`` idle locks are kept.

    A lock is forgotten only when no thread holds or waits for it: the next
    user then makes a new one, which is safe because nobody can be inside the
    old one. The table may exceed the bound by the number of locks in use.
    """

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Hold the lock of ``key`` for the block."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot()
            else:
                self._slots.move_to_end(key)
            slot.users += 1
        try:
            with slot.lock:
                yield
        finally:
            with self._lock:
                slot.users -= 1
                if len(self._slots) > self._size:
                    self._evict()

    def _evict(self) -> None:
        excess = len(self._slots) - self._size
        idle = []
        for key, slot in self._slots.items():  # oldest first: usually the first are idle
            if slot.users == 0:
                idle.append(key)
                if len(idle) == excess:
                    break
        for key in idle:
            del self._slots[key]

    def __len__(self) -> int:
        return len(self._slots)
