"""The ``sessions-db`` command line (also ``python -m sessions_db``).

One module per family of commands; each registers its commands on :data:`main`.
"""

from __future__ import annotations

from . import branches, erase, inspect, maintenance, migrate, serve, transfer
from . import encryption as encryption
from ._app import main
from ._common import (
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_MISMATCH,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_SCHEMA,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)

__all__ = [
    "EXIT_CONFLICT",
    "EXIT_ERROR",
    "EXIT_MISMATCH",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_SCHEMA",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "branches",
    "erase",
    "inspect",
    "main",
    "maintenance",
    "migrate",
    "serve",
    "transfer",
]
