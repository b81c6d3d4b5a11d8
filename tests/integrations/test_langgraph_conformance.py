"""LangGraph's own checkpointer conformance suite, run on SessionsDBSaver on every store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import (
    BASE_CAPABILITIES,
    EXTENDED_CAPABILITIES,
    DetectedCapabilities,
)

import sessions_db as sdb
import sessions_db.aio
from sessions_db.integrations.langgraph import SessionsDBSaver

#: The extended capabilities SessionsDBSaver implements (all of them).
EXTENDED = {cap.value for cap in EXTENDED_CAPABILITIES}


def run_suite(name: str, open_saver: Callable[[], Any]) -> Any:
    """Run the whole suite on savers from ``open_saver`` (an async context manager factory)."""

    @checkpointer_test(name=name)
    async def factory() -> AsyncIterator[SessionsDBSaver]:
        async with open_saver() as saver:
            yield saver

    return asyncio.run(validate(factory))


def summary(report: Any) -> str:
    """Return one line per capability: detected, passed, tests passed and failed."""
    lines = [f"{report.checkpointer_name}: {report.conformance_level()}"]
    for name, result in sorted(report.results.items()):
        kind = "base" if name in {c.value for c in BASE_CAPABILITIES} else "extended"
        state = "passed" if result.passed else ("not detected" if not result.detected else "FAILED")
        lines.append(
            f"  {kind:8s} {name:16s} {state} ({result.tests_passed} passed, "
            f"{result.tests_failed} failed)"
        )
        lines.extend(f"      {failure}" for failure in result.failures)
    return "\n".join(lines)


def check(report: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Print the report's summary and assert every capability was detected and passed."""
    with capsys.disabled():
        print("\n" + summary(report))
    assert report.passed_all_base(), summary(report)
    detected = {name for name, result in report.results.items() if result.detected}
    assert detected == {c.value for c in BASE_CAPABILITIES} | EXTENDED, summary(report)
    assert report.passed_all(), summary(report)
    assert all(r.tests_failed == 0 and r.tests_passed > 0 for r in report.results.values())


def test_capabilities_are_detected_on_the_class() -> None:
    saver = SessionsDBSaver(manager=sdb.Manager(sdb.NullBackend()))
    detected = DetectedCapabilities.from_instance(saver).detected
    assert {c.value for c in detected} == {c.value for c in BASE_CAPABILITIES} | EXTENDED


def test_conformance_with_url(
    store_kind: str, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The saver a URL opens: its async API on an AsyncManager of the same store."""

    class Opened:
        async def __aenter__(self) -> SessionsDBSaver:
            self.saver = SessionsDBSaver(store_url)
            return self.saver

        async def __aexit__(self, *exc: object) -> None:
            await self.saver.aclose()

    check(run_suite(f"SessionsDBSaver[{store_kind}]", Opened), capsys)


@pytest.mark.parametrize("given", ["Manager", "AsyncManager"])
def test_conformance_with_a_given_manager(
    given: str, sql_url: str, sql_kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manager of the caller's: an AsyncManager, or a Manager run in worker threads."""

    class Opened:
        async def __aenter__(self) -> SessionsDBSaver:
            if given == "Manager":
                self.manager: Any = sdb.connect(sql_url)
            else:
                self.manager = await sdb.aio.connect(sql_url)
            return SessionsDBSaver(manager=self.manager)

        async def __aexit__(self, *exc: object) -> None:
            closing = self.manager.close()
            if closing is not None:
                await closing

    check(run_suite(f"SessionsDBSaver[{sql_kind}, {given}]", Opened), capsys)
