"""The file store: the seed's JSONL directory layout, safe across processes and crashes.

See :class:`FileBackend` and, for the on-disk format, :mod:`.paths`,
:mod:`.jsonl` and :mod:`.index`.
"""

from .backend import DEFAULT_BASE, FileBackend
from .repair import RepairReport

__all__ = ["DEFAULT_BASE", "FileBackend", "RepairReport"]
