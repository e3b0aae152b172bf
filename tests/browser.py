"""Headless Chromium for tests, through selenium and the system chromedriver.

Use it as a context manager; when selenium, Chromium or chromedriver is missing, the calling
test skips locally and fails in CI (``conftest.require_dependency``)::

    from browser import headless_chrome, severe_console_errors, console_entries

    with headless_chrome(tmp_path) as driver:
        driver.get("http://127.0.0.1:8089/")
        driver.save_screenshot(str(tmp_path / "page.png"))
        errors = severe_console_errors(console_entries(driver))

Nothing here knows about Locust or the gateway: it only finds the browser, starts it with
options that keep a sandboxed CI container quiet (no sandbox, no GPU, no /dev/shm, no
background network calls, a throw-away profile), and reads the console log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from conftest import DEPENDENCIES, require_dependency

CHROME_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver",)
WINDOW_SIZE = (1400, 1000)


def _first_existing(env_var: str, candidates: tuple[str, ...]) -> str | None:
    explicit = os.environ.get(env_var)
    if explicit:
        return explicit
    for candidate in candidates:
        if Path(candidate).exists():
            return candidate
    return None


def chrome_options(profile_dir: Path, binary: str | None = None):
    """The Chrome options every test browser gets (headless, quiet, a throw-away profile)."""
    from selenium.webdriver.chrome.options import Options

    options = Options()
    if binary:
        options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # containers run as root without user namespaces
        "--disable-gpu",
        "--disable-dev-shm-usage",  # /dev/shm is tiny in Docker
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}",
        f"--user-data-dir={profile_dir}",
    ):
        options.add_argument(argument)
    # Keep console messages of every level so a test can look for SEVERE ones.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@contextlib.contextmanager
def headless_chrome(tmp_dir: Path | None = None, page_load_timeout_s: float = 30) -> Iterator:
    """A selenium Chrome driver on headless Chromium; quit (and its profile removed) on exit.

    When selenium, Chromium or chromedriver is missing, the test skips locally and fails in
    CI. ``CHROME_BINARY`` and ``CHROMEDRIVER`` override where they are looked for.
    """
    require_dependency("selenium", *DEPENDENCIES["selenium"])
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = _first_existing("CHROME_BINARY", CHROME_CANDIDATES)
    driver_path = _first_existing("CHROMEDRIVER", CHROMEDRIVER_CANDIDATES) or shutil.which("chromedriver")
    require_dependency("chromium", binary is not None, DEPENDENCIES["chromium"][1])
    require_dependency("chromedriver", driver_path is not None, DEPENDENCIES["chromedriver"][1])
    profile_dir = Path(tempfile.mkdtemp(prefix="chrome-profile-", dir=tmp_dir))
    driver = webdriver.Chrome(service=Service(driver_path), options=chrome_options(profile_dir, binary))
    try:
        driver.set_page_load_timeout(page_load_timeout_s)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile_dir, ignore_errors=True)


def console_entries(driver) -> list[dict]:
    """Browser console entries since the last call (Chrome hands each entry out once)."""
    return list(driver.get_log("browser"))


def severe_console_errors(entries: list[dict], ignore: tuple[str, ...] = ()) -> list[str]:
    """The messages of SEVERE entries, minus those containing any of ``ignore``."""
    return [
        entry["message"]
        for entry in entries
        if entry.get("level") == "SEVERE" and not any(fragment in entry["message"] for fragment in ignore)
    ]
