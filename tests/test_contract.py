"""The contract suite, run on every backend, and on PostgreSQL as it is deployed at scale."""

from __future__ import annotations

import pytest

from sessions_db.testing import StorageContract

from .conftest import PARTITIONED_PARAM, PGBOUNCER_PARAM, REPLICA_PARAM, STORE_PARAMS


@pytest.fixture(params=[*STORE_PARAMS, PARTITIONED_PARAM, PGBOUNCER_PARAM, REPLICA_PARAM])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each store kind in turn; PostgreSQL also partitioned, through PgBouncer, with a replica."""
    kind: str = request.param
    return kind


class TestContract(StorageContract):
    """Every backend passes the same contract (parametrized by the ``store_url`` fixture)."""
