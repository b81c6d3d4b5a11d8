"""A session's entry tree cut into branches, and which of them the picture shows.

Each leaf of the tree ends a branch. The current branch (root to the current
leaf) comes first; then, newest leaf first, each other leaf's branch runs up
from it to the first entry an earlier branch holds: its fork point (``None``
when it reaches a root of its own, as after the branch was cleared). A
branch's *distance* is how many forks separate it from the current branch.

A tree may have hundreds of branches. :func:`choose` keeps the current branch
and the branches closest to it (by distance, then newest first, each only with
the branch it forks from), up to a number of columns; every other branch is
counted at the fork point where it leaves the branches shown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..types import SessionEntry

#: Branches shown by default: the current one and the closest others.
MAX_COLUMNS = 12
#: Forks away from the current branch beyond which branches are collapsed by default.
MAX_DISTANCE = 2
#: Branches shown at most when every branch is asked for.
MAX_EXPANDED = 400


@dataclass(slots=True)
class Branch:
    """Entries of one branch, top down, below its fork point (an entry of ``parent``)."""

    index: int
    entries: list[str]
    fork: str | None
    parent: int | None
    distance: int
    children: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Tree:
    """The entries of a session, linked, with depths and the current path."""

    entries: dict[str, SessionEntry]
    order: dict[str, int]
    parent: dict[str, str | None]
    children: dict[str, list[str]]
    depth: dict[str, int]
    current: set[str]
    leaf: str | None

    @classmethod
    def of(cls, entries: Sequence[SessionEntry], leaf: str | None) -> Tree:
        """Link ``entries`` (in append order) under their parents."""
        by_id = {entry.id: entry for entry in entries}
        order = {entry.id: position for position, entry in enumerate(entries)}
        parent = {e.id: (e.parent_id if e.parent_id in by_id else None) for e in entries}
        children: dict[str, list[str]] = {}
        for entry in entries:
            up = parent[entry.id]
            if up is not None:
                children.setdefault(up, []).append(entry.id)
        depth: dict[str, int] = {}
        for entry in entries:  # a parent is appended before its children
            up = parent[entry.id]
            depth[entry.id] = 0 if up is None else depth.get(up, 0) + 1
        current: set[str] = set()
        node = leaf if leaf in by_id else None
        while node is not None and node not in current:
            current.add(node)
            node = parent[node]
        return cls(by_id, order, parent, children, depth, current, leaf if current else None)


def split(tree: Tree) -> list[Branch]:
    """Cut the tree into branches: the current one first, then newest leaf first."""
    tips = [e for e in tree.entries if not tree.children.get(e)]
    tips.sort(key=tree.order.__getitem__, reverse=True)
    if tree.leaf is not None:
        tips.insert(0, tree.leaf)
    owner: dict[str, int] = {}
    branches: list[Branch] = []
    for tip in tips:
        path: list[str] = []
        node: str | None = tip
        while node is not None and node not in owner:
            path.append(node)
            node = tree.parent[node]
        if not path:
            continue
        path.reverse()
        up = None if node is None else owner[node]
        distance = 0 if not branches else 1 if up is None else branches[up].distance + 1
        branch = Branch(len(branches), path, node, up, distance)
        branches.append(branch)
        if up is not None:
            branches[up].children.append(branch.index)
        for entry_id in path:
            owner[entry_id] = branch.index
    return branches


@dataclass(frozen=True, slots=True)
class Choice:
    """The branches shown, and the hidden ones counted where they leave those shown.

    ``hidden`` maps (shown branch, fork entry) to the number of hidden branches
    forking there; a fork entry of ``None`` counts hidden trees of their own root.
    """

    shown: list[int]
    hidden: dict[tuple[int, str | None], int]

    @property
    def hidden_total(self) -> int:
        """The number of branches not shown."""
        return sum(self.hidden.values())


def choose(branches: list[Branch], tree: Tree, *, expand: bool = False) -> Choice:
    """Pick the branches to draw (see the module's docstring)."""
    if not branches:
        return Choice([], {})
    limit = MAX_EXPANDED if expand else MAX_COLUMNS
    reach = len(branches) if expand else MAX_DISTANCE
    candidates = sorted(
        branches[1:], key=lambda b: (b.distance, -tree.order[b.entries[-1]], b.index)
    )
    shown = {0}
    for branch in candidates:
        if len(shown) >= limit:
            break
        if branch.distance <= reach and (branch.parent is None or branch.parent in shown):
            shown.add(branch.index)
    hidden: Counter[tuple[int, str | None]] = Counter()
    for branch in branches:
        if branch.index in shown:
            continue
        child = branch
        while child.parent is not None and child.parent not in shown:
            child = branches[child.parent]
        where = (0, None) if child.parent is None else (child.parent, child.fork)
        hidden[where] += 1
    return Choice(sorted(shown), dict(hidden))


def columns(branches: list[Branch], choice: Choice) -> list[int]:
    """Return the shown branches left to right: each followed by the ones forking from it."""
    shown = set(choice.shown)
    ordered: list[int] = []
    roots = [i for i in choice.shown if i == 0 or branches[i].parent is None]
    stack = list(reversed(roots))
    while stack:
        index = stack.pop()
        ordered.append(index)
        kids = [k for k in branches[index].children if k in shown]
        stack.extend(reversed(kids))
    return ordered
