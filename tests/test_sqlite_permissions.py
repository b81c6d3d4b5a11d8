"""SQLite files that sessions_db creates are its owner's only (0600), as the file store's are.

SQLite itself would follow the umask (0644 under 022) and give the ``-wal`` and
``-shm`` files the database file's permissions.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import sessions_db as sdb
from sessions_db import migrations

from .conftest import opener


@pytest.fixture(autouse=True)
def _usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _modes(db: Path) -> dict[str, int]:
    return {
        p.name.removeprefix(db.name) or "db": stat.S_IMODE(p.stat().st_mode)
        for p in db.parent.iterdir()
        if p.name.startswith(db.name)
    }


@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_new_database_and_its_wal_are_private(tmp_path: Path, api: str) -> None:
    db = tmp_path / "new.db"
    with opener(f"sqlite:///{db}", api)() as mgr:
        mgr.create("assistant", user_id="u1").append_message(sdb.Message.new("user", {"c": "x"}))
        assert _modes(db) == {"db": 0o600, "-wal": 0o600, "-shm": 0o600}
    assert _modes(db) == {"db": 0o600}


def test_the_async_backend_creates_it_private(tmp_path: Path) -> None:
    db = tmp_path / "async.db"

    async def main() -> dict[str, int]:
        async with await sdb.aio.connect(f"sqlite:///{db}") as mgr:
            sess = await mgr.create("assistant")
            await sess.append_message(sdb.Message.new("user", {"c": "x"}))
            return _modes(db)

    assert asyncio.run(main()) == {"db": 0o600, "-wal": 0o600, "-shm": 0o600}


def test_migrating_a_new_file_creates_it_private(tmp_path: Path) -> None:
    db = tmp_path / "migrated.db"
    migrations.upgrade(f"sqlite:///{db}")
    assert _modes(db) == {"db": 0o600}


def test_an_existing_file_keeps_its_permissions(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    db.touch(mode=0o640)
    db.chmod(0o640)
    with sdb.connect(f"sqlite:///{db}") as mgr:
        mgr.create("assistant")
        assert _modes(db) == {"db": 0o640, "-wal": 0o640, "-shm": 0o640}
