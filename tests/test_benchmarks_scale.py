"""The scale benchmark, run tiny: it loads, resumes, measures, prunes and reports.

Never asserts on a time; only that the run completes, that its report holds every
operation and the sizes, that a second run goes on with the loaded databases, and
that the prune leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.scale import Shape, _parser

from .conftest import PG_URL

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
SIZES = ["--sessions", "200", "--messages", "4000", "--small-sessions", "100"]
SIZES += ["--small-messages", "2200", "--runs", "4"]


def _scale(*args: str, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SESSIONS_DB_BENCH_PG": PG_URL}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", *SIZES, "--json", str(out), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_shape_adds_up() -> None:
    assert _parser().parse_args([]).tag == ""  # the databases of a plain run have no tag
    for sessions, messages in ((100, 2200), (1000, 10_000), (1_000_000, 10_000_000)):
        shape = Shape(sessions, messages)
        assert sum(shape.messages_of(i) for i in range(sessions)) == messages
        assert sum(shape.is_long(i) for i in range(sessions)) == shape.long_sessions


@pytest.mark.parametrize("partitions", ["0", "4"])
def test_scale_runs_resumes_and_prunes(pg_server: object, tmp_path: Path, partitions: str) -> None:
    tag = secrets.token_hex(4)
    first = _scale("--tag", tag, "--partitions", partitions, "--load-only", out=tmp_path / "a")
    assert first.returncode == 0, first.stderr
    assert "(new)" in first.stdout
    done = _scale("--tag", tag, "--partitions", partitions, "--prune", "--drop", out=tmp_path / "b")
    assert done.returncode == 0, done.stderr
    assert "(resumed)" in done.stdout
    report = json.loads((tmp_path / "b").read_text())
    names = {row["scenario"] for row in report["operations"]}
    assert names == {
        "append",
        "newest50",
        "list_page",
        "get_or_create",
        "get_or_create_key",
        "fork",
    }
    assert report["big"]["messages"] == 4000
    assert report["big"]["load"]["partitions"] == int(partitions)
    assert report["big"]["sizes"]["per_message"]["entries_table"] > 0
    assert report["prune"]["rows_left"] == {
        "sessions_db_sessions": 0,
        "sessions_db_entries": 0,
        "sessions_db_checkpoints": 0,
    }
    assert report["prune"]["sessions"] >= 200
