"""Waiting for work that must not be abandoned halfway."""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def run_to_completion(work: asyncio.Future[T]) -> T:
    """Wait for ``work`` to finish even if the caller is cancelled meanwhile.

    A cancellation of the caller is raised once the work is done, so a call never
    returns while its statements still run: an append is then stored whole or
    not at all, and its connection is back in the pool.
    """
    interrupted: asyncio.CancelledError | None = None
    while not work.done():
        try:
            await asyncio.wait((work,))
        except asyncio.CancelledError as exc:
            interrupted = exc
    if interrupted is not None:
        if not work.cancelled():
            work.exception()  # retrieved: the caller learns of its cancellation instead
        raise interrupted
    return work.result()
