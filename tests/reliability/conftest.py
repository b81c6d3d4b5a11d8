"""Reports what the reliability suites did (operations, crashes, inputs, outages)."""

from __future__ import annotations

import pytest

from .support import COUNTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the counts gathered by the reliability suites."""
    if COUNTS:
        terminalreporter.section("reliability counts")
        for name, value in sorted(COUNTS.items()):
            terminalreporter.write_line(f"{name}: {value}")
