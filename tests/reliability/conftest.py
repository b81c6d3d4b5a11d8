"""Reports what the reliability suites did (operations, crashes, inputs, outages)."""

from __future__ import annotations

import pytest

from ..conftest import PARTITIONED_PARAM, STORE_PARAMS
from .support import COUNTS


@pytest.fixture(params=[*STORE_PARAMS, PARTITIONED_PARAM])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each store kind in turn, with PostgreSQL's partitioned tables."""
    kind: str = request.param
    return kind


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the counts gathered by the reliability suites."""
    if COUNTS:
        terminalreporter.section("reliability counts")
        for name, value in sorted(COUNTS.items()):
            terminalreporter.write_line(f"{name}: {value}")
