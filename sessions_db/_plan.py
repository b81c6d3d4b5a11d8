"""Running generator "plans" with blocking or awaited I/O.

A plan is a generator that yields requests (a backend call, an SQL statement)
and receives their results. The rules live in the plan, once; a synchronous
driver and an asynchronous driver only perform the requests. This is how the
sync and asyncio APIs share one implementation of every rule.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

R = TypeVar("R")
Q = TypeVar("Q")

Plan = Generator[Q, Any, R]


def drive(plan: Plan[Q, R], perform: Callable[[Q], Any]) -> R:
    """Run ``plan`` to its end, performing each request with a blocking call."""
    try:
        request = next(plan)
        while True:
            try:
                result = perform(request)
            except Exception as exc:
                request = plan.throw(exc)
            else:
                request = plan.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        plan.close()


async def adrive(plan: Plan[Q, R], perform: Callable[[Q], Awaitable[Any]]) -> R:
    """Run ``plan`` to its end, performing each request with an awaited call."""
    try:
        request = next(plan)
        while True:
            try:
                result = await perform(request)
            except Exception as exc:
                request = plan.throw(exc)
            else:
                request = plan.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        plan.close()
