"""Fixtures of the inspector's tests: a manager on each kind of store, seeded, and a client."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

import sessions_db as sdb

from .seeding import Seeded, seed

with warnings.catch_warnings():
    # Newer Starlette suggests another HTTP client package; httpx still works.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient


@pytest.fixture
def manager(store_url: str) -> Iterator[sdb.Manager]:
    """A manager on an empty store of each kind."""
    with sdb.connect(store_url) as opened:
        yield opened


@pytest.fixture
def seeded(manager: sdb.Manager) -> Seeded:
    """The store with the sessions of :func:`seed`."""
    return seed(manager)


@pytest.fixture
def client(manager: sdb.Manager) -> Iterator[TestClient]:
    """A client of the inspector of the store."""
    from sessions_db.inspector import app

    with TestClient(app(manager)) as opened:
        yield opened


__all__ = ["TestClient"]
