"""The report: a table per backend, the targets (the hot-path issue's, those kept from issue 9),
and the JSON file."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .timing import Row


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.3f}" if value < 100 else f"{value:.1f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def table(title: str, rows: list[Row]) -> str:
    """Return ``rows`` as a Markdown table (also readable in a terminal)."""
    lines = [
        f"### {title}",
        "",
        "| scenario | operation | n | median | p95 | unit | baseline | ratio |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        ratio = r.ratio
        lines.append(
            f"| {r.scenario} | {r.operation} | {r.n} | {_fmt(r.median, r.unit)} | "
            f"{_fmt(r.p95, r.unit)} | {r.unit} | {_fmt(r.baseline, r.unit)} | "
            f"{'-' if ratio is None else f'{ratio:.2f}'} |"
        )
    return "\n".join(lines)


def _by(rows: list[Row]) -> dict[str, Row]:
    return {r.scenario: r for r in rows}


#: The issue each target comes from, in the order they are printed.
HOT_PATH = "hot path"
ISSUE_9 = "issue 9"
ISSUES = (HOT_PATH, ISSUE_9)

#: Hot path: the asyncio rows held to within 1.2x of their sync figure on PostgreSQL.
ASYNC_VS_SYNC = {
    "async_append_10": "append",
    "async_create": "create",
    "async_list_of_100k": "list among 100k",
    "async_load_1k": "load 1k",
    "async_newest50_of_10k": "newest 50 of 10k",
}

#: Goal of the hot-path issue: 8 threads appending to one PostgreSQL session (msg/s).
PG_THREADS8_ONE_GOAL = 3000.0


class _Targets:
    """The targets of one backend as they are evaluated (``out``), and the rows they read."""

    def __init__(self, rows: list[Row], async_rows: Sequence[Row]) -> None:
        self.r = _by(rows)
        self.a = _by(list(async_rows))
        self.out: list[dict[str, Any]] = []

    def check(
        self,
        name: str,
        value: float | None,
        limit: float,
        direction: str = "<=",
        issue: str = HOT_PATH,
        **extra: Any,
    ) -> None:
        """Add a target (skipped when ``value`` is None: its scenario did not run); an extra
        field that is ``False`` makes it missed whatever the value."""
        if value is None:
            return
        met = {"<=": value <= limit, "<": value < limit, ">=": value >= limit}[direction]
        self.out.append(
            {
                "target": name,
                "value": round(value, 3),
                "limit": limit,
                "met": met and all(v is not False for v in extra.values()),
                "direction": direction,
                "issue": issue,
                **extra,
            }
        )

    def ratio(self, key: str) -> float | None:
        return self.r[key].ratio if key in self.r else None

    def between(self, x: str, y: str) -> float | None:
        if x in self.r and y in self.r and self.r[y].median:
            return self.r[x].median / self.r[y].median
        return None

    def ours_vs_peer(self, key: str) -> float | None:
        """Ours / the peer's (below 1: ours is faster); a peer row's ratio is theirs / ours."""
        peer = self.ratio(key)
        return 1.0 / peer if peer else None


def targets(kind: str, rows: list[Row], async_rows: Sequence[Row] = ()) -> list[dict[str, Any]]:
    """Evaluate the targets on one backend's rows: the hot-path issue's goals, then those kept
    from issue 9 (flat append, newest 50, flat listing, concurrency, exact counts, memory, the
    file store's seed figures). Sizes in the names are the full run's."""
    t = _Targets(rows, async_rows)
    _hot_path(kind, t)
    _issue_9(kind, t)
    return t.out


def _hot_path(kind: str, t: _Targets) -> None:
    r, check, ratio = t.r, t.check, t.ratio
    if kind == "postgres":
        check("append (10) <= 1.5x raw INSERT", ratio("append_10"), 1.5)
        check("append (10k) <= 1.5x raw INSERT", ratio("append_10k"), 1.5)
        check("create <= 1.5x raw INSERT", ratio("create"), 1.5)
        check("list 10 of a user among 100k <= 1.5x raw SELECT", ratio("list_of_100k"), 1.5)
        check("load 100 <= 1.5x raw SELECT", ratio("load_100"), 1.5)
        check("load 1k <= 1.3x raw SELECT", ratio("load_1k"), 1.3)
        if "threads8_one" in r:
            check(
                f"8 threads, one session >= {PG_THREADS8_ONE_GOAL:,.0f} msg/s, exact counts",
                r["threads8_one"].median,
                PG_THREADS8_ONE_GOAL,
                ">=",
                exact=bool(r["threads8_one"].extra.get("exact")),
            )
        for key, what in ASYNC_VS_SYNC.items():
            check(f"async {what} <= 1.2x sync", t.a[key].ratio if key in t.a else None, 1.2)
    elif kind == "sqlite":
        check("append (10) <= 1.5x raw sqlite3", ratio("append_10"), 1.5)
        check("append (10k) <= 1.5x raw sqlite3", ratio("append_10k"), 1.5)
        check("load 1k <= 1.5x raw sqlite3", ratio("load_1k"), 1.5)
        check(
            "append faster than SQLiteSession (ours / theirs)",
            t.ours_vs_peer("peer_sqlitesession_append"),
            1.0,
            "<",
        )
        check(
            "load 1k faster than SQLiteSession (ours / theirs)",
            t.ours_vs_peer("peer_sqlitesession_load_1k"),
            1.0,
            "<",
        )
    else:
        check("list among 100k <= 2x among 1k", t.between("list_of_100k", "list_of_1k"), 2.0)


def _issue_9(kind: str, t: _Targets) -> None:
    r, ratio = t.r, t.ratio

    def check(name: str, value: float | None, limit: float, direction: str = "<=") -> None:
        t.check(name, value, limit, direction, ISSUE_9)

    if kind == "file":
        # The seed's own figures (fsync on), or within 1.5x of the raw floor.
        for key, limit in (
            ("create", 1.0),
            ("append_10", 5.0),
            ("load_100", 10.0),
            ("checkpoint", 5.0),
            ("list_all_100", 20.0),
        ):
            if key in r:
                value = r[key].median
                floor_ratio = r[key].ratio
                met = value < limit or (floor_ratio is not None and floor_ratio <= 1.5)
                t.out.append(
                    {
                        "target": f"{key} < {limit} ms (seed), or <= 1.5x the raw floor",
                        "value": round(value, 3),
                        "limit": limit,
                        "floor_ratio": None if floor_ratio is None else round(floor_ratio, 3),
                        "met": met,
                        "direction": "<",
                        "issue": ISSUE_9,
                    }
                )
        if "mem_file_cache" in r:
            row = r["mem_file_cache"]
            loaded = row.extra.get("loaded_kib") or 0.0
            check(
                "file cache freed by Session.close() (KiB held after close / while loaded)",
                row.median / loaded if loaded > 0 else 0.0,
                0.1,
            )
    else:
        check("list among 100k <= 2x among 1k", t.between("list_of_100k", "list_of_1k"), 2.0)
    check("append flat: 10k vs 10 <= 1.2x", t.between("append_10k", "append_10"), 1.2)
    check("newest 50 of 10k <= 2x load of 50", ratio("newest50_of_10k"), 2.0)
    if "threads8_one" in r and "threads1_one" in r:
        check(
            "8 threads, one session >= 1x one thread (throughput)",
            r["threads8_one"].median / r["threads1_one"].median,
            1.0,
            ">=",
        )
        if kind == "postgres":
            check(
                "8 threads, 8 sessions >= 2x one thread (throughput)",
                r["threads8_each"].median / r["threads1_one"].median,
                2.0,
                ">=",
            )
    for key in ("threads1_one", "threads8_one", "threads8_each", "procs4_one", "procs4_each"):
        if key in r:
            t.out.append(
                {
                    "target": f"{key}: exact final counts",
                    "value": r[key].extra.get("exact"),
                    "limit": True,
                    "met": bool(r[key].extra.get("exact")),
                    "direction": "==",
                    "issue": ISSUE_9,
                }
            )
    check("memory: newest 50 of 100k <= 2x of 50", ratio("mem_newest50_of_100k"), 2.0)
    check("memory: a page among 10k sessions <= 2x among 50", ratio("mem_list_page_of_10k"), 2.0)


def targets_text(results: list[dict[str, Any]]) -> str:
    """The targets as text, grouped by issue: ``[met   ]`` or ``[MISSED]``, value and limit."""
    lines = []
    for issue in ISSUES:
        group = [t for t in results if t.get("issue", ISSUE_9) == issue]
        if not group:
            continue
        lines.append(f"  {'the hot-path issue' if issue == HOT_PATH else 'kept from issue 9'}:")
        for t in group:
            mark = "met   " if t["met"] else "MISSED"
            exact = "" if "exact" not in t else f", exact: {t['exact']}"
            lines.append(
                f"    [{mark}] {t['target']}: {t['value']} ({t['direction']} {t['limit']}{exact})"
            )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Describe the machine: CPUs, CPU model, disk, Python."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    disk = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        disk = subprocess.run(
            ["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", os.getcwd()],
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "disk": disk,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
