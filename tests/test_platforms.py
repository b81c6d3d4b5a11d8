"""Where ``fcntl`` does not exist (not POSIX): the SQL stores work, the file store says why not.

Run in a fresh interpreter in which ``import fcntl`` fails, as it does on Windows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    sys.modules["fcntl"] = None  # ``import fcntl`` now raises ImportError
    import sessions_db as sdb

    out = {"file_store_imported": "sessions_db.file" in sys.modules}
    sqlite_url, file_dir = sys.argv[1], sys.argv[2]
    with sdb.connect(sqlite_url) as mgr:
        session = mgr.create("assistant", user_id="u1")
        session.append_message(sdb.Message.new("user", {"content": "hello"}))
        out["sqlite"] = [m.payload["content"] for m in mgr.get(session.id).get_messages()]

    async def main():
        async with await sdb.aio.connect(sqlite_url) as amgr:
            return len(await amgr.list("assistant"))
    out["aio_sqlite"] = asyncio.run(main())

    def refused(call):
        try:
            call()
        except sdb.ConfigurationError as exc:
            return str(exc)
        return None

    out["connect_file"] = refused(lambda: sdb.connect("file://" + file_dir))
    out["file_backend"] = refused(lambda: sdb.FileBackend(file_dir))
    out["aio_file"] = refused(lambda: asyncio.run(sdb.aio.connect("file://" + file_dir)))
    out["default"] = refused(lambda: sdb.connect(config={"store": "file", "base_dir": file_dir}))
    out["all_names"] = sorted(n for n in sdb.__all__ if not hasattr(sdb, n))
    from click.testing import CliRunner
    from sessions_db.cli import main as cli
    result = CliRunner().invoke(cli, ["agents", "--url", sqlite_url, "--json"])
    out["cli"] = [result.exit_code, json.loads(result.output)]
    print(json.dumps(out))
    """
)


def test_without_fcntl_sql_stores_work_and_the_file_store_says_why_not(tmp_path: Path) -> None:
    file_dir = tmp_path / "files"
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, f"sqlite:///{tmp_path / 'app.db'}", str(file_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["file_store_imported"] is False  # not even loaded by ``import sessions_db``
    assert out["sqlite"] == ["hello"]
    assert out["aio_sqlite"] == 1
    for way in ("connect_file", "file_backend", "aio_file", "default"):
        assert out[way] is not None, way
        assert "POSIX" in out[way], out[way]
    assert out["all_names"] == []  # every public name resolves, FileBackend included
    assert out["cli"][0] == 0
    assert "assistant" in json.dumps(out["cli"][1])
    assert not file_dir.exists()  # refused before anything was made
