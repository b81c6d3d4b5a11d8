"""``sessions-db serve``: where it may listen, its token, and the app mounted in a host's app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.routing import Mount

import sessions_db as sdb
from sessions_db.cli import EXIT_UNAVAILABLE, EXIT_USAGE, main
from sessions_db.cli.serve import is_local
from sessions_db.inspector import app

from .conftest import TestClient
from .seeding import Seeded
from .server import serving

TOKEN = "a-token-long-enough-to-guess-never"


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_local_addresses(host: str, local: bool) -> None:
    assert is_local(host) is local


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.1", "example.com"])
def test_another_address_is_refused_without_a_token(host: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    result = CliRunner().invoke(main, ["serve", "--url", url, "--host", host])
    assert result.exit_code == EXIT_USAGE
    assert "without a token" in result.output


def test_a_short_token_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    result = CliRunner().invoke(main, ["serve", "--url", url, "--token", "short"])
    assert result.exit_code == EXIT_USAGE
    assert "at least 16 characters" in result.output


def test_a_missing_store_is_reported(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    result = CliRunner().invoke(main, ["serve", "--url", url])
    assert result.exit_code == EXIT_UNAVAILABLE


def test_serve_answers_on_127_0_0_1_and_only_for_local_host_names(
    store_url: str, seeded: Seeded, tmp_path: Path
) -> None:
    with serving(store_url, log=tmp_path / "serve.log") as (base, _process):
        page = httpx.get(base + "/", timeout=10)
        assert page.status_code == 200
        assert "support" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        session = httpx.get(f"{base}/sessions/{seeded.session_id}", timeout=10)
        assert session.status_code == 200
        rebound = httpx.get(base + "/", headers={"Host": "attacker.example"}, timeout=10)
        assert rebound.status_code == 400
        assert httpx.get(base + "/", headers={"Host": "localhost:1"}, timeout=10).status_code == 200
        assert httpx.post(base + "/", timeout=10).status_code == 405
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log


def test_serve_with_a_token_from_the_environment(sqlite_template: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    (tmp_path / "store.db").write_bytes(sqlite_template.read_bytes())
    with serving(url, token=TOKEN) as (base, _process):
        assert httpx.get(base + "/", timeout=10).status_code == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(base + "/", headers=bearer, timeout=10).status_code == 200
        with httpx.Client(base_url=base, timeout=10, follow_redirects=True) as browser:
            first = browser.get("/stats", params={"token": TOKEN, "days": 7})
            assert first.status_code == 200  # redirected, with the cookie
            assert str(first.url) == f"{base}/stats?days=7"
            assert browser.get("/").status_code == 200


def test_mounted_in_a_host_app_links_stay_under_its_prefix(
    manager: sdb.Manager, seeded: Seeded
) -> None:
    host = Starlette(routes=[Mount("/inspector", app=app(manager))])
    with TestClient(host) as client:
        page = client.get("/inspector/")
        assert page.status_code == 200
        assert 'href="/inspector/sessions?agent=support"' in page.text
        assert 'href="/inspector/static/inspector.css"' in page.text
        assert client.get("/inspector/static/inspector.css").status_code == 200
        session = client.get(f"/inspector/sessions/{seeded.session_id}")
        assert f'href="/inspector/sessions/{seeded.session_id}/verify"' in session.text
        assert client.get("/inspector/nothing").status_code == 404


def test_importing_sessions_db_loads_no_web_framework() -> None:
    code = (
        "import sys, sessions_db, sessions_db.cli\n"
        "loaded = {'starlette', 'jinja2', 'uvicorn'} & {m.split('.')[0] for m in sys.modules}\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_readme_shows_the_command_and_a_small_screenshot() -> None:
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Inspector") :]
    assert "sessions-db serve --url" in section
    assert "](docs/inspector.png)" in section
    picture = (root / "docs" / "inspector.png").read_bytes()
    assert picture.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(picture) < 150_000
