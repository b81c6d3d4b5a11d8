"""The entry tree picture: branches side by side, marks, runs, and collapsed far branches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from sessions_db.inspector.branches import MAX_COLUMNS, Tree, split
from sessions_db.inspector.markers import EVENT_MARKERS, OTHER_EVENT
from sessions_db.inspector.picture import draw
from sessions_db.types import EntryType, SessionEntry


class Builder:
    """Entries of a tree, appended in order, as a store would return them."""

    def __init__(self) -> None:
        self.entries: list[SessionEntry] = []
        self._ids = count()

    def add(self, parent: str | None, kind: EntryType = EntryType.MESSAGE, **data: object) -> str:
        entry_id = f"e{next(self._ids)}"
        if kind is EntryType.MESSAGE and not data:
            data = {"role": "user", "payload": {"content": entry_id}}
        self.entries.append(
            SessionEntry(
                id=entry_id,
                parent_id=parent,
                timestamp=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=len(self.entries)),
                type=kind,
                data=dict(data),
            )
        )
        return entry_id

    def chain(self, parent: str | None, length: int) -> str:
        node = parent
        for _ in range(length):
            node = self.add(node)
        assert node is not None
        return node


def test_a_long_linear_session_is_a_few_rows() -> None:
    tree = Builder()
    leaf = tree.chain(None, 10_000)
    picture = draw(tree.entries, leaf, {})
    assert len(picture.nodes) == 2  # the first and the last message
    assert [label.text for label in picture.labels][1] == "⋯ 9,998 messages"
    assert picture.height < 200
    assert picture.branches == 1


def test_branches_stand_side_by_side_with_the_current_one_first() -> None:
    tree = Builder()
    fork = tree.chain(None, 3)
    old = tree.chain(fork, 4)
    new = tree.chain(fork, 2)
    picture = draw(tree.entries, new, {})
    assert picture.branches == 2
    columns = {node.entry_id: node.x for node in picture.nodes}
    rows = {node.entry_id: node.y for node in picture.nodes}
    assert columns[new] < columns[old]
    assert columns[fork] == columns[new]
    first_old, first_new = tree.entries[3].id, tree.entries[7].id
    assert rows[first_old] == rows[first_new]  # both start one row below the fork
    current = {node.entry_id for node in picture.nodes if node.current}
    assert new in current
    assert old not in current
    assert fork in current


@pytest.mark.parametrize("event", [*EVENT_MARKERS, "something new"])
def test_events_are_marked_from_the_marker_table(event: str) -> None:
    tree = Builder()
    root = tree.chain(None, 2)
    marked = tree.add(root, EntryType.METADATA, event=event)
    leaf = tree.chain(marked, 3)
    picture = draw(tree.entries, leaf, {})
    node = next(n for n in picture.nodes if n.entry_id == marked)
    marker = EVENT_MARKERS.get(event, OTHER_EVENT)
    assert node.shape == "event"
    assert (node.glyph, node.css) == (marker.glyph, marker.css)


def test_checkpoints_are_diamonds_with_their_label() -> None:
    tree = Builder()
    root = tree.chain(None, 5)
    cp = tree.add(root, EntryType.CHECKPOINT, checkpoint_id="c1")
    leaf = tree.chain(cp, 5)
    picture = draw(tree.entries, leaf, {"c1": "before the tool call"})
    node = next(n for n in picture.nodes if n.entry_id == cp)
    assert node.shape == "checkpoint"
    assert any("before the tool call" in label.text for label in picture.labels)


def test_a_cleared_branch_starts_a_root_of_its_own() -> None:
    tree = Builder()
    tree.chain(None, 4)
    cleared = tree.add(None, EntryType.METADATA, event="clear")
    leaf = tree.chain(cleared, 2)
    branches = split(Tree.of(tree.entries, leaf))
    assert [b.fork for b in branches] == [None, None]
    assert [b.distance for b in branches] == [0, 1]
    picture = draw(tree.entries, leaf, {})
    assert picture.shown == 2


def test_hundreds_of_branches_collapse_to_the_closest() -> None:
    tree = Builder()
    spine = [tree.add(None)]
    for _ in range(50):
        spine.append(tree.add(spine[-1]))
    for n in range(300):  # restored 300 times along the conversation, a few turns each
        fork = spine[n % len(spine)]
        branch = tree.chain(fork, 3)
        tree.chain(branch, 2)  # and each of those forked once more, far away
        tree.chain(tree.entries[-4].id, 2)
    leaf = tree.chain(spine[-1], 1)
    picture = draw(tree.entries, leaf, {})
    assert picture.branches > 600
    assert picture.shown == MAX_COLUMNS
    assert picture.hidden == picture.branches - MAX_COLUMNS
    assert sum(int(pill.text[1:]) for pill in picture.pills) == picture.hidden
    assert picture.width < 1400
    everything = draw(tree.entries, leaf, {}, expand=True)
    assert everything.shown > MAX_COLUMNS
