"""``enabled: false``: a manager with the whole API that keeps nothing and writes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import sessions_db as sdb
from sessions_db.testing.contract import msg


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME and working directory: nothing may appear in them."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)
    return home


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _use_everything(mgr: sdb.Manager) -> None:
    sess = mgr.create("assistant", user_id="user-1", metadata={"k": "v"})
    assert sess.agent_name == "assistant"
    sess.append_message(msg("hello"))
    sess.append_messages([msg("a"), msg("b", "assistant")])
    assert sess.get_messages() == []
    assert sess.get_messages(limit=5) == []
    assert sess.info().message_count == 0
    assert sess.get_entries() == []
    checkpoint = sess.checkpoint(metadata={"label": "x"})
    assert checkpoint.session_id == sess.id
    assert checkpoint.metadata == {"label": "x"}
    assert sess.list_checkpoints() == []
    with pytest.raises(sdb.CheckpointNotFoundError):
        sess.restore(checkpoint.id)
    again = mgr.get(sess.id)  # any well-formed ID: an empty session
    assert again.get_messages() == []
    with pytest.raises(sdb.InvalidIDError):
        mgr.get("../etc/passwd")
    other = mgr.get_or_create("assistant", "user-1")
    assert other.id != sess.id  # nothing is kept, so nothing is found
    assert mgr.list("assistant") == []
    assert mgr.list_agents() == []
    assert mgr.prune(older_than=__import__("datetime").timedelta(0)) == []
    mgr.delete(sess.id)
    with sdb.use_session(sess):
        assert sdb.current_session() is sess
    sess.close()


def test_disabled_by_configuration(home: Path) -> None:
    with sdb.connect(config={"session": {"enabled": False}}) as mgr:
        assert isinstance(mgr.backend, sdb.NullBackend)
        _use_everything(mgr)
    with pytest.raises(sdb.StorageClosedError):
        mgr.create("assistant")
    assert _files(home) == []


def test_disabled_by_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONS_DB_ENABLED", "false")
    with sdb.connect() as mgr:
        assert isinstance(mgr.backend, sdb.NullBackend)
        _use_everything(mgr)
    assert _files(home) == []


def test_disabled_even_with_a_url(home: Path) -> None:
    path = home / "would-be.db"
    with sdb.connect(f"sqlite:///{path}", config={"enabled": False}) as mgr:
        _use_everything(mgr)
    assert not path.exists()
    assert _files(home) == []


def test_disabled_runtime_runs_agents_statelessly(home: Path) -> None:
    class Counter:
        def execute_with_session(self, message: sdb.Message, session: sdb.Session) -> sdb.Message:
            seen = len(session.get_messages())
            return sdb.Message.new("assistant", {"content": f"seen {seen}"})

    with sdb.connect(config={"enabled": False}) as mgr:
        rt = sdb.Runtime(mgr, config={"enabled": False})
        rt.register("assistant", Counter())
        sess = mgr.create("assistant")
        for _ in range(3):
            out = rt.call_with_session("assistant", msg("hi"), sess.id)
            assert out.payload == {"content": "seen 0"}
    assert _files(home) == []
    assert not os.listdir(home)
