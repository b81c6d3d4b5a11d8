"""The contract suite, run on every backend."""

from __future__ import annotations

from sessions_db.testing import StorageContract


class TestContract(StorageContract):
    """Every backend passes the same contract (parametrized by the ``store_url`` fixture)."""
