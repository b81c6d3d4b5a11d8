"""The entry tree as a picture: shapes with coordinates, drawn as SVG by a template.

Branches stand side by side, one column each (:mod:`.branches` picks them);
the current branch is the first column and is highlighted. Rows are depths in
the tree, so branches that fork at one entry start side by side. Only the
entries worth seeing get a row: the first and last entry of each branch, fork
points, checkpoints, events (restores, forks, rewinds, pops, clears) and the
current leaf. Runs of plain messages between them are drawn as a dashed line
with their count, so a 10,000-message session is a picture of a few rows.

Every string here ends up in the page through the template, which escapes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..cli._render import entry_role, entry_text, short
from ..types import EntryType, SessionEntry
from .branches import Branch, Tree, choose, columns, split
from .markers import marker_of, role_class

COLUMN = 26
ROW = 24
PAD = 16
RADIUS = 6
LABEL_WIDTH = 620
LABEL_CHARS = 90
TITLE_CHARS = 300


@dataclass(frozen=True, slots=True)
class Node:
    """An entry drawn as a circle (message), a diamond (checkpoint) or a lettered square."""

    entry_id: str
    x: int
    y: int
    shape: str
    css: str
    glyph: str
    title: str
    current: bool


@dataclass(frozen=True, slots=True)
class Edge:
    """A line between two drawn entries (``d`` is SVG path data, numbers only)."""

    d: str
    css: str
    title: str


@dataclass(frozen=True, slots=True)
class Pill:
    """A count of collapsed branches, at the fork point they leave from."""

    x: int
    y: int
    text: str
    title: str


@dataclass(frozen=True, slots=True)
class Label:
    """Text beside a row of the current branch."""

    x: int
    y: int
    text: str
    css: str


@dataclass(frozen=True, slots=True)
class Picture:
    """Everything the template draws, and what the page says about it."""

    width: int
    height: int
    nodes: list[Node]
    edges: list[Edge]
    pills: list[Pill]
    labels: list[Label]
    branches: int
    shown: int
    hidden: int
    entries: int


def _cut(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def describe(entry: SessionEntry, labels: dict[str, str]) -> str:
    """Return a line about an entry: its role or kind, and its content.

    A checkpoint, and a restore, are named by the checkpoint's label when it has one.
    """
    marker = marker_of(entry)
    if marker is None:
        return f"{entry_role(entry)}: {entry_text(entry, labels)}"
    checkpoint = entry.data.get("checkpoint_id")
    named = labels.get(str(checkpoint)) or short(str(checkpoint))
    if entry.type is EntryType.CHECKPOINT:
        return f"checkpoint: {named}"
    if checkpoint is not None:
        return f"{marker.label}: {named}"
    return f"{marker.label}: {entry_text(entry, labels)}"


def _notable(tree: Tree, branch: Branch, forks: set[str]) -> list[bool]:
    last = len(branch.entries) - 1
    return [
        i in (0, last)
        or entry_id in forks
        or entry_id == tree.leaf
        or tree.entries[entry_id].type is not EntryType.MESSAGE
        for i, entry_id in enumerate(branch.entries)
    ]


@dataclass(slots=True)
class _Item:
    """A drawn entry, or a run of messages between two drawn entries (``count`` > 0)."""

    entry_id: str
    count: int = 0


def _items(tree: Tree, branch: Branch, forks: set[str]) -> list[_Item]:
    items: list[_Item] = []
    for entry_id, notable in zip(branch.entries, _notable(tree, branch, forks), strict=True):
        if notable:
            items.append(_Item(entry_id))
        elif items and items[-1].count:
            items[-1].count += 1
        else:
            items.append(_Item(entry_id, 1))
    # A run of one message takes a row anyway: draw the message instead.
    return [_Item(item.entry_id) if item.count == 1 else item for item in items]


class _Grid:
    """Where branches, rows and collapsed counts go."""

    def __init__(self, tree: Tree, branches: list[Branch], expand: bool) -> None:
        self.tree = tree
        self.branches = branches
        self.choice = choose(branches, tree, expand=expand)
        self.order = columns(branches, self.choice)
        shown = set(self.order)
        forks: dict[int, set[str]] = {i: set() for i in shown}
        for branch in branches:
            if branch.index in shown and branch.parent is not None and branch.fork is not None:
                forks[branch.parent].add(branch.fork)
        for index, fork in self.choice.hidden:
            if fork is not None:
                forks[index].add(fork)
        self.items = {i: _items(tree, branches[i], forks[i]) for i in self.order}
        # Rows: the depths of the drawn entries and runs, and of the collapsed counts.
        depths = {tree.depth[item.entry_id] for i in self.order for item in self.items[i]}
        depths.update(0 if f is None else tree.depth[f] + 1 for _, f in self.choice.hidden)
        self.row = {depth: n for n, depth in enumerate(sorted(depths))}
        # Columns: each shown branch, then one for its collapsed counts if it has any.
        self.column: dict[int, int] = {}
        self.pill_column: dict[int, int] = {}
        count = 0
        for index in self.order:
            self.column[index] = count
            count += 1
            if any(i == index for i, _ in self.choice.hidden):
                self.pill_column[index] = count
                count += 1
        self.label_x = self.x(max(count - 1, 0)) + COLUMN

    @staticmethod
    def x(column: int) -> int:
        """Return the x of a column's centre."""
        return PAD + RADIUS + column * COLUMN

    def y(self, depth: int) -> int:
        """Return the y of the row of a depth."""
        return PAD + RADIUS + self.row[depth] * ROW

    def height(self) -> int:
        """Return the height of the picture."""
        return PAD * 2 + RADIUS * 2 + max(len(self.row) - 1, 0) * ROW


def _curve(start: tuple[int, int], x: int, y: int) -> str:
    px, py = start
    if px == x:
        return f"M{px} {py} L{x} {y}"
    middle = (py + y) // 2
    return f"M{px} {py} C{px} {middle} {x} {middle} {x} {y}"


def _branch_shapes(
    grid: _Grid,
    index: int,
    labels: dict[str, str],
    picture: tuple[list[Node], list[Edge], list[Label]],
) -> None:
    """Add one branch's nodes, lines and (on the current branch) labels to ``picture``."""
    nodes, edges, texts = picture
    tree, branch = grid.tree, grid.branches[index]
    x = grid.x(grid.column[index])
    cur = "cur" if index == 0 and tree.leaf is not None else "alt"
    previous: tuple[int, int] | None = None
    if branch.fork is not None and branch.parent is not None:
        previous = (grid.x(grid.column[branch.parent]), grid.y(tree.depth[branch.fork]))
    run = 0
    for item in grid.items[index]:
        y = grid.y(tree.depth[item.entry_id])
        if item.count:
            run = item.count
            if cur == "cur":
                texts.append(Label(grid.label_x, y, f"⋯ {item.count:,} messages", "run"))
            continue
        if previous is not None:
            title = f"{run:,} messages not drawn" if run else ""
            edges.append(Edge(_curve(previous, x, y), cur + (" run" if run else ""), title))
        run = 0
        entry = tree.entries[item.entry_id]
        nodes.append(_node(entry, x, y, tree, labels))
        if cur == "cur":
            text = _cut(describe(entry, labels), LABEL_CHARS)
            css = "leaf" if entry.id == tree.leaf else ""
            texts.append(Label(grid.label_x, y, text, css))
        previous = (x, y)


def _pills(grid: _Grid, edges: list[Edge]) -> list[Pill]:
    """Return the counts of collapsed branches (and add their dotted lines to ``edges``)."""
    pills = []
    for (index, fork), count in sorted(grid.choice.hidden.items(), key=lambda kv: kv[0][0]):
        x = grid.x(grid.pill_column[index])
        noun = "branch" if count == 1 else "branches"
        if fork is None:
            y = grid.y(0)
            title = f"{count} more {noun} with a root of their own"
        else:
            depth = grid.tree.depth[fork]
            y = grid.y(depth + 1)
            edges.append(
                Edge(f"M{grid.x(grid.column[index])} {grid.y(depth)} L{x} {y}", "collapsed", "")
            )
            title = f"{count} more {noun} fork at {short(fork)}"
        pills.append(Pill(x, y, f"+{count}", title))
    return pills


def draw(
    entries: Sequence[SessionEntry],
    leaf: str | None,
    labels: dict[str, str],
    *,
    expand: bool = False,
) -> Picture:
    """Lay out the tree of ``entries`` (append order) with the current branch ending at ``leaf``."""
    tree = Tree.of(entries, leaf)
    branches = split(tree)
    grid = _Grid(tree, branches, expand)
    nodes: list[Node] = []
    edges: list[Edge] = []
    texts: list[Label] = []
    for index in grid.order:
        _branch_shapes(grid, index, labels, (nodes, edges, texts))
    pills = _pills(grid, edges)
    return Picture(
        width=grid.label_x + LABEL_WIDTH,
        height=grid.height(),
        nodes=nodes,
        edges=edges,
        pills=pills,
        labels=texts,
        branches=len(branches),
        shown=len(grid.order),
        hidden=grid.choice.hidden_total,
        entries=len(entries),
    )


def _node(entry: SessionEntry, x: int, y: int, tree: Tree, labels: dict[str, str]) -> Node:
    marker = marker_of(entry)
    current = entry.id in tree.current
    title = f"{short(entry.id)} {entry.timestamp:%Y-%m-%d %H:%M:%S} UTC\n" + _cut(
        describe(entry, labels), TITLE_CHARS
    )
    if entry.id == tree.leaf:
        title += "\n(current leaf)"
    if marker is None:
        css = role_class(str(entry.data.get("role", "")))
        return Node(entry.id, x, y, "message", css, "", title, current)
    shape = "checkpoint" if entry.type is EntryType.CHECKPOINT else "event"
    return Node(entry.id, x, y, shape, marker.css, marker.glyph, title, current)
