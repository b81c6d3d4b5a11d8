"""The inspector as a person uses it: a real headless Chromium against ``sessions-db serve``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

import sessions_db as sdb

from . import browser
from .browser import chromium, console_errors, keep, records, wait_for
from .seeding import HOSTILE_USER, Seeded
from .server import serving

TOKEN = "browser-token-0123456789"


def shot(driver: webdriver.Chrome, tmp_path: Path, *parts: str) -> Path:
    """Save a screenshot of the page as a test artifact."""
    path = tmp_path / parts[-1]
    assert driver.save_screenshot(str(path))
    return keep(path, "inspector", *parts)


def not_pwned(driver: webdriver.Chrome) -> None:
    """Assert that no injected script ran: no marker, no dialog."""
    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - reading it is the check


def test_a_person_inspects_a_session(
    store_kind: str, store_url: str, seeded: Seeded, manager: sdb.Manager, tmp_path: Path
) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with serving(store_url, log=tmp_path / "serve.log") as (base, _), chromium(downloads) as d:
        # The agents page.
        d.get(base + "/")
        rows = d.find_elements(By.CSS_SELECTOR, "#agents tbody tr")
        assert [r.text.split()[:2] for r in rows] == [["coder", "1"], ["support", "2"]]
        shot(d, tmp_path, store_kind, "agents.png")

        # Search the user's messages, then open the session found.
        d.find_element(By.LINK_TEXT, "Search").click()
        d.find_element(By.ID, "search-user").send_keys("alice")
        d.find_element(By.ID, "search-q").send_keys("forecast")
        d.find_element(By.CSS_SELECTOR, "#search-form button").click()
        hits = wait_for("search hits", lambda: d.find_elements(By.CSS_SELECTOR, "#hits li"))
        assert "Let me check the forecast." in hits[0].text
        shot(d, tmp_path, store_kind, "search.png")
        hits[0].find_element(By.CSS_SELECTOR, "a.session-link").click()

        # The session: its tree with branches, checkpoints and restores, newest messages first.
        wait_for("the session page", lambda: d.find_elements(By.CSS_SELECTOR, "svg.tree"))
        assert seeded.session_id in d.current_url
        assert len(d.find_elements(By.CSS_SELECTOR, "svg.tree a.node.checkpoint")) == 2
        assert len(d.find_elements(By.CSS_SELECTOR, "svg.tree a.node.ev-restore")) == 2
        assert len(d.find_elements(By.CSS_SELECTOR, "svg.tree path.edge.cur")) >= 3
        assert len(d.find_elements(By.CSS_SELECTOR, "#checkpoints tbody tr")) == 2
        shown = d.find_elements(By.CSS_SELECTOR, "#messages > li")
        assert "Sunny all week." in shown[0].text
        shot(d, tmp_path, store_kind, "session.png")

        # Page back through its history: older messages load in place.
        d.find_element(By.ID, "older").click()

        def every_message() -> list[WebElement] | None:
            found = d.find_elements(By.CSS_SELECTOR, "#messages > li")
            return found if len(found) == seeded.messages else None

        every = wait_for("the older messages", every_message)
        assert "What's the weather in Lyon today?" in every[-1].text
        assert not d.find_elements(By.ID, "older")
        d.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        shot(d, tmp_path, store_kind, "history.png")

        verify_and_export(d, base, seeded, manager, downloads, store_kind)
        hostile_pages_stay_inert(d, base, seeded, tmp_path, store_kind)
        assert console_errors(d) == []


def verify_and_export(
    d: webdriver.Chrome,
    base: str,
    seeded: Seeded,
    manager: sdb.Manager,
    downloads: Path,
    store_kind: str,
) -> None:
    """On the session page: verify its checkpoints, come back, and export it."""
    # Verify the checkpoints.
    d.find_element(By.ID, "verify").click()
    verdict = wait_for("the verdict", lambda: d.find_elements(By.ID, "verdict"))
    assert "All 2 checkpoints verify" in verdict[0].text
    d.back()

    # Export it.
    wait_for("the session page again", lambda: d.find_elements(By.ID, "export"))
    d.find_element(By.ID, "export").click()
    name = f"session-{seeded.session_id}.jsonl"

    def downloaded() -> Path | None:
        path = downloads / name
        return path if path.exists() else None

    saved = wait_for("the download", downloaded)
    exported = records(keep(saved, "inspector", store_kind, name))
    served = httpx.get(f"{base}/sessions/{seeded.session_id}/export.jsonl", timeout=10)
    assert [r for r in exported if r["kind"] != "header"] == [
        r for r in records_of(served.text) if r["kind"] != "header"
    ]
    assert exported[-1] == {
        "kind": "end",
        "sessions": 1,
        "entries": len(manager.get(seeded.session_id).get_entries()),
        "checkpoints": 2,
    }


def hostile_pages_stay_inert(
    d: webdriver.Chrome, base: str, seeded: Seeded, tmp_path: Path, store_kind: str
) -> None:
    """Open the pages that show hostile text; none of it runs."""
    # Hostile payloads, user IDs, roles and metadata are shown, never run.
    d.get(f"{base}/sessions/{seeded.hostile_id}")
    wait_for("the hostile session", lambda: d.find_elements(By.CSS_SELECTOR, "svg.tree"))
    assert "<script>window.__pwned = 1; alert(1)</script>" in d.page_source.replace(
        "&lt;", "<"
    ).replace("&gt;", ">")
    not_pwned(d)
    shot(d, tmp_path, store_kind, "hostile.png")
    d.get(base + "/sessions?" + str(httpx.QueryParams({"user": HOSTILE_USER})))
    not_pwned(d)
    d.get(base + "/search?" + str(httpx.QueryParams({"user": HOSTILE_USER, "q": "alert"})))
    assert d.find_elements(By.CSS_SELECTOR, "#hits li")
    not_pwned(d)


def records_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("store_kind", ["sqlite"])
def test_reading_works_without_javascript(tmp_path: Path, store_url: str, seeded: Seeded) -> None:
    with serving(store_url) as (base, _), chromium(tmp_path, javascript=False) as d:
        d.get(f"{base}/sessions/{seeded.session_id}")
        assert len(d.find_elements(By.CSS_SELECTOR, "#messages > li")) == 50
        d.find_element(By.ID, "older").click()
        wait_for("the older messages page", lambda: "/messages?before=" in d.current_url)
        older = d.find_elements(By.CSS_SELECTOR, "#messages > li")
        assert len(older) == seeded.messages - 50
        assert console_errors(d) == []


@pytest.mark.parametrize("store_kind", ["sqlite"])
def test_the_token_opens_the_inspector_once(store_url: str, seeded: Seeded, tmp_path: Path) -> None:
    with serving(store_url, token=TOKEN) as (base, _), chromium(tmp_path) as d:
        d.get(base + "/")
        assert "needs its token" in d.page_source
        d.get(f"{base}/?token={TOKEN}")
        wait_for("the agents", lambda: d.find_elements(By.CSS_SELECTOR, "#agents tbody tr"))
        assert d.current_url == base + "/"
        assert d.execute_script("return document.cookie") == ""  # HttpOnly
        d.find_element(By.LINK_TEXT, "support").click()
        wait_for("the sessions", lambda: d.find_elements(By.CSS_SELECTOR, "#sessions tbody tr"))
        # The page that asked for the token was a failed load (401); nothing else failed.
        errors = [entry["message"] for entry in console_errors(d)]
        assert errors == [
            f"{base}/ - Failed to load resource: the server responded with a "
            "status of 401 (Unauthorized)"
        ]


def test_without_a_browser_the_tests_fail_unless_skipping_is_allowed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(browser, "BROWSERS", ("no-such-browser-here",))
    monkeypatch.delenv("SESSIONS_DB_ALLOW_SKIP", raising=False)
    with (
        pytest.raises(pytest.fail.Exception, match="install Debian's chromium"),
        chromium(tmp_path),
    ):
        pass
    monkeypatch.setenv("SESSIONS_DB_ALLOW_SKIP", "1")
    with pytest.raises(pytest.skip.Exception, match="chromium-driver"), chromium(tmp_path):
        pass
