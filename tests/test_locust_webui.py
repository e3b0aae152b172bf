"""The Locust web UI, driven in headless Chromium: start form, Voice quality tab, downloads.

A real gateway (``--fast-sink``: every utterance answered at once with GREETING) and a real
``locust -f locustfiles/voice.py`` in web UI mode; the browser does what a performance
engineer does: fill the start form, press Start, open the "Voice quality" tab, look at the
download section, press Stop.

Selectors are those of Locust 2.47's React UI: the form's inputs are named in camelCase
(``userCount``, ``spawnRate``, and our options ``preset``, ``pace``, ``dialect``...) and
sit in a "Custom parameters" accordion; tabs are ``role=tab`` buttons.

Set ``UPDATE_DOCS_SCREENSHOT=1`` to refresh ``docs/webui-voice-tab.png`` from the run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser import console_entries, headless_chrome, severe_console_errors
from conftest import LOCUST, LOCUSTFILE, ROOT, free_port

from voiceharness import bands

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TAB_TITLE = "Voice quality"
TURNS_CSV_LINK = "Download per-turn records (CSV)"
TABLE_HEADER = ["Metric", "Band / utterance / diagnosis", "Turns", "Share", "Meaning"]
# The usage guide's bands, as the tab must label them.
ROUNDTRIP_BANDS = ["excellent (< 100 ms)", "good (100-500 ms)", "slow (500 ms-1 s)", "bad (> 1 s)"]
LATENCY_BANDS = ["excellent (< 50 ms)", "good (50-100 ms)", "average (100-200 ms)", "slow (> 200 ms)"]
RECONNECTION_BANDS = ["stable (0)", "minor problems (1-3)", "network problems (4-10)", "critical (> 10)"]
DOCS_SCREENSHOT = ROOT / "docs" / "webui-voice-tab.png"

# SEVERE console entries that Locust's page can log without our extension being involved:
# the favicon and the external links of its footer (background networking is off).
UNRELATED_CONSOLE_ERRORS = ("favicon", "azure", "microsoft.com", "locust.cloud")

# Every cell of the table at one instant (the UI re-renders it every couple of seconds,
# so reading cell by cell through WebDriver could mix two refreshes).
_READ_TABLE_JS = """
return Array.from(document.querySelectorAll('table tr')).map(
    tr => Array.from(tr.querySelectorAll('th, td')).map(cell => cell.innerText.trim()));
"""


@dataclass
class WebUI:
    """A ``locust`` process serving its web UI on 127.0.0.1:port."""

    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, str, bytes]:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_web_ui(gateway_factory, tmp_path) -> Iterator[Callable[..., WebUI]]:
    """Start a fast-sink gateway and Locust's web UI against it; both stopped afterwards."""
    started: list[WebUI] = []

    def start(*locust_args: str) -> WebUI:
        gateway = gateway_factory("--fast-sink")
        port = free_port()
        log_path = tmp_path / f"locust-{len(started)}.log"
        process = subprocess.Popen(
            [
                LOCUST,
                "-f",
                LOCUSTFILE,
                "--host",
                gateway.url,
                "--web-host",
                "127.0.0.1",
                "--web-port",
                str(port),
                *locust_args,
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        web_ui = WebUI(port, process, log_path)
        started.append(web_ui)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"locust exited with {process.returncode}: {web_ui.log_text()[-3000:]}")
            try:
                if web_ui.get("/")[0] == 200:
                    return web_ui
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"Locust web UI not up after 60 s: {web_ui.log_text()[-3000:]}")

    yield start
    for web_ui in started:
        if web_ui.process.poll() is None:
            web_ui.process.send_signal(signal.SIGTERM)  # Locust quits cleanly (quitting event)
            try:
                web_ui.process.wait(15)
            except subprocess.TimeoutExpired:
                web_ui.process.kill()
                web_ui.process.wait(5)


# -- what the user does in the browser


def wait_for(driver, condition: Callable[[], object], timeout_s: float, what: str):
    """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as error:  # noqa: BLE001 - stale elements while React re-renders
            last_error = error
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last error: {last_error})")


def replace_text(element, text: str) -> None:
    """Type into a React-controlled input as a user does: select all, type over it."""
    from selenium.webdriver.common.keys import Keys

    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    element.send_keys(text)
    assert element.get_attribute("value") == text


def open_custom_parameters(driver) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, "//button[normalize-space()='Custom parameters']").click()
    wait_for(driver, lambda: driver.find_element(By.NAME, "pace").is_displayed(), 10, "the custom parameters")


def fill_start_form(driver, users: int, spawn_rate: int) -> None:
    from selenium.webdriver.common.by import By

    replace_text(driver.find_element(By.NAME, "userCount"), str(users))
    replace_text(driver.find_element(By.NAME, "spawnRate"), str(spawn_rate))


def press_start(driver) -> None:
    from selenium.webdriver.common.by import By

    start = driver.find_element(By.CSS_SELECTOR, "form button[type=submit]")
    assert start.text.strip().lower() == "start"
    start.click()
    wait_for(driver, lambda: button_named(driver, "stop"), 30, "the run to start (a Stop button)")


def button_named(driver, name: str):
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.TAG_NAME, "button"):
        if button.text.strip().lower() == name.lower() and button.is_displayed():
            return button
    return None


def open_tab(driver, title: str) -> None:
    from selenium.webdriver.common.by import By

    tabs = {tab.text.strip().lower(): tab for tab in driver.find_elements(By.CSS_SELECTOR, "[role=tab]")}
    assert title.lower() in tabs, f"no {title!r} tab among {sorted(tabs)}"
    tabs[title.lower()].click()
    wait_for(
        driver, lambda: tabs[title.lower()].get_attribute("aria-selected") == "true", 10, f"the {title} tab"
    )


def read_table(driver) -> list[list[str]]:
    return driver.execute_script(_READ_TABLE_JS)


def voice_rows(table: list[list[str]]) -> dict[str, list[list[str]]]:
    """The Voice quality table's body rows grouped by their Metric cell."""
    sections: dict[str, list[list[str]]] = {}
    for row in table[1:]:
        if len(row) == len(TABLE_HEADER):
            sections.setdefault(row[0], []).append(row)
    return sections


def succeeded_and_ended(table: list[list[str]]) -> tuple[int, int]:
    (row,) = voice_rows(table)["Turns"]
    succeeded, ended = (int(part) for part in row[2].replace("\n", " ").split("/"))
    return succeeded, ended


def table_with_successes(driver, at_least: int) -> list[list[str]] | None:
    table = read_table(driver)
    if len(table) > 1 and succeeded_and_ended(table)[0] >= at_least:
        return table
    return None


def save_full_page_screenshot(driver, path: Path) -> None:
    """Grow the window to the page's height so the whole table is in one picture."""
    width = driver.get_window_size()["width"]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(height + 120, 800), 6000))
    driver.save_screenshot(str(path))


def read_turns_csv(web_ui: WebUI) -> list[dict[str, str]]:
    status, content_type, body = web_ui.get("/voice/turns.csv")
    assert status == 200 and content_type.startswith("text/csv")
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"))))


# -- the tests


def test_voice_tab_shows_bands_and_turn_records_of_a_run_started_from_the_form(start_web_ui, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from voiceharness.turns import COLUMNS

    web_ui = start_web_ui("--tags", "corpus", "--utterances", "GREETING")
    console: list[dict] = []
    with headless_chrome(tmp_path) as driver:
        driver.get(web_ui.url + "/")
        wait_for(driver, lambda: driver.find_element(By.NAME, "userCount"), 30, "the start form")
        fill_start_form(driver, users=3, spawn_rate=3)

        # the harness's options are in the form (include_in_web_ui), its secrets are not
        open_custom_parameters(driver)
        presets = [
            option.get_attribute("value") for option in Select(driver.find_element(By.NAME, "preset")).options
        ]
        assert sorted(presets) == ["corporate", "docker", "local", "production"]
        assert (
            Select(driver.find_element(By.NAME, "preset")).first_selected_option.get_attribute("value")
            == "local"
        )
        paces = [
            option.get_attribute("value") for option in Select(driver.find_element(By.NAME, "pace")).options
        ]
        assert paces == ["realtime", "fast"]
        dialects = [
            option.get_attribute("value") for option in Select(driver.find_element(By.NAME, "dialect")).options
        ]
        assert sorted(dialects) == ["browser-tester", "reference", "smartjarvis"]
        mic = [option.get_attribute("value") for option in Select(driver.find_element(By.NAME, "micDuringReply")).options]
        assert {"open", "closed"} <= set(mic)
        for hidden in ("authToken", "turnsFile"):
            assert not driver.find_elements(By.NAME, hidden), f"{hidden} must not be in the web form"

        press_start(driver)
        open_tab(driver, TAB_TITLE)
        # the tab refreshes as turns end: wait for five successes (no fixed sleep)
        table = wait_for(
            driver,
            lambda: table_with_successes(driver, 5),
            60,
            "at least 5 succeeded turns in the Voice quality tab",
        )
        assert table[0] == TABLE_HEADER
        sections = voice_rows(table)
        assert [row[1] for row in sections["Roundtrip"]] == ROUNDTRIP_BANDS
        assert [row[1] for row in sections["Latency (ping)"]] == LATENCY_BANDS
        assert [row[1] for row in sections["Reconnections"]] == RECONNECTION_BANDS
        assert "Audio chunks sent" in sections
        succeeded, ended = succeeded_and_ended(table)
        assert 0 < succeeded <= ended
        # fast-sink answers GREETING and only GREETING utterances are said: every band count
        # adds up to the turns that have a roundtrip, and every intent is right
        assert sum(int(row[2]) for row in sections["Roundtrip"]) == ended
        accuracy = sections["Intent accuracy"]
        assert accuracy and all(row[4] == "expected GREETING" and row[3] == "100.0%" for row in accuracy)
        assert "Diagnoses" not in sections
        save_full_page_screenshot(driver, tmp_path / "webui-voice-tab.png")
        if os.environ.get("UPDATE_DOCS_SCREENSHOT"):
            DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copyfile(tmp_path / "webui-voice-tab.png", DOCS_SCREENSHOT)

        # the tab is fed by an extended_stats entry of /stats/requests
        stats = json.loads(web_ui.get("/stats/requests")[2])
        assert [entry["key"] for entry in stats["extended_stats"]] == ["voice-quality"]

        open_tab(driver, "Download data")
        links = {
            link.text.strip(): link.get_attribute("href") for link in driver.find_elements(By.TAG_NAME, "a")
        }
        assert links.get(TURNS_CSV_LINK) == web_ui.url + "/voice/turns.csv", links

        rows = read_turns_csv(web_ui)
        assert len(rows) >= ended > 0
        assert list(rows[0]) == list(COLUMNS)
        assert {row["expected_intent"] for row in rows} == {"GREETING"}
        assert any(row["success"] == "1" for row in rows)

        button_named(driver, "stop").click()
        wait_for(
            driver,
            lambda: json.loads(web_ui.get("/stats/requests")[2])["state"] == "stopped",
            30,
            "the run to stop",
        )
        quality = json.loads(web_ui.get("/voice/quality.json")[2])
        assert quality[0]["section"] == "Headline" and any(row["item"] == "succeeded / ended" for row in quality)
        console = console_entries(driver)

    # A broken extension shows in the console as a failed /stats/requests poll, a 404/500 on
    # a /voice/ route, or an uncaught TypeError while Locust's page renders extended_stats;
    # the page itself logs nothing else on a healthy run, so every SEVERE entry counts except
    # those that are about things outside Locust's page (favicon, external footer links).
    errors = severe_console_errors(console, ignore=UNRELATED_CONSOLE_ERRORS)
    assert not errors, errors
    assert "Traceback" not in web_ui.log_text()


def _headline(table: list[list[str]]) -> dict[str, list[str]]:
    return {row[1].strip(): row for row in voice_rows(table).get("Headline", [])}


def _exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1]


def test_the_voice_tab_opens_with_the_headline_and_a_live_roundtrip_chart(start_web_ui, tmp_path):
    """The first question first: the verdict, the roundtrip's percentiles and its split, accuracy
    and whether the generator kept up head the tab, above a live chart of the roundtrip's
    percentiles; read during a run, and after it stops checked against its turns file."""
    web_ui = start_web_ui("--tags", "corpus", "--utterances", "GREETING", "--autostart", "-u", "3", "-r", "3")
    with headless_chrome(tmp_path) as driver:
        driver.set_window_size(1400, 1000)
        driver.get(web_ui.url + "/?tab=voice-quality")
        table = wait_for(driver, lambda: table_with_successes(driver, 5), 60, "five turns in the Voice quality tab")
        headline = _headline(table)
        assert list(headline) == ["verdict (the analysis's, on the turns so far)", "roundtrip p50 / p95 / p99",
                                  "the client's part / the gateway's part", "audible reply p50 / p95 / p99",
                                  "intent accuracy", "load generator"]
        assert table[1][0] == "Headline"  # the tab opens with it
        points = wait_for(driver, lambda: driver.execute_script(
            "var c = document.getElementById('voice-roundtrip-chart');"
            "return c && Array.from(c.querySelectorAll('polyline')).map("
            "  p => [p.dataset.series, p.getAttribute('points').split(' ').filter(Boolean).length]);")
            if driver.execute_script("var p = document.querySelector('#voice-roundtrip-chart polyline');"
                                     "return p && p.getAttribute('points').split(' ').length >= 2") else None,
            30, "two points on the live roundtrip chart")
        assert [series for series, _ in points] == ["p99", "p95", "p50"] and all(n >= 2 for _, n in points)
        chart = json.loads(web_ui.get("/voice/chart.json")[2])
        assert set(chart) == {"t", "p50", "p95", "p99"} and len(chart["t"]) >= 2
        assert all(a <= b <= c for a, b, c in zip(chart["p50"], chart["p95"], chart["p99"], strict=True))

        button_named(driver, "stop").click()
        wait_for(driver, lambda: json.loads(web_ui.get("/stats/requests")[2])["state"] == "stopped", 30,
                 "the run to stop")
        time.sleep(3)  # one more refresh of the tab, after the last turn's record
        headline = _headline(read_table(driver))
        rows = [row for row in read_turns_csv(web_ui) if row["failure"] not in ("run_stopped", "harness_error")]
    roundtrips = [float(row["roundtrip_ms"]) for row in rows if row["roundtrip_ms"]]
    shown = headline["roundtrip p50 / p95 / p99"]
    assert int(shown[2]) == len(roundtrips) >= 5
    p50, p95, p99 = (float(value) for value in shown[4].split(" ms")[0].split(" / "))
    for shown_ms, q in ((p50, 50), (p95, 95), (p99, 99)):  # the tab's histogram keeps 10 ms bins
        assert abs(shown_ms - _exact(roundtrips, q)) <= 10, (q, shown_ms, sorted(roundtrips))
    band = bands.band_of(bands.ROUNDTRIP, _exact(roundtrips, 95))
    assert shown[3] == band
    verdict = headline["verdict (the analysis's, on the turns so far)"]
    assert int(verdict[2]) == len(rows) and verdict[3] in ("OK", "WARNING", "PROBLEM")
    assert f"roundtrip {band}" in verdict[4] or verdict[3] != "OK"
    correct = sum(row["intent"] == row["expected_intent"] for row in rows)
    assert headline["intent accuracy"][2].replace("\n", " ") == f"{correct} / {len(rows)}"
    assert headline["load generator"][3] in ("kept up", "strained", "bottleneck")


def test_voice_option_chosen_in_the_form_is_used_by_the_run(start_web_ui, tmp_path):
    """Pace "fast" and network "3g" picked in the start form reach the users (the options are re-read
    at test_start)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    web_ui = start_web_ui("--tags", "corpus", "--utterances", "GREETING")  # corpus turns use --pace
    with headless_chrome(tmp_path) as driver:
        driver.get(web_ui.url + "/")
        wait_for(driver, lambda: driver.find_element(By.NAME, "userCount"), 30, "the start form")
        fill_start_form(driver, users=2, spawn_rate=2)
        open_custom_parameters(driver)
        Select(driver.find_element(By.NAME, "pace")).select_by_value("fast")
        driver.find_element(By.NAME, "network").send_keys("3g")
        press_start(driver)
        wait_for(driver, lambda: len(read_turns_csv(web_ui)) >= 4, 30, "four turns")
        button_named(driver, "stop").click()
    paces = {row["pace"] for row in read_turns_csv(web_ui)}
    assert paces == {"fast"}
    assert {row["network_profile"] for row in read_turns_csv(web_ui)} == {"3g"}


def test_calls_on_their_own_clock_are_started_from_the_form_and_counted_in_the_voice_tab(start_web_ui, tmp_path):
    """The open model from the browser: --call-rate and --call-turns typed into the start form reach
    the caller users (none is on the command line), and the Voice quality tab counts the calls."""
    from selenium.webdriver.common.by import By

    web_ui = start_web_ui("-f", str(ROOT / "locustfiles" / "calls.py"), "--utterances", "GREETING")
    with headless_chrome(tmp_path) as driver:
        driver.get(web_ui.url + "/")
        wait_for(driver, lambda: driver.find_element(By.NAME, "userCount"), 30, "the start form")
        fill_start_form(driver, users=2, spawn_rate=2)
        open_custom_parameters(driver)
        replace_text(driver.find_element(By.NAME, "callRate"), "4/s")
        replace_text(driver.find_element(By.NAME, "callTurns"), "1")
        press_start(driver)
        open_tab(driver, TAB_TITLE)

        def calls_completed(at_least: int):
            rows = voice_rows(read_table(driver)).get("Calls")
            if rows and int(rows[1][2]) >= at_least:  # "completed / failed / cut by the run's end": completed
                return rows
            return None

        rows = wait_for(driver, lambda: calls_completed(4), 60, "four completed calls in the Voice quality tab")
        button_named(driver, "stop").click()
    assert [row[1] for row in rows] == ["offered / started / in progress", "completed / failed / cut by the run's end",
                                        "not started: late / harness limit"]
    offered = int(rows[0][2])
    started, _in_progress = (int(part) for part in rows[0][3].split("/"))
    assert offered >= started >= int(rows[1][2]) >= 4
    stats = json.loads(web_ui.get("/stats/requests")[2])
    completed = [entry for entry in stats["stats"] if entry["method"] == "call" and entry["name"] == "completed"]
    assert completed and completed[0]["num_requests"] >= 4
    turns = read_turns_csv(web_ui)
    assert turns and all(row["call_id"] and float(row["offered_rate_per_s"]) == 4.0 for row in turns)
