"""Timing and statistics: medians, 95th percentiles and the rows of the report."""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Row:
    """One line of a backend's table.

    ``unit`` is ``ms`` (latency: median and p95 of ``n`` runs), ``msg/s``
    (throughput, higher is better) or ``KiB`` (tracemalloc peak). ``baseline``
    is the same figure for the floor (the raw driver, or the reference case the
    target compares with); ``ratio`` is value / baseline (for ``msg/s``:
    baseline / value, so that below 1 is always better than the baseline).
    """

    scenario: str
    operation: str
    n: int
    median: float
    p95: float | None
    unit: str = "ms"
    baseline: float | None = None
    baseline_label: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline or not self.median:
            return None
        if self.unit == "msg/s":
            return self.baseline / self.median
        return self.median / self.baseline

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        return data


def percentile(values: list[float], q: float) -> float:
    """Return the ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Timing:
    """Durations of ``n`` runs, in milliseconds."""

    samples: list[float]

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        return percentile(self.samples, 0.95)


def measure(
    fn: Callable[[], Any], n: int, *, warmup: int = 2, before: Callable[[], Any] | None = None
) -> Timing:
    """Run ``fn`` ``warmup`` + ``n`` times and return the ``n`` durations (ms).

    ``before`` runs ahead of each call, outside the timed span. The garbage
    collector is paused during each timed call so that one run does not pay for
    the garbage of the others.
    """
    samples: list[float] = []
    for i in range(warmup + n):
        if before is not None:
            before()
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
        finally:
            if gc_was_enabled:
                gc.enable()
        if i >= warmup:
            samples.append(elapsed * 1000.0)
    return Timing(samples)


def measure_pair(
    fn: Callable[[], Any], other: Callable[[], Any], n: int, *, warmup: int = 2
) -> tuple[Timing, Timing]:
    """Run ``fn`` and ``other`` in alternation, ``warmup`` + ``n`` rounds of one call each (the
    first to go switches every round), and return the ``n`` durations (ms) of each.

    On a shared machine the load changes from one second to the next: timed in alternation,
    the library and its floor meet the same load, and their ratio stays meaningful.
    """
    a: list[float] = []
    b: list[float] = []
    for i in range(warmup + n):
        first, second = (fn, other) if i % 2 == 0 else (other, fn)
        t_first = measure(first, 1, warmup=0).samples[0]
        t_second = measure(second, 1, warmup=0).samples[0]
        ta, tb = (t_first, t_second) if i % 2 == 0 else (t_second, t_first)
        if i >= warmup:
            a.append(ta)
            b.append(tb)
    return Timing(a), Timing(b)


def row(
    scenario: str,
    operation: str,
    timing: Timing,
    baseline: Timing | float | None = None,
    baseline_label: str | None = None,
    **extra: Any,
) -> Row:
    """Return the report row of a latency measurement."""
    base = baseline.median if isinstance(baseline, Timing) else baseline
    return Row(
        scenario,
        operation,
        timing.n,
        timing.median,
        timing.p95,
        "ms",
        base,
        baseline_label,
        dict(extra),
    )


def peak_kib(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Return the tracemalloc peak (KiB) of running ``fn`` once, and its result."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - base) / 1024.0, result


def held_kib(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Return the memory (KiB) still allocated after ``fn`` returns (traced), and its result."""
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        result = fn()
        gc.collect()
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (current - base) / 1024.0, result
