"""The benchmark suite runs small (as CI runs it): it completes and reports every scenario.

Never asserts on a time: only that the run exits 0, that its JSON holds every
scenario of every backend and that the concurrency scenarios counted exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.scenarios import CONCURRENCY, FILE_ONLY, SCENARIOS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "backend", [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_benchmarks_small(backend: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    env.setdefault(
        "SESSIONS_DB_BENCH_PG",
        os.environ.get(
            "SESSIONS_DB_TEST_PG", "postgresql://sessions_db:sessions_db@127.0.0.1:5432/postgres"
        ),
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--small",
            "--quiet",
            "--backends",
            backend,
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(out.read_text())
    result = data["backends"][backend]
    rows = {r["scenario"]: r for r in result["rows"]}
    expected = SCENARIOS + (FILE_ONLY if backend == "file" else [])
    assert sorted(rows) == sorted(expected)
    for key in CONCURRENCY:
        extra = rows[key]["extra"]
        assert extra["exact"] is True, (key, extra)
        assert extra["counted_total"] == extra["expected_total"] == rows[key]["n"]
    for r in result["rows"]:
        assert r["median"] is not None
        assert r["n"] > 0
    assert result["targets"], "the targets are evaluated"
