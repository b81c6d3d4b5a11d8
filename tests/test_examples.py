"""The examples run, on the configured store and on the default one."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

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
