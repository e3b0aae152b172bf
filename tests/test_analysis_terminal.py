"""analysis.terminal: the text a person reads after a run."""

from dataclasses import replace

import pytest
from analysis_fixtures import make_records, shared_locust_run, write_turns

from analysis import compare, gate, metrics, readers, terminal


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("terminal") / "run")
    write_turns(prefix, make_records(400))
    return metrics.summarize(readers.read_run(prefix))


def test_every_documented_metric_has_a_band_table(summary):
    text = terminal.render(summary)
    for title in ("Roundtrip: ", "Latency (ping): ", "Audio chunks: ", "Reconnections: "):
        assert title in text
    assert "excellent  < 100 ms" in text and "good       100 - 500 ms" in text
    assert "stable            0" in text and "normal  50 - 200" in text


def test_exact_percentiles_are_printed(summary):
    text = terminal.render(summary)
    p95 = summary.metrics["roundtrip"].percentiles.p95
    assert f"p95 {terminal.number(p95)}" in text and "per-turn records (exact)" in text


def test_intent_diagnoses_lateness_and_verdict_sections(summary):
    text = terminal.render(summary)
    assert (
        "Intent accuracy: " in text and "confusion matrix" in text and "per utterance (worst first)" in text
    )
    assert "Diagnoses" in text and "likely causes:" in text and "fix:" in text
    assert "Send lateness" in text and "KEPT UP" in text
    assert text.rstrip().splitlines()[-1].startswith("verdict: ")


def test_locust_only_output_says_what_it_lacks(tmp_path_factory):
    text = terminal.render(metrics.summarize(readers.read_run(shared_locust_run(tmp_path_factory))))
    assert "Locust's rounded percentiles" in text and "needs the turns file" in text
    assert "Exceptions in user code" in text


def test_table_right_aligns_numbers():
    text = terminal.table(["name", "n"], [["a", 5], ["bbb", 100]])
    assert text.splitlines()[2] == "  a       5"
    assert text.splitlines()[3] == "  bbb   100"


def test_checks_and_comparison(summary):
    checks = gate.evaluate(gate.parse_all(["roundtrip.p95<1", "roundtrip.p95<100000"]), summary)
    text = terminal.render_checks(checks)
    assert text.startswith("Gate: 1/2 passed") and "FAIL roundtrip.p95<1" in text
    comparison = terminal.render_comparison(compare.compare(summary, summary))
    assert "roundtrip.p95" in comparison and "moved (>= 5% or across a band edge): nothing" in comparison


def test_the_uplink_section_appears_when_the_turns_carry_the_backlog(tmp_path, summary):
    assert "Uplink" not in terminal.render(summary)  # no figure recorded: nothing to say
    records = make_records(50)
    records = [replace(r, uplink_backlog_ms=640.0) for r in records]
    write_turns(tmp_path / "slow", records)
    text = terminal.render(metrics.summarize(readers.read_run(str(tmp_path / "slow"))))
    assert "Uplink (audio unsent at end of speech, real-time turns): BACKLOGGED" in text
    assert "p50 640 ms" in text and "256 kbit/s per user" in text
    assert "uplink slower than real time (median 640 ms" in text.splitlines()[-1]


@pytest.fixture(scope="module")
def full_text(tmp_path_factory):
    """A run with every newer figure: fast turns, harness errors, the judge, audible, stalls, resources."""
    directory = tmp_path_factory.mktemp("full")
    records = make_records(400, fast_share=0.15, harness_error_share=0.02, audio_judged_share=0.2,
                           cross_checked_share=0.5, judge_wrong_share=0.1, stall_share=0.1)
    write_turns(directory / "run", records)
    (directory / "run_resources.csv").write_text(
        "timestamp,worker,users,worker_cpu_percent,worker_rss_mb,gateway_cpu_percent,gateway_rss_mb\n"
        "100,h:1,10,12.0,80,,120\n102,h:1,10,81.0,81,7.5,121\n"
    )
    return terminal.render(metrics.summarize(readers.read_run(str(directory / "run")))), records


def test_fast_turns_are_printed_apart_and_the_verdict_counts_them_out(full_text):
    text, records = full_text
    fast = sum(r.pace == "fast" and r.failure != "harness_error" for r in records)
    assert f"{fast} fast-paced" in text and "every figure below is over the real-time turns" in text
    assert f"Fast-paced turns, apart: {fast} (" in text and "not banded" in text
    assert f"{fast} fast-paced turn(s) left out" in text.splitlines()[-1]


def test_send_lateness_says_it_aggregates_each_turns_latest_frame(full_text):
    text, _ = full_text
    assert "over turns of each turn's latest frame: p50" in text and "per-turn p99" not in text


def test_judge_source_audible_replies_harness_errors_and_resources_are_printed(full_text):
    text, records = full_text
    assert "Intent source (where each turn's intent came from)" in text and "reply audio (the judge)" in text
    assert "Reply judge against the metadata: agrees on " in text and "metadata \\ audio" in text
    assert "audible reply: p50" in text and "audible - roundtrip: p50 60 ms" in text
    assert "time to audible reply" in text and "reply audio duration" in text
    assert "playback stalls" in text and "sample rates: 16000 Hz" in text and "22050 Hz" in text
    broken = sum(r.failure == "harness_error" for r in records)
    assert f"Harness errors: {broken} turn(s), counted apart" in text and "read the traceback" in text
    assert "CPU and memory (_resources.csv)" in text and "SATURATED" in text
    assert "gateway CPU: the gateway's main process only" in text


def test_utterances_at_100_percent_are_counted_not_listed(tmp_path):
    write_turns(tmp_path / "run", make_records(80, wrong_share=0.0, fail_share=0.0))
    summary = metrics.summarize(readers.read_run(str(tmp_path / "run")))
    text = terminal.render(summary)
    assert "4 of 4 utterances at 100 % (all of them)" in text and "per utterance" not in text
    assert "per utterance (worst first)" in terminal.render(summary, all_rows=True)
