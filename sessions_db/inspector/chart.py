"""A stacked bar chart of counts per day and agent, as shapes for an inline SVG."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

#: Series colours (classes ``s0`` ... in ``inspector.css``), reused in turn.
SERIES = 8

LEFT = 48
TOP = 12
BOTTOM = 28
HEIGHT = 180
BAR = 14
GAP = 4


@dataclass(frozen=True, slots=True)
class Bar:
    """One agent's part of one day's bar."""

    x: int
    y: int
    width: int
    height: int
    css: str
    title: str


@dataclass(frozen=True, slots=True)
class Tick:
    """A label on an axis, with the line it marks."""

    x: int
    y: int
    text: str


@dataclass(frozen=True, slots=True)
class Chart:
    """What the template draws: bars, the value grid, day labels, and the legend."""

    width: int
    height: int
    bars: list[Bar]
    grid: list[Tick]
    days: list[Tick]
    legend: list[tuple[str, str]]
    total: int


def _step(top: int) -> int:
    """Return a round grid step that gives about four lines up to ``top``."""
    step = 1
    while top / step > 5:
        for factor in (2, 5, 10):
            if top / (step * factor) <= 5:
                return step * factor
        step *= 10
    return step


def stacked(
    counts: dict[tuple[str, date], int], agents: list[str], first: date, last: date, what: str
) -> Chart:
    """Lay out one bar per day from ``first`` to ``last``, stacked by agent."""
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    totals = [sum(counts.get((agent, day), 0) for agent in agents) for day in days]
    top = max(totals, default=0) or 1
    step = _step(top)
    ceiling = -(-top // step) * step
    scale = HEIGHT / ceiling
    base = TOP + HEIGHT
    bars: list[Bar] = []
    labels: list[Tick] = []
    every = max(1, len(days) // 10)
    for n, day in enumerate(days):
        x = LEFT + n * (BAR + GAP)
        y = base
        for index, agent in enumerate(agents):
            value = counts.get((agent, day), 0)
            if not value:
                continue
            height = max(1, round(value * scale))
            y -= height
            title = f"{agent}: {value:,} {what} on {day.isoformat()}"
            bars.append(Bar(x, y, BAR, height, f"s{index % SERIES}", title))
        if n % every == 0:
            labels.append(Tick(x + BAR // 2, base + 16, day.strftime("%m-%d")))
    grid = [
        Tick(LEFT - 6, base - round(value * scale), f"{value:,}")
        for value in range(0, ceiling + 1, step)
    ]
    legend = [(agent, f"s{index % SERIES}") for index, agent in enumerate(agents)]
    width = LEFT + len(days) * (BAR + GAP) + 8
    return Chart(width, TOP + HEIGHT + BOTTOM, bars, grid, labels, legend, sum(totals))
