"""The report: a table per backend, the targets of issue 9, and the JSON file."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
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


def targets(kind: str, rows: list[Row]) -> list[dict[str, Any]]:
    """Evaluate the targets of issue 9 on one backend's rows."""
    r = _by(rows)
    out: list[dict[str, Any]] = []

    def check(name: str, value: float | None, limit: float, lower_is_better: bool = True) -> None:
        if value is None:
            return
        met = value <= limit if lower_is_better else value >= limit
        out.append(
            {
                "target": name,
                "value": round(value, 3),
                "limit": limit,
                "met": met,
                "direction": "<=" if lower_is_better else ">=",
            }
        )

    def ratio(key: str) -> float | None:
        return r[key].ratio if key in r else None

    def between(a: str, b: str) -> float | None:
        if a in r and b in r and r[b].median:
            return r[a].median / r[b].median
        return None

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
                out.append(
                    {
                        "target": f"{key} < {limit} ms (seed), or <= 1.5x the raw floor",
                        "value": round(value, 3),
                        "limit": limit,
                        "floor_ratio": None if floor_ratio is None else round(floor_ratio, 3),
                        "met": met,
                        "direction": "<",
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
        check("append (10) <= 1.3x raw INSERT", ratio("append_10"), 1.3)
        check("append (10k) <= 1.3x raw INSERT", ratio("append_10k"), 1.3)
        check("load 100 <= 2x raw SELECT", ratio("load_100"), 2.0)
        check("load 1k <= 2x raw SELECT", ratio("load_1k"), 2.0)
        check("load 10k <= 2x raw SELECT", ratio("load_10k"), 2.0)
    check("append flat: 10k vs 10 <= 1.2x", between("append_10k", "append_10"), 1.2)
    check("newest 50 of 10k <= 2x load of 50", ratio("newest50_of_10k"), 2.0)
    check("list among 100k <= 2x among 1k", between("list_of_100k", "list_of_1k"), 2.0)
    if "threads8_one" in r and "threads1_one" in r:
        check(
            "8 threads, one session >= 1x one thread (throughput)",
            r["threads8_one"].median / r["threads1_one"].median,
            1.0,
            lower_is_better=False,
        )
        if kind == "postgres":
            check(
                "8 threads, 8 sessions >= 2x one thread (throughput)",
                r["threads8_each"].median / r["threads1_one"].median,
                2.0,
                lower_is_better=False,
            )
    for key in ("threads1_one", "threads8_one", "threads8_each", "procs4_one", "procs4_each"):
        if key in r:
            out.append(
                {
                    "target": f"{key}: exact final counts",
                    "value": r[key].extra.get("exact"),
                    "limit": True,
                    "met": bool(r[key].extra.get("exact")),
                    "direction": "==",
                }
            )
    check("memory: newest 50 of 100k <= 2x of 50", ratio("mem_newest50_of_100k"), 2.0)
    check("memory: a page among 10k sessions <= 2x among 50", ratio("mem_list_page_of_10k"), 2.0)
    return out


def targets_text(results: list[dict[str, Any]]) -> str:
    lines = []
    for t in results:
        mark = "met   " if t["met"] else "MISSED"
        lines.append(f"  [{mark}] {t['target']}: {t['value']} ({t['direction']} {t['limit']})")
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
