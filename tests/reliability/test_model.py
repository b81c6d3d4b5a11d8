"""Model-based testing: random operation sequences checked against a plain model.

A hypothesis state machine creates, appends to (singly and in batches),
checkpoints, restores, reads, lists, deletes and reopens sessions on a real
store, and after every step compares the store with an in-memory model of each
session's entry tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import sessions_db as sdb
from sessions_db import ids
from sessions_db.connect import backend_for_url

from .support import COUNTS, clear, profile

AGENTS = ["alpha", "beta"]
USERS: list[str | None] = [None, "u1", "u2"]
ROLES = ["user", "assistant", "tool", "system"]

_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    max_size=20,
)
_PAYLOADS = st.fixed_dictionaries(
    {"content": _TEXT},
    optional={
        "n": st.integers(min_value=-(2**70), max_value=2**70),
        "f": st.floats(allow_nan=False, allow_infinity=False),
        "tags": st.lists(_TEXT, max_size=3),
        "nested": st.dictionaries(_TEXT, st.none() | st.booleans(), max_size=3),
    },
)


class TickClock:
    """A clock that moves one millisecond per reading, so update order is exact."""

    def __init__(self) -> None:
        self.now = datetime(2024, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@dataclass
class Node:
    """One entry of the model tree."""

    id: str
    parent: str | None
    type: sdb.EntryType
    data: dict[str, Any]
    message: sdb.Message | None = None


@dataclass
class ModelSession:
    """What the store should hold for one session."""

    id: str
    agent: str
    user: str | None
    metadata: dict[str, Any]
    updated: datetime
    nodes: dict[str, Node] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    leaf: str | None = None
    checkpoints: list[tuple[str, str]] = field(default_factory=list)

    def add(self, node: Node) -> None:
        self.nodes[node.id] = node
        self.order.append(node.id)
        self.leaf = node.id

    def path(self, leaf: str | None) -> list[Node]:
        """The branch from the root to ``leaf``, root first."""
        out: list[Node] = []
        while leaf is not None:
            node = self.nodes[leaf]
            out.append(node)
            leaf = node.parent
        return out[::-1]

    def messages(self, leaf: str | None) -> list[sdb.Message]:
        return [n.message for n in self.path(leaf) if n.message is not None]


class StoreMachine(RuleBasedStateMachine):
    """Drives one store; ``url`` is set by the test."""

    url: ClassVar[str]

    sessions = Bundle("sessions")
    checkpoints = Bundle("checkpoints")

    def __init__(self) -> None:
        super().__init__()
        self.clock = TickClock()
        self.mgr = self._open()
        clear(self.mgr)
        self.model: dict[str, ModelSession] = {}
        self.deleted: set[str] = set()
        self.cache: dict[str, sdb.Session] = {}
        self.touched: str | None = None

    # -- helpers ------------------------------------------------------------------

    def _open(self) -> sdb.Manager:
        return sdb.Manager(backend_for_url(self.url), clock=self.clock)

    def _session(self, sid: str) -> sdb.Session:
        """A Session object for ``sid`` (works for deleted sessions, to test errors)."""
        if sid not in self.cache:
            live = self.model.get(sid)
            if live is None:
                # A deleted session: build a handle by hand so calls reach the store.
                meta = sdb.SessionMetadata(
                    id=sid,
                    agent_name="gone",
                    user_id=None,
                    created_at=self.clock.now,
                    updated_at=self.clock.now,
                    message_count=0,
                    current_leaf=None,
                    metadata={},
                )
                return sdb.Session(self.mgr, meta)
            self.cache[sid] = self.mgr.get(sid)
        return self.cache[sid]

    def _step(self, name: str) -> None:
        COUNTS["model: operations"] += 1
        COUNTS[f"model: {name}"] += 1

    def _expect_gone(self, sid: str, call: Any, *errors: type[Exception]) -> None:
        with pytest.raises(errors or (sdb.SessionNotFoundError,)):
            call()

    def _listing(self, agent: str, user: str | None) -> list[ModelSession]:
        found = [
            s for s in self.model.values() if s.agent == agent and (user is None or s.user == user)
        ]
        return sorted(found, key=lambda s: (s.updated, s.id), reverse=True)

    # -- rules --------------------------------------------------------------------

    @initialize(target=sessions)
    def first_session(self) -> str:
        return self._create("alpha", "u1")

    @rule(target=sessions, agent=st.sampled_from(AGENTS), user=st.sampled_from(USERS))
    def create(self, agent: str, user: str | None) -> str:
        return self._create(agent, user)

    def _create(self, agent: str, user: str | None) -> str:
        self._step("create")
        meta = {"n": len(self.model)}
        session = self.mgr.create(agent, user_id=user, metadata=meta)
        self.model[session.id] = ModelSession(session.id, agent, user, meta, self.clock.now)
        self.cache[session.id] = session
        self.touched = session.id
        return session.id

    @rule(target=sessions, agent=st.sampled_from(AGENTS), user=st.sampled_from(USERS))
    def get_or_create(self, agent: str, user: str | None) -> str:
        self._step("get_or_create")
        mine = self._listing(agent, user) if user is not None else []
        session = self.mgr.get_or_create(agent, user)
        if mine:
            assert session.id == mine[0].id
        else:
            assert session.id not in self.model
            self.model[session.id] = ModelSession(session.id, agent, user, {}, self.clock.now)
        assert (session.agent_name, session.user_id) == (agent, user)
        self.touched = session.id
        return session.id

    @rule(sid=sessions, role=st.sampled_from(ROLES), body=_PAYLOADS)
    def append(self, sid: str, role: str, body: dict[str, Any]) -> None:
        self._step("append")
        message = sdb.Message.new(role, body)
        session = self._session(sid)
        if sid in self.deleted:
            self._expect_gone(sid, lambda: session.append_message(message))
            return
        session.append_message(message)
        ms = self.model[sid]
        ms.add(
            Node(
                message.id, ms.leaf, sdb.EntryType.MESSAGE, {"role": role, "payload": body}, message
            )
        )
        ms.updated = self.clock.now
        self.touched = sid

    @rule(sid=sessions, bodies=st.lists(_PAYLOADS, max_size=5))
    def append_batch(self, sid: str, bodies: list[dict[str, Any]]) -> None:
        self._step("append_batch")
        messages = [sdb.Message.new("user", body) for body in bodies]
        session = self._session(sid)
        if sid in self.deleted:
            if messages:
                self._expect_gone(sid, lambda: session.append_messages(messages))
            return
        session.append_messages(messages)
        ms = self.model[sid]
        for message in messages:
            ms.add(
                Node(
                    message.id,
                    ms.leaf,
                    sdb.EntryType.MESSAGE,
                    {"role": "user", "payload": message.payload},
                    message,
                )
            )
        if messages:
            ms.updated = self.clock.now
        self.touched = sid

    @rule(sid=sessions, fresh=st.integers(0, 3), data=st.data())
    def append_duplicate(self, sid: str, fresh: int, data: st.DataObject) -> None:
        """A batch repeating a stored message ID fails whole and stores nothing."""
        ms = self.model.get(sid)
        if ms is None or not any(n.message for n in ms.nodes.values()):
            return
        self._step("append_duplicate")
        old = data.draw(st.sampled_from([n for n in ms.nodes.values() if n.message is not None]))
        batch = [sdb.Message.new("user", {"fresh": i}) for i in range(fresh)]
        position = data.draw(st.integers(0, fresh))
        assert old.message is not None
        batch.insert(position, sdb.Message.new("user", {"again": True}, id=old.message.id))
        with pytest.raises(sdb.DuplicateEntryError):
            self._session(sid).append_messages(batch)
        self.touched = sid

    @rule(target=checkpoints, sid=sessions)
    def checkpoint(self, sid: str) -> tuple[str, str]:
        self._step("checkpoint")
        session = self._session(sid)
        if sid in self.deleted:
            self._expect_gone(sid, session.checkpoint)
            return (sid, ids.new_id())
        cp = session.checkpoint(metadata={"at": len(self.model[sid].order)})
        ms = self.model[sid]
        assert cp.session_id == sid
        ms.add(Node(cp.entry_id, ms.leaf, sdb.EntryType.CHECKPOINT, {"checkpoint_id": cp.id}))
        ms.checkpoints.append((cp.id, cp.entry_id))
        ms.updated = self.clock.now
        self.touched = sid
        return (sid, cp.id)

    @rule(sid=sessions, cp=checkpoints)
    def restore(self, sid: str, cp: tuple[str, str]) -> None:
        self._step("restore")
        _owner, cid = cp
        session = self._session(sid)
        ms = self.model.get(sid)
        known = ms is not None and any(c == cid for c, _ in ms.checkpoints)
        if not known:
            errors = (sdb.CheckpointNotFoundError, sdb.SessionNotFoundError)
            self._expect_gone(sid, lambda: session.restore(cid), *errors)
            return
        assert ms is not None
        entry_id = dict(ms.checkpoints)[cid]
        restored = session.restore(cid)
        assert restored.id == cid
        assert restored.entry_id == entry_id
        marker = session.info().current_leaf
        assert marker is not None
        assert marker not in ms.nodes
        data = {"event": "restore", "checkpoint_id": cid}
        ms.add(Node(marker, entry_id, sdb.EntryType.METADATA, data))
        ms.updated = self.clock.now
        self.touched = sid

    @rule(sid=sessions, user=st.sampled_from(USERS))
    def get(self, sid: str, user: str | None) -> None:
        self._step("get")
        ms = self.model.get(sid)
        if ms is None or (user is not None and ms.user != user):
            self._expect_gone(sid, lambda: self.mgr.get(sid, user_id=user))
            return
        got = self.mgr.get(sid, user_id=user)
        assert (got.agent_name, got.user_id, got.metadata) == (ms.agent, ms.user, ms.metadata)
        self.touched = sid

    @rule(sid=sessions, limit=st.none() | st.integers(0, 6), data=st.data())
    def get_messages(self, sid: str, limit: int | None, data: st.DataObject) -> None:
        self._step("get_messages")
        session = self._session(sid)
        ms = self.model.get(sid)
        if ms is None:
            self._expect_gone(sid, lambda: session.get_messages(limit=limit))
            return
        anchors = [n.id for n in ms.nodes.values() if n.message is not None]
        before = data.draw(st.none() | st.sampled_from([*anchors, "no-such-message"]))
        if before == "no-such-message":
            with pytest.raises(sdb.EntryNotFoundError):
                session.get_messages(limit=limit, before=before)
            return
        expected = ms.messages(ms.leaf if before is None else ms.nodes[before].parent)
        if limit is not None:
            expected = expected[max(0, len(expected) - limit) :] if limit else []
        got = session.get_messages(limit=limit, before=before)
        assert [(m.id, m.type, m.payload, m.timestamp) for m in got] == [
            (m.id, m.type, m.payload, m.timestamp) for m in expected
        ]

    @rule(
        agent=st.sampled_from(AGENTS),
        user=st.sampled_from(USERS),
        limit=st.none() | st.integers(0, 4),
        offset=st.integers(0, 4),
    )
    def list_sessions(self, agent: str, user: str | None, limit: int | None, offset: int) -> None:
        self._step("list")
        expected = self._listing(agent, user)
        expected = expected[offset:] if limit is None else expected[offset : offset + limit]
        got = self.mgr.list(agent, user_id=user, limit=limit, offset=offset)
        assert [m.id for m in got] == [s.id for s in expected]
        for meta, ms in zip(got, expected, strict=True):
            assert meta.message_count == len(ms.messages(ms.leaf))
            assert meta.current_leaf == ms.leaf
            assert meta.updated_at == ms.updated

    @rule(sid=sessions, now=st.integers(0, 2))
    def delete(self, sid: str, now: int) -> None:
        if now and sid not in self.deleted:
            return  # deleting less often than other rules keeps the trees growing
        self._step("delete")
        if sid in self.deleted:
            self._expect_gone(sid, lambda: self.mgr.delete(sid))
            return
        self.mgr.delete(sid)
        del self.model[sid]
        self.cache.pop(sid, None)
        self.deleted.add(sid)
        if self.touched == sid:
            self.touched = None

    @precondition(lambda self: bool(self.model))
    @rule(now=st.integers(0, 2))
    def reopen(self, now: int) -> None:
        """Close the manager and open a new one on the same store: nothing is lost."""
        if now:
            return
        self._step("reopen")
        self.mgr.close()
        with pytest.raises(sdb.StorageClosedError):
            self.mgr.list("alpha")
        self.mgr = self._open()
        self.cache.clear()
        for sid in self.model:
            self._check(sid)

    # -- checks -------------------------------------------------------------------

    def _check(self, sid: str) -> None:
        ms = self.model[sid]
        session = self._session(sid)
        entries = session.get_entries()
        assert [(e.id, e.parent_id, e.type) for e in entries] == [
            (ms.nodes[i].id, ms.nodes[i].parent, ms.nodes[i].type) for i in ms.order
        ]
        for entry in entries:
            node = ms.nodes[entry.id]
            if node.message is not None:
                assert entry.timestamp == node.message.timestamp
            assert entry.data == node.data
        info = session.info()
        assert info.current_leaf == ms.leaf
        assert info.message_count == len(ms.messages(ms.leaf))
        assert info.updated_at == ms.updated
        assert [(c.id, c.entry_id) for c in session.list_checkpoints()] == ms.checkpoints

    @invariant()
    def touched_session_matches_model(self) -> None:
        if self.touched is not None and self.touched in self.model:
            self._check(self.touched)

    def teardown(self) -> None:
        try:
            for sid in self.model:
                self._check(sid)
        finally:
            self.mgr.close()


def test_store_behaves_like_the_model(store_url: str) -> None:
    machine = type("Machine", (StoreMachine,), {"url": store_url})
    COUNTS["model: runs"] += 1
    run_state_machine_as_test(machine, settings=profile())
