"""The examples run, on the configured store and on the default one."""

from __future__ import annotations

import inspect
import re
import runpy
from pathlib import Path
from typing import Any

import pytest

import sessions_db as sdb

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_runtime_example(
    store_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SESSIONS_DB_URL", store_url)
    runpy.run_path(str(EXAMPLES / "runtime_basic.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "session-aware: True, checkpointable: True" in out
    assert "I know: the meeting is at 10, bring the slides." in out
    assert "6 messages on the current branch" in out


def test_session_example_resumes_on_the_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    runpy.run_path(str(EXAMPLES / "session_basic.py"), run_name="__main__")
    assert "Created session" in capsys.readouterr().out
    runpy.run_path(str(EXAMPLES / "session_basic.py"), run_name="__main__")
    assert "Resumed session" in capsys.readouterr().out
    assert (tmp_path / ".sessions_db").is_dir()


def _readme_block(heading: str) -> str:
    readme = (EXAMPLES.parent / "README.md").read_text()
    section = readme[readme.index(heading) :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("\n```", start)]


def test_readme_quickstart_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _readme_block("## Quickstart")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out.splitlines()
    expected = [line.strip()[2:] for line in code.splitlines() if line.strip().startswith("# [")]
    assert printed == expected
    assert len(printed) == 3  # the whole branch, then two pages of cursor paging


#: What the names in the README's API table stand for.
TABLE_NAMES: dict[str, Any] = {"sdb": sdb, "mgr": sdb.Manager, "sess": sdb.Session}
#: A call as the table writes it: ``mgr.get(session_id, *, user_id=None)``, or a property.
TABLE_CALL = re.compile(r"`(\w+)((?:\.\w+)+)(?:\(([^)]*)\))?`")


def _api_table() -> list[str]:
    """The first cell of each row of the README's "The API at a glance" table."""
    readme = (EXAMPLES.parent / "README.md").read_text()
    lines = readme[readme.index("### The API at a glance") :].splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("|"))
    end = next(n for n, line in enumerate(lines) if n > start and not line.startswith("|"))
    return [line.split(" | ")[0] for line in lines[start + 2 : end]]


def _documented(target: Any) -> str:
    """The parameter list of ``target`` written as the table writes it."""
    params = []
    star = False
    for param in inspect.signature(target).parameters.values():
        if param.name in ("self", "cls"):
            continue
        if param.kind is param.KEYWORD_ONLY and not star:
            params.append("*")
            star = True
        default = "" if param.default is param.empty else f"={param.default!r}"
        params.append(f"{param.name}{default}")
    return ", ".join(params)


def test_readme_api_table_matches_the_signatures() -> None:
    """Every call in the table has exactly the real parameters: names, order, defaults,
    and which are keyword-only (a parameter left out of a row fails here)."""
    rows = _api_table()
    assert len(rows) >= 20
    checked = 0
    for cell in rows:
        for match in TABLE_CALL.finditer(cell):
            name, path, params = match.groups()
            target = TABLE_NAMES[name]
            for attribute in path.removeprefix(".").split("."):
                target = inspect.getattr_static(target, attribute)
            if isinstance(target, classmethod | staticmethod):
                target = target.__func__
            if params is None:
                assert isinstance(target, property), match.group(0)
            else:
                assert params == _documented(target), match.group(0)
            checked += 1
    assert checked >= len(rows)
    # The asyncio twin the table names takes the same parameters.
    assert _documented(sdb.aio.connect) == _documented(sdb.connect)
