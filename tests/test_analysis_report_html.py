"""analysis.report_html: a self-contained page that renders in headless Chromium without console errors."""

import re
import shutil

import pytest
from analysis_fixtures import copy_run, make_records, shared_locust_run, write_turns

from analysis import compare, gate, metrics, readers, report_html

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A full report: real Locust CSVs plus a turns file, with a gate; written to disk."""
    directory = tmp_path_factory.mktemp("html")
    prefix = copy_run(shared_locust_run(tmp_path_factory), directory)
    write_turns(prefix, make_records(600))
    run = readers.read_run(prefix)
    summary = metrics.summarize(run)
    checks = gate.evaluate(gate.parse_all(["roundtrip.p95<500", "intent.accuracy>=0.999"]), summary)
    page = report_html.render([(run, summary)], checks)
    path = directory / "report.html"
    path.write_text(page, encoding="utf-8")
    return path, page


def test_page_is_self_contained(report):
    _, page = report
    # Nothing is fetched: no external script, stylesheet, image or font.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<script" not in page
    assert page.count('src="data:image/png;base64,') == 6


def test_page_shows_bands_intent_diagnoses_gate_and_verdict(report):
    _, page = report
    for text in (
        "Roundtrip",
        "Latency (ping)",
        "Audio chunks",
        "Reconnections",
        "confusion",
        "Diagnoses",
        "likely causes",
        "Gate (run): 1/2 passed",
        "send lateness",
        'class="verdict',
    ):
        assert text in page, text


def test_locust_only_page_says_why_plots_are_missing(tmp_path_factory):
    run = readers.read_run(shared_locust_run(tmp_path_factory))
    page = report_html.render([(run, metrics.summarize(run))])
    assert "needs the turns file" in page and "Users and failures over time" in page
    # Users over time (history) and intent per utterance (Locust's intent rows); the rest need turns.
    assert page.count('src="data:image/png;base64,') == 2


def test_comparison_page(tmp_path):
    summaries = []
    runs = []
    for name, rt in (("base", 200.0), ("cand", 700.0)):
        prefix = str(tmp_path / name)
        write_turns(prefix, make_records(200, roundtrip_ms=rt))
        runs.append(readers.read_run(prefix))
        summaries.append(metrics.summarize(runs[-1]))
    page = report_html.render(list(zip(runs, summaries)), comparisons=[compare.compare(*summaries)])
    assert "Comparison: base &rarr; cand" in page and "good &rarr; slow" in page


@pytest.mark.browser
@pytest.mark.requires("selenium", "chromium", "chromedriver")
def test_report_renders_in_headless_chromium_with_plots_and_no_console_errors(report, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    path, _ = report
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,2000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(path.as_uri())
        assert "Voice-gateway load run" in driver.title
        sizes = driver.execute_script(
            "return Array.from(document.querySelectorAll('img.plot')).map("
            "i => [i.complete, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width]);"
        )
        assert len(sizes) == 6
        for complete, width, height, shown in sizes:
            assert complete and width > 100 and height > 100 and shown > 100
        assert driver.find_element("css selector", ".verdict").text.startswith("run: ")
        severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert severe == []
    finally:
        driver.quit()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_a_backlogged_uplink_has_its_own_section(tmp_path):
    records = make_records(60)
    for record in records:
        record.uplink_backlog_ms = 512.0
    prefix = str(tmp_path / "slow")
    write_turns(prefix, records)
    run = readers.read_run(prefix)
    page = report_html.render([(run, metrics.summarize(run))], [])
    assert "<h3>Uplink: backlogged</h3>" in page
    assert "p50 512 ms" in page and "slower than real-time audio" in page
