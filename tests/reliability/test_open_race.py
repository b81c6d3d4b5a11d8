"""Many openers of one new SQLite file at once: threads, asyncio tasks, processes.

Each opener migrates the file on open (or finds it migrated) and appends; every
message must be there afterwards. The thread and task races run in a child
process, so that a crash of the interpreter fails the test instead of ending
the run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .openers import OPENERS, read_back
from .support import scale

ROOT = Path(__file__).resolve().parents[2]
#: Deadline of one child process (it stops its own openers well before).
CHILD_TIMEOUT = 600


def _race_in_child(kind: str, directory: Path, rounds: int, n: int) -> dict[str, object]:
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.reliability.openers",
            kind,
            str(directory),
            str(rounds),
            str(n),
        ],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=CHILD_TIMEOUT,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    if child.returncode < 0:
        name = signal.Signals(-child.returncode).name
        pytest.fail(f"the racing openers crashed the interpreter ({name}):\n{child.stderr[-4000:]}")
    summary: dict[str, object] = json.loads(child.stdout.strip().splitlines()[-1])
    assert summary["errors"] == [], child.stderr[-4000:]
    assert child.returncode == 0, child.stderr[-4000:]
    return summary


def test_threads_racing_to_open_one_new_file(tmp_path: Path) -> None:
    rounds = scale(20, 100)
    summary = _race_in_child("threads", tmp_path, rounds, 8)
    assert summary == {"rounds": rounds, "messages": rounds * 8, "errors": []}


def test_tasks_racing_to_open_one_new_file(tmp_path: Path) -> None:
    rounds = scale(10, 50)
    summary = _race_in_child("tasks", tmp_path, rounds, 8)
    assert summary == {"rounds": rounds, "messages": rounds * 8, "errors": []}


def test_processes_racing_to_open_one_new_file(tmp_path: Path) -> None:
    n = len(OPENERS)  # each process opens the store another way
    for k in range(scale(3, 20)):
        url = f"sqlite:///{tmp_path / f'processes-{k}.db'}"
        go = tmp_path / f"go-{k}"
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.reliability.openers",
                    "process",
                    url,
                    str(i),
                    str(go),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(n)
        ]
        go.touch()
        session_ids: dict[str, str] = {}
        for i, child in enumerate(children):
            out, err = child.communicate(timeout=CHILD_TIMEOUT)
            assert child.returncode == 0, f"opener {i} of round {k}: {err[-4000:]}"
            session_ids[f"p{i}"] = out.strip()
        assert read_back(url, session_ids) == []
