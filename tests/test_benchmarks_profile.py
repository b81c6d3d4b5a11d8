"""``python -m benchmarks.profile`` runs tiny on SQLite and reports every layer.

Never asserts on a time: only that the run exits 0, that its report names the
layers (the driver, SQLAlchemy's parts, pydantic, sessions_db's modules) and
that the layers' self shares add up to the whole.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.profile import DRIVER_PG, DRIVER_PG_WAIT, DRIVER_SQLITE, PYDANTIC, layer_of

ROOT = Path(__file__).resolve().parent.parent

LAYERS = [
    DRIVER_SQLITE,
    "SQLAlchemy: compile / cache lookup",
    "SQLAlchemy: execution",
    "SQLAlchemy: result processing",
    "SQLAlchemy: pool checkout/return",
    "SQLAlchemy: events",
    PYDANTIC,
]


def _table(text: str) -> dict[str, tuple[float, float]]:
    """The layer rows of the report: name -> (self µs per call, self %)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"[\d,]+", cells[1]):
            rows[cells[0]] = (float(cells[1].replace(",", "")), float(cells[2]))
    return rows


@pytest.mark.parametrize("op", ["append", "load_100"])
def test_profile_reports_every_layer(op: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.profile",
            "--backend",
            "sqlite",
            "--op",
            op,
            "-n",
            "3",
            "--small",
            "--top",
            "3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert f"### sqlite {op} (n = 3)" in out
    for label in ("wall per call:", "CPU per call", "raw driver per call", "top 3 functions"):
        assert label in out
    rows = _table(out)
    for layer in LAYERS:
        assert layer in rows, (layer, out)
    assert any(name.startswith("sessions_db.sql.") for name in rows), out
    # The statement reached sqlite3 (a share, not a time: the driver ran).
    assert rows[DRIVER_SQLITE][0] > 0
    families = {"driver (all)", "SQLAlchemy (all)", "sessions_db (all)", "other (all)"}
    assert families - {PYDANTIC} <= set(rows)
    layers = {k: v for k, v in rows.items() if k not in families and k != "total (profiled)"}
    assert sum(share for _, share in layers.values()) == pytest.approx(100.0, abs=1.5)
    assert sum(rows[f][1] for f in families) + rows[PYDANTIC][1] == pytest.approx(100.0, abs=1)


def test_layer_of_reads_the_file_path() -> None:
    site = "/venv/lib/python3.11/site-packages"
    assert layer_of((f"{site}/sqlalchemy/pool/base.py", 1, "checkout")) == (
        "SQLAlchemy: pool checkout/return"
    )
    assert layer_of((f"{site}/sqlalchemy/sql/compiler.py", 1, "process")) == (
        "SQLAlchemy: compile / cache lookup"
    )
    assert layer_of((f"{site}/sqlalchemy/engine/cursor.py", 1, "fetchall")) == (
        "SQLAlchemy: result processing"
    )
    assert layer_of((f"{site}/sqlalchemy/engine/base.py", 1, "execute")) == (
        "SQLAlchemy: execution"
    )
    assert layer_of((f"{site}/sqlalchemy/event/attr.py", 1, "__call__")) == "SQLAlchemy: events"
    assert layer_of((f"{site}/psycopg/cursor.py", 1, "execute")) == DRIVER_PG
    assert layer_of((f"{site}/psycopg/connection.py", 1, "wait")) == DRIVER_PG_WAIT
    assert layer_of(("~", 0, "<method 'execute' of 'sqlite3.Cursor' objects>")) == DRIVER_SQLITE
    assert layer_of((f"{site}/pydantic/main.py", 1, "model_validate")) == PYDANTIC
    assert layer_of(("/src/sessions_db/sql/unit_of_work.py", 1, "f")) == (
        "sessions_db.sql.unit_of_work"
    )
    assert layer_of(("/src/sessions_db/aio/__init__.py", 1, "f")) == "sessions_db.aio"
    assert layer_of(("/usr/lib/python3.11/json/decoder.py", 1, "decode")) == "other: json"
    # A C function of no module of its own counts for its caller.
    assert layer_of(("~", 0, "<method 'append' of 'list' objects>")) is None
