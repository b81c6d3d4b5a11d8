"""A real headless browser for the tests: Debian's chromium and chromium-driver, through Selenium.

The browser must be installed (``scripts/setup`` installs both packages when it
runs as root); a test that needs it and finds none fails through
:func:`tests.conftest.cannot_run`, so it is skipped only with
``SESSIONS_DB_ALLOW_SKIP=1``. Selenium is given both paths, so it never looks
for a browser or driver to download.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service

from ..conftest import cannot_run

T = TypeVar("T")

BROWSERS = ("chromium", "chromium-browser")
DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver")
#: Where screenshots and downloads are kept after the run (ignored by git).
ARTIFACTS = Path(
    os.environ.get("SESSIONS_DB_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
)
#: The longest any wait for the page lasts.
WAIT_SECONDS = 20.0


def _find(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


@contextmanager
def chromium(downloads: Path, *, javascript: bool = True) -> Iterator[webdriver.Chrome]:
    """Start a headless Chromium that saves downloads in ``downloads``."""
    browser, driver = _find(BROWSERS), _find(DRIVERS)
    if browser is None or driver is None:
        cannot_run(
            "no headless browser: install Debian's chromium and chromium-driver "
            "(scripts/setup does, as root)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--window-size=1280,900",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium's sandbox does not run as root
    prefs: dict[str, Any] = {"download.default_directory": str(downloads)}
    if not javascript:
        prefs["profile.managed_default_content_settings.javascript"] = 2
    options.add_experimental_option("prefs", prefs)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        session = webdriver.Chrome(service=Service(driver), options=options)
    except WebDriverException as exc:
        cannot_run(f"chromium did not start: {exc.msg}")
    try:
        session.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        session.set_page_load_timeout(WAIT_SECONDS)
        yield session
    finally:
        session.quit()


def wait_for(what: str, check: Callable[[], T | None], seconds: float = WAIT_SECONDS) -> T:
    """Return ``check()``'s first true value, polling for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds} s for {what}")
        time.sleep(0.05)


def console_errors(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """Return the console messages of level SEVERE since the last call."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [entry for entry in entries if entry.get("level") == "SEVERE"]


def keep(source: Path, *parts: str) -> Path:
    """Copy a screenshot or a download into the artifacts directory; return the copy."""
    target = ARTIFACTS.joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def records(path: Path) -> list[dict[str, Any]]:
    """Return the records of a JSON Lines file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
