"""analysis.report_html: a self-contained page that renders in headless Chromium and reads well there."""

import json
import os
import re
from dataclasses import replace

import pytest
from analysis_fixtures import copy_run, make_records, shared_locust_run, write_turns
from browser import console_entries, headless_chrome, severe_console_errors

from analysis import compare, gate, metrics, readers, report_html

TARGET = "ws://127.0.0.1:7090/ws/audio"
RESOURCES = (
    "timestamp,worker,users,worker_cpu_percent,worker_rss_mb,gateway_cpu_percent,gateway_rss_mb\n"
    + "".join(
        f"{1_700_000_000 + 2 * i},host:{100 + w},5,{10 + 3 * w + (i % 4)},{80 + i / 10:.1f},"
        f"{'' if i == 0 else 6 + i % 3},{120 + i / 20:.2f}\n"
        for i in range(16)
        for w in (0, 1)
    )
)


def full_records():
    """Every newer figure: fast turns, harness errors, by-ear judging and its cross-check, stalls."""
    return make_records(600, fast_share=0.1, harness_error_share=0.01, audio_judged_share=0.2,
                        cross_checked_share=0.5, judge_wrong_share=0.05, stall_share=0.1)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A full report: real Locust CSVs plus a turns file, resources and run status, with a gate; on disk."""
    directory = tmp_path_factory.mktemp("html")
    prefix = copy_run(shared_locust_run(tmp_path_factory), directory)
    write_turns(prefix, full_records())
    (directory / "run_resources.csv").write_text(RESOURCES)
    (directory / "run_run.json").write_text(json.dumps({"turns_started": 600, "target": TARGET}))
    run = readers.read_run(prefix)
    summary = metrics.summarize(run)
    checks = gate.evaluate(gate.parse_all(["roundtrip.p95<500", "intent.accuracy>=0.999"]), summary)
    page = report_html.render([(run, summary)], checks)
    path = directory / "report.html"
    path.write_text(page, encoding="utf-8")
    return path, page, summary


def test_page_is_self_contained(report):
    _, page, _ = report
    # Nothing is fetched: no external script, stylesheet, image or font.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<script" not in page
    assert page.count('src="data:image/png;base64,') == 8


def test_page_shows_bands_intent_diagnoses_gate_and_verdict(report):
    _, page, _ = report
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


def test_a_backlogged_uplink_has_its_own_section(tmp_path):
    records = make_records(60)
    records = [replace(r, uplink_backlog_ms=512.0) for r in records]
    prefix = str(tmp_path / "slow")
    write_turns(prefix, records)
    run = readers.read_run(prefix)
    page = report_html.render([(run, metrics.summarize(run))], [])
    assert "<h3>Uplink: backlogged</h3>" in page
    assert "p50 512 ms" in page and "slower than real-time audio" in page


def test_the_title_names_the_target_and_the_time(report):
    _, page, _ = report
    assert f"<title>Voice-gateway load run: {TARGET} at 2023-11-14 22:13 UTC</title>" in page
    assert "Voice-gateway load run: run<" not in page


def test_without_a_recorded_target_the_title_names_the_run_files_and_the_time(tmp_path):
    write_turns(tmp_path / "night", make_records(30))
    run = readers.read_run(str(tmp_path / "night"))
    page = report_html.render([(run, metrics.summarize(run))])
    assert f"<title>Voice-gateway load run: {tmp_path / 'night'} at 2023-11-14 22:13 UTC</title>" in page


def test_fast_turns_harness_errors_judge_sources_audible_and_resources_have_their_sections(report):
    _, page, summary = report
    fast = summary.fast.turns
    assert f"Fast-paced turns, apart: {fast} (" in page and 'id="fast-1"' in page
    assert f"{fast} fast-paced turn(s) left out" in page
    assert 'id="harness-1"' in page and "read the traceback" in page
    assert 'id="sources-1"' in page and "reply audio (the judge)" in page
    assert 'id="judge-1"' in page and "Reply judge against the metadata: agrees on" in page
    assert 'id="audible-1"' in page and "time to audible reply" in page
    assert 'id="replies-1"' in page and "Playback stalls" in page
    assert 'id="resources-1"' in page and "load generator host:100" in page and "main process only" in page
    assert "Over turns of each turn&#39;s latest frame" in page


def test_a_run_with_every_utterance_right_gets_one_line_instead_of_bars(tmp_path):
    write_turns(tmp_path / "run", make_records(80, wrong_share=0.0, fail_share=0.0))
    run = readers.read_run(str(tmp_path / "run"))
    page = report_html.render([(run, metrics.summarize(run))])
    assert "Intent accuracy per utterance: all 4 utterances at 100 % (80 judged turns)." in page
    assert 'alt="Intent accuracy per utterance"' not in page


@pytest.mark.browser
@pytest.mark.requires("selenium", "chromium", "chromedriver")
def test_report_in_headless_chromium_reads_well(report, tmp_path):
    """The page as a browser shows it: title, every plot loaded and sized, the sections a reader looks for.

    The screenshots are left in the test's directory (and in $REPORT_SCREENSHOTS when set) to look at.
    """
    path, _, summary = report
    shots = os.environ.get("REPORT_SCREENSHOTS")
    with headless_chrome(tmp_path) as driver:
        driver.get(path.as_uri())
        assert driver.title == f"Voice-gateway load run: {TARGET} at 2023-11-14 22:13 UTC"
        plots = driver.execute_script(
            "return Array.from(document.querySelectorAll('img.plot')).map("
            "i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width]);"
        )
        assert [alt for alt, *_ in plots] == [
            "Roundtrip over time",
            "Roundtrip and time to the first audible reply",
            "Latency histogram and CDF",
            "Users and failures over time",
            "Intent accuracy per utterance",
            "Audio chunks",
            "Reconnections",
            "CPU and memory over time",
        ]
        for alt, complete, width, height, shown in plots:
            assert complete and width > 100 and height > 100 and 100 < shown <= 1100, alt
        verdict = driver.find_element("css selector", ".verdict").text
        assert verdict.startswith("run: ") and f"{summary.fast.turns} fast-paced turn(s) left out" in verdict
        fast = driver.find_element("id", "fast-1")
        assert fast.is_displayed() and "not banded" in fast.text
        assert driver.find_element("id", "harness-1").is_displayed()
        resources = driver.find_element("id", "resources-1")
        driver.execute_script("arguments[0].scrollIntoView()", resources)
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= driver.execute_script("return window.innerWidth")  # nothing runs off to the side
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, min(height + 100, 16000))
        driver.execute_script("window.scrollTo(0, 0)")
        for directory in filter(None, (str(tmp_path), shots)):
            os.makedirs(directory, exist_ok=True)
            driver.save_screenshot(os.path.join(directory, "report.png"))
        assert severe_console_errors(console_entries(driver)) == []
